// chat-client: a terminal chat client on our Reactor. One thread watches stdin and the socket in one
// loop, as the article's client does, and speaks the native JSON-lines protocol (docs/PROTOCOL.md).
//   text        sends to the current room
//   /join R     joins R and makes it the current room
//   /leave [R]  leaves R (default: the current room)
//   /rooms      lists the rooms joined
//   /quit       leaves
// Prints "[room] user: text". With stdin from a pipe it sends every line, waits until the server has
// answered all of them, and exits 0.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/cli.h"
#include "app/stdin.h"
#include "chat/framing.h"
#include "chat/protocol.h"
#include "reactor/error.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

using json = nlohmann::ordered_json;

namespace {

class Client {
 public:
  Client(reactor::Reactor& loop, std::string user, std::string room)
      : loop_(loop), user_(std::move(user)), room_(std::move(room)) {}

  int run(const reactor::InetAddress& address) {
    auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
    callbacks->on_message = [this](const reactor::TcpConnectionPtr&, reactor::Buffer& in) { on_server(in); };
    callbacks->on_close = [this](const reactor::TcpConnectionPtr&, std::string_view reason) {
      if (!quitting_) {
        std::cerr << "chat-client: connection closed: " << reason << "\n";
        if (reason.find("peer closed") == std::string_view::npos) status_ = 1;
      }
      loop_.stop();
    };
    connector_ = reactor::TcpConnector::connect(loop_, address, [this, callbacks, address](reactor::Handle s, int err) {
      if (err) {
        std::cerr << "chat-client: cannot connect to " << address.to_string() << ": " << std::strerror(err) << "\n";
        status_ = 1;
        loop_.stop();
        return;
      }
      conn_ = reactor::TcpConnection::create(loop_, std::move(s), callbacks);
      conn_->start();
      send({{"type", "hello"}, {"user", user_}});
    });
    loop_.run();
    if (conn_) conn_->close("client exit");
    return status_;
  }

 private:
  void send(const json& j) { conn_->send(j.dump() + "\n"); }

  void on_server(reactor::Buffer& in) {
    for (;;) {
      chat::FrameResult r = framer_.next(in.view());
      if (r.status == chat::FrameStatus::kFrame) show(r.frame);
      in.consume(r.consumed);
      if (r.status == chat::FrameStatus::kNeedMore && r.consumed == 0) break;
      if (in.empty()) break;
    }
  }

  void show(std::string_view line) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    std::string type = j.value("type", "");
    if (type == "welcome") {
      send({{"type", "join"}, {"room", room_}});
      start_stdin();
    } else if (type == "message") {
      std::cout << "[" << j.value("room", "") << "] " << j.value("user", "") << ": " << j.value("text", "") << "\n";
    } else if (type == "join" || type == "leave") {
      std::cout << "[" << j.value("room", "") << "] * " << j.value("user", "")
                << (type == "join" ? " joined" : " left") << "\n";
    } else if (type == "joined") {
      std::cout << "[" << j.value("room", "") << "] * you joined; here: " << j["members"].dump() << "\n";
    } else if (type == "left") {
      std::cout << "[" << j.value("room", "") << "] * you left\n";
    } else if (type == "rooms") {
      std::cout << "* rooms: " << j["rooms"].dump() << "\n";
    } else if (type == "error") {
      std::cerr << "chat-client: " << j.value("code", "") << ": " << j.value("message", "") << "\n";
      if (!started_) {  // refused at hello: nothing more to do
        status_ = 1;
        quit();
      }
    } else if (type == "pong" && j.value("id", "") == "end-of-input") {
      quit();  // the server has answered every line we sent
    }
    std::cout.flush();
  }

  void start_stdin() {
    if (started_) return;
    started_ = true;
    loop_.add(STDIN_FILENO, reactor::Interest::kRead, [this](reactor::Events) { on_stdin(); });
  }

  void on_stdin() {
    char chunk[16384];
    ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (n > 0) {
      pending_.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending_.find('\n')) != std::string::npos) {
        command(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
      }
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    loop_.remove(STDIN_FILENO);
    if (!pending_.empty()) command(pending_);
    pending_.clear();
    if (!quitting_) send({{"type", "ping"}, {"id", "end-of-input"}});
  }

  void command(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || quitting_) return;
    if (line == "/quit") return quit();
    if (line == "/rooms") return send({{"type", "rooms"}});
    if (line.rfind("/join ", 0) == 0) {
      room_ = line.substr(6);
      return send({{"type", "join"}, {"room", room_}});
    }
    if (line == "/leave" || line.rfind("/leave ", 0) == 0) {
      std::string room = line.size() > 7 ? line.substr(7) : room_;
      return send({{"type", "leave"}, {"room", room}});
    }
    if (line[0] == '/') {
      std::cerr << "chat-client: unknown command " << line << " (/join R, /leave [R], /rooms, /quit)\n";
      return;
    }
    send({{"type", "message"}, {"room", room_}, {"text", line}});
  }

  void quit() {
    quitting_ = true;
    if (started_ && loop_.contains(STDIN_FILENO)) loop_.remove(STDIN_FILENO);
    conn_->close_after_flush("quit");
  }

  reactor::Reactor& loop_;
  std::string user_, room_, pending_;
  std::shared_ptr<reactor::TcpConnector> connector_;
  reactor::TcpConnectionPtr conn_;
  chat::LineFramer framer_{1 << 24};
  bool started_ = false, quitting_ = false;
  int status_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Chat client: talks to chat-server in its native protocol.", "chat-client"};
  std::string host = "127.0.0.1", room = chat::kLobby;
  const char* env_user = std::getenv("USER");
  std::string user = env_user && chat::valid_native_name(env_user) ? env_user : "guest";
  uint16_t port = 1234;
  cli.add_option("--host", host, "Server address")->capture_default_str();
  cli.add_option("--port", port, "Server port")->capture_default_str();
  cli.add_option("--user", user, "Your name: 1 to 32 of A-Z a-z 0-9 _ . -")->capture_default_str();
  cli.add_option("--room", room, "Room to join first")->capture_default_str();
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (!chat::valid_native_name(user)) {
    std::cerr << "chat-client: --user must be 1 to 32 characters from A-Z a-z 0-9 _ . -\n";
    return 2;
  }
  if (!chat::valid_room_name(room)) {
    std::cerr << "chat-client: --room must be 1 to 64 characters from A-Z a-z 0-9 _ . # -\n";
    return 2;
  }
  try {
    reactor::Reactor loop(app::backend_for_stdin());
    loop.stop_on_signals();
    Client client(loop, user, room);
    return client.run(reactor::InetAddress::resolve(host, port));
  } catch (const std::exception& e) {
    std::cerr << "chat-client: " << e.what() << "\n";
    return 1;
  }
}
