// chat-server's IRC front end over real sockets: registration and capabilities, the numerics a
// client can trigger, the same rooms and one namespace of names with the other front ends,
// presence as IRC clients expect it, timeouts and flood control, and bad input.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "irc_helpers.h"
#include "redis_helpers.h"

namespace {

using namespace std::chrono_literals;
using chattest::expect_type;
using chattest::json;
using chattest::Native;
using irctest::contains;
using irctest::Irc;
using irctest::IrcServer;
using testproc::LineClient;
using testproc::Process;

class IrcFrontEnd : public ::testing::TestWithParam<int> {
 protected:
  std::vector<std::string> threads() const { return {"--threads", std::to_string(GetParam())}; }
};

TEST_P(IrcFrontEnd, RegistrationWithCapabilitiesAnswersTheWelcomeNumerics) {
  IrcServer server(threads());
  Irc a(server.irc);
  a.say("CAP LS 302");
  std::string ls = a.expect(" CAP \\* LS ");
  EXPECT_NE(ls.find("message-tags"), std::string::npos) << ls;
  EXPECT_NE(ls.find("server-time"), std::string::npos) << ls;
  EXPECT_NE(ls.find("echo-message"), std::string::npos) << ls;
  a.say("NICK alice");
  a.say("USER alice 0 * :Alice");
  // Registration waits while capabilities are negotiated.
  std::vector<std::string> before = a.until_pong("paused");
  EXPECT_FALSE(contains(before, " 001 ")) << "registered before CAP END";
  a.say("CAP REQ :server-time echo-message");
  EXPECT_NE(a.expect(" CAP alice ACK :server-time echo-message"), "");
  a.say("CAP REQ :no-such-cap server-time");
  EXPECT_NE(a.expect(" CAP alice NAK :no-such-cap server-time"), "");
  a.say("CAP END");
  EXPECT_NE(a.expect("^:reactor.chat 001 alice :Welcome to the ReactorChat IRC network alice!alice@irc$"), "");
  EXPECT_NE(a.expect(" 002 alice "), "");
  EXPECT_NE(a.expect(" 003 alice "), "");
  EXPECT_NE(a.expect(" 004 alice "), "");
  std::string isupport = a.expect(" 005 alice ");
  isupport += a.expect(" 005 alice ");
  for (const char* token : {"CASEMAPPING=ascii", "CHANTYPES=#", "CHANLEN=65", "NICKLEN=32", "TOPICLEN=", "PREFIX=(ov)@+",
                            "CHANMODES=", "NETWORK=ReactorChat"}) {
    EXPECT_NE(isupport.find(token), std::string::npos) << token << " in " << isupport;
  }
  EXPECT_NE(a.expect(" 251 alice :There are 1 users"), "");
  EXPECT_NE(a.expect(" 422 alice :MOTD File is missing"), "");
  a.say("CAP LIST");
  EXPECT_NE(a.expect(" CAP alice LIST :server-time echo-message"), "");
  // Registered once: USER and PASS again are refused.
  a.say("USER again 0 * :x");
  EXPECT_NE(a.expect(" 462 alice :You may not reregister"), "");
  a.say("PASS secret");
  EXPECT_NE(a.expect(" 462 alice "), "");
}

TEST_P(IrcFrontEnd, CommandsBeforeRegistrationAndBadRegistrationsGetTheirNumerics) {
  IrcServer server(threads());
  Native bob(server.port, "Bob");
  ASSERT_EQ(bob.welcome.value("type", ""), "welcome");
  Irc a(server.irc);
  a.say("JOIN #lobby");
  EXPECT_NE(a.expect("^:reactor.chat 451 \\* :You have not registered$"), "");
  a.say("PRIVMSG #lobby :hi");
  EXPECT_NE(a.expect(" 451 \\* "), "");
  a.say("NICK");
  EXPECT_NE(a.expect(" 431 \\* :No nickname given"), "");
  a.say("NICK 9lives");
  EXPECT_NE(a.expect(" 432 \\* 9lives :Erroneous nickname"), "");
  a.say("NICK has.dot");
  EXPECT_NE(a.expect(" 432 \\* has.dot "), "");
  a.say("NICK abcdefghijklmnopqrstuvwxyz0123456");  // 33 characters
  EXPECT_NE(a.expect(" 432 "), "");
  // Names are one namespace, whatever the front end or the case.
  a.say("NICK bob");
  EXPECT_NE(a.expect(" 433 \\* bob :Nickname is already in use"), "");
  a.say("USER u 0 *");
  EXPECT_NE(a.expect(" 461 \\* USER :Not enough parameters"), "");
  a.say("NICK carol");
  a.say("USER carol 0 * :Carol");
  EXPECT_NE(a.expect(" 001 carol "), "");
  // ... and the other way round: a native member cannot take an IRC member's name.
  Native c2(server.port, "CAROL");
  EXPECT_EQ(c2.welcome.value("code", ""), "name_taken") << c2.welcome.dump();
  a.say("FROB x");
  EXPECT_NE(a.expect(" 421 carol FROB :Unknown command"), "");
}

TEST_P(IrcFrontEnd, TheSameRoomsAcrossFrontEndsWithHostsThatSayWhichFrontEnd) {
  IrcServer server(threads());
  Irc alice(server.irc);
  ASSERT_TRUE(alice.registers("alice"));
  ASSERT_TRUE(alice.joins("#lobby"));
  Native nat(server.port, "nat");
  json joined = nat.request({{"type", "join"}, {"room", "lobby"}});
  ASSERT_EQ(joined.value("type", ""), "joined") << joined.dump();
  EXPECT_NE(std::find(joined["members"].begin(), joined["members"].end(), "alice"), joined["members"].end());
  EXPECT_NE(alice.expect("^:nat!nat@native JOIN #lobby$"), "");
  // The article's clients are in the lobby from the start; their names may hold spaces.
  LineClient article(server.port);
  article.send(R"({"user":"kim zed","text":"hello from the article"})");
  EXPECT_NE(alice.expect("^:kim_zed!kim_zed@article PRIVMSG #lobby :hello from the article$"), "");
  // A native message of two lines is two PRIVMSG lines.
  nat.send(json{{"type", "message"}, {"room", "lobby"}, {"text", "line one\nline two"}}.dump() + "\n");
  EXPECT_NE(alice.expect("^:nat!nat@native PRIVMSG #lobby :line one$"), "");
  EXPECT_NE(alice.expect("^:nat!nat@native PRIVMSG #lobby :line two$"), "");
  // IRC to the others.
  alice.say("PRIVMSG #lobby :hi from irc");
  std::vector<json> skipped;
  json m = expect_type(nat, "message", &skipped);
  while (m.value("user", "") != "alice" && m.value("type", "") == "message") m = expect_type(nat, "message");
  EXPECT_EQ(m.value("user", ""), "alice") << m.dump();
  EXPECT_EQ(m.value("text", ""), "hi from irc");
  bool article_saw = false;
  for (int i = 0; i < 10 && !article_saw; ++i) {
    auto l = article.line(10s);
    if (!l) break;
    article_saw = *l == "[alice] hi from irc";
  }
  EXPECT_TRUE(article_saw);
  // A native message too long for one IRC line is cut on character boundaries, nothing lost.
  std::string longtext;
  for (int i = 0; i < 300; ++i) longtext += "é";  // 600 bytes
  nat.send(json{{"type", "message"}, {"room", "lobby"}, {"text", longtext}}.dump() + "\n");
  std::string joined_text;
  for (int i = 0; i < 3 && joined_text.size() < longtext.size(); ++i) {
    std::string l = alice.expect("^:nat!nat@native PRIVMSG #lobby :");
    ASSERT_NE(l, "");
    EXPECT_LE(l.size() + 2, 512u);
    joined_text += l.substr(l.find(" :") + 2);
  }
  EXPECT_EQ(joined_text, longtext);
}

TEST_P(IrcFrontEnd, EchoMessageAndTagsComeOnlyToClientsThatAskedForThem) {
  IrcServer server(threads());
  Irc tagged(server.irc), plain(server.irc);
  ASSERT_TRUE(tagged.registers("tagged", "message-tags server-time echo-message"));
  ASSERT_TRUE(plain.registers("plain"));
  ASSERT_TRUE(tagged.joins("#room"));
  ASSERT_TRUE(plain.joins("#room"));
  tagged.say("PRIVMSG #room :mine");
  std::string echo = tagged.expect("PRIVMSG #room :mine$");
  EXPECT_TRUE(std::regex_search(echo, std::regex(R"(^@time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z;msgid=room~\d+ :tagged!tagged@irc PRIVMSG #room :mine$)")))
      << echo;
  EXPECT_NE(plain.expect("^:tagged!tagged@irc PRIVMSG #room :mine$"), "");  // no tags for it
  plain.say("PRIVMSG #room :theirs");
  EXPECT_TRUE(std::regex_search(tagged.expect("PRIVMSG #room :theirs$"), std::regex("^@time=.*;msgid=room~")));
  // Without echo-message, no copy of its own: nothing but the PONG comes back.
  std::vector<std::string> before = plain.until_pong();
  EXPECT_FALSE(contains(before, "theirs")) << before.size();
  // server-time alone: a time tag and no msgid.
  Irc timed(server.irc);
  ASSERT_TRUE(timed.registers("timed", "server-time"));
  ASSERT_TRUE(timed.joins("#room"));
  plain.say("PRIVMSG #room :third");
  std::string t = timed.expect("PRIVMSG #room :third$");
  EXPECT_EQ(t.rfind("@time=", 0), 0u) << t;
  EXPECT_EQ(t.find("msgid"), std::string::npos) << t;
  // The tag set is fixed once in a room: asking for message-tags then is refused.
  timed.say("CAP REQ :message-tags");
  EXPECT_NE(timed.expect(" CAP timed NAK :message-tags"), "");
}

TEST_P(IrcFrontEnd, PresenceNamesWhoListAsIrcClientsExpect) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("anna"));
  ASSERT_TRUE(b.registers("ben"));
  ASSERT_TRUE(a.joins("#one"));
  ASSERT_TRUE(a.joins("#two"));
  b.say("JOIN #one,#two");
  std::string names = b.expect(" 353 ben = #one :");
  EXPECT_NE(names.find("anna"), std::string::npos);
  EXPECT_NE(names.find("ben"), std::string::npos);
  EXPECT_NE(b.expect(" 366 ben #two :End of /NAMES list."), "");
  EXPECT_NE(a.expect("^:ben!ben@irc JOIN #one$"), "");
  EXPECT_NE(a.expect("^:ben!ben@irc JOIN #two$"), "");
  // NAMES, WHO and LIST on request.
  a.say("NAMES #one");
  std::string n = a.expect(" 353 anna = #one :");
  EXPECT_NE(n.find("ben"), std::string::npos) << n;
  EXPECT_NE(a.expect(" 366 anna #one "), "");
  a.say("WHO #two");
  EXPECT_NE(a.expect(" 352 anna #two ~ben irc reactor.chat ben H :0 ben"), "");
  EXPECT_NE(a.expect(" 315 anna #two "), "");
  a.say("LIST");
  EXPECT_NE(a.expect(" 322 anna #one 2 :"), "");
  EXPECT_NE(a.expect(" 323 anna "), "");
  // A nick change: one NICK line, however many rooms are shared.
  b.say("NICK benny");
  EXPECT_NE(b.expect("^:ben!ben@irc NICK :benny$"), "");
  EXPECT_NE(a.expect("^:ben!ben@irc NICK :benny$"), "");
  std::vector<std::string> after = a.until_pong("nick");
  EXPECT_FALSE(contains(after, " NICK ")) << "a second NICK line";
  // The old name is free again; the new one is held.
  Native old(server.port, "ben");
  EXPECT_EQ(old.welcome.value("type", ""), "welcome") << old.welcome.dump();
  Native again(server.port, "BENNY");
  EXPECT_EQ(again.welcome.value("code", ""), "name_taken");
  // PART with a reason, then QUIT: one QUIT line for the two rooms shared.
  b.say("PART #one :see you");
  EXPECT_NE(b.expect("^:benny!benny@irc PART #one :see you$"), "");
  EXPECT_NE(a.expect("^:benny!benny@irc PART #one :see you$"), "");
  b.say("JOIN #one");
  EXPECT_NE(a.expect("^:benny!benny@irc JOIN #one$"), "");
  b.say("QUIT :gone fishing");
  EXPECT_NE(b.expect("^ERROR :Closing Link: benny \\(Quit: gone fishing\\)$"), "");
  EXPECT_TRUE(b.closed_by_peer(10s));
  EXPECT_NE(a.expect("^:benny!benny@irc QUIT :Quit: gone fishing$"), "");
  std::vector<std::string> rest = a.until_pong("quit");
  EXPECT_FALSE(contains(rest, " QUIT ")) << "a second QUIT line";
}

