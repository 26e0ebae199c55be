// TLS as a TcpConnection Filter (reactor/tls.h): a server and a client connection on one reactor,
// over a socket pair, with certificates from a throw-away authority (tests/tls/make_test_ca.sh):
// the handshake, bytes across many records both ways, the wrong protocol on either side, a
// handshake that never ends, a certificate the client does not trust, the reload.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "reactor/tcp_connection.h"
#include "reactor/tls.h"
#include "test_util.h"

using namespace std::chrono_literals;
using reactor::CloseCode;
using reactor::CloseReason;
using reactor::Handshake;
using reactor::Reactor;
using reactor::TcpConnection;
using reactor::TcpConnectionPtr;

namespace {

// The authority's directory, made once per test process and removed at its exit.
const std::string& authority() {
  struct Dir {
    std::string path = (std::filesystem::temp_directory_path() / ("reactor-tls-unit-" + std::to_string(::getpid()))).string();
    Dir() {
      std::string cmd = std::string(SOURCE_DIR) + "/tests/tls/make_test_ca.sh " + path;
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("could not make the test authority: " + cmd);
    }
    ~Dir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const Dir dir;
  return dir.path;
}

std::shared_ptr<reactor::TlsServerContext> server_context(const std::string& name = "server") {
  return std::make_shared<reactor::TlsServerContext>(
      reactor::TlsFiles{authority() + "/" + name + ".pem", authority() + "/" + name + ".key"});
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 13 + i / 509) & 0xff);
  return s;
}

// One end: what it received, how it closed.
struct End {
  std::shared_ptr<reactor::ConnectionCallbacks> callbacks = std::make_shared<reactor::ConnectionCallbacks>();
  std::string received;
  std::optional<CloseReason> closed;
  bool echo = false;
  End() {
    callbacks->on_message = [this](const TcpConnectionPtr& conn, reactor::Buffer& in) {
      received.append(in.view());
      if (echo) conn->send(in.view());
      in.clear();
    };
    callbacks->on_close = [this](const TcpConnectionPtr&, const CloseReason& why) { closed = why; };
  }
};

// Runs `loop` until `done` or about `limit` passes.
template <typename F>
bool run_until(Reactor& loop, F done, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop.run_once(10);
  }
  return true;
}

reactor::ConnectionOptions with(std::shared_ptr<reactor::FilterFactory> filter) {
  reactor::ConnectionOptions o;
  o.filter = std::move(filter);
  return o;
}

TEST(Tls, BytesCrossManyRecordsBothWaysAfterTheHandshake) {
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server, client;
  server.echo = true;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, with(server_context()));
  auto ca = std::make_shared<reactor::TlsClientContext>(authority() + "/ca.pem");
  auto c = TcpConnection::create(loop, std::move(b), client.callbacks, with(ca));
  s->start();
  c->start();
  // Sent before the handshake is over: held plain, encoded once it is.
  const std::string data = pattern(300 * 1024);
  for (size_t off = 0; off < data.size(); off += 1000) c->send(std::string_view(data).substr(off, 1000));
  ASSERT_TRUE(run_until(loop, [&] { return client.received.size() >= data.size(); }))
      << client.received.size() << " of " << data.size();
  EXPECT_EQ(server.received, data);
  EXPECT_EQ(client.received, data);
  EXPECT_EQ(s->handshake(), Handshake::kDone);
  EXPECT_EQ(c->handshake(), Handshake::kDone);
  // Encrypted on the wire: more bytes went out than the plain text (records, the handshake).
  EXPECT_GT(c->stats().bytes_out, data.size());
  EXPECT_EQ(c->queued_bytes(), 0u);
  // An orderly close: the server's close_notify, then the client sees the end.
  s->close_after_flush(CloseCode::kLocal, "done");
  ASSERT_TRUE(run_until(loop, [&] { return client.closed.has_value(); }));
  EXPECT_EQ(client.closed->code, CloseCode::kPeerClosed) << client.closed->text;
}

TEST(Tls, PlainTextToATlsConnectionIsTheWrongProtocol) {
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, with(server_context()));
  s->start();
  ASSERT_EQ(::write(b.get(), "GET / HTTP/1.1\r\n\r\n", 18), 18);
  ::shutdown(b.get(), SHUT_WR);
  ASSERT_TRUE(run_until(loop, [&] { return server.closed.has_value(); }));
  EXPECT_EQ(s->handshake(), Handshake::kWrongProtocol);
  EXPECT_EQ(server.closed->code, CloseCode::kProtocol);
  EXPECT_NE(server.closed->text.find("plain text on a TLS port"), std::string::npos) << server.closed->text;
  EXPECT_TRUE(server.received.empty());
}

