// HttpSession against a peer on a socketpair (web_peer.h): requests answered in order on one
// connection, a bad request's 400 and close, and the upgrade to a WebSocket member.
#include <gtest/gtest.h>

#include <string>

#include "web_peer.h"

namespace {

using webtest::Peer;
using webtest::WebShard;

TEST(HttpSession, AnswersPipelinedRequestsInOrderOnOneConnection) {
  WebShard s;
  Peer peer(s);
  peer.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /no-such-file HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto health = peer.response();
  ASSERT_TRUE(health) << peer.received;
  EXPECT_TRUE(health->starts_with("HTTP/1.1 200 ")) << *health;
  EXPECT_TRUE(health->ends_with("\r\n\r\nok\n")) << *health;
  auto missing = peer.response();
  ASSERT_TRUE(missing) << peer.received;
  EXPECT_TRUE(missing->starts_with("HTTP/1.1 404 ")) << *missing;
  auto page = peer.response();
  ASSERT_TRUE(page) << peer.received;
  EXPECT_TRUE(page->starts_with("HTTP/1.1 200 ")) << page->substr(0, 200);
  EXPECT_NE(page->find("Content-Type: text/html"), std::string::npos) << page->substr(0, 400);
  EXPECT_NE(page->find("ETag: \""), std::string::npos) << page->substr(0, 400);
  // Keep-alive: the connection is still open, and answers again.
  peer.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  auto again = peer.response();
  ASSERT_TRUE(again) << peer.received;
  EXPECT_TRUE(again->starts_with("HTTP/1.1 200 ")) << *again;
  EXPECT_EQ(s.stats.http_requests, 4u);
  EXPECT_EQ(s.stats.http_errors, 1u);  // the 404
  EXPECT_TRUE(peer.conn().open());
}

TEST(HttpSession, AServerThatDrainsAnswersHealthz503AndClosesEachConnection) {
  WebShard s;
  s.draining = true;
  Peer peer(s);
  peer.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = peer.response();
  ASSERT_TRUE(r) << peer.received;
  EXPECT_TRUE(r->starts_with("HTTP/1.1 503 ")) << *r;
  EXPECT_TRUE(r->ends_with("draining\n")) << *r;
  EXPECT_TRUE(peer.closed());
}

TEST(HttpSession, ABadRequestIsAnswered400AndTheConnectionCloses) {
  WebShard s;
  Peer peer(s);
  peer.send("GET / HTTP/1.1\r\nthis is no header\r\n\r\n");
  auto r = peer.response();
  ASSERT_TRUE(r) << peer.received;
  EXPECT_TRUE(r->starts_with("HTTP/1.1 400 ")) << *r;
  EXPECT_NE(r->find("Connection: close"), std::string::npos) << *r;
  EXPECT_TRUE(peer.closed()) << "no more HTTP on a connection whose stream is not HTTP";
  EXPECT_EQ(s.stats.http_errors, 1u);
  EXPECT_EQ(s.stats.http_requests, 0u);
}

TEST(HttpSession, ABadWebSocketHandshakeIsRefusedWith400) {
  WebShard s;
  Peer peer(s);
  peer.send(webtest::upgrade_request("not-a-key"));
  auto r = peer.response();
  ASSERT_TRUE(r) << peer.received;
  EXPECT_TRUE(r->starts_with("HTTP/1.1 400 ")) << *r;
  EXPECT_TRUE(peer.closed());
  EXPECT_TRUE(s.upgraded.empty());
  EXPECT_EQ(s.stats.ws_upgrades, 0u);
}

TEST(HttpSession, GetWsWithAHandshakeUpgradesTheConnectionToAWebSocketMember) {
  WebShard s;
  Peer peer(s);
  // A first frame right behind the handshake, in the same write, is the member's first request.
  peer.send(webtest::upgrade_request() + webtest::client_frame(0x1, R"({"type":"hello","user":"ann"})"));
  auto r = peer.response();
  ASSERT_TRUE(r) << peer.received;
  EXPECT_TRUE(r->starts_with("HTTP/1.1 101 ")) << *r;
  EXPECT_NE(r->find("Upgrade: websocket\r\n"), std::string::npos) << *r;
  EXPECT_NE(r->find("Sec-WebSocket-Accept: " + std::string(webtest::kAccept) + "\r\n"), std::string::npos) << *r;
  EXPECT_EQ(s.upgraded, std::vector<uint64_t>{peer.conn().id()});
  EXPECT_EQ(s.stats.ws_upgrades, 1u);
  // The member speaks the native protocol in WebSocket frames from now on.
  auto welcome = peer.frame();
  ASSERT_TRUE(welcome) << peer.received;
  EXPECT_EQ(welcome->opcode, 0x1);
  EXPECT_EQ(chat::Json::parse(welcome->payload)["type"], "welcome") << welcome->payload;
}

}  // namespace
