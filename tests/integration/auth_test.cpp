// --auth-secret (docs/PROTOCOL.md, "Authentication"): a token on the native hello, IRC's PASS or
// SASL PLAIN; the article's dialect refused. Accepted, expired, forged, missing, for another user:
// each refusal is said (unauthorized, 464, a plain line), closes its connection, is counted, and
// harms no other member. Tokens are minted by the server's own --mint-token, and also made here by
// hand (OpenSSL's HMAC, our own base64url), so the format is checked from outside the server.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../temp_file.h"
#include "chat_helpers.h"
#include "irc_helpers.h"
#include "process.h"

using namespace std::chrono_literals;
using irctest::Irc;
using irctest::IrcServer;
using testproc::LineClient;
using testproc::Process;
using namespace chattest;
using testfiles::TempFile;

namespace {

const std::string kSecret = "7f3c9a1e5b2d4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6f81a3c5e7092b4d6";

std::string base64url(const std::string& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += abc[(v >> s) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | (i + 1 < bytes.size() ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    if (i + 1 < bytes.size()) out += abc[(v >> 6) & 63];
  }
  return out;
}

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// An HS256 JWT made here: this header and payload, signed with `key`.
std::string jwt(const json& payload, const std::string& key = kSecret, const json& header = {{"alg", "HS256"}, {"typ", "JWT"}}) {
  std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), md, &n);
  return input + "." + base64url(std::string(reinterpret_cast<const char*>(md), n));
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json claims(const std::string& sub, int64_t exp_from_now) { return {{"sub", sub}, {"exp", unix_now() + exp_from_now}}; }

// chat-server --auth-secret FILE --mint-token USER [...]: its stdout's one line, or "" if it failed.
std::string mint(const std::string& secret_file, const std::string& user, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{CHAT_SERVER_BIN, "--auth-secret", secret_file, "--mint-token", user};
  args.insert(args.end(), extra.begin(), extra.end());
  Process p(args);
  auto status = p.wait(20s);
  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) return "";
  std::string out = p.out();
  if (out.empty() || out.back() != '\n' || out.find('\n') != out.size() - 1) return "";
  return out.substr(0, out.size() - 1);
}

// A native client whose hello carries `token` (if any field `token` is given at all).
struct Hello : LineClient {
  Hello(int port, const std::string& user, const std::optional<json>& token) : LineClient(port) {
    json hello = {{"type", "hello"}, {"user", user}};
    if (token) hello["token"] = *token;
    send(hello.dump() + "\n");
    answer = next_json(*this, 10s);
  }
  json request(const json& j) {
    send(j.dump() + "\n");
    return next_json(*this);
  }
  json answer;
};

bool pongs(LineClient& c, int id) {
  c.send(json{{"type", "ping"}, {"id", id}}.dump() + "\n");
  return expect_type(c, "pong").value("id", 0) == id;
}

// "auth accepted=A refused=R" of a SIGUSR1 line.
std::pair<long, long> auth_counts(Process& p) {
  std::string stats = stats_of(p);
  std::smatch m;
  if (!std::regex_search(stats, m, std::regex("auth accepted=(\\d+) refused=(\\d+)"))) return {-1, -1};
  return {std::stol(m[1]), std::stol(m[2])};
}

struct AuthServer {
  explicit AuthServer(std::vector<std::string> extra = {})
      : secret(kSecret + "\n"), server(with_secret(secret.path, std::move(extra))) {}
  static std::vector<std::string> with_secret(const std::string& path, std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--auth-secret", path, "--threads", "2"});
    return extra;
  }
  TempFile secret;
  IrcServer server;
};

}  // namespace

