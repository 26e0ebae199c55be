// TcpConnection's output path and close handling, TcpListener, TcpConnector, in one process.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "echo/echo.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"
#include "reactor/tcp_listener.h"
#include "reactor/tcp_server.h"
#include "test_util.h"

using namespace std::chrono_literals;
using reactor::CloseCode;
using reactor::CloseReason;
using reactor::Interest;
using reactor::Reactor;
using reactor::TcpConnection;
using reactor::TcpConnectionPtr;

namespace {

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  return s;
}

std::string read_available(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

struct Recorder {
  std::shared_ptr<reactor::ConnectionCallbacks> callbacks = std::make_shared<reactor::ConnectionCallbacks>();
  std::string received;
  std::vector<std::string> closes;
  int high_water = 0, drains = 0;
  Recorder() {
    callbacks->on_message = [this](const TcpConnectionPtr&, reactor::Buffer& in) {
      received.append(in.view());
      in.clear();
    };
    callbacks->on_close = [this](const TcpConnectionPtr&, const CloseReason& why) { closes.emplace_back(why.text); };
    callbacks->on_high_water = [this](const TcpConnectionPtr&, size_t) { ++high_water; };
    callbacks->on_drain = [this](const TcpConnectionPtr&) { ++drains; };
  }
};

}  // namespace

TEST(TcpConnection, OutputQueuesWhileThePeerDoesNotReadAndArrivesByteExact) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  Recorder rec;
  auto conn = TcpConnection::create(loop, std::move(ours), rec.callbacks, {.high_water_mark = 1 << 20});
  conn->start();
  const int fd = conn->fd();
  const std::string data = pattern(8 << 20);
  for (size_t off = 0; off < data.size(); off += 65536) {
    ASSERT_EQ(conn->send(std::string_view(data).substr(off, 65536)), reactor::SendResult::kQueued);
  }
  for (int i = 0; i < 3; ++i) loop.run_once(0);
  // The peer reads nothing: the kernel is full, the rest is queued, write interest is on.
  EXPECT_GT(conn->queued_bytes(), 1u << 20);
  EXPECT_EQ(loop.interest(fd), Interest::kReadWrite);
  EXPECT_EQ(rec.high_water, 1);
  EXPECT_EQ(rec.drains, 0);
  // Now the peer reads: everything arrives in order, and write interest goes off once drained.
  std::string got;
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    got += read_available(peer.get());
    loop.run_once(10);
  }
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_EQ(conn->queued_bytes(), 0u);
  EXPECT_EQ(loop.interest(fd), Interest::kRead);
  EXPECT_EQ(rec.drains, 1);
  EXPECT_TRUE(rec.closes.empty());
}

TEST(TcpConnection, TenSendsInOneIterationLeaveInOneSystemCall) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  Recorder rec;
  auto conn = TcpConnection::create(loop, std::move(ours), rec.callbacks);
  conn->start();
  std::string expect;
  for (int i = 0; i < 10; ++i) {
    std::string msg = "message " + std::to_string(i) + "\n";
    conn->send(msg);
    expect += msg;
  }
  EXPECT_EQ(conn->stats().writes, 0u) << "send() only queues";
  loop.run_once(0);
  EXPECT_EQ(conn->stats().writes, 1u);
  EXPECT_EQ(read_available(peer.get()), expect);
  EXPECT_EQ(loop.interest(conn->fd()), Interest::kRead) << "all written: no write interest";
}

TEST(TcpConnection, HardOutputLimitClosesAfterTheDispatch) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  Recorder rec;
  auto conn = TcpConnection::create(loop, std::move(ours), rec.callbacks,
                                    {.high_water_mark = 1 << 16, .output_limit = 1 << 20});
  conn->start();
  const std::string chunk = pattern(64 << 10);
  reactor::SendResult r = reactor::SendResult::kQueued;
  int sent = 0;
  while (r == reactor::SendResult::kQueued && sent < 1000) {
    r = conn->send(chunk);
    ++sent;
    if (sent % 4 == 0) loop.run_once(0);
  }
  EXPECT_EQ(r, reactor::SendResult::kOverLimit);
  EXPECT_FALSE(conn->open());
  EXPECT_EQ(conn->send(chunk), reactor::SendResult::kClosed);
  loop.run_once(0);
  loop.run_once(0);
  ASSERT_EQ(rec.closes.size(), 1u);
  EXPECT_NE(rec.closes[0].find("output limit"), std::string::npos) << rec.closes[0];
}