TEST_P(IrcFrontEnd, EveryChannelErrorHasItsNumeric) {
  IrcServer server({"--threads", std::to_string(GetParam()), "--max-rooms", "2"});
  Irc a(server.irc);
  ASSERT_TRUE(a.registers("ada"));
  a.say("JOIN lobby");
  EXPECT_NE(a.expect(" 403 ada lobby :No such channel"), "");
  a.say("JOIN #bad!name");
  EXPECT_NE(a.expect(" 403 ada "), "");
  a.say("JOIN");
  EXPECT_NE(a.expect(" 461 ada JOIN :Not enough parameters"), "");
  a.say("PRIVMSG #elsewhere :hi");
  EXPECT_NE(a.expect(" 403 ada #elsewhere :No such channel"), "");
  a.say("PRIVMSG");
  EXPECT_NE(a.expect(" 411 ada :No recipient given \\(PRIVMSG\\)"), "");
  a.say("PRIVMSG #elsewhere");
  EXPECT_NE(a.expect(" 412 ada :No text to send"), "");
  a.say("PRIVMSG nobody :hi");
  EXPECT_NE(a.expect(" 401 ada nobody :No such nick/channel"), "");
  a.say("PART #elsewhere");
  EXPECT_NE(a.expect(" 442 ada #elsewhere :You're not on that channel"), "");
  a.say("TOPIC #elsewhere");
  EXPECT_NE(a.expect(" 403 ada #elsewhere "), "");
  a.say("JOIN #a,#b,#c");
  EXPECT_NE(a.expect(" 405 ada #c :You have joined too many channels"), "");
  a.until_pong("joined");  // the answers of #a and #b (from their rooms' owners)
  // NOTICE never gets an error back.
  a.say("NOTICE #elsewhere :quiet");
  std::vector<std::string> before = a.until_pong();
  EXPECT_TRUE(before.empty()) << before.front();
  // JOIN 0 leaves every channel.
  a.say("JOIN 0");
  EXPECT_NE(a.expect("^:ada!ada@irc PART #"), "");
  EXPECT_NE(a.expect("^:ada!ada@irc PART #"), "");
  a.say("MODE ada");
  EXPECT_NE(a.expect(" 221 ada \\+"), "");
  a.say("MODE someone");
  EXPECT_NE(a.expect(" 502 ada "), "");
  a.say("PRIVMSG a,b,c,d,e :five");
  EXPECT_NE(a.expect(" 407 ada e :Too many targets"), "");
  a.say("CAP FROB");
  EXPECT_NE(a.expect(" 410 ada FROB :Invalid CAP command"), "");
}

TEST_P(IrcFrontEnd, BadInputIsAnsweredAndTheConnectionGoesOn) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("ava"));
  ASSERT_TRUE(b.registers("bea"));
  ASSERT_TRUE(a.joins("#x"));
  ASSERT_TRUE(b.joins("#x"));
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.request({{"type", "join"}, {"room", "x"}}).value("type", ""), "joined");
  // An overlong line: 417, and the next line is read.
  a.send("PRIVMSG #x :" + std::string(600, 'a') + "\r\nPRIVMSG #x :after\r\n");
  EXPECT_NE(a.expect(" 417 ava :Input line was too long"), "");
  EXPECT_NE(b.expect("^:ava!ava@irc PRIVMSG #x :after$"), "");
  EXPECT_FALSE(contains(b.seen, "aaaaaaaaaa")) << "the overlong line's end was read as a line";
  // NUL and a lone CR are refused with a notice; empty lines are ignored; LF alone ends a line.
  a.send(std::string("PRIVMSG #x :nul\0here\r\n", 23));
  EXPECT_NE(a.expect("NOTICE ava :Line ignored"), "");
  a.send("PRIVMSG #x :lone\rcr\r\n\r\n\n   \r\nPRIVMSG #x :lf only\n");
  EXPECT_NE(a.expect("NOTICE ava :Line ignored"), "");
  EXPECT_NE(b.expect("^:ava!ava@irc PRIVMSG #x :lf only$"), "");
  // Latin-1 is relayed as UTF-8.
  a.send("PRIVMSG #x :caf\xe9\r\n");
  EXPECT_NE(b.expect("^:ava!ava@irc PRIVMSG #x :caf\xc3\xa9$"), "");
  json m;
  for (int i = 0; i < 10; ++i) {
    m = expect_type(nat, "message");
    if (m.value("text", "").rfind("caf", 0) == 0) break;
  }
  EXPECT_EQ(m.value("text", ""), "caf\xc3\xa9");
  // A stream of garbage: answered, never a crash; the others go on.
  static const char garbage[] = "\x01\x02\xff\xfe garbage ::: @@ \r\n:onlysource\r\n@only=tags\r\n";
  a.send(std::string(garbage, sizeof garbage - 1));
  std::vector<std::string> lines = a.until_pong();
  EXPECT_TRUE(contains(lines, " 421 ava __")) << "control characters echoed: " << (lines.empty() ? std::string("none") : lines.front());
  EXPECT_TRUE(contains(lines, "NOTICE ava :Line ignored: no command"));
  b.say("PRIVMSG #x :still here");
  EXPECT_NE(a.expect("^:bea!bea@irc PRIVMSG #x :still here$"), "");
}

