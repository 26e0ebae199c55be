// WsSession against a peer on a socketpair (web_peer.h), after the upgrade: frames in, the native
// codec's answers out in frames, and the close handshake.
#include <gtest/gtest.h>

#include <string>

#include "web_peer.h"

namespace {

using chat::Json;
using webtest::client_frame;
using webtest::Peer;
using webtest::WebShard;

// A peer upgraded to WebSocket and greeted as `name`.
void upgrade_as(Peer& peer, const std::string& name) {
  peer.send(webtest::upgrade_request());
  auto r = peer.response();
  ASSERT_TRUE(r && r->starts_with("HTTP/1.1 101 ")) << peer.received;
  peer.send(client_frame(0x1, R"({"type":"hello","user":")" + name + "\"}"));
  auto welcome = peer.frame();
  ASSERT_TRUE(welcome) << peer.received;
  EXPECT_EQ(Json::parse(welcome->payload), (Json{{"type", "welcome"}, {"user", name}}));
}

TEST(WsSession, AFrameInIsAnsweredByTheNativeCodecInAFrameOut) {
  WebShard s;
  Peer ann(s), bob(s);
  upgrade_as(ann, "ann");
  upgrade_as(bob, "bob");
  ann.send(client_frame(0x1, R"({"type":"join","room":"r"})"));
  auto joined = ann.frame();
  ASSERT_TRUE(joined) << ann.received;
  EXPECT_EQ(Json::parse(joined->payload)["type"], "joined") << joined->payload;
  // Pipelined frames in one write: answered in order.
  bob.send(client_frame(0x1, R"({"type":"join","room":"r"})") +
           client_frame(0x1, R"({"type":"message","room":"r","text":"hi ann"})") +
           client_frame(0x1, R"({"type":"ping","id":9})"));
  std::vector<std::string> types;
  while (types.empty() || types.back() != "pong") {
    auto f = bob.frame();
    ASSERT_TRUE(f) << bob.received;
    EXPECT_TRUE(f->fin);
    EXPECT_EQ(f->opcode, 0x1) << "text frames";
    types.push_back(Json::parse(f->payload)["type"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"joined", "message", "pong"}));
  // The other member gets bob's arrival, then the message, each one text frame.
  Json join = Json::parse(ann.frame().value().payload);
  EXPECT_EQ(join["type"], "join");
  EXPECT_EQ(join["user"], "bob");
  Json m = Json::parse(ann.frame().value().payload);
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["user"], "bob");
  EXPECT_EQ(m["text"], "hi ann");
  // A fragmented message is one request.
  ann.send(client_frame(0x1, R"({"type":"message","ro)", false) + client_frame(0x0, R"(om":"r","text":"in two"})"));
  Json two = Json::parse(bob.frame().value().payload);
  EXPECT_EQ(two["text"], "in two");
  EXPECT_EQ(two["user"], "ann");
  EXPECT_EQ(Json::parse(ann.frame().value().payload)["text"], "in two") << "the sender's copy";
  // A bad request is answered with the codec's error; the member goes on.
  ann.send(client_frame(0x1, "not json"));
  auto error = ann.frame();
  ASSERT_TRUE(error) << ann.received;
  Json e = Json::parse(error->payload);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["code"], "bad_json");
  EXPECT_TRUE(ann.conn().open());
}

TEST(WsSession, AControlPingIsAnsweredWithItsPayload) {
  WebShard s;
  Peer peer(s);
  upgrade_as(peer, "ann");
  peer.send(client_frame(0x9, "are you there"));
  auto pong = peer.frame();
  ASSERT_TRUE(pong) << peer.received;
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "are you there");
}

TEST(WsSession, APeersCloseIsEchoedAndTheConnectionCloses) {
  WebShard s;
  Peer peer(s);
  upgrade_as(peer, "ann");
  peer.send(client_frame(0x1, R"({"type":"join","room":"r"})"));
  ASSERT_TRUE(peer.frame());
  peer.send(client_frame(0x8, webtest::close_payload(1000, "bye")));
  auto close = peer.frame();
  ASSERT_TRUE(close) << peer.received;
  EXPECT_EQ(close->opcode, 0x8);
  EXPECT_EQ(close->close_code(), 1000);
  EXPECT_TRUE(peer.closed());
  EXPECT_EQ(s.stats.ws_protocol_closes, 0u);
}

TEST(WsSession, ABinaryMessageIsClosedWith1003) {
  WebShard s;
  Peer peer(s);
  upgrade_as(peer, "ann");
  peer.send(client_frame(0x2, "\x01\x02"));
  auto close = peer.frame();
  ASSERT_TRUE(close) << peer.received;
  EXPECT_EQ(close->opcode, 0x8);
  EXPECT_EQ(close->close_code(), 1003);
  EXPECT_TRUE(peer.closed());
}

TEST(WsSession, AnUnmaskedClientFrameIsAProtocolError) {
  WebShard s;
  Peer peer(s);
  upgrade_as(peer, "ann");
  std::string unmasked = "\x81\x02hi";
  peer.send(unmasked);
  auto close = peer.frame();
  ASSERT_TRUE(close) << peer.received;
  EXPECT_EQ(close->opcode, 0x8);
  EXPECT_EQ(close->close_code(), 1002);
  EXPECT_TRUE(peer.closed());
  EXPECT_EQ(s.stats.ws_protocol_closes, 1u);
}

}  // namespace
