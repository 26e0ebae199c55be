// Front ends as the server's plug-ins (chat/frontends/frontend.h): the records of the three front
// ends, the listeners the server numbers from them, and a front end the server has never heard of
// served, swept, counted and drained through its record alone.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <set>
#include <string>

#include "chat/core/format.h"
#include "chat/frontends/irc/registration.h"
#include "chat/frontends/tcp/registration.h"
#include "chat/frontends/web/registration.h"
#include "chat/server/server.h"
#include "reactor/handle.h"

namespace frontends_test {

using namespace std::chrono_literals;

TEST(FrontEnds, ListenersArePlainInListOrderThenTheirTlsTwins) {
  chat::FrontEnds fronts(chat::front_ends());
  std::vector<std::string> names(fronts.names().begin(), fronts.names().end());
  EXPECT_EQ(names, (std::vector<std::string>{"tcp", "http", "irc", "tls", "https", "ircs"}));
  EXPECT_EQ(&fronts.front_of(fronts.listener("tls")), &chat::tcp_front_end());
  EXPECT_EQ(&fronts.front_of(fronts.listener("https")), &chat::web_front_end());
  EXPECT_EQ(&fronts.front_of(fronts.listener("irc")), &chat::irc_front_end());
  EXPECT_TRUE(fronts.listeners()[fronts.listener("ircs")].tls);
  EXPECT_FALSE(fronts.listeners()[fronts.listener("irc")].tls);
  EXPECT_EQ(fronts.listener("gopher"), fronts.listeners().size());
  EXPECT_EQ(fronts.index(&chat::web_front_end()), 1u);
}

TEST(FrontEnds, OnlyTheWebOutlivesTheMembersAndServesMetrics) {
  for (const chat::FrontEnd* front : chat::front_ends()) {
    bool web = front == &chat::web_front_end();
    EXPECT_EQ(front->outlives_members, web) << front->name;
    EXPECT_EQ(front->serves_metrics, web) << front->name;
    EXPECT_NE(front->make, nullptr) << front->name;
  }
}

// Each record registers the formats of its own front end (Format::front), and registering twice
// registers nothing more.
TEST(FrontEnds, EachRegistersItsOwnFormats) {
  for (const chat::FrontEnd* front : chat::front_ends()) front->register_formats();
  size_t count = chat::Format::count();
  std::multiset<std::string> fronts;
  for (size_t f = 0; f < count; ++f) fronts.insert(chat::Format::by_id(static_cast<chat::FormatId>(f)).front());
  EXPECT_EQ(fronts.count("article"), 1u);
  EXPECT_EQ(fronts.count("native"), 1u);
  EXPECT_EQ(fronts.count("web"), 1u);
  EXPECT_EQ(fronts.count("irc"), 3u);
  for (const chat::FrontEnd* front : chat::front_ends()) front->register_formats();
  EXPECT_EQ(chat::Format::count(), count);
}

// ---- A front end the server does not know: served through its record alone --------------------

struct Seen {
  int sweeps = 0;
  int farewells = 0;
  bool restart = false;
};
Seen seen;

// Echoes what it reads.
class Echo final : public reactor::ConnectionHandler {
 public:
  void on_message(reactor::TcpConnection& conn, reactor::Buffer& input) override {
    conn.send(input.view());
    input.clear();
  }
};

class EchoPart final : public chat::FrontEndPart {
 public:
  bool connect(reactor::TcpConnection& conn) override {
    conn.set_handler(std::make_shared<Echo>());
    return true;
  }
  reactor::Clock::duration sweep_every() const override { return 10ms; }
  void sweep(reactor::ConnectionHandler& handler, reactor::Clock::time_point) override {
    if (dynamic_cast<Echo*>(&handler) != nullptr) ++seen.sweeps;
  }
  void farewell(reactor::TcpConnection& conn, bool restart) override {
    ++seen.farewells;
    seen.restart = restart;
    conn.send(std::string_view("bye\n"));
    conn.close_after_flush(farewell_code(restart), farewell_reason(restart));
  }
};

const chat::FrontEnd& echo_front_end() {
  static const chat::FrontEnd front{
      .name = "echo",
      .tls_name = "echos",
      .register_formats = [] {},
      .make = [](const chat::FrontEndShard&, const void*) -> std::unique_ptr<chat::FrontEndPart> {
        return std::make_unique<EchoPart>();
      },
  };
  return front;
}

reactor::Handle connect_to(const reactor::InetAddress& address) {
  reactor::Handle fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(address.port());
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("connect failed");
  return fd;
}

// Runs `loop` until `done` says so (checked every few milliseconds), or 10 s.
bool run_until(reactor::Reactor& loop, const std::function<bool()>& done) {
  bool ok = false;
  auto deadline = reactor::Clock::now() + 10s;
  auto timer = loop.run_every(2ms, [&] {
    if (done()) ok = true;
    if (ok || reactor::Clock::now() > deadline) loop.stop();
  });
  loop.run();
  loop.cancel(timer);
  return ok;
}

// What `fd` has to read now ("<eof>" once the peer has closed).
std::string read_some(int fd) {
  std::string out;
  char buf[256];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 0) > 0) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      out += "<eof>";
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(FrontEnds, ANewFrontEndIsServedSweptCountedAndDrainedThroughItsRecord) {
  seen = {};
  reactor::Reactor loop;
  chat::Limits limits;
  chat::ServiceOptions options;
  options.threads = 1;
  options.known = {&chat::tcp_front_end(), &echo_front_end()};
  options.fronts = {chat::ServedFrontEnd{&echo_front_end(), 0, 0, nullptr}};
  chat::ChatService service(loop, "127.0.0.1", limits, options);
  service.start();
  EXPECT_TRUE(service.serves("echo"));
  EXPECT_FALSE(service.serves("echos"));  // no certificate
  EXPECT_FALSE(service.serves("tcp"));    // known, not served
  EXPECT_EQ(service.local_address().port(), service.address("echo").port());

  reactor::Handle client = connect_to(service.address("echo"));
  ASSERT_EQ(::write(client.get(), "hi\n", 3), 3);
  std::string got;
  ASSERT_TRUE(run_until(loop, [&] {
    got += read_some(client.get());
    return got == "hi\n" && seen.sweeps > 0;
  })) << got << " sweeps " << seen.sweeps;

  // Counted by the listener's name; every known listener is shown, served or not.
  std::string metrics;
  service.metrics_text([&](std::string text) { metrics = std::move(text); });
  ASSERT_TRUE(run_until(loop, [&] { return !metrics.empty(); }));
  EXPECT_NE(metrics.find("chat_connections_accepted_total{listener=\"echo\"} 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("chat_connections_accepted_total{listener=\"tcp\"} 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("chat_connections_accepted_total{listener=\"echos\"} 0\n"), std::string::npos) << metrics;

  // A drain tells the member what its front end says, then closes it.
  bool drained = false;
  service.drain(0ms, [&] { drained = true; });
  got.clear();
  ASSERT_TRUE(run_until(loop, [&] {
    got += read_some(client.get());
    return drained && got.ends_with("<eof>");
  })) << got;
  EXPECT_EQ(got, "bye\n<eof>");
  EXPECT_EQ(seen.farewells, 1);
  EXPECT_TRUE(seen.restart);
  client.reset();  // the server's lingering close waits for the peer's
  bool stopped = false;
  service.shutdown(1000ms, [&] { stopped = true; });
  ASSERT_TRUE(run_until(loop, [&] { return stopped; }));
}

}  // namespace frontends_test