TEST_P(IrcFrontEnd, PingTimeoutAndRegistrationTimeoutClose) {
  IrcServer server({"--threads", std::to_string(GetParam()), "--irc-ping-ms", "300", "--irc-ping-timeout-ms", "300",
                    "--irc-registration-timeout-ms", "300"});
  Irc idle(server.irc), lively(server.irc), never(server.irc);
  never.say("NICK never");
  ASSERT_TRUE(idle.registers("idle"));
  ASSERT_TRUE(lively.registers("lively"));
  EXPECT_NE(never.expect("^ERROR :Closing Link: never \\(Registration timed out\\)$"), "");
  EXPECT_TRUE(never.closed_by_peer(10s));
  // A silent member is pinged; one that answers stays, one that does not is closed.
  std::string ping = lively.expect("^PING :reactor.chat$");
  ASSERT_NE(ping, "");
  lively.say("PONG :reactor.chat");
  EXPECT_NE(idle.expect("^PING :"), "");
  EXPECT_NE(idle.expect("^ERROR :Closing Link: idle \\(Ping timeout: \\d+ seconds\\)$"), "");
  EXPECT_TRUE(idle.closed_by_peer(10s));
  lively.say("PING :still");
  EXPECT_NE(lively.expect("PONG reactor.chat :still$"), "");
  std::string stats = chattest::stats_of(server.process);
  EXPECT_EQ(chattest::counter(stats, "irc flood=\\d+ timeouts"), 2) << stats;
}

TEST_P(IrcFrontEnd, AFloodIsSlowedThenClosedAndNobodyElseWaits) {
  IrcServer server({"--threads", std::to_string(GetParam()), "--irc-flood-burst", "5", "--irc-flood-rate", "20",
                    "--irc-flood-backlog", "2048"});
  Irc fast(server.irc), calm(server.irc), flooder(server.irc);
  ASSERT_TRUE(fast.registers("fast"));
  ASSERT_TRUE(calm.registers("calm"));
  ASSERT_TRUE(flooder.registers("flooder"));
  ASSERT_TRUE(calm.joins("#f"));
  ASSERT_TRUE(flooder.joins("#f"));
  // 25 lines at once (under the backlog): every one answered, the last ones no sooner than the
  // rate allows: at most the burst (5) at once, then 20 a second: (25 - 5) / 20 = 1 s.
  auto start = std::chrono::steady_clock::now();
  std::string burst;
  for (int i = 0; i < 25; ++i) burst += "PING :p" + std::to_string(i) + "\r\n";
  fast.send(burst);
  EXPECT_NE(fast.expect("PONG reactor.chat :p24$"), "");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 800ms);
  EXPECT_EQ(std::count_if(fast.seen.begin(), fast.seen.end(), [](const std::string& l) { return l.find(" PONG ") != std::string::npos; }), 25);
  // Far more than the backlog at once: Excess Flood, and the room goes on for the others.
  std::string flood;
  for (int i = 0; i < 200; ++i) flood += "PRIVMSG #f :flood " + std::to_string(i) + "\r\n";
  flooder.send(flood);
  EXPECT_NE(flooder.expect("^ERROR :Closing Link: flooder \\(Excess Flood\\)$"), "");
  EXPECT_TRUE(flooder.closed_by_peer(10s));
  EXPECT_NE(calm.expect("^:flooder!flooder@irc QUIT :Excess Flood$"), "");
  calm.say("PING :calm");
  EXPECT_NE(calm.expect("PONG reactor.chat :calm$", 2s), "") << "the calm member waited";
  EXPECT_EQ(chattest::counter(chattest::stats_of(server.process), "irc flood"), 1);
}

TEST_P(IrcFrontEnd, PrivateMessagesWhoisAwayIsonUserhost) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("amy", "echo-message"));
  ASSERT_TRUE(b.registers("bo"));
  ASSERT_TRUE(b.joins("#pm"));
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.welcome.value("type", ""), "welcome");
  // To a nick, in any case: delivered to that member alone, echoed to a sender that asked.
  a.say("PRIVMSG BO :just for you");
  EXPECT_NE(b.expect("^:amy!amy@irc PRIVMSG bo :just for you$"), "");
  EXPECT_NE(a.expect("^:amy!amy@irc PRIVMSG bo :just for you$"), "");
  b.say("NOTICE amy :a notice back");
  EXPECT_NE(a.expect("^:bo!bo@irc NOTICE amy :a notice back$"), "");
  std::vector<std::string> bs = b.until_pong("no-echo");
  EXPECT_FALSE(contains(bs, "a notice back")) << "echoed without echo-message";
  // Away: said to whoever messages the member (not for a NOTICE), shown by WHOIS and WHO.
  b.say("AWAY :at lunch");
  EXPECT_NE(b.expect(" 306 bo :You have been marked as being away"), "");
  a.say("PRIVMSG bo :there?");
  EXPECT_NE(a.expect(" 301 amy bo :at lunch"), "");
  a.say("NOTICE bo :no answer wanted");
  std::vector<std::string> as = a.until_pong("notice");
  EXPECT_FALSE(contains(as, " 301 ")) << "an away reply to a NOTICE";
  a.say("WHOIS bo");
  EXPECT_NE(a.expect(" 311 amy bo ~bo irc \\* :bo$"), "");
  EXPECT_NE(a.expect(" 319 amy bo :@#pm$"), "");
  EXPECT_NE(a.expect(" 312 amy bo reactor.chat "), "");
  EXPECT_NE(a.expect(" 301 amy bo :at lunch$"), "");
  EXPECT_NE(a.expect(" 318 amy bo :End of /WHOIS list.$"), "");
  a.say("WHO bo");
  EXPECT_NE(a.expect(" 352 amy \\* ~bo irc reactor.chat bo G :0 bo$"), "");
  EXPECT_NE(a.expect(" 315 amy bo "), "");
  b.say("AWAY");
  EXPECT_NE(b.expect(" 305 bo :You are no longer marked as being away"), "");
  // Members of other front ends: known by WHOIS, but they take no messages to one member.
  a.say("WHOIS nat");
  EXPECT_NE(a.expect(" 311 amy nat nat native \\* :nat$"), "");
  EXPECT_NE(a.expect(" 318 amy nat "), "");
  a.say("PRIVMSG nat :hello?");
  EXPECT_NE(a.expect("NOTICE amy :nat is a native member: messages to one member reach IRC members only$"), "");
  a.say("WHOIS nobody");
  EXPECT_NE(a.expect(" 401 amy nobody :No such nick/channel$"), "");
  EXPECT_NE(a.expect(" 318 amy nobody "), "");
  a.say("PRIVMSG nobody,bo :two targets");
  EXPECT_NE(a.expect(" 401 amy nobody "), "");
  EXPECT_NE(b.expect(":amy!amy@irc PRIVMSG bo :two targets$"), "");
  a.say("ISON bo nat nobody");
  EXPECT_NE(a.expect(" 303 amy :bo nat$"), "");
  a.say("USERHOST nat bo");
  EXPECT_NE(a.expect(" 302 amy :nat=\\+nat@native bo=\\+~bo@irc$"), "");
}

