// chat-client: a terminal chat client on our Reactor. One thread watches stdin and the socket in one
// loop, as the article's client does, and speaks the native JSON-lines protocol (docs/PROTOCOL.md).
//   text        sends to the current room
//   /join R     joins R and makes it the current room once the server says `joined`
//   /leave [R]  leaves R (default: the current room); leaving the current room makes the room
//               joined most recently of those still joined the current one (or none, said so)
//   /rooms      lists the rooms joined
//   /quit       leaves
// Prints "[room] user: text", one line per message: whatever the network sends, control characters
// are shown as symbols (src/chat/session/visible_text.h), never obeyed by the terminal. With stdin from a
// pipe it sends every line, waits until the server has answered all of them, and exits 0. It exits
// non-zero when the server closes the connection first, or stops answering (keep-alive pings).
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <utility>
#include <vector>

#include "app/cli.h"
#include "app/stdin.h"
#include "chat/core/names.h"
#include "chat/ops/json.h"
#include "chat/session/framing.h"
#include "chat/session/visible_text.h"
#include "reactor/error.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

using json = chat::Json;

namespace {

using Clock = reactor::Clock;
using std::chrono::milliseconds;

struct Options {
  std::string user;
  std::string token;                // sent in the hello when given (a server with --auth-secret needs one)
  std::string room;                 // joined first
  milliseconds ping_interval{15000};  // a quiet connection is pinged after this long
  milliseconds ping_timeout{10000};   // the answer to that ping (or a connect) may take this long
};

// A field of a server line as printable text: strings as they are, anything else as JSON; then
// made visible (every control character shown as a symbol).
std::string field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return chat::visible(it->is_string() ? it->get_ref<const std::string&>() : it->dump());
}