TEST(Auth, AMintedTokenOpensTheDoorAndTheMemberChats) {
  AuthServer s;
  std::string token = mint(s.secret.path, "ann");
  ASSERT_TRUE(std::regex_match(token, std::regex("[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{43}"))) << token;
  // The minted token's parts are what docs/OPERATIONS.md says, and its signature is the one made
  // here over them.
  std::string input = token.substr(0, token.rfind('.'));
  EXPECT_EQ(input.substr(0, input.find('.')), base64url(R"({"alg":"HS256","typ":"JWT"})"));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), md, &n);
  EXPECT_EQ(token.substr(token.rfind('.') + 1), base64url(std::string(reinterpret_cast<const char*>(md), n)));

  Hello ann(s.server.port, "ann", json(token));
  ASSERT_EQ(ann.answer.value("type", ""), "welcome") << ann.answer;
  Hello bob(s.server.port, "bob", json(jwt(claims("bob", 600))));  // a site's backend's token
  ASSERT_EQ(bob.answer.value("type", ""), "welcome") << bob.answer;
  ASSERT_EQ(ann.request({{"type", "join"}, {"room", "r"}}).value("type", ""), "joined");
  ASSERT_EQ(bob.request({{"type", "join"}, {"room", "r"}}).value("type", ""), "joined");
  bob.send(json{{"type", "message"}, {"room", "r"}, {"text", "hi ann"}}.dump() + "\n");
  json got = expect_type(ann, "message");
  EXPECT_EQ(got.value("user", ""), "bob");
  EXPECT_EQ(got.value("text", ""), "hi ann");
  EXPECT_EQ(auth_counts(s.server.process), std::make_pair(2L, 0L));
  // A token that outlives its --token-ttl is no token: minted with 1 s, it still opens the door
  // within the 30 s leeway, which is what the unit tests measure to the second.
  std::string brief = mint(s.secret.path, "cy", {"--token-ttl", "1"});
  Hello cy(s.server.port, "cy", json(brief));
  EXPECT_EQ(cy.answer.value("type", ""), "welcome") << cy.answer;
}