TEST_P(IrcFrontEnd, OperatorsTopicsModesKicksAndInvitations) {
  IrcServer server(threads());
  Irc op(server.irc), bo(server.irc), cy(server.irc);
  ASSERT_TRUE(op.registers("op"));
  ASSERT_TRUE(bo.registers("bo"));
  ASSERT_TRUE(cy.registers("cy"));
  // The first to join an empty room is its operator.
  op.say("JOIN #club");
  EXPECT_NE(op.expect(" 353 op = #club :@op$"), "");
  bo.say("JOIN #club");
  EXPECT_NE(bo.expect(" 353 bo = #club :bo @op$"), "");  // by name
  Native nat(server.port, "nat");
  json joined = nat.request({{"type", "join"}, {"room", "club"}});
  ASSERT_EQ(joined.value("type", ""), "joined") << joined.dump();
  op.until_pong("seated");
  // Topics: +t by default, so only operators set them; everyone sees them, native members too.
  bo.say("TOPIC #club :mine now");
  EXPECT_NE(bo.expect(" 482 bo #club :You're not channel operator"), "");
  op.say("TOPIC #club :Welcome to the club");
  EXPECT_NE(bo.expect("^:op!op@irc TOPIC #club :Welcome to the club$"), "");
  EXPECT_NE(op.expect("^:op!op@irc TOPIC #club :Welcome to the club$"), "");
  json t = expect_type(nat, "topic");
  EXPECT_EQ(t.value("topic", ""), "Welcome to the club") << t.dump();
  EXPECT_EQ(t.value("user", ""), "op");
  bo.say("TOPIC #club");
  EXPECT_NE(bo.expect(" 332 bo #club :Welcome to the club$"), "");
  EXPECT_NE(bo.expect(" 333 bo #club op \\d+$"), "");
  Irc late(server.irc);
  ASSERT_TRUE(late.registers("late"));
  late.say("JOIN #club");
  EXPECT_NE(late.expect(" 332 late #club :Welcome to the club$"), "");
  Native nat2(server.port, "nat2");
  json j2 = nat2.request({{"type", "join"}, {"room", "club"}});
  EXPECT_EQ(j2.value("topic", ""), "Welcome to the club") << j2.dump();
  // Modes: only operators change them; +o/+v show in NAMES; unknown letters and missing parameters.
  bo.say("MODE #club +m");
  EXPECT_NE(bo.expect(" 482 bo #club "), "");
  op.say("MODE #club +mv bo");
  EXPECT_NE(bo.expect("^:op!op@irc MODE #club \\+mv bo$"), "");
  op.say("MODE #club");
  EXPECT_NE(op.expect(" 324 op #club \\+mnt$"), "");
  op.say("MODE #club +z");
  EXPECT_NE(op.expect(" 472 op z :is unknown mode char to me"), "");
  op.say("MODE #club +o nobody");
  EXPECT_NE(op.expect(" 401 op nobody :No such nick/channel$"), "");
  op.say("MODE #club +k");
  EXPECT_NE(op.expect(" 461 op MODE "), "");
  // +m: the voiced and the operators speak; others get 404, native members not_allowed.
  cy.say("JOIN #club");
  EXPECT_NE(cy.expect(" 366 cy #club "), "");
  cy.say("PRIVMSG #club :can I speak?");
  EXPECT_NE(cy.expect(" 404 cy #club :Cannot send to channel \\(\\+m\\)"), "");
  nat.send(json{{"type", "message"}, {"room", "club"}, {"text", "me?"}}.dump() + "\n");
  json refused = expect_type(nat, "error");
  EXPECT_EQ(refused.value("code", ""), "not_allowed") << refused.dump();
  bo.say("PRIVMSG #club :voiced, I speak");
  EXPECT_NE(cy.expect("^:bo!bo@irc PRIVMSG #club :voiced, I speak$"), "");
  op.say("NAMES #club");
  std::string names = op.expect(" 353 op = #club :");
  EXPECT_NE(names.find("@op"), std::string::npos) << names;
  EXPECT_NE(names.find("+bo"), std::string::npos) << names;
  op.say("MODE #club -m");
  EXPECT_NE(cy.expect("^:op!op@irc MODE #club -m$"), "");
  // KICK: operators only; the member removed and the room hear it; a native member removed gets a
  // leave with its own name.
  cy.say("KICK #club bo");
  EXPECT_NE(cy.expect(" 482 cy #club "), "");
  op.say("KICK #club cy :behave");
  EXPECT_NE(cy.expect("^:op!op@irc KICK #club cy :behave$"), "");
  EXPECT_NE(bo.expect("^:op!op@irc KICK #club cy :behave$"), "");
  cy.say("PRIVMSG #club :still here?");
  EXPECT_NE(cy.expect(" 404 cy #club :Cannot send to channel$"), "");
  json cy_left = expect_type(nat, "leave");
  EXPECT_EQ(cy_left.value("user", ""), "cy") << cy_left.dump();  // a kick is a leave, with who and why
  EXPECT_EQ(cy_left.value("reason", ""), "behave");
  op.say("KICK #club nat :native too");
  json gone = expect_type(nat, "leave");
  EXPECT_EQ(gone.value("user", ""), "nat") << gone.dump();
  EXPECT_EQ(gone.value("by", ""), "op");
  op.say("KICK #club nobody");
  EXPECT_NE(op.expect(" 401 op nobody "), "");
  // +i: joining needs an invitation; INVITE tells the member invited.
  op.say("MODE #club +i");
  EXPECT_NE(op.expect("MODE #club \\+i$"), "");
  cy.say("JOIN #club");
  EXPECT_NE(cy.expect(" 473 cy #club :Cannot join channel \\(\\+i\\)"), "");
  op.say("INVITE cy #club");
  EXPECT_NE(op.expect(" 341 op cy #club$"), "");
  EXPECT_NE(cy.expect("^:op!op@irc INVITE cy #club$"), "");
  op.say("INVITE bo #club");
  EXPECT_NE(op.expect(" 443 op bo #club :is already on channel"), "");
  cy.say("JOIN #club");
  EXPECT_NE(cy.expect(" 366 cy #club "), "");
  op.say("MODE #club -i");
  EXPECT_NE(op.expect("MODE #club -i$"), "");
  // +k and +l and +b.
  op.say("MODE #club +kl sesame 4");
  EXPECT_NE(op.expect("MODE #club \\+kl sesame 4$"), "");
  Irc dee(server.irc);
  ASSERT_TRUE(dee.registers("dee"));
  dee.say("JOIN #club");
  EXPECT_NE(dee.expect(" 475 dee #club :Cannot join channel \\(\\+k\\)"), "");
  dee.say("JOIN #club sesame");
  EXPECT_NE(dee.expect(" 471 dee #club :Cannot join channel \\(\\+l\\)"), "");  // op bo late cy: 4
  op.say("MODE #club -l+b dee");
  EXPECT_NE(op.expect("MODE #club -l\\+b dee!\\*@\\*$"), "");
  dee.say("JOIN #club sesame");
  EXPECT_NE(dee.expect(" 474 dee #club :Cannot join channel \\(\\+b\\)"), "");
  op.say("MODE #club b");
  EXPECT_NE(op.expect(" 367 op #club dee!\\*@\\*$"), "");
  EXPECT_NE(op.expect(" 368 op #club "), "");
  op.say("MODE #club -b dee!*@*");
  EXPECT_NE(op.expect("MODE #club -b dee!\\*@\\*$"), "");
  dee.say("JOIN #club sesame");
  EXPECT_NE(dee.expect(" 366 dee #club "), "");
}

TEST_P(IrcFrontEnd, ChathistoryInABatchAndPlaybackOnJoin) {
  IrcServer server({"--threads", std::to_string(GetParam()), "--irc-playback", "3"});
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.request({{"type", "join"}, {"room", "h"}}).value("type", ""), "joined");
  for (int i = 1; i <= 5; ++i) {
    nat.send(json{{"type", "message"}, {"room", "h"}, {"text", "m" + std::to_string(i)}}.dump() + "\n");
    ASSERT_EQ(expect_type(nat, "message").value("seq", 0), i);
  }
  // A client with server-time gets the room's last messages when it joins (--irc-playback 3), in
  // order, before what is said next.
  Irc timed(server.irc);
  ASSERT_TRUE(timed.registers("timed", "server-time"));
  timed.say("JOIN #h");
  EXPECT_NE(timed.expect(" 366 timed #h "), "");
  EXPECT_NE(timed.expect("^@time=\\S+ :nat!nat@native PRIVMSG #h :m3$"), "");
  EXPECT_NE(timed.expect("^@time=\\S+ :nat!nat@native PRIVMSG #h :m4$"), "");
  EXPECT_NE(timed.expect("^@time=\\S+ :nat!nat@native PRIVMSG #h :m5$"), "");
  nat.send(json{{"type", "message"}, {"room", "h"}, {"text", "m6"}}.dump() + "\n");
  EXPECT_NE(timed.expect("^@time=\\S+ :nat!nat@native PRIVMSG #h :m6$"), "");
  EXPECT_FALSE(contains(timed.seen, "PRIVMSG #h :m2$"));
  // A plain client gets none (it could not tell old from new).
  Irc plain(server.irc);
  ASSERT_TRUE(plain.registers("plain"));
  ASSERT_TRUE(plain.joins("#h"));
  EXPECT_FALSE(contains(plain.until_pong(), "PRIVMSG"));
  // A client with draft/chathistory asks for what it wants: CHATHISTORY answers in a batch.
  Irc hist(server.irc);
  ASSERT_TRUE(hist.registers("hist", "message-tags server-time batch draft/chathistory"));
  ASSERT_TRUE(hist.joins("#h"));
  EXPECT_FALSE(contains(hist.until_pong("joined"), "PRIVMSG")) << "playback to a client with chathistory";
  std::string isupport;
  for (const std::string& l : hist.seen) {
    if (l.find(" 005 ") != std::string::npos) isupport += l;
  }
  EXPECT_NE(isupport.find("CHATHISTORY=100"), std::string::npos) << isupport;
  EXPECT_NE(isupport.find("MSGREFTYPES=msgid"), std::string::npos) << isupport;
  auto batch = [&](const std::string& request) {
    hist.say(request);
    std::string start = hist.expect(" BATCH \\+\\S+ chathistory #h$");
    std::string id = start.substr(start.find('+') + 1, start.find(' ', start.find('+')) - start.find('+') - 1);
    std::vector<std::string> texts;
    for (int i = 0; i < 200; ++i) {
      auto l = hist.next();
      if (!l || *l == ":reactor.chat BATCH -" + id) break;
      EXPECT_EQ(l->rfind("@batch=" + id + ";time=", 0), 0u) << *l;
      texts.push_back(l->substr(l->rfind(':') + 1));
    }
    return texts;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(batch("CHATHISTORY LATEST #h * 3"), (V{"m4", "m5", "m6"}));
  EXPECT_EQ(batch("CHATHISTORY BEFORE #h msgid=h~3 10"), (V{"m1", "m2"}));
  EXPECT_EQ(batch("CHATHISTORY AFTER #h msgid=h~4 10"), (V{"m5", "m6"}));
  EXPECT_EQ(batch("CHATHISTORY BETWEEN #h msgid=h~1 msgid=h~5 10"), (V{"m2", "m3", "m4"}));
  EXPECT_EQ(batch("CHATHISTORY BETWEEN #h msgid=h~6 msgid=h~1 2"), (V{"m4", "m5"}));
  EXPECT_EQ(batch("CHATHISTORY AROUND #h msgid=h~3 3"), (V{"m2", "m3", "m4"}));
  EXPECT_EQ(batch("CHATHISTORY LATEST #h msgid=h~5 10"), (V{"m6"}));
  // The msgid of a message is the one its live copy carried.
  nat.send(json{{"type", "message"}, {"room", "h"}, {"text", "m7"}}.dump() + "\n");
  EXPECT_NE(hist.expect("msgid=h~7 :nat!nat@native PRIVMSG #h :m7$"), "");
  // Refusals: FAIL lines, the connection goes on.
  hist.say("CHATHISTORY LATEST #elsewhere * 10");
  EXPECT_NE(hist.expect("FAIL CHATHISTORY INVALID_TARGET LATEST #elsewhere "), "");
  hist.say("CHATHISTORY BEFORE #h timestamp=2026-01-01T00:00:00.000Z 10");
  EXPECT_NE(hist.expect("FAIL CHATHISTORY INVALID_PARAMS BEFORE "), "");
  hist.say("CHATHISTORY SIDEWAYS #h * 10");
  EXPECT_NE(hist.expect("FAIL CHATHISTORY INVALID_PARAMS SIDEWAYS "), "");
  hist.say("CHATHISTORY LATEST #h * 0");
  EXPECT_NE(hist.expect("FAIL CHATHISTORY INVALID_PARAMS LATEST "), "");
  hist.say("CHATHISTORY LATEST #h");
  EXPECT_NE(hist.expect("FAIL CHATHISTORY NEED_MORE_PARAMS "), "");
}

