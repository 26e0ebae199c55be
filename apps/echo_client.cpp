// echo-client: sends what it reads on stdin, prints what comes back. One thread, one Reactor
// watching stdin and the socket, as the article's chat client does. At the end of stdin it
// half-closes, prints the rest of the echo, and exits 0 when the server closes.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "app/cli.h"
#include "app/stdin.h"
#include "reactor/error.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

namespace {

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Echo client: sends stdin to an echo server and prints what comes back.", "echo-client"};
  std::string host = "127.0.0.1";
  uint16_t port = 1234;
  cli.add_option("--host", host, "Server address")->capture_default_str();
  cli.add_option("--port", port, "Server port")->capture_default_str();
  if (auto status = app::parse(cli, argc, argv)) return *status;

  int status = 0;
  try {
    reactor::Reactor loop(app::backend_for_stdin());
    loop.stop_on_signals();
    reactor::InetAddress address = reactor::InetAddress::resolve(host, port);
    reactor::TcpConnectionPtr conn;
    bool stdin_done = false;

    auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
    callbacks->on_message = [&](const reactor::TcpConnectionPtr&, reactor::Buffer& input) {
      if (!write_all(STDOUT_FILENO, input.data(), input.size())) {
        std::cerr << "echo-client: " << reactor::describe_errno("write(stdout)", errno) << "\n";
        status = 1;
        loop.stop();
      }
      input.clear();
    };
    callbacks->on_close = [&](const reactor::TcpConnectionPtr&, const reactor::CloseReason& reason) {
      if (!stdin_done) {
        std::cerr << "echo-client: connection closed: " << reason.text << "\n";
        status = 1;
      }
      loop.stop();
    };
    // Do not read stdin faster than the server echoes: stop at the high-water mark.
    callbacks->on_high_water = [&](const reactor::TcpConnectionPtr&, size_t) {
      if (!stdin_done) loop.modify(STDIN_FILENO, reactor::Interest::kNone);
    };
    callbacks->on_drain = [&](const reactor::TcpConnectionPtr&) {
      if (!stdin_done) loop.modify(STDIN_FILENO, reactor::Interest::kRead);
    };

    auto on_stdin = [&](reactor::Events) {
      char chunk[16 * 1024];
      ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n > 0) {
        conn->send(std::string_view(chunk, static_cast<size_t>(n)));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        stdin_done = true;
        loop.remove(STDIN_FILENO);
        conn->shutdown();  // the server echoes the rest, then closes
      }
    };

    auto connector = reactor::TcpConnector::connect(loop, address, [&](reactor::Handle socket, int err) {
      if (err != 0) {
        std::cerr << "echo-client: cannot connect to " << address.to_string() << ": "
                  << std::strerror(err) << "\n";
        status = 1;
        loop.stop();
        return;
      }
      conn = reactor::TcpConnection::create(loop, std::move(socket), callbacks);
      conn->start();
      loop.add(STDIN_FILENO, reactor::Interest::kRead, on_stdin);
    });
    loop.run();
    if (conn) conn->close(reactor::CloseCode::kLocal, "client exit");
  } catch (const std::exception& e) {
    std::cerr << "echo-client: " << e.what() << "\n";
    return 1;
  }
  return status;
}