// A string field as it is (for comparing and sending back), or "".
std::string raw(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A JSON array of names as "a, b, c", each made visible.
std::string name_list(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return field(j, key);
  std::string out;
  for (const auto& name : *it) {
    if (!out.empty()) out += ", ";
    out += chat::visible(name.is_string() ? name.get_ref<const std::string&>() : name.dump());
  }
  return out;
}

std::string seconds(milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", static_cast<double>(ms.count()) / 1000.0);
  return text;
}

class Client {
 public:
  Client(reactor::Reactor& loop, Options options) : loop_(loop), options_(std::move(options)) {}

  int run(const reactor::InetAddress& address) {
    auto callbacks = std::make_shared<reactor::ConnectionCallbacks>();
    callbacks->on_message = [this](const reactor::TcpConnectionPtr&, reactor::Buffer& in) { on_server(in); };
    callbacks->on_close = [this](const reactor::TcpConnectionPtr&, const reactor::CloseReason& reason) {
      if (!done_ && !quitting_) fail("the server closed the connection (" + reason.text + ")");
      done_ = true;
      loop_.stop();
    };
    std::string where = address.to_string();
    connector_ = reactor::TcpConnector::connect(loop_, address, [this, callbacks, where](reactor::Handle s, int err) {
      loop_.cancel(connect_timer_);
      if (err) return fail("cannot connect to " + where + ": " + std::strerror(err));
      conn_ = reactor::TcpConnection::create(loop_, std::move(s), callbacks);
      conn_->start();
      json hello = {{"type", "hello"}, {"user", options_.user}};
      if (!options_.token.empty()) hello["token"] = options_.token;
      send(hello);
      last_heard_ = Clock::now();
      check_idle();
    });
    // A connect that is never answered (SYNs dropped) would otherwise wait for the kernel's own
    // retries, which take minutes.
    connect_timer_ = loop_.run_after(options_.ping_timeout, [this, where] {
      connector_->cancel();
      fail("cannot connect to " + where + ": no answer in " + seconds(options_.ping_timeout));
    });
    loop_.run();
    if (conn_) conn_->close(reactor::CloseCode::kLocal, "client exit");
    return status_;
  }

 private:
  void send(const json& j) { conn_->send(chat::dump_json(j) + "\n"); }

  // Ends the session with an error: one line on stderr, exit status 1.
  void fail(const std::string& why) {
    if (done_) return;
    done_ = true;
    status_ = 1;
    std::cout.flush();
    std::cerr << "chat-client: " << why << "\n";
    if (conn_) conn_->close(reactor::CloseCode::kLocal, why);
    loop_.stop();
  }

  void on_server(reactor::Buffer& in) {
    last_heard_ = Clock::now();
    for (;;) {
      chat::FrameResult r = framer_.next(in.view());
      if (r.status == chat::FrameStatus::kFrame) show(r.frame);
      if (r.status == chat::FrameStatus::kLost) return fail("the server sent a line too long to read");
      in.consume(r.consumed);
      if (done_) return;
      if (r.status == chat::FrameStatus::kNeedMore && r.consumed == 0) break;
      if (in.empty()) break;
    }
  }

  void show(std::string_view line) {
    json j;
    if (chat::parse_json(line, j) != chat::JsonStatus::kOk || !j.is_object()) return;  // e.g. the article's lobby lines before welcome
    std::string type = field(j, "type");
    std::string room = field(j, "room");
    if (type == "welcome") {
      if (!started_) {
        started_ = true;
        join(options_.room);
        loop_.add(STDIN_FILENO, reactor::Interest::kRead, [this](reactor::Events) { on_stdin(); });
        stdin_open_ = true;
      }
    } else if (type == "message") {
      std::cout << "[" << room << "] " << field(j, "user") << ": " << field(j, "text") << "\n";
    } else if (type == "join" || type == "leave") {
      std::cout << "[" << room << "] * " << field(j, "user") << (type == "join" ? " joined" : " left") << "\n";
      // Our own leave: an IRC operator removed us from the room.
      if (type == "leave" && raw(j, "user") == options_.user) gone_from(raw(j, "room"));
    } else if (type == "joined") {
      on_joined(j);
    } else if (type == "left") {
      std::cout << "[" << room << "] * you left\n";
      gone_from(raw(j, "room"));
    } else if (type == "rooms") {
      std::cout << "* rooms: " << name_list(j, "rooms") << "\n";
    } else if (type == "error") {
      std::cout.flush();
      std::cerr << "chat-client: " << field(j, "code") << ": " << field(j, "message") << "\n";
      if (!started_) {  // refused at hello: nothing more to do
        status_ = 1;
        quit();
      }
    } else if (type == "pong") {
      on_pong(raw(j, "id"));
    }
    std::cout.flush();
  }

  // A room becomes the current one only when the server says it was joined: a refused join (bad
  // name, too many rooms, ...) leaves the lines going where they went.
  void on_joined(const json& j) {
    std::string room = raw(j, "room");
    member_of_.insert(room);
    joined_order_.erase(std::remove(joined_order_.begin(), joined_order_.end(), room), joined_order_.end());
    joined_order_.push_back(room);
    if (!joining_.empty() && room == joining_) {
      room_ = room;
      joining_.clear();
    }
    // In a room too large for presence the server leaves `members` out; `count` is always there.
    std::string count = field(j, "count");
    if (count.empty() && j.contains("members") && j["members"].is_array()) count = std::to_string(j["members"].size());
    std::cout << "[" << chat::visible(room) << "] * you joined; " << count << " here";
    if (j.contains("members")) std::cout << ": " << name_list(j, "members");
    std::cout << "\n";
  }

  // Joins `room`, then pings: the pong comes after the join's answer (`joined` or an error), and
  // until it comes the lines read after the /join wait, so that they go to the right room.
  void join(const std::string& room) {
    send({{"type", "join"}, {"room", room}});
    joining_ = room;
    fence_ = "join-" + std::to_string(++pings_);
    send({{"type", "ping"}, {"id", fence_}});
  }

  void on_pong(const std::string& id) {
    if (!id.empty() && id == keepalive_) {
      keepalive_.clear();
      loop_.cancel(keepalive_timer_);
    }
    if (!id.empty() && id == fence_) {
      fence_.clear();
      if (!joining_.empty()) {
        std::cout.flush();
        std::cerr << "chat-client: not joined to " << chat::visible(joining_) << "; "
                  << (room_.empty() ? "no current room" : "lines still go to " + chat::visible(room_)) << "\n";
        joining_.clear();
      }
      process_input();
    }
    if (id == "end-of-input") quit();  // the server has answered every line we sent
  }

  // Keep-alive: a connection quiet for ping_interval gets a ping, which must be answered within
  // ping_timeout. One timer, re-armed from when the server was last heard.
  void check_idle() {
    if (done_ || quitting_) return;  // quit() bounds the rest with its own timer
    auto now = Clock::now();
    auto due = last_heard_ + options_.ping_interval;
    if (now >= due && keepalive_.empty()) {
      keepalive_ = "keep-alive-" + std::to_string(++pings_);
      send({{"type", "ping"}, {"id", keepalive_}});
      keepalive_timer_ = loop_.run_after(options_.ping_timeout, [this] { on_keepalive_timeout(); });
    }
    idle_timer_ = loop_.run_at(std::max(due, now + options_.ping_interval), [this] { check_idle(); });
  }

  void on_keepalive_timeout() {
    if (done_ || quitting_) return;
    // The loop runs timers before it reads: if the answer is already waiting in the socket (this
    // process was held up, e.g. a terminal stopped with ^S), read it before judging.
    pollfd p{conn_->fd(), POLLIN, 0};
    if (conn_->open() && ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      keepalive_timer_ = loop_.run_after(milliseconds(0), [this] { on_keepalive_timeout(); });
      return;
    }
    fail("the server did not answer in " + seconds(options_.ping_timeout));
  }

  void on_stdin() {
    char chunk[16384];
    ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (n > 0) {
      pending_.append(chunk, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    } else {
      loop_.remove(STDIN_FILENO);
      stdin_open_ = false;
      stdin_ended_ = true;
    }
    process_input();
  }

  // Runs the complete lines read so far, stopping while a join is unanswered (reading stops too,
  // so that what waits is at most one read); at the end of stdin, the last partial line and then
  // the ping whose pong ends the session.
  void process_input() {
    size_t start = 0, nl;
    while (fence_.empty() && !quitting_ && (nl = pending_.find('\n', start)) != std::string::npos) {
      command(pending_.substr(start, nl - start));
      start = nl + 1;
    }
    pending_.erase(0, start);
    if (quitting_) return;
    if (!fence_.empty()) {
      if (stdin_open_) loop_.modify(STDIN_FILENO, reactor::Interest::kNone);
      return;
    }
    if (stdin_open_) loop_.modify(STDIN_FILENO, reactor::Interest::kRead);
    if (!stdin_ended_) return;
    if (!pending_.empty()) {
      command(std::exchange(pending_, {}));
      if (!fence_.empty() || quitting_) return;
    }
    if (!end_sent_) {
      end_sent_ = true;
      send({{"type", "ping"}, {"id", "end-of-input"}});
    }
  }

  void command(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || quitting_) return;
    if (!chat::valid_utf8(line)) {  // the protocol is UTF-8 (and JSON cannot carry the bytes)
      std::cerr << "chat-client: not sent: the line is not valid UTF-8\n";
      return;
    }
    if (line == "/quit") return quit();
    if (line == "/rooms") return send({{"type", "rooms"}});
    if (line.rfind("/join ", 0) == 0) {
      std::string room = line.substr(6);
      if (!chat::valid_room_name(room)) {
        std::cerr << "chat-client: cannot join " << chat::visible(room)
                  << ": a room name is 1 to 64 characters from A-Z a-z 0-9 _ . # -\n";
        return;
      }
      if (member_of_.count(room)) {  // already in it: only the current room changes
        room_ = room;
        std::cout << "[" << room << "] * now the current room\n";
        std::cout.flush();
        return;
      }
      return join(room);
    }
    if (line == "/leave" || line.rfind("/leave ", 0) == 0) {
      std::string room = line.size() > 7 ? line.substr(7) : room_;
      if (room.empty()) return no_room();
      send({{"type", "leave"}, {"room", room}});
      // The next line must not go to the room left: the current room moves on now, not when
      // `left` comes (with stdin from a pipe, the next line is read before it).
      if (room == room_) gone_from(room);
      return;
    }
    if (line[0] == '/') {
      std::cerr << "chat-client: unknown command " << chat::visible(line) << " (/join R, /leave [R], /rooms, /quit)\n";
      return;
    }
    if (room_.empty()) return no_room();
    send({{"type", "message"}, {"room", room_}, {"text", line}});
  }

  void no_room() { std::cerr << "chat-client: no current room; /join R first\n"; }

  // We are no longer in `room` (or are leaving it): when it was the current room, the one joined
  // most recently of those still joined takes its place, or none, and the person is told which.
  void gone_from(const std::string& room) {
    member_of_.erase(room);
    joined_order_.erase(std::remove(joined_order_.begin(), joined_order_.end(), room), joined_order_.end());
    if (room != room_) return;
    if (joined_order_.empty()) {
      room_.clear();
      std::cout << "* You are in no room now; /join a room to talk\n";
    } else {
      room_ = joined_order_.back();
      std::cout << "[" << chat::visible(room_) << "] * now the current room\n";
    }
    std::cout.flush();
  }

  void quit() {
    if (quitting_) return;
    quitting_ = true;
    if (stdin_open_) loop_.remove(STDIN_FILENO);
    stdin_open_ = false;
    conn_->close_after_flush(reactor::CloseCode::kLocal, "quit");
    // A server that stops reading would keep the rest of our output, and us, forever.
    loop_.run_after(options_.ping_timeout, [this] {
      fail("the server did not take our last lines in " + seconds(options_.ping_timeout));
    });
  }

  reactor::Reactor& loop_;
  Options options_;
  std::string room_;     // where lines go; empty until the first `joined`
  std::string joining_;  // the room of the join in flight
  std::set<std::string> member_of_;
  std::vector<std::string> joined_order_;  // member_of_, in the order joined (the latest last)
  std::string pending_;  // bytes read from stdin, not yet run
  std::shared_ptr<reactor::TcpConnector> connector_;
  reactor::TcpConnectionPtr conn_;
  chat::LineFramer framer_{1 << 24};
  Clock::time_point last_heard_;
  reactor::TimerId connect_timer_ = 0, idle_timer_ = 0, keepalive_timer_ = 0;
  std::string fence_;      // id of the ping after a join; lines wait until its pong
  std::string keepalive_;  // id of the keep-alive ping awaiting its pong
  uint64_t pings_ = 0;
  bool started_ = false, stdin_open_ = false, stdin_ended_ = false, end_sent_ = false;
  bool quitting_ = false, done_ = false;
  int status_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Chat client: talks to chat-server in its native protocol.", "chat-client"};
  std::string host = "127.0.0.1";
  const char* env_user = std::getenv("USER");
  Options options;
  options.user = env_user && chat::valid_native_name(env_user) ? env_user : "guest";
  options.room = chat::kLobby;
  uint16_t port = 1234;
  int64_t ping_interval_ms = options.ping_interval.count(), ping_timeout_ms = options.ping_timeout.count();
  cli.add_option("--host", host, "Server address")->capture_default_str();
  cli.add_option("--port", port, "Server port")->capture_default_str();
  cli.add_option("--user", options.user, "Your name: 1 to 32 of A-Z a-z 0-9 _ . -")->capture_default_str();
  cli.add_option("--room", options.room, "Room to join first")->capture_default_str();
  std::string token_file;
  auto* token_option = cli.add_option("--token", options.token,
                                      "A token for --user, for a server with --auth-secret (or the environment's "
                                      "CHAT_TOKEN; a command line is visible to every user of the machine)")
                           ->envname("CHAT_TOKEN");
  cli.add_option("--token-file", token_file, "Read the token from the first line of this file")->excludes(token_option);
  cli.add_option("--ping-interval-ms", ping_interval_ms, "Ping the server after this long without a word from it")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}));
  cli.add_option("--ping-timeout-ms", ping_timeout_ms,
                 "Give up when a ping, or the connect, is not answered within this long")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}));
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (!chat::valid_native_name(options.user)) {
    std::cerr << "chat-client: --user must be 1 to 32 characters from A-Z a-z 0-9 _ . -\n";
    return 2;
  }
  if (!chat::valid_room_name(options.room)) {
    std::cerr << "chat-client: --room must be 1 to 64 characters from A-Z a-z 0-9 _ . # -\n";
    return 2;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in || !std::getline(in, options.token) ||
        (options.token.erase(options.token.find_last_not_of("\r\n \t") + 1), options.token.empty())) {
      std::cerr << "chat-client: --token-file " << token_file << ": cannot be read, or its first line is empty\n";
      return 2;
    }
  }
  options.ping_interval = milliseconds(ping_interval_ms);
  options.ping_timeout = milliseconds(ping_timeout_ms);
  try {
    reactor::Reactor loop(app::backend_for_stdin());
    loop.stop_on_signals();
    Client client(loop, options);
    return client.run(reactor::InetAddress::resolve(host, port));
  } catch (const std::exception& e) {
    std::cerr << "chat-client: " << e.what() << "\n";
    return 1;
  }
}