TEST_P(IrcFrontEnd, UserNameAndRealNameAreKeptAndShownByWhoAndWhois) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc), c(server.irc), d(server.irc);
  a.say("NICK alice");
  a.say("USER al 0 * :Alice Liddell");
  EXPECT_NE(a.expect(" 001 alice "), "");
  std::string isupport = a.expect(" 005 alice .*USERLEN=16");
  EXPECT_NE(isupport, "");
  ASSERT_TRUE(a.joins("#tea"));
  ASSERT_TRUE(b.registers("bea"));
  // A real name that is empty is no real name; a user name and real name in Latin-1 are kept,
  // as UTF-8, as the rest of a line in Latin-1 is.
  c.say("NICK cat");
  c.say("USER cat 0 * :");
  EXPECT_NE(c.expect(" 461 cat USER :Not enough parameters"), "");
  c.say("USER cat 0 *");
  EXPECT_NE(c.expect(" 461 cat USER "), "");
  d.say("NICK dee");
  d.send("USER d\xe9 0 * :R\xe9" "al Name\r\n");
  EXPECT_NE(d.expect(" 001 dee "), "");
  b.say("WHOIS alice");
  EXPECT_NE(b.expect("^:reactor.chat 311 bea alice ~al irc \\* :Alice Liddell$"), "");
  EXPECT_NE(b.expect(" 318 bea alice "), "");
  b.say("WHOIS dee");
  EXPECT_NE(b.expect("^:reactor.chat 311 bea dee ~d\xc3\xa9 irc \\* :R\xc3\xa9" "al Name$"), "");
  b.say("WHO alice");
  EXPECT_NE(b.expect("^:reactor.chat 352 bea \\* ~al irc reactor.chat alice H :0 Alice Liddell$"), "");
  b.say("WHO #tea");
  EXPECT_NE(b.expect("^:reactor.chat 352 bea #tea ~al irc reactor.chat alice H@ :0 Alice Liddell$"), "");
  EXPECT_NE(b.expect(" 315 bea #tea "), "");
  // A nick change keeps them; members of other front ends are shown by their name.
  a.say("NICK alicia");
  EXPECT_NE(a.expect(" NICK :alicia$"), "");
  b.say("WHOIS alicia");
  EXPECT_NE(b.expect(" 311 bea alicia ~al irc \\* :Alice Liddell$"), "");
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.welcome.value("type", ""), "welcome");
  b.say("WHO nat");
  EXPECT_NE(b.expect(" 352 bea \\* nat native reactor.chat nat H :0 nat$"), "");
}

TEST_P(IrcFrontEnd, AnAwayMemberIsGoneInWhoAndMinusInUserhost) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("ann"));
  ASSERT_TRUE(b.registers("bob"));
  ASSERT_TRUE(a.joins("#desk"));
  ASSERT_TRUE(b.joins("#desk"));
  b.say("AWAY :out");
  EXPECT_NE(b.expect(" 306 bob "), "");
  a.say("WHO #desk");
  EXPECT_NE(a.expect(" 352 ann #desk ~ann irc reactor.chat ann H@ :0 ann$"), "");
  EXPECT_NE(a.expect(" 352 ann #desk ~bob irc reactor.chat bob G :0 bob$"), "");
  a.say("USERHOST bob ann");
  EXPECT_NE(a.expect(" 302 ann :bob=-~bob@irc ann=\\+~ann@irc$"), "");
  b.say("AWAY");
  EXPECT_NE(b.expect(" 305 bob "), "");
  a.say("WHO #desk");
  EXPECT_NE(a.expect(" 352 ann #desk ~bob irc reactor.chat bob H :0 bob$"), "");
  a.say("USERHOST bob");
  EXPECT_NE(a.expect(" 302 ann :bob=\\+~bob@irc$"), "");
}

TEST_P(IrcFrontEnd, WhowasRemembersRecentNicksWithItsCount) {
  IrcServer server(threads());
  Irc a(server.irc);
  ASSERT_TRUE(a.registers("asker"));
  for (const char* realname : {"First Gone", "Second Gone"}) {
    Irc g(server.irc);
    g.say("NICK gone");
    g.say(std::string("USER g 0 * :") + realname);
    ASSERT_NE(g.expect(" 001 gone "), "");
    g.say("QUIT");
    ASSERT_TRUE(g.closed_by_peer(10s));
  }
  // Newest first, each with when it went (312).
  a.say("WHOWAS gone");
  EXPECT_NE(a.expect("^:reactor.chat 314 asker gone ~g irc \\* :Second Gone$"), "");
  EXPECT_NE(a.expect("^:reactor.chat 312 asker gone reactor.chat :"), "");
  EXPECT_NE(a.expect("^:reactor.chat 314 asker gone ~g irc \\* :First Gone$"), "");
  EXPECT_NE(a.expect(" 369 asker gone :End of WHOWAS$"), "");
  // The count: at most that many; zero, negative or none: all.
  auto entries = [&a](const std::string& line) {
    size_t from = a.seen.size();
    a.say(line);
    EXPECT_NE(a.expect(" 369 asker "), "") << line;
    size_t n = 0;
    for (size_t i = from; i < a.seen.size(); ++i) n += a.seen[i].find(" 314 asker ") != std::string::npos;
    return n;
  };
  EXPECT_EQ(entries("WHOWAS gone 1"), 1u);
  EXPECT_EQ(entries("WHOWAS gone 0"), 2u);
  EXPECT_EQ(entries("WHOWAS gone -1"), 2u);
  EXPECT_EQ(entries("WHOWAS GONE"), 2u);
  a.say("WHOWAS never");
  EXPECT_NE(a.expect(" 406 asker never :There was no such nickname$"), "");
  EXPECT_NE(a.expect(" 369 asker never "), "");
  a.say("WHOWAS");
  EXPECT_NE(a.expect(" 431 asker :No nickname given$"), "");
}

TEST_P(IrcFrontEnd, LusersModeQueryWhoisChannelsAndMissingChannels) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("ops"));
  EXPECT_NE(a.seen.size(), 0u);
  EXPECT_TRUE(contains(a.seen, " 265 ops 1 1 :Current local users 1, max 1$"));
  EXPECT_TRUE(contains(a.seen, " 266 ops 1 1 :Current global users 1, max 1$"));
  ASSERT_TRUE(b.registers("guest"));
  ASSERT_TRUE(a.joins("#room"));
  ASSERT_TRUE(b.joins("#room"));
  int64_t before = std::time(nullptr);
  a.say("MODE #room");
  EXPECT_NE(a.expect(" 324 ops #room \\+nt$"), "");
  std::string created = a.expect(" 329 ops #room \\d+$");
  ASSERT_NE(created, "");
  int64_t at = std::stoll(created.substr(created.rfind(' ') + 1));
  EXPECT_LE(at, before);
  EXPECT_GT(at, before - 60);
  a.say("LUSERS");
  EXPECT_NE(a.expect(" 265 ops 2 2 :"), "");
  EXPECT_NE(a.expect(" 266 ops 2 2 :"), "");
  b.say("WHOIS ops");
  EXPECT_NE(b.expect(" 319 guest ops :@#room$"), "");
  a.say("WHOIS guest");
  EXPECT_NE(a.expect(" 319 ops guest :#room$"), "");
  // A channel that does not exist: 403; one that does but the asker is not on: 442.
  a.say("KICK #nowhere guest");
  EXPECT_NE(a.expect(" 403 ops #nowhere :No such channel$"), "");
  a.say("TOPIC #nowhere");
  EXPECT_NE(a.expect(" 403 ops #nowhere :No such channel$"), "");
  a.say("TOPIC #nowhere :hello");
  EXPECT_NE(a.expect(" 403 ops #nowhere :No such channel$"), "");
  a.say("MODE #nowhere");
  EXPECT_NE(a.expect(" 403 ops #nowhere :No such channel$"), "");
  Irc c(server.irc);
  ASSERT_TRUE(c.registers("out"));
  c.say("TOPIC #room");
  EXPECT_NE(c.expect(" 442 out #room :You're not on that channel$"), "");
  c.say("KICK #room guest");
  EXPECT_NE(c.expect(" 442 out #room "), "");
}

