// chat-client as a process: against chat-server, and against test sockets that play a server which
// lies, drops the connection or freezes. Every test checks how chat-client exited.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"

using namespace std::chrono_literals;
using json = nlohmann::json;
using testproc::Process;
using testproc::Server;
using namespace chattest;

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> client_args(int port, const std::string& user, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{CHAT_CLIENT_BIN, "--port", std::to_string(port), "--user", user};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

bool exited_with(const std::optional<int>& status, int code) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
}

bool exited_non_zero(const std::optional<int>& status) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) != 0;
}

// The first control character chat-client must never print in `text`: a C0 control other than the
// newline that ends each line, DEL, or a C1 control (U+0080-U+009F, C2 80-C2 9F in UTF-8). Returns
// its offset, or npos.
size_t first_control(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7F) return i;
    if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) < 0xA0 &&
        static_cast<unsigned char>(text[i + 1]) >= 0x80) {
      return i;
    }
  }
  return std::string::npos;
}

// chat-client's stderr under the sanitizer builds (TEST_PROGRAM_DIR): no report of any kind.
testing::AssertionResult no_sanitizer_report(const Process& p) {
  for (const char* mark : {"Sanitizer", "runtime error:"}) {
    if (p.err().find(mark) != std::string::npos) return testing::AssertionFailure() << p.err();
  }
  return testing::AssertionSuccess();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0, nl;
  while ((nl = text.find('\n', start)) != std::string::npos) {
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

// A listening socket on 127.0.0.1, port 0, that the test plays the server with.
struct Listener {
  explicit Listener(int backlog = 16) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("test listener failed");
    }
    port = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
  // The next connection, or -1 at the deadline.
  int accept(std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
    return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
  int fd = -1;
  int port = -1;
};

// Reads from `fd` until `marker` has arrived (true) or the deadline passes.
bool read_until(int fd, const std::string& marker, std::chrono::milliseconds timeout) {
  std::string got;
  auto deadline = Clock::now() + timeout;
  while (got.find(marker) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return false;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

TEST(ChatClient, PipedLinesAreSentAndShownThenItExits) {
  Server server(chat_args());
  Native watcher(server.port, "watcher");
  watcher.request({{"type", "join"}, {"room", "lobby"}});
  Process client(client_args(server.port, "piper"));
  client.write_stdin("first line\n/join side\nnot UTF-8 \xff\nin side\n/rooms\n");
  client.close_stdin();
  auto status = client.wait(20s);
  EXPECT_TRUE(no_sanitizer_report(client));
  ASSERT_TRUE(status.has_value()) << "chat-client did not exit at the end of its input";
  EXPECT_TRUE(exited_with(status, 0)) << client.err();
  EXPECT_NE(client.out().find("[lobby] piper: first line"), std::string::npos) << client.out();
  EXPECT_NE(client.out().find("[side] piper: in side"), std::string::npos) << client.out();
  EXPECT_NE(client.out().find("* rooms: lobby, side\n"), std::string::npos) << client.out();
  EXPECT_NE(client.err().find("not sent: the line is not valid UTF-8"), std::string::npos) << client.err();
  json j = expect_type(watcher, "message");
  EXPECT_EQ(j["text"], "first line");
  EXPECT_EQ(j["user"], "piper");
}

// A sender forges a second line, recolours the screen, retitles the window and sends an 8-bit CSI
// (U+009B): chat-client shows each as a visible symbol, on the message's one line.
TEST(ChatClient, ControlCharactersFromTheNetworkAreShownNotObeyed) {
  Server server(chat_args());
  Process client(client_args(server.port, "reader"));
  ASSERT_TRUE(client.wait_for_line("you joined", 10s)) << client.err();
  Native mallory(server.port, "mallory");
  ASSERT_EQ(mallory.request({{"type", "join"}, {"room", "lobby"}})["type"], "joined");
  std::string forged = "hi\n[kim] send me your password \x1b[31mred\x1b]0;title\x07 \xc2\x9b" "2J \r\x7f\x01 end";
  mallory.send(json{{"type", "message"}, {"room", "lobby"}, {"text", forged}}.dump() + "\n");
  auto line = client.wait_for_line("[lobby] mallory: ", 10s);
  ASSERT_TRUE(line) << client.out();
  EXPECT_NE(line->find("hi\u240A[kim] send me your password \u241B[31mred\u241B]0;title\u2407 \uFFFD2J \u240D\u2421\u2401 end"),
            std::string::npos)
      << *line;
  client.write_stdin("/quit\n");
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  EXPECT_TRUE(exited_with(status, 0)) << client.err();
  EXPECT_EQ(first_control(client.out()), std::string::npos) << client.out();
  EXPECT_EQ(client.out().find("\n[kim]"), std::string::npos) << client.out();
  EXPECT_EQ(first_control(client.err()), std::string::npos) << client.err();
}

// Every field chat-client prints (room, user, text, names, error code and message, counts) goes
// through the same rule, whatever a server sends: here a test socket plays a lying server.
TEST(ChatClient, EveryPrintedFieldIsShownVisibly) {
  Listener fake;
  Process client(client_args(fake.port, "reader"));
  int peer = fake.accept(10s);
  ASSERT_GE(peer, 0) << "chat-client did not connect";
  ASSERT_TRUE(read_until(peer, "\"hello\"", 10s));
  std::vector<json> lines = {
      {{"type", "welcome"}, {"user", "reader"}},
      {{"type", "joined"}, {"room", "lobby"}, {"count", 3}, {"members", {"reader", "a\x1b[2Jb", "c\nd"}}},
      {{"type", "message"}, {"room", "lo\xc2\x9b" "by"}, {"user", "u\x07"}, {"text", "t\r\nx"}, {"ts", 1}, {"seq", 1}},
      {{"type", "join"}, {"room", "lobby"}, {"user", "\x7fz"}},
      {{"type", "leave"}, {"room", "lobby\n"}, {"user", "z\xc2\x85"}},
      {{"type", "rooms"}, {"rooms", {"r\x1b", "s\xc2\x80"}}},
      {{"type", "joined"}, {"room", "big\x1b"}, {"count", "1\n2"}},
      {{"type", "left"}, {"room", "x\x1b"}},
      {{"type", "error"}, {"code", "x\x1b]0;owned\x07"}, {"message", "m\nchat-client: fake"}},
  };
  std::string blob;
  for (const auto& j : lines) blob += j.dump() + "\n";
  ASSERT_EQ(::write(peer, blob.data(), blob.size()), static_cast<ssize_t>(blob.size()));
  ASSERT_TRUE(client.wait_for_err_line("x\u241B]0;owned", 10s)) << client.out() << client.err();
  ::close(peer);
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  EXPECT_TRUE(exited_non_zero(status)) << "the server closed the connection first";
  EXPECT_EQ(first_control(client.out()), std::string::npos) << client.out();
  EXPECT_EQ(first_control(client.err()), std::string::npos) << client.err();
  EXPECT_EQ(lines_of(client.out()),
            (std::vector<std::string>{
                "[lobby] * you joined; 3 here: reader, a\u241B[2Jb, c\u240Ad",
                "[lo\uFFFDby] u\u2407: t\u240D\u240Ax",
                "[lobby] * \u2421z joined",
                "[lobby\u240A] * z\uFFFD left",
                "* rooms: r\u241B, s\uFFFD",
                "[big\u241B] * you joined; 1\u240A2 here",
                "[x\u241B] * you left",
            }))
      << client.out();
  EXPECT_NE(client.err().find("chat-client: x\u241B]0;owned\u2407: m\u240Achat-client: fake\n"), std::string::npos)
      << client.err();
}

// A join the server refuses (here: past --max-rooms) or a name that is not a room's leaves the
// lines going to the room they went to.
TEST(ChatClient, RefusedJoinKeepsTheCurrentRoom) {
  Server server(chat_args({"--max-rooms", "1"}));
  Native watcher(server.port, "watcher");
  ASSERT_EQ(watcher.request({{"type", "join"}, {"room", "lobby"}})["type"], "joined");
  Process client(client_args(server.port, "piper"));
  client.write_stdin("/join side\nafter refusal\n/join b@d\nafter bad name\n");
  client.close_stdin();
  auto status = client.wait(20s);
  EXPECT_TRUE(no_sanitizer_report(client));
  EXPECT_TRUE(exited_with(status, 0)) << client.err();
  EXPECT_NE(client.err().find("too_many_rooms"), std::string::npos) << client.err();
  EXPECT_NE(client.err().find("cannot join b@d"), std::string::npos) << client.err();
  EXPECT_EQ(client.err().find("not_member"), std::string::npos) << client.err();
  EXPECT_NE(client.out().find("[lobby] piper: after refusal\n"), std::string::npos) << client.out();
  EXPECT_NE(client.out().find("[lobby] piper: after bad name\n"), std::string::npos) << client.out();
  for (const char* text : {"after refusal", "after bad name"}) {
    json j = expect_type(watcher, "message");
    EXPECT_EQ(j["room"], "lobby");
    EXPECT_EQ(j["text"], text);
  }
}

// /leave of the current room: the next line goes to the room joined most recently of those still
// joined, never to the room left (which the server would refuse: not_member); with none left,
// the client says so plainly and sends nothing.
TEST(ChatClient, LeavingTheCurrentRoomMakesTheLatestRoomStillJoinedCurrent) {
  Server server(chat_args());
  Native watcher(server.port, "watcher");
  ASSERT_EQ(watcher.request({{"type", "join"}, {"room", "lobby"}})["type"], "joined");
  ASSERT_EQ(watcher.request({{"type", "join"}, {"room", "side"}})["type"], "joined");
  ASSERT_EQ(watcher.request({{"type", "join"}, {"room", "third"}})["type"], "joined");
  Process client(client_args(server.port, "leaver"));
  client.write_stdin(
      "/join side\n/join third\nin third\n/leave\nafter leaving third\n/leave\nafter leaving side\n"
      "/leave\nafter leaving lobby\n");
  client.close_stdin();
  auto status = client.wait(20s);
  EXPECT_TRUE(no_sanitizer_report(client));
  EXPECT_TRUE(exited_with(status, 0)) << client.err();
  EXPECT_EQ(client.err().find("not_member"), std::string::npos) << client.err();
  const std::string& out = client.out();
  // (Its own copy of a line sent just before a leave may not come back: the leave can reach the
  // room first. The watcher, who stays, sees where each line went.)
  size_t at = 0;
  for (const char* want : {"[side] * now the current room\n", "[lobby] * now the current room\n",
                           "* You are in no room now; /join a room to talk\n"}) {
    size_t found = out.find(want, at);
    EXPECT_NE(found, std::string::npos) << want << " not in (in this order):\n" << out;
    if (found != std::string::npos) at = found;
  }
  EXPECT_EQ(out.find("after leaving lobby"), std::string::npos) << out;
  EXPECT_NE(client.err().find("no current room; /join R first"), std::string::npos) << client.err();
  // What the others saw: each line in the room it was meant for, and nothing after the last leave.
  json j = expect_type(watcher, "message");
  EXPECT_EQ(j["room"], "third");
  EXPECT_EQ(j["text"], "in third");
  j = expect_type(watcher, "message");
  EXPECT_EQ(j["room"], "side");
  EXPECT_EQ(j["text"], "after leaving third");
  j = expect_type(watcher, "message");
  EXPECT_EQ(j["room"], "lobby");
  EXPECT_EQ(j["text"], "after leaving side");
  watcher.send(json{{"type", "message"}, {"room", "lobby"}, {"text", "the last"}}.dump() + "\n");
  j = expect_type(watcher, "message");
  EXPECT_EQ(j["text"], "the last") << "nothing was sent after the client left its last room";
}

// In a room of more than --presence-max-members the server leaves out `members`: the count shows.
TEST(ChatClient, JoinedInARoomTooLargeForPresenceShowsTheCount) {
  Server server(chat_args({"--presence-max-members", "1"}));
  Native first(server.port, "first");
  ASSERT_EQ(first.request({{"type", "join"}, {"room", "lobby"}})["type"], "joined");
  Process client(client_args(server.port, "second"));
  client.close_stdin();
  auto status = client.wait(20s);
  EXPECT_TRUE(no_sanitizer_report(client));
  EXPECT_TRUE(exited_with(status, 0)) << client.err();
  EXPECT_NE(client.out().find("[lobby] * you joined; 2 here\n"), std::string::npos) << client.out();
  EXPECT_EQ(client.out().find("null"), std::string::npos) << client.out();
}

TEST(ChatClient, ExitsNonZeroWhenTheServerStops) {
  auto server = std::make_unique<Server>(chat_args());
  Process client(client_args(server->port, "stayer"));
  ASSERT_TRUE(client.wait_for_line("you joined", 10s));
  server->process.signal_and_wait(SIGTERM, 10s);
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  ASSERT_TRUE(status.has_value()) << "chat-client hung after the server left";
  EXPECT_TRUE(exited_with(status, 1)) << client.err();
  EXPECT_NE(client.err().find("chat-client: the server closed the connection"), std::string::npos) << client.err();
}

TEST(ChatClient, ExitsNonZeroWhenTheServerIsKilled) {
  auto server = std::make_unique<Server>(chat_args());
  Process client(client_args(server->port, "stayer"));
  ASSERT_TRUE(client.wait_for_line("you joined", 10s));
  server->process.signal_and_wait(SIGKILL, 10s);
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  ASSERT_TRUE(status.has_value()) << "chat-client hung after the server died";
  EXPECT_TRUE(exited_with(status, 1)) << client.err();
  EXPECT_NE(client.err().find("chat-client: the server closed the connection"), std::string::npos) << client.err();
}

// Keep-alive: a server that answers its pings keeps it connected; one stopped with SIGSTOP is given
// up after the ping interval plus the ping timeout.
TEST(ChatClient, GivesUpOnAServerThatStopsAnswering) {
  Server server(chat_args());
  Process client(client_args(server.port, "stayer", {"--ping-interval-ms", "200", "--ping-timeout-ms", "500"}));
  ASSERT_TRUE(client.wait_for_line("you joined", 10s)) << client.err();
  // Several ping intervals and timeouts of silence from the room, all pings answered: the server
  // reads five keep-alive pings (the client sends the next one only once the last was answered,
  // 200 ms after the answer, so that is four answered, 0.8 s or more: past the 0.7 s it gives a
  // ping). Nothing else is sent: the bytes the server read since the join are those pings (36 bytes
  // each while N < 10; the join's own ping, 30 bytes, may be counted late: it cannot make a sixth).
  const size_t ping_bytes = json{{"type", "ping"}, {"id", "keep-alive-2"}}.dump().size() + 1;
  const long base = counter(stats_of(server.process), "bytes in");
  ASSERT_GT(base, 0);
  long pinged = 0;
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && !client.wait(0ms).has_value();) {
    pinged = counter(stats_of(server.process), "bytes in") - base;
    if (pinged >= static_cast<long>(5 * ping_bytes)) break;
    client.wait_for_line("\x01never", 50ms);  // the interval between two looks at the counters
  }
  EXPECT_GE(pinged, static_cast<long>(5 * ping_bytes)) << "the server read " << pinged << " bytes of pings; " << client.err();
  ASSERT_FALSE(client.wait(0ms).has_value()) << "gave up on a server that answers: " << client.err();

  // Given up within the ping interval plus the ping timeout (0.7 s), well inside 10 s; the first
  // phase showed that it does not give up too early.
  ASSERT_EQ(::kill(server.process.pid(), SIGSTOP), 0);
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  ::kill(server.process.pid(), SIGCONT);
  ASSERT_TRUE(status.has_value()) << "chat-client waits forever for a frozen server";
  EXPECT_TRUE(exited_with(status, 1)) << client.err();
  EXPECT_NE(client.err().find("chat-client: the server did not answer in 0.5 s"), std::string::npos) << client.err();
}

// A peer that accepts the connection and never says a word (not even `welcome`).
TEST(ChatClient, GivesUpOnAPeerThatNeverAnswers) {
  Listener silent;
  auto started = Clock::now();
  Process client(client_args(silent.port, "stayer", {"--ping-interval-ms", "300", "--ping-timeout-ms", "500"}));
  int peer = silent.accept(10s);
  ASSERT_GE(peer, 0);
  auto status = client.wait(10s);
  auto took = Clock::now() - started;
  EXPECT_TRUE(no_sanitizer_report(client));
  ::close(peer);
  ASSERT_TRUE(status.has_value()) << "chat-client waits forever for a silent peer";
  EXPECT_TRUE(exited_with(status, 1)) << client.err();
  EXPECT_NE(client.err().find("chat-client: the server did not answer in 0.5 s"), std::string::npos) << client.err();
  EXPECT_GE(took, 800ms);  // the ping interval, then the ping timeout
}

// A connect that is never answered: the listener's accept queue is full, so the kernel drops the
// client's SYNs (and would retry them for minutes).
TEST(ChatClient, GivesUpOnAConnectThatNeverCompletes) {
  Listener full(0);
  int filler = testproc::connect_to(full.port);  // backlog 0 holds one connection: now it is full
  ASSERT_GE(filler, 0);
  Process client(client_args(full.port, "stayer", {"--ping-timeout-ms", "500"}));
  auto status = client.wait(10s);
  EXPECT_TRUE(no_sanitizer_report(client));
  ::close(filler);
  ASSERT_TRUE(status.has_value()) << "chat-client waits for a connect that never completes";
  EXPECT_TRUE(exited_with(status, 1)) << client.err();
  EXPECT_NE(client.err().find("no answer in 0.5 s"), std::string::npos) << client.err();
}