TEST(Tls, ATlsHelloToAPlainConnectionThatRefusesTlsIsTheWrongProtocol) {
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server, client;
  reactor::ConnectionOptions plain;
  plain.refuse_tls = true;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, plain);
  auto c = TcpConnection::create(loop, std::move(b), client.callbacks, with(std::make_shared<reactor::TlsClientContext>()));
  s->start();
  c->start();
  ASSERT_TRUE(run_until(loop, [&] { return server.closed.has_value() && client.closed.has_value(); }));
  EXPECT_EQ(s->handshake(), Handshake::kWrongProtocol);
  EXPECT_NE(server.closed->text.find("a TLS handshake on a plain port"), std::string::npos) << server.closed->text;
  EXPECT_TRUE(server.received.empty()) << "the handler saw the hello";
  EXPECT_NE(c->handshake(), Handshake::kDone);
}

TEST(Tls, AHandshakeThatNeverEndsIsClosedAtItsTimeout) {
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server;
  auto options = with(server_context());
  options.handshake_timeout = 150ms;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, options);
  auto start = std::chrono::steady_clock::now();
  s->start();
  ASSERT_EQ(::write(b.get(), "\x16\x03\x01", 3), 3);  // a record begun, never finished
  ASSERT_TRUE(run_until(loop, [&] { return server.closed.has_value(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
  EXPECT_EQ(server.closed->code, CloseCode::kTimeout);
  EXPECT_EQ(s->handshake(), Handshake::kTimedOut);
}

TEST(Tls, AClientThatDoesNotTrustTheCertificateFailsTheHandshake) {
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server, client;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, with(server_context()));
  // Trusting another authority than the one that signed the server's certificate: its own
  // certificate is not one (a leaf), so nothing verifies.
  auto c = TcpConnection::create(loop, std::move(b), client.callbacks,
                                 with(std::make_shared<reactor::TlsClientContext>(authority() + "/second.pem")));
  s->start();
  c->start();
  c->send("never delivered");
  ASSERT_TRUE(run_until(loop, [&] { return server.closed.has_value() && client.closed.has_value(); }));
  EXPECT_EQ(c->handshake(), Handshake::kFailed) << client.closed->text;
  EXPECT_NE(client.closed->text.find("certificate verify failed"), std::string::npos) << client.closed->text;
  EXPECT_NE(s->handshake(), Handshake::kDone);
  EXPECT_TRUE(server.received.empty());
}

TEST(Tls, ReloadServesTheNewCertificateToNewConnectionsAndKeepsTheOldOnOpenOnes) {
  namespace fs = std::filesystem;
  std::string live = authority() + "/live";
  fs::create_directories(live);
  fs::copy_file(authority() + "/server.pem", live + "/c.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(authority() + "/server.key", live + "/c.key", fs::copy_options::overwrite_existing);
  auto context = std::make_shared<reactor::TlsServerContext>(reactor::TlsFiles{live + "/c.pem", live + "/c.key"});
  EXPECT_NE(context->describe().find("O=first"), std::string::npos) << context->describe();
  Reactor loop;
  auto [a, b] = testutil::make_socketpair();
  End server, client;
  server.echo = true;
  auto s = TcpConnection::create(loop, std::move(a), server.callbacks, with(context));
  auto c = TcpConnection::create(loop, std::move(b), client.callbacks,
                                 with(std::make_shared<reactor::TlsClientContext>(authority() + "/ca.pem")));
  s->start();
  c->start();
  c->send("before");
  ASSERT_TRUE(run_until(loop, [&] { return client.received == "before"; }));

  fs::copy_file(authority() + "/second.pem", live + "/c.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(authority() + "/second.key", live + "/c.key", fs::copy_options::overwrite_existing);
  EXPECT_EQ(context->reload(), std::nullopt);
  EXPECT_NE(context->describe().find("O=second"), std::string::npos) << context->describe();
  c->send(" after");  // the open connection goes on with the certificate it had
  ASSERT_TRUE(run_until(loop, [&] { return client.received == "before after"; }));

  // A broken file: refused, said why, the certificate in use stays.
  { std::ofstream(live + "/c.pem") << "not a certificate\n"; }
  auto error = context->reload();
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("c.pem"), std::string::npos) << *error;
  EXPECT_NE(context->describe().find("O=second"), std::string::npos) << context->describe();
}

}  // namespace