TEST_P(IrcFrontEnd, InvalidModeParametersGetTheirOwnNumerics) {
  IrcServer server(threads());
  Irc a(server.irc);
  ASSERT_TRUE(a.registers("ops"));
  ASSERT_TRUE(a.joins("#m"));
  a.say("MODE #m +k :");
  EXPECT_NE(a.expect("^:reactor.chat 525 ops #m :Key is not well-formed$"), "");
  a.say("MODE #m +k :two words");
  EXPECT_NE(a.expect(" 525 ops #m :"), "");
  for (const char* bad : {"0", "-3", "many"}) {
    a.say(std::string("MODE #m +l ") + bad);
    EXPECT_NE(a.expect(std::string("^:reactor.chat 696 ops #m l ") + bad + " :"), "") << bad;
  }
  a.say("MODE #m +l :");
  EXPECT_NE(a.expect(" 696 ops #m l \\* :"), "");
  std::vector<std::string> rest = a.until_pong("modes");
  EXPECT_FALSE(contains(rest, " 461 ")) << "461 for a parameter that was given";
  EXPECT_FALSE(contains(rest, " MODE #m ")) << "a bad parameter applied";
  a.say("MODE #m");
  EXPECT_NE(a.expect(" 324 ops #m \\+nt$"), "");
  a.say("MODE #m +l 5");
  EXPECT_NE(a.expect("MODE #m \\+l 5$"), "");
}

TEST_P(IrcFrontEnd, MultiPrefixUserhostInNamesInfoIsupportAndInvitationsPastTheLimit) {
  IrcServer server(threads());
  Irc ops(server.irc), full(server.irc), plain(server.irc), late(server.irc);
  ASSERT_TRUE(ops.registers("ops"));
  // ISUPPORT: at most 12 tokens a line (15 parameters with the nick and the trailing text).
  size_t isupport_lines = 0;
  for (const std::string& line : ops.seen) {
    if (line.find(" 005 ops ") == std::string::npos) continue;
    ++isupport_lines;
    std::string tokens = line.substr(line.find(" 005 ops ") + 9);
    tokens = tokens.substr(0, tokens.find(" :"));
    EXPECT_LE(std::count(tokens.begin(), tokens.end(), ' ') + 1, 12) << line;
  }
  EXPECT_GE(isupport_lines, 2u);
  ASSERT_TRUE(full.registers("full", "multi-prefix userhost-in-names"));
  full.say("CAP LIST");
  EXPECT_NE(full.expect(" CAP full LIST :multi-prefix userhost-in-names$"), "");
  ASSERT_TRUE(plain.registers("plain"));
  ASSERT_TRUE(late.registers("late"));
  ASSERT_TRUE(ops.joins("#p"));
  ops.say("MODE #p +v ops");
  EXPECT_NE(ops.expect("MODE #p \\+v ops$"), "");
  // A JOIN's names with userhost-in-names and multi-prefix; NAMES and WHO the same.
  full.say("JOIN #p");
  EXPECT_NE(full.expect(" 353 full = #p :(@\\+ops!~ops@irc full!~full@irc|full!~full@irc @\\+ops!~ops@irc)$"), "");
  full.say("NAMES #p");
  EXPECT_NE(full.expect(" 353 full = #p :.*@\\+ops!~ops@irc"), "");
  full.say("WHO #p");
  EXPECT_NE(full.expect(" 352 full #p ~ops irc reactor.chat ops H@\\+ :0 ops$"), "");
  full.say("WHOIS ops");
  EXPECT_NE(full.expect(" 319 full ops :@\\+#p$"), "");
  // Without them: the highest prefix and the nick alone.
  plain.say("NAMES #p");
  std::string names = plain.expect(" 353 plain = #p :");
  EXPECT_NE(names.find("@ops"), std::string::npos) << names;
  EXPECT_EQ(names.find("@+"), std::string::npos) << names;
  EXPECT_EQ(names.find("!"), std::string::npos) << names;
  plain.say("WHO #p");
  EXPECT_NE(plain.expect(" 352 plain #p ~ops irc reactor.chat ops H@ :0 ops$"), "");
  // WHO with a mask: every member whose nick matches, whatever its case.
  plain.say("WHO O*");
  EXPECT_NE(plain.expect("^:reactor.chat 352 plain \\* ~ops irc reactor.chat ops H :0 ops$"), "");
  EXPECT_NE(plain.expect("^:reactor.chat 315 plain O\\* :End of /WHO list.$"), "");
  size_t from = plain.seen.size();
  plain.say("WHO *");
  EXPECT_NE(plain.expect(" 315 plain \\* :"), "");
  std::vector<std::string> all(plain.seen.begin() + static_cast<std::ptrdiff_t>(from), plain.seen.end());
  for (const char* nick : {"ops", "full", "plain", "late"}) {
    EXPECT_TRUE(contains(all, std::string(" 352 plain \\* ~") + nick + " irc reactor.chat " + nick + " H ")) << nick;
  }
  // +o for a nick nobody holds: 401; for one not in the room: 441.
  ops.say("MODE #p +o nobody");
  EXPECT_NE(ops.expect("^:reactor.chat 401 ops nobody :No such nick/channel$"), "");
  ops.say("MODE #p +o plain");
  EXPECT_NE(ops.expect("^:reactor.chat 441 ops plain #p :"), "");
  // An invitation lets a member past +l.
  ops.say("MODE #p +l 2");
  EXPECT_NE(ops.expect("MODE #p \\+l 2$"), "");
  late.say("JOIN #p");
  EXPECT_NE(late.expect(" 471 late #p :"), "");
  ops.say("INVITE late #p");
  EXPECT_NE(ops.expect(" 341 ops late #p$"), "");
  late.say("JOIN #p");
  EXPECT_NE(late.expect(" 366 late #p "), "");
  late.say("INFO");
  EXPECT_NE(late.expect(" 371 late :"), "");
  EXPECT_NE(late.expect("^:reactor.chat 374 late :End of INFO list$"), "");
}

TEST_P(IrcFrontEnd, MinusNLetsOutsidersSpeakAndSecretChannelsAreNotListed) {
  IrcServer server(threads());
  Irc a(server.irc), o(server.irc);
  ASSERT_TRUE(a.registers("ops"));
  ASSERT_TRUE(o.registers("outsider"));
  ASSERT_TRUE(a.joins("#open"));
  o.say("PRIVMSG #open :may I?");
  EXPECT_NE(o.expect(" 404 outsider #open :Cannot send to channel$"), "");
  a.say("MODE #open -n");
  EXPECT_NE(a.expect("^:ops!ops@irc MODE #open -n$"), "");
  a.say("MODE #open");
  EXPECT_NE(a.expect(" 324 ops #open \\+t$"), "");
  o.say("PRIVMSG #open :from outside");
  EXPECT_NE(a.expect("^:outsider!outsider@irc PRIVMSG #open :from outside$"), "");
  o.say("NOTICE #open :a notice from outside");
  EXPECT_NE(a.expect("^:outsider!outsider@irc NOTICE #open :a notice from outside$"), "");
  a.say("MODE #open +n");
  EXPECT_NE(a.expect("MODE #open \\+n$"), "");
  o.say("PRIVMSG #open :again?");
  EXPECT_NE(o.expect(" 404 outsider #open "), "");
  o.say("NOTICE #open :quietly");  // a NOTICE is never answered
  std::vector<std::string> quiet = o.until_pong("notice");
  EXPECT_FALSE(contains(quiet, " 404 ")) << "a NOTICE answered";
  // +s: listed to members only.
  a.say("MODE #open +s");
  EXPECT_NE(a.expect("MODE #open \\+s$"), "");
  o.say("LIST");
  std::string end = o.expect(" 323 outsider ");
  EXPECT_NE(end, "");
  EXPECT_FALSE(contains(o.seen, " 322 outsider #open ")) << "a secret channel listed to an outsider";
  a.say("LIST");
  EXPECT_NE(a.expect(" 322 ops #open 1 :"), "");
  a.say("MODE #open");
  EXPECT_NE(a.expect(" 324 ops #open \\+nst$"), "");
}