TEST(Auth, MintingChecksItsUserAndNeedsTheSecret) {
  TempFile secret(kSecret + "\n");
  EXPECT_EQ(mint(secret.path, "not a name"), "");
  EXPECT_EQ(mint(secret.path, std::string(33, 'a')), "");
  EXPECT_EQ(mint("/nonexistent/secret", "ann"), "");
  EXPECT_EQ(mint(secret.path, "ann", {"--token-ttl", "0"}), "");
  Process without({CHAT_SERVER_BIN, "--mint-token", "ann"});
  auto status = without.wait(20s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_EQ(without.err(), "chat-server: --mint-token needs --auth-secret FILE (the secret the token is signed with)\n");
}

// Every way a hello can fail: said (unauthorized), closed, counted; what the refused client sent
// after its hello is never acted on; a member chatting meanwhile is unharmed.
TEST(Auth, BadHellosAreUnauthorizedClosedCountedAndHarmlessToOthers) {
  AuthServer s;
  Hello calm(s.server.port, "calm", json(mint(s.secret.path, "calm")));
  ASSERT_EQ(calm.answer.value("type", ""), "welcome") << calm.answer;
  ASSERT_EQ(calm.request({{"type", "join"}, {"room", "r"}}).value("type", ""), "joined");

  std::string good = jwt(claims("eve", 600));
  std::string forged_payload = good.substr(0, good.find('.') + 1) + base64url(claims("calm", 600).dump()) +
                               good.substr(good.rfind('.'));
  struct Case {
    const char* what;
    std::optional<json> token;
    std::string user = "eve";
    const char* says;
  };
  const std::vector<Case> cases = {
      {"missing", std::nullopt, "eve", "needs a token"},
      {"expired", json(jwt(claims("eve", -3600))), "eve", "token expired"},
      {"not yet valid", json(jwt({{"sub", "eve"}, {"exp", unix_now() + 7200}, {"nbf", unix_now() + 3600}})), "eve",
       "not yet valid"},
      {"another secret", json(jwt(claims("eve", 600), kSecret + "0")), "eve", "bad token signature"},
      {"payload altered", json(forged_payload), "calm", "bad token signature"},
      {"another user's", json(good), "mallory", "for another user"},
      {"alg none", json(base64url(R"({"alg":"none"})") + "." + base64url(claims("eve", 600).dump()) + "."), "eve",
       "not signed with HS256"},
      {"garbled", json("this.is.no-token"), "eve", "malformed token"},
      {"not a string", json(42), "eve", "malformed token"},
      {"no sub", json(jwt({{"exp", unix_now() + 600}})), "eve", "names no user"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    LineClient client(s.server.port);
    json hello = {{"type", "hello"}, {"user", c.user}};
    if (c.token) hello["token"] = *c.token;
    // Pipelined behind the hello: a join and a message, which must never be acted on.
    client.send(hello.dump() + "\n" + json{{"type", "join"}, {"room", "r"}}.dump() + "\n" +
                json{{"type", "message"}, {"room", "r"}, {"text", std::string("sneaked in: ") + c.what}}.dump() + "\n");
    json answer = next_json(client);
    EXPECT_EQ(answer.value("type", ""), "error") << answer;
    EXPECT_EQ(answer.value("code", ""), "unauthorized") << answer;
    EXPECT_NE(answer.value("message", "").find(c.says), std::string::npos) << answer;
    EXPECT_TRUE(client.closed_by_peer(5s));
    EXPECT_TRUE(client.ended()) << "more was said after the refusal";
    EXPECT_TRUE(pongs(calm, 1)) << "the calm member was harmed";
  }
  // Nothing of theirs reached the room, and calm's own name was not taken from it.
  calm.send(json{{"type", "message"}, {"room", "r"}, {"text", "still here"}}.dump() + "\n");
  std::vector<json> before;
  json own = expect_type(calm, "message", &before);
  EXPECT_EQ(own.value("text", ""), "still here");
  for (const json& j : before) EXPECT_NE(j.value("type", ""), "message") << j;
  EXPECT_EQ(calm.request({{"type", "rooms"}}).value("rooms", json::array()), json::array({"r"}));
  auto [accepted, refused] = auth_counts(s.server.process);
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(refused, static_cast<long>(cases.size()));
  // The log names each refusal's reason (within the closes' budget), never a token.
  EXPECT_NE(s.server.process.err().find("unauthorized: token expired"), std::string::npos) << s.server.process.err();
  EXPECT_EQ(s.server.process.err().find(good.substr(0, 20)), std::string::npos);
  EXPECT_EQ(s.server.process.err().find("eyJ"), std::string::npos) << s.server.process.err();
}

// The article's dialect carries no token: its connections hear nothing of the lobby and, once they
// speak, are told so in one plain line and closed.
TEST(Auth, TheArticleDialectIsToldAndClosed) {
  AuthServer s;
  LineClient listener(s.server.port);  // the article's client listens from the start
  Hello member(s.server.port, "member", json(mint(s.secret.path, "member")));
  ASSERT_EQ(member.answer.value("type", ""), "welcome");
  ASSERT_EQ(member.request({{"type", "join"}, {"room", "lobby"}}).value("type", ""), "joined");
  member.send(json{{"type", "message"}, {"room", "lobby"}, {"text", "members only"}}.dump() + "\n");
  EXPECT_EQ(expect_type(member, "message").value("text", ""), "members only");
  // Its pong: the lobby's owner has handed the message to every reactor with a member of the lobby
  // (the listener's, were it one) before it.
  EXPECT_TRUE(pongs(member, 1));
  // The marker: once the listener speaks it is told and closed, after anything handed to it before.
  // All it hears up to the close is the refusal: no lobby line came before it (nor after).
  listener.send(R"({"user":"art","text":"hello lobby"})");
  std::vector<std::string> heard;
  while (auto l = listener.line(5s)) heard.push_back(*l);
  EXPECT_TRUE(listener.ended()) << "not closed after the refusal";
  ASSERT_FALSE(heard.empty());
  EXPECT_TRUE(heard.front().starts_with("authentication required: ")) << "an unauthenticated connection heard the lobby: " << heard.front();
  EXPECT_EQ(heard.size(), 1u) << "more than the refusal: " << heard.back();
  // Garbage, and bad JSON, before a hello: the same.
  LineClient garbage(s.server.port);
  garbage.send("hello?\r\n");
  EXPECT_TRUE(garbage.line(5s).value_or("").starts_with("authentication required: "));
  EXPECT_TRUE(garbage.closed_by_peer(5s));
  LineClient bad_json(s.server.port);
  bad_json.send("{\"type\":\"hello\",}\n");
  EXPECT_TRUE(bad_json.line(5s).value_or("").starts_with("authentication required: "));
  EXPECT_TRUE(bad_json.closed_by_peer(5s));
  // The article's message never reached the lobby.
  member.send(json{{"type", "ping"}, {"id", 2}}.dump() + "\n");
  std::vector<json> before;
  EXPECT_EQ(expect_type(member, "pong", &before).value("id", 0), 2);
  for (const json& j : before) EXPECT_NE(j.value("text", ""), "hello lobby") << j;
  EXPECT_EQ(auth_counts(s.server.process), std::make_pair(1L, 3L));
}

// With a secret, the hello is owed from the connect: a connection that sends nothing at all is
// closed by the frame timeout (without a secret it would be an article client listening, and stay),
// one that says hello in time is not; counted as frame timeouts.
TEST(Auth, ASilentConnectionIsClosedAtTheFrameTimeout) {
  AuthServer s({"--frame-timeout-ms", "400"});
  auto start = std::chrono::steady_clock::now();
  auto silent = std::make_unique<LineClient>(s.server.port);
  Hello member(s.server.port, "member", json(mint(s.secret.path, "member")));
  ASSERT_EQ(member.answer.value("type", ""), "welcome");
  EXPECT_TRUE(silent->closed_by_peer(10s)) << "a connection that never said hello was kept";
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  silent.reset();  // the server's lingering close ends with ours: its close is logged then
  EXPECT_TRUE(s.server.process.wait_for_err_line("no hello within 400 ms", 5s)) << s.server.process.err();
  // The member that said hello is past the same 400 ms, and stays.
  EXPECT_TRUE(pongs(member, 5));
  EXPECT_EQ(counter(stats_of(s.server.process), "frame_timeouts"), 1);
}

TEST(Auth, WithoutASecretATokenIsIgnored) {
  IrcServer server;
  Hello ann(server.port, "ann", json("anything at all"));
  EXPECT_EQ(ann.answer.value("type", ""), "welcome") << ann.answer;
  Irc irc(server.irc);
  irc.say("CAP LS 302");
  std::string ls = irc.expect(" CAP \\* LS ");
  EXPECT_EQ(ls.find("sasl"), std::string::npos) << ls;
  irc.say("CAP END");
  irc.say("AUTHENTICATE PLAIN");
  EXPECT_NE(irc.expect(" 421 "), "");
}

TEST(Auth, IrcPassCarriesTheToken) {
  AuthServer s;
  Hello calm(s.server.port, "calm", json(mint(s.secret.path, "calm")));
  ASSERT_EQ(calm.request({{"type", "join"}, {"room", "r"}}).value("type", ""), "joined");
  Irc ian(s.server.irc);
  ian.say("PASS " + mint(s.secret.path, "ian"));
  ASSERT_TRUE(ian.registers("ian"));
  ASSERT_TRUE(ian.joins("#r"));
  ian.say("PRIVMSG #r :from irc");
  EXPECT_EQ(expect_type(calm, "message").value("text", ""), "from irc");
  // The name is the token's for the connection's life.
  ian.say("NICK other");
  EXPECT_NE(ian.expect(" 902 ian "), "");
  EXPECT_EQ(auth_counts(s.server.process), std::make_pair(2L, 0L));
}

TEST(Auth, IrcSaslPlainCarriesTheToken) {
  AuthServer s;
  Irc ian(s.server.irc);
  ian.say("CAP LS 302");
  EXPECT_NE(ian.expect(" CAP \\* LS :.*\\bsasl=PLAIN\\b"), "");
  ian.say("CAP REQ :sasl");
  EXPECT_NE(ian.expect(" CAP \\* ACK :sasl"), "");
  ian.say("NICK ian");
  ian.say("USER ian 0 * :Ian");
  ian.say("AUTHENTICATE PLAIN");
  EXPECT_NE(ian.expect("^AUTHENTICATE \\+$"), "");
  ian.say("AUTHENTICATE " + base64(std::string("\0ian\0", 5) + mint(s.secret.path, "ian")));
  EXPECT_NE(ian.expect(" 900 ian ian!ian@irc ian :"), "");
  EXPECT_NE(ian.expect(" 903 ian :"), "");
  ian.say("AUTHENTICATE PLAIN");  // once is all
  EXPECT_NE(ian.expect(" 907 ian :"), "");
  ian.say("CAP END");
  EXPECT_NE(ian.expect(" 001 ian "), "");
  EXPECT_TRUE(ian.joins("#r"));

  // A token long enough to travel in several 400-byte chunks (a site may put claims of its own in).
  Irc kim(s.server.irc);
  json big = claims("kim", 600);
  big["site"] = std::string(700, 'x');
  std::string message = base64(std::string("kim\0kim\0", 8) + jwt(big));
  ASSERT_GT(message.size(), 800u);
  kim.say("CAP REQ :sasl");
  kim.say("AUTHENTICATE PLAIN");
  EXPECT_NE(kim.expect("^AUTHENTICATE \\+$"), "");
  for (size_t at = 0; at < message.size(); at += 400) kim.say("AUTHENTICATE " + message.substr(at, 400));
  if (message.size() % 400 == 0) kim.say("AUTHENTICATE +");
  EXPECT_NE(kim.expect(" 903 "), "");
  kim.say("CAP END");
  EXPECT_TRUE(kim.registers("kim"));
  EXPECT_EQ(auth_counts(s.server.process), std::make_pair(2L, 0L));
}

TEST(Auth, IrcWithoutAGoodTokenIsRefusedAndCounted) {
  AuthServer s;
  Hello calm(s.server.port, "calm", json(mint(s.secret.path, "calm")));
  ASSERT_EQ(calm.request({{"type", "join"}, {"room", "r"}}).value("type", ""), "joined");
  // No token at all: registration is refused.
  {
    Irc irc(s.server.irc);
    irc.say("NICK nopass");
    irc.say("USER nopass 0 * :x");
    EXPECT_NE(irc.expect(" 464 nopass :Password incorrect \\(authentication required"), "");
    EXPECT_NE(irc.expect("^ERROR :Closing Link: nopass \\(Unauthorized: "), "");
    EXPECT_TRUE(irc.closed_by_peer(5s));
  }
  // An expired token as PASS: refused at once.
  {
    Irc irc(s.server.irc);
    irc.say("PASS " + jwt(claims("old", -600)));
    EXPECT_NE(irc.expect(" 464 \\* :Password incorrect \\(token expired\\)"), "");
    EXPECT_TRUE(irc.closed_by_peer(5s));
  }
  // A good token for another nick.
  {
    Irc irc(s.server.irc);
    irc.say("PASS " + jwt(claims("someone", 600)));
    irc.say("NICK mallory");
    irc.say("USER mallory 0 * :x");
    EXPECT_NE(irc.expect(" 464 mallory :Password incorrect \\(the token is for another nick\\)"), "");
    EXPECT_TRUE(irc.closed_by_peer(5s));
  }
  // SASL with a forged token: 904, and the third failure closes.
  {
    Irc irc(s.server.irc);
    irc.say("CAP REQ :sasl");
    irc.say("AUTHENTICATE PLAIN");
    irc.say("AUTHENTICATE " + base64(std::string("\0eve\0", 5) + jwt(claims("eve", 600), kSecret + "x")));
    EXPECT_NE(irc.expect(" 904 \\* :SASL authentication failed \\(bad token signature\\)"), "");
    irc.say("AUTHENTICATE SCRAM-SHA-256");
    EXPECT_NE(irc.expect(" 908 \\* PLAIN :"), "");
    EXPECT_NE(irc.expect(" 904 "), "");
    irc.say("AUTHENTICATE PLAIN");
    irc.say("AUTHENTICATE " + base64(std::string("\0eve\0", 5) + jwt(claims("mallory", 600))));  // another user's
    EXPECT_NE(irc.expect(" 904 \\* :SASL authentication failed \\(the token is for another user\\)"), "");
    EXPECT_NE(irc.expect(" 464 \\* :Password incorrect \\(too many failed SASL attempts\\)"), "");
    EXPECT_TRUE(irc.closed_by_peer(5s));
  }
  // SASL that fails once, then registration without it.
  {
    Irc irc(s.server.irc);
    irc.say("CAP REQ :sasl");
    irc.say("AUTHENTICATE PLAIN");
    irc.say("AUTHENTICATE " + base64("not plain at all"));
    EXPECT_NE(irc.expect(" 904 \\* :SASL authentication failed \\(malformed PLAIN message\\)"), "");
    irc.say("CAP END");
    irc.say("NICK eve");
    irc.say("USER eve 0 * :x");
    EXPECT_NE(irc.expect(" 464 eve "), "");
    EXPECT_TRUE(irc.closed_by_peer(5s));
  }
  EXPECT_TRUE(pongs(calm, 3));
  EXPECT_EQ(auth_counts(s.server.process), std::make_pair(1L, 5L));  // calm; each of the five
}

// chat-client sends its --token (or --token-file's) in its hello; a refusal ends it with status 1.
TEST(Auth, ChatClientSendsItsToken) {
  AuthServer s;
  Hello calm(s.server.port, "calm", json(mint(s.secret.path, "calm")));
  ASSERT_EQ(calm.request({{"type", "join"}, {"room", "lobby"}}).value("type", ""), "joined");
  TempFile token_file(mint(s.secret.path, "cli") + "\n");
  Process client({CHAT_CLIENT_BIN, "--port", std::to_string(s.server.port), "--user", "cli", "--token-file",
                  token_file.path});
  ASSERT_TRUE(client.wait_for_line("you joined", 10s)) << client.err();
  client.write_stdin("typed with a token\n");
  EXPECT_EQ(expect_type(calm, "message").value("text", ""), "typed with a token");
  Process refused({CHAT_CLIENT_BIN, "--port", std::to_string(s.server.port), "--user", "cli2", "--token",
                   jwt(claims("cli2", -600))});
  auto status = refused.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_NE(refused.err().find("chat-client: unauthorized: token expired"), std::string::npos) << refused.err();
}