TEST(TcpConnection, WriteToAClosedPeerIsEpipeNotASignal) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  Recorder rec;
  auto conn = TcpConnection::create(loop, std::move(ours), rec.callbacks);
  conn->start();
  conn->pause_reading();  // so that the close is found by the write, not the read
  peer.reset();
  conn->send("into the void");
  for (int i = 0; i < 3; ++i) loop.run_once(0);
  ASSERT_EQ(rec.closes.size(), 1u);  // still alive: no SIGPIPE
  EXPECT_NE(rec.closes[0].find("Broken pipe"), std::string::npos) << rec.closes[0];
}

TEST(TcpConnection, HalfCloseGetsTheRestOfTheEchoThenCloses) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  auto callbacks = std::make_shared<reactor::ConnectionCallbacks>(echo::echo_callbacks());
  bool closed = false;
  callbacks->on_close = [&](const TcpConnectionPtr&, const CloseReason&) { closed = true; };
  auto conn = TcpConnection::create(loop, std::move(ours), callbacks);
  conn->start();
  ASSERT_EQ(::write(peer.get(), "last words", 10), 10);
  ::shutdown(peer.get(), SHUT_WR);
  for (int i = 0; i < 5 && !closed; ++i) loop.run_once(100);
  EXPECT_TRUE(closed);
  EXPECT_EQ(read_available(peer.get()), "last words");
  char c;
  EXPECT_EQ(::read(peer.get(), &c, 1), 0) << "end of stream after the echo";
}

// Once a close after the flush is asked for, the connection takes no more output (what is
// queued still leaves): owners that check accepts_output() before applying their own limits do
// not cut a draining connection short.
TEST(TcpConnection, AConnectionClosingAfterItsFlushTakesNoMoreOutputButSendsWhatIsQueued) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
  std::optional<CloseReason> closed;
  callbacks->on_close = [&](const TcpConnectionPtr&, const CloseReason& why) { closed = why; };
  auto conn = TcpConnection::create(loop, std::move(ours), callbacks);
  conn->start();
  EXPECT_TRUE(conn->accepts_output());
  ASSERT_EQ(conn->send("goodbye"), reactor::SendResult::kQueued);
  conn->close_after_flush(CloseCode::kShutdown, "stopping");
  EXPECT_FALSE(conn->accepts_output());
  EXPECT_EQ(conn->send("more"), reactor::SendResult::kClosed);
  ::shutdown(peer.get(), SHUT_WR);  // the peer closes too: the lingering close ends at once
  for (int i = 0; i < 10 && !closed; ++i) loop.run_once(100);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, CloseCode::kShutdown);
  EXPECT_EQ(read_available(peer.get()), "goodbye");
}