TEST_P(IrcFrontEnd, NoRelayedLinePassesFiveHundredTwelveBytes) {
  IrcServer server({"--threads", std::to_string(GetParam()), "--irc-flood-rate", "0"});
  std::string n1(32, 'a'), n2(32, 'b'), room = "#" + std::string(64, 'r');
  Irc a(server.irc), b(server.irc), c(server.irc);
  ASSERT_TRUE(a.registers(n1, "echo-message"));
  ASSERT_TRUE(b.registers(n2));
  ASSERT_TRUE(c.registers("cee", "message-tags"));
  ASSERT_TRUE(a.joins(room));
  ASSERT_TRUE(b.joins(room));
  ASSERT_TRUE(c.joins(room));
  auto fill = [](const std::string& head, const std::string& unit) {
    std::string line = head;
    while (line.size() + unit.size() + 2 <= 512) line += unit;
    return line;
  };
  for (const std::string& target : {room, n2}) {
    a.say(fill("PRIVMSG " + target + " :", "x"));
    a.say(fill("NOTICE " + target + " :", "y"));
    a.send(fill("PRIVMSG " + target + " :", "\xe9") + "\r\n");  // Latin-1: twice as long as UTF-8
  }
  a.say(fill("TOPIC " + room + " :", "t"));
  a.say(fill("PART " + room + " :", "p"));
  for (Irc* x : {&a, &b, &c}) {
    std::vector<std::string> lines = x->until_pong("len");
    size_t long_ones = 0;
    for (const std::string& l : lines) {
      size_t body = l[0] == '@' ? l.size() - l.find(' ') - 1 : l.size();
      EXPECT_LE(body + 2, 512u) << l.substr(0, 80);
      if (body + 2 > 400) ++long_ones;
    }
    EXPECT_GE(long_ones, 3u);
  }
}

TEST_P(IrcFrontEnd, AChannelNoticeStaysANotice) {
  IrcServer server(threads());
  Irc a(server.irc), b(server.irc);
  ASSERT_TRUE(a.registers("ann"));
  ASSERT_TRUE(b.registers("bob", "echo-message"));
  ASSERT_TRUE(a.joins("#n"));
  ASSERT_TRUE(b.joins("#n"));
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.request({{"type", "join"}, {"room", "n"}}).value("type", ""), "joined");
  b.say("NOTICE #n :heads up");
  EXPECT_NE(a.expect("^:bob!bob@irc NOTICE #n :heads up$"), "");
  EXPECT_NE(b.expect("^:bob!bob@irc NOTICE #n :heads up$"), "");
  json m = expect_type(nat, "message");
  EXPECT_EQ(m.value("text", ""), "heads up") << m.dump();
  b.say("PRIVMSG #n :plain");
  EXPECT_NE(a.expect("^:bob!bob@irc PRIVMSG #n :plain$"), "");
}

// An operators file (--irc-operators-file) with one operator, "boss", whose password is "open sesame"
// (the hash made with: openssl passwd -6 -salt reactorchat 'open sesame').
std::string operators_file(const std::string& contents) {
  char dir[] = "/tmp/irc-oper-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return {};
  std::string file = std::string(dir) + "/operators";
  FILE* f = std::fopen(file.c_str(), "w");
  if (f == nullptr) return {};
  std::fputs(contents.c_str(), f);
  std::fclose(f);
  return file;
}
const char* kBoss =
    "# name hash\n"
    "boss $6$reactorchat$FcM.ArSXmCe2uLGRk.RNPXD4wKcA1wMzkE9eD8z2Gtw1Ikby6BpcI3EI6vHHJo/CJpKea5d2yBrn0iW0MEBbz1\n";

TEST_P(IrcFrontEnd, ServerOperatorsFromTheConfigurationKillAndWallops) {
  std::string file = operators_file(kBoss);
  ASSERT_NE(file, "");
  IrcServer server({"--threads", std::to_string(GetParam()), "--irc-operators-file", file});
  Irc a(server.irc), b(server.irc), w(server.irc);
  ASSERT_TRUE(a.registers("admin"));
  ASSERT_TRUE(b.registers("victim"));
  ASSERT_TRUE(w.registers("watcher"));
  ASSERT_TRUE(a.joins("#ops"));
  ASSERT_TRUE(b.joins("#ops"));
  ASSERT_TRUE(w.joins("#ops"));
  // Not yet an operator: KILL and WALLOPS are refused.
  a.say("KILL victim :out");
  EXPECT_NE(a.expect(" 481 admin :Permission Denied"), "");
  a.say("WALLOPS :hear me");
  EXPECT_NE(a.expect(" 481 admin "), "");
  a.say("OPER boss wrong");
  EXPECT_NE(a.expect("^:reactor.chat 464 admin :Password incorrect$"), "");
  a.say("OPER nobody open sesame");
  EXPECT_NE(a.expect(" 464 admin "), "");
  a.say("OPER boss");
  EXPECT_NE(a.expect(" 461 admin OPER "), "");
  a.say("OPER boss :open sesame");
  EXPECT_NE(a.expect("^:reactor.chat 381 admin :You are now an IRC operator$"), "");
  EXPECT_NE(a.expect("^:admin!admin@irc MODE admin :\\+o$"), "");
  a.say("MODE admin");
  EXPECT_NE(a.expect(" 221 admin \\+o$"), "");
  // Shown as one: WHO's '*', WHOIS's 313, USERHOST's '*'.
  w.say("WHO #ops");
  EXPECT_NE(w.expect(" 352 watcher #ops ~admin irc reactor.chat admin H\\*@ :0 admin$"), "");
  w.say("WHOIS admin");
  EXPECT_NE(w.expect(" 313 watcher admin :is an IRC operator$"), "");
  w.say("USERHOST admin");
  EXPECT_NE(w.expect(" 302 watcher :admin\\*=\\+~admin@irc$"), "");
  // WALLOPS reach operators and members with +w.
  w.say("MODE watcher +w");
  EXPECT_NE(w.expect("^:watcher!watcher@irc MODE watcher :\\+w$"), "");
  a.say("WALLOPS :the server restarts at noon");
  EXPECT_NE(w.expect("^:admin!admin@irc WALLOPS :the server restarts at noon$"), "");
  EXPECT_NE(a.expect("^:admin!admin@irc WALLOPS :the server restarts at noon$"), "");
  std::vector<std::string> seen_by_b = b.until_pong("wallops");
  EXPECT_FALSE(contains(seen_by_b, "WALLOPS")) << "a WALLOPS to a member without +w";
  // KILL: the member is told and closed; its channels hear a QUIT.
  a.say("KILL nobody :x");
  EXPECT_NE(a.expect(" 401 admin nobody "), "");
  a.say("KILL victim :spamming");
  EXPECT_NE(b.expect("^ERROR :Closing Link: victim \\(Killed \\(admin \\(spamming\\)\\)\\)$"), "");
  EXPECT_TRUE(b.closed_by_peer(10s));
  EXPECT_NE(w.expect("^:victim!victim@irc QUIT :Killed \\(admin \\(spamming\\)\\)$"), "");
  // A native member can be killed too.
  Native nat(server.port, "nat");
  ASSERT_EQ(nat.welcome.value("type", ""), "welcome");
  a.say("KILL nat :bye");
  EXPECT_TRUE(nat.closed_by_peer(10s));
  // -o gives it up.
  a.say("MODE admin -o");
  EXPECT_NE(a.expect("^:admin!admin@irc MODE admin :-o$"), "");
  a.say("KILL watcher :x");
  EXPECT_NE(a.expect(" 481 admin "), "");
}

TEST(IrcOperators, WithoutOperatorsOperAnswers491AndAPlainPasswordIsRefused) {
  IrcServer server;
  Irc a(server.irc);
  ASSERT_TRUE(a.registers("someone"));
  a.say("OPER boss :open sesame");
  EXPECT_NE(a.expect("^:reactor.chat 491 someone :No O-lines for your host$"), "");
  // Three failures close the connection.
  std::string file = operators_file(kBoss);
  IrcServer with({"--irc-operators-file", file});
  Irc b(with.irc);
  ASSERT_TRUE(b.registers("guesser"));
  for (int i = 0; i < 3; ++i) b.say("OPER boss guess" + std::to_string(i));
  EXPECT_NE(b.expect("^ERROR :Closing Link: guesser \\(Too many failed OPER attempts\\)$"), "");
  EXPECT_TRUE(b.closed_by_peer(10s));
  // A file with a password in plain text is refused at start.
  Process bad(chattest::chat_args({"--irc-operators-file", operators_file("boss opensesame\n")}));
  auto status = bad.wait(20s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(bad.err().find("crypt(3) hash"), std::string::npos) << bad.err();
}

// A NOTICE travels through Redis as a NOTICE: members on another node see one too.
TEST(IrcRedis, AChannelNoticeStaysANoticeAcrossNodes) {
  redistest::RedisServer redis;
  IrcServer one({"--redis", redis.url()}), two({"--redis", redis.url()});
  Irc a(one.irc), b(two.irc);
  ASSERT_TRUE(a.registers("ann"));
  ASSERT_TRUE(b.registers("bob"));
  ASSERT_TRUE(a.joins("#n"));
  ASSERT_TRUE(b.joins("#n"));
  b.say("NOTICE #n :across nodes");
  EXPECT_NE(a.expect("^:bob!bob@irc NOTICE #n :across nodes$"), "");
  b.say("PRIVMSG #n :and a message");
  EXPECT_NE(a.expect("^:bob!bob@irc PRIVMSG #n :and a message$"), "");
}

TEST(IrcPassword, AServerPasswordIsNeededToRegister) {
  char dir[] = "/tmp/irc-pass-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string file = std::string(dir) + "/password";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("open sesame\n", f);
  std::fclose(f);
  IrcServer server({"--irc-password-file", file});
  Irc none(server.irc), wrong(server.irc), right(server.irc);
  none.say("NICK none");
  none.say("USER none 0 * :none");
  EXPECT_NE(none.expect(" 464 none :Password incorrect$"), "");
  EXPECT_NE(none.expect("^ERROR :Closing Link: none \\(Bad password\\)$"), "");
  EXPECT_TRUE(none.closed_by_peer(10s));
  wrong.say("PASS :open says me");
  wrong.say("NICK wrong");
  wrong.say("USER wrong 0 * :wrong");
  EXPECT_NE(wrong.expect(" 464 wrong "), "");
  right.say("PASS :open sesame");
  EXPECT_TRUE(right.registers("right"));
  right.say("PASS :open sesame");
  EXPECT_NE(right.expect(" 462 right "), "");
  // The name of a connection refused is free.
  Native again(server.port, "none");
  EXPECT_EQ(again.welcome.value("type", ""), "welcome") << again.welcome.dump();
  std::remove(file.c_str());
  ::rmdir(dir);
  Process bad({CHAT_SERVER_BIN, "--port", "0", "--no-http", "--irc-port", "0", "--irc-password-file", "/nonexistent/pw"});
  auto status = bad.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(bad.err().find("--irc-password-file"), std::string::npos) << bad.err();
}

// Playback is once per thing not seen: the store keeps, per nick and channel, the last number the
// nick was sent (also across a restart, with the sqlite store), and it says it is history: a
// NOTICE, then a chathistory batch where batch is negotiated, each line with its time.
TEST_P(IrcFrontEnd, PlaybackComesOnceAndSaysItIsHistory) {
  char dir[] = "/tmp/irc-once-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::vector<std::string> args = {"--threads", std::to_string(GetParam()), "--store", "sqlite", "--data-dir", dir,
                                    "--irc-playback", "5"};
  auto say = [](Native& nat, const std::string& text) {
    nat.send(json{{"type", "message"}, {"room", "p"}, {"text", text}}.dump() + "\n");
    return expect_type(nat, "message").value("text", "") == text;
  };
  {
    IrcServer server(args);
    Native nat(server.port, "nat");
    ASSERT_EQ(nat.request({{"type", "join"}, {"room", "p"}}).value("type", ""), "joined");
    for (const char* text : {"m1", "m2", "m3"}) ASSERT_TRUE(say(nat, text));
    Irc irssi(server.irc);
    ASSERT_TRUE(irssi.registers("irssi", "server-time batch"));
    irssi.say("JOIN #p");
    EXPECT_NE(irssi.expect(" 366 irssi #p "), "");
    EXPECT_NE(irssi.expect("^:reactor.chat NOTICE #p :Playback: the last 3 messages said here before you joined "
                           "\\(history, not live\\)$"),
              "");
    std::string open = irssi.expect("^:reactor.chat BATCH \\+(\\S+) chathistory #p$");
    ASSERT_NE(open, "");
    std::string id = open.substr(open.find('+') + 1, open.find(' ', open.find('+')) - open.find('+') - 1);
    EXPECT_NE(irssi.expect("^@batch=" + id + ";time=\\S+ :nat!nat@native PRIVMSG #p :m1$"), "");
    EXPECT_NE(irssi.expect("^@batch=" + id + ";time=\\S+ :nat!nat@native PRIVMSG #p :m3$"), "");
    EXPECT_NE(irssi.expect("^:reactor.chat BATCH -" + id + "$"), "");
    // Seen: leaving and coming back plays nothing again.
    irssi.say("PART #p");
    EXPECT_NE(irssi.expect(" PART #p"), "");
    ASSERT_TRUE(irssi.joins("#p"));
    std::vector<std::string> again = irssi.until_pong("again");
    EXPECT_FALSE(contains(again, "PRIVMSG|Playback")) << "played back twice";
    irssi.say("QUIT");
    EXPECT_TRUE(irssi.closed_by_peer(10s));
    ASSERT_TRUE(say(nat, "m4"));
    auto status = server.process.signal_and_wait(SIGTERM, 20s);
    ASSERT_TRUE(status) << server.process.err();
  }
  // After a restart: only what came after.
  IrcServer server(args);
  Irc irssi(server.irc);
  ASSERT_TRUE(irssi.registers("irssi", "server-time"));
  irssi.say("JOIN #p");
  EXPECT_NE(irssi.expect("^:reactor.chat NOTICE #p :Playback: the last 1 message said"), "");
  EXPECT_NE(irssi.expect("^@time=\\S+ :nat!nat@native PRIVMSG #p :m4$"), "");
  std::vector<std::string> rest = irssi.until_pong("restart");
  EXPECT_FALSE(contains(irssi.seen, "PRIVMSG #p :m[123]$")) << "played back again after a restart";
  EXPECT_FALSE(contains(rest, "BATCH")) << "a batch without batch negotiated";
  // Another nick has seen nothing: it gets the last ones.
  Irc other(server.irc);
  ASSERT_TRUE(other.registers("other", "server-time"));
  other.say("JOIN #p");
  EXPECT_NE(other.expect("^:reactor.chat NOTICE #p :Playback: the last 4 messages"), "");
  EXPECT_NE(other.expect("^@time=\\S+ :nat!nat@native PRIVMSG #p :m1$"), "");
  EXPECT_NE(other.expect("^@time=\\S+ :nat!nat@native PRIVMSG #p :m4$"), "");
  std::filesystem::remove_all(dir);
}

TEST_P(IrcFrontEnd, PlaybackMeetsTheLiveMessagesWithoutGapOrDuplicate) {
  // With the sqlite store the playback is read on the store's thread: live messages keep coming
  // meanwhile, and must wait for it.
  char dir[] = "/tmp/irc-playback-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  {
    IrcServer server({"--threads", std::to_string(GetParam()), "--store", "sqlite", "--data-dir", dir,
                      "--irc-playback", "5"});
    Native nat(server.port, "nat");
    ASSERT_EQ(nat.request({{"type", "join"}, {"room", "h"}}).value("type", ""), "joined");
    for (int round = 0; round < 5; ++round) {
      Irc busy(server.irc);
      std::string nick = "busy" + std::to_string(round);
      ASSERT_TRUE(busy.registers(nick, "message-tags server-time"));
      std::string burst;
      for (int i = 0; i < 200; ++i) {
        burst += json{{"type", "message"}, {"room", "h"}, {"text", "r" + std::to_string(round) + "-" + std::to_string(i)}}.dump() + "\n";
      }
      busy.say("JOIN #h");
      nat.send(burst);
      std::string last = "r" + std::to_string(round) + "-199";
      ASSERT_NE(busy.expect("PRIVMSG #h :" + last + "$"), "");
      std::vector<uint64_t> seqs;
      std::regex msgid(R"(msgid=h~(\d+) )");
      for (const std::string& l : busy.seen) {
        std::smatch sm;
        if (l.find(" PRIVMSG #h ") != std::string::npos && std::regex_search(l, sm, msgid)) seqs.push_back(std::stoull(sm[1]));
      }
      ASSERT_GE(seqs.size(), 5u) << "the playback";
      for (size_t i = 1; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], seqs[i - 1] + 1) << "round " << round << " at " << i;
      for (int i = 0; i < 200; ++i) ASSERT_EQ(expect_type(nat, "message").value("text", ""), "r" + std::to_string(round) + "-" + std::to_string(i));
    }
  }
  std::filesystem::remove_all(dir);
}

// SIGTERM drains (--drain-ms): each member is told in turn and closed; with --drain-ms 0 all are
// closed at once, after what was queued. Either way a member in a room gets `goodbye` (a pattern),
// its connection closes, and the server exits 0.
void sigterm_says(const std::string& drain_ms, const std::string& goodbye) {
  IrcServer server({"--threads", "2", "--drain-ms", drain_ms});
  Irc a(server.irc);
  ASSERT_TRUE(a.registers("leaving"));
  ASSERT_TRUE(a.joins("#bye"));
  ::kill(server.process.pid(), SIGTERM);
  EXPECT_NE(a.expect(goodbye), "");
  EXPECT_TRUE(a.closed_by_peer(10s));
  ::shutdown(a.fd(), SHUT_WR);  // the server's lingering close ends when its peer's does
  auto status = server.process.wait(20s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << server.process.err();
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(IrcShutdown, SigtermSaysSoToIrcMembersAndExitsZero) {
  sigterm_says("500", "^ERROR :Closing Link: \\(Server draining: please reconnect\\)$");
}

TEST(IrcShutdown, SigtermWithoutADrainSaysTheServerIsShuttingDown) {
  sigterm_says("0", "^ERROR :Closing Link: \\(Server shutting down\\)$");
}

INSTANTIATE_TEST_SUITE_P(Reactors, IrcFrontEnd, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::to_string(info.param) + "reactors";
                         });

}  // namespace