// The lingering close reads and drops what the peer still sends, but not without end: past its
// budget (kAbuseLingerBytes after a close for the peer's own fault, kLingerBytes after another) the
// peer is reset, and the close says so. A peer flooding a closed connection costs a bounded read.
TEST(TcpConnection, ALingeringCloseResetsAPeerThatSendsPastItsBudget) {
  for (CloseCode code : {CloseCode::kProtocol, CloseCode::kShutdown}) {
    SCOPED_TRACE(reactor::to_string(code));
    Reactor loop;
    auto [ours, peer] = testutil::make_socketpair();
    auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
    std::optional<CloseReason> closed;
    callbacks->on_close = [&](const TcpConnectionPtr&, const CloseReason& why) { closed = why; };
    auto conn = TcpConnection::create(loop, std::move(ours), callbacks);
    conn->start();
    conn->close_after_flush(code, "bye");
    const std::string chunk(16 * 1024, 'x');
    const size_t budget = TcpConnection::kAbuseLingerBytes;
    size_t sent = 0;
    while (!closed && sent < 2 * budget && sent < (8u << 20)) {
      ssize_t n = ::send(peer.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      loop.run_once(10);
    }
    for (int i = 0; i < 10 && !closed && code == CloseCode::kProtocol; ++i) loop.run_once(10);
    if (code == CloseCode::kProtocol) {
      ASSERT_TRUE(closed) << sent << " bytes sent";
      EXPECT_TRUE(closed->reset);
      EXPECT_EQ(closed->code, CloseCode::kProtocol);
      EXPECT_NE(closed->text.find("bye (reset: "), std::string::npos) << closed->text;
      EXPECT_LE(sent, budget + 2 * chunk.size() + 256 * 1024) << "read on past the budget";  // + the socket's buffer
    } else {
      // Twice the abuse budget is well within a graceful close's: still lingering, until the peer closes.
      EXPECT_FALSE(closed) << closed->text;
      ::shutdown(peer.get(), SHUT_WR);
      for (int i = 0; i < 50 && !closed; ++i) loop.run_once(10);
      ASSERT_TRUE(closed);
      EXPECT_FALSE(closed->reset);
      EXPECT_EQ(closed->text, "bye");
    }
  }
  static_assert(TcpConnection::kAbuseLingerBytes < TcpConnection::kLingerBytes);
}

TEST(TcpConnection, CloseFromInsideOnMessageIsSafeAndOnCloseRunsLater) {
  Reactor loop;
  auto [ours, peer] = testutil::make_socketpair();
  auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
  std::vector<std::string> order;
  callbacks->on_message = [&](const TcpConnectionPtr& c, reactor::Buffer&) {
    c->close(CloseCode::kLocal, "done");
    order.push_back("after close");
  };
  callbacks->on_close = [&](const TcpConnectionPtr&, const CloseReason& why) { order.push_back(why.text); };
  {
    auto conn = TcpConnection::create(loop, std::move(ours), callbacks);
    conn->start();
  }  // only the reactor holds it now
  testutil::put_byte(peer.get());
  loop.run_once(1000);
  loop.run_once(0);
  EXPECT_EQ(order, (std::vector<std::string>{"after close", "done"}));
  EXPECT_EQ(loop.handler_count(), 1u) << "only the reactor's own eventfd remains";
}

TEST(TcpServerAndConnector, EchoOverRealTcpAndResetIsReported) {
  Reactor loop;
  auto callbacks = echo::echo_callbacks();
  std::string reason;
  CloseCode code = CloseCode::kLocal;
  callbacks.on_close = [&](const TcpConnectionPtr&, const CloseReason& why) {
    reason = why.text;
    code = why.code;
  };
  reactor::TcpServer server(loop, reactor::InetAddress::resolve("127.0.0.1", 0), callbacks);
  server.start();
  reactor::Handle client;
  int error = -1;
  auto connector = reactor::TcpConnector::connect(loop, server.local_address(), [&](reactor::Handle s, int err) {
    client = std::move(s);
    error = err;
  });
  for (int i = 0; i < 10 && error < 0; ++i) loop.run_once(100);
  ASSERT_EQ(error, 0);
  ASSERT_EQ(::write(client.get(), "ping", 4), 4);
  std::string got;
  for (int i = 0; i < 20 && got.size() < 4; ++i) {
    loop.run_once(50);
    got += read_available(client.get());
  }
  EXPECT_EQ(got, "ping");
  EXPECT_EQ(server.stats().open, 1u);
  linger hard{1, 0};  // close with RST
  ::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  client.reset();
  for (int i = 0; i < 20 && reason.empty(); ++i) loop.run_once(50);
  EXPECT_NE(reason.find("reset"), std::string::npos) << reason;
  EXPECT_EQ(code, CloseCode::kPeerReset) << to_string(code);
  EXPECT_EQ(server.stats().open, 0u);
}

TEST(TcpConnector, ConnectsFromAChosenSourceAddress) {
  Reactor loop;
  reactor::TcpListener listener(loop, reactor::InetAddress::resolve("127.0.0.1", 0));
  std::string peer_host;
  std::vector<reactor::Handle> accepted;
  listener.start([&](reactor::Handle s, const reactor::InetAddress& peer) {
    peer_host = peer.host();
    accepted.push_back(std::move(s));
  });
  int error = -1;
  reactor::Handle client;
  auto connector = reactor::TcpConnector::connect(
      loop, listener.local_address(),
      [&](reactor::Handle s, int err) {
        error = err;
        client = std::move(s);
      },
      reactor::InetAddress::resolve("127.0.0.2", 0));
  for (int i = 0; i < 20 && (error < 0 || accepted.empty()); ++i) loop.run_once(50);
  ASSERT_EQ(error, 0);
  EXPECT_EQ(peer_host, "127.0.0.2");
  EXPECT_EQ(reactor::InetAddress::local_of(client.get()).host(), "127.0.0.2");
}

TEST(TcpConnector, ReportsConnectionRefused) {
  Reactor loop;
  // A port nobody listens on: bind one, note it, close it.
  int port;
  {
    reactor::TcpListener probe(loop, reactor::InetAddress::resolve("127.0.0.1", 0));
    port = probe.local_address().port();
  }
  int error = -1;
  auto connector = reactor::TcpConnector::connect(
      loop, reactor::InetAddress::resolve("127.0.0.1", static_cast<uint16_t>(port)),
      [&](reactor::Handle s, int err) {
        EXPECT_FALSE(s.valid());
        error = err;
      });
  for (int i = 0; i < 20 && error < 0; ++i) loop.run_once(50);
  EXPECT_EQ(error, ECONNREFUSED);
}

TEST(TcpListener, SurvivesRunningOutOfDescriptorsWithoutSpinning) {
  Reactor loop;
  reactor::TcpListener listener(loop, reactor::InetAddress::resolve("127.0.0.1", 0));
  std::vector<reactor::Handle> accepted;
  listener.start([&](reactor::Handle s, const reactor::InetAddress&) { accepted.push_back(std::move(s)); });
  auto connect_one = [&] {
    reactor::Handle c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(c.get(), listener.local_address().get(), listener.local_address().length()), 0);
    return c;
  };
  std::vector<reactor::Handle> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_one());  // waiting in the backlog
  // Use up every descriptor the process may have.
  rlimit saved{};
  ::getrlimit(RLIMIT_NOFILE, &saved);
  rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<reactor::Handle> hog;
  for (;;) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    hog.emplace_back(fd);
  }
  uint64_t before = loop.iterations();
  auto start = reactor::Clock::now();
  while (reactor::Clock::now() - start < 300ms) loop.run_once(50);
  uint64_t spins = loop.iterations() - before;
  EXPECT_GE(listener.stats().fd_exhausted, 1u);
  EXPECT_EQ(listener.stats().shed, 3u) << "pending clients get a clean close, not a hang";
  EXPECT_TRUE(accepted.empty());
  EXPECT_LT(spins, 30u) << "the loop spun while out of descriptors";
  for (auto& c : clients) {
    pollfd p{c.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 1000), 1);
    char b;
    errno = 0;
    // A clean close: end of stream (FIN), not a reset and not an error.
    EXPECT_EQ(::recv(c.get(), &b, 1, 0), 0) << strerror(errno);
  }
  // Descriptors come back: the listener accepts normally again.
  hog.clear();
  ::setrlimit(RLIMIT_NOFILE, &saved);
  auto late = connect_one();
  for (int i = 0; i < 20 && accepted.empty(); ++i) loop.run_once(50);
  EXPECT_EQ(accepted.size(), 1u);
}
