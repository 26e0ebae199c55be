// Backplane: rooms shared between chat-server processes (nodes) through Redis pub/sub.
//
// One channel per room ("reactor-chat:room:NAME"), subscribed while this node has a member there.
// A message is not delivered where it is sent: it goes to Redis (EVAL: INCR the room's counter,
// PUBLISH with that number), and every node, this one included, delivers it when it comes back on
// its subscription. Redis sends a channel's messages to every subscriber in one order, so all
// members of a room, on every node, see the same order and the same numbers.
//
// Two connections (a subscribed connection takes no other commands): `pub` for EVAL and `sub` for
// (UN)SUBSCRIBE and what arrives. While Redis is away the node goes on serving its own members:
// messages are numbered and delivered locally only (pub/sub is at-most-once: what other nodes
// published meanwhile is not seen here), and the backplane reconnects with backoff, resubscribes
// every room that still has members, and goes back to Redis.
//
// Threading: everything on one reactor's thread (shard 0's); the hub posts to it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "reactor/reactor.h"
#include "redis/connection.h"

namespace chat {

struct BackplaneStats {
  uint64_t published = 0;      // messages sent to Redis
  uint64_t received = 0;       // messages that came back from Redis (from every node)
  uint64_t local_only = 0;     // messages delivered only here: Redis was away or refused them
  uint64_t refused = 0;        // publishes Redis answered with an error (delivered here only)
  uint64_t outages = 0;        // times the link to Redis was lost, silent, or could not be made
};

// What travels on a room's channel: "NUMBER {"user":U,"text":T,"ts":MS}" (the publish script puts
// the number in front of the body a node sends).
std::string encode_published_body(std::string_view user, std::string_view text, int64_t ts_ms);
// Parses what arrived on a channel; false for anything malformed (never throws).
struct Published {
  uint64_t seq = 0;
  std::string user, text;
  int64_t ts_ms = 0;
};
bool parse_published(std::string_view payload, Published& out);

class Backplane {
 public:
  struct Message {
    std::string room, user, text;
    int64_t ts_ms = 0;
    uint64_t seq = 0;  // 0: not numbered by Redis (delivered locally during an outage)
  };
  using Deliver = std::function<void(Message)>;

  // `deliver` runs on this reactor for every message of a subscribed room.
  Backplane(reactor::Reactor& loop, std::string host, uint16_t port, Deliver deliver);
  ~Backplane();

  void start();
  // The node has members in `room` (want) or none any more (unwant).
  void want(const std::string& room);
  void unwant(const std::string& room);
  // Runs `ready` once the room's subscription is in place (at once while Redis is away), so a
  // member told "joined" then receives everything published after, from any node.
  void when_subscribed(const std::string& room, std::function<void()> ready);
  // Sends a message to every node; `floor` (the next number this node would use) keeps a room's
  // numbers rising even after Redis lost its counter.
  void publish(const std::string& room, const std::string& user, const std::string& text, uint64_t floor);
  // Runs `done` once everything published here before has come back (at once while Redis is away).
  void fence(std::function<void()> done);

  bool up() const { return up_; }
  const BackplaneStats& stats() const { return stats_; }
  static std::string channel_of(const std::string& room) { return kRoomPrefix + room; }

  static constexpr const char* kRoomPrefix = "reactor-chat:room:";
  static constexpr const char* kSeqPrefix = "reactor-chat:seq:";

 private:
  enum class State : uint8_t { kOff, kSubscribing, kOn, kUnsubscribing };
  struct Channel {
    bool wanted = false;
    State state = State::kOff;
    uint64_t unsettled_since = 0;      // want_gen_ when it became wanted-but-not-on; 0: settled
    reactor::Clock::time_point idle_since{};  // when it stopped being wanted (lazy unsubscribe)
    std::vector<std::function<void()>> waiters;  // when_subscribed
  };
  struct Outgoing {
    std::string room;  // empty: a fence
    std::string user, text;
    uint64_t floor = 0;
    uint64_t fence = 0;
    uint64_t fence_gen = 0;  // a fence waits for the subscriptions wanted before it
  };

  void connect();
  void on_connected();
  void down(const std::string& reason);
  void on_push(const redisReply& reply);
  void on_message(const std::string& channel, std::string_view payload);
  void subscribe(const std::string& room, Channel& c);
  void confirmed(const std::string& room, bool subscribed);
  void drain();
  void deliver_locally(Outgoing& o);
  // Keeps `unsettled_` (the generations of channels wanted but not yet subscribed) up to date.
  void settle(Channel& c);
  void sweep();      // unsubscribes channels unwanted for a while
  void heartbeat();  // a fence round trip every few seconds: a silent Redis counts as away

  reactor::Reactor& loop_;
  std::string host_;
  uint16_t port_;
  Deliver deliver_;
  std::unique_ptr<redis::Connection> pub_, sub_;
  int connections_up_ = 0;
  bool up_ = false;     // both connections made
  bool fence_on_ = false;  // this node's fence channel is subscribed
  std::set<uint64_t> unsettled_;  // Channel::unsettled_since of every unsettled channel
  uint64_t want_gen_ = 0;
  std::string fence_channel_;
  std::unordered_map<std::string, Channel> channels_;
  std::deque<Outgoing> queue_;  // waiting for a subscription to be in place, in order
  std::unordered_map<uint64_t, std::function<void()>> fences_;  // sent, waiting to come back
  uint64_t next_fence_ = 1;
  reactor::Clock::duration backoff_;
  reactor::TimerId retry_timer_ = 0, sweep_timer_ = 0, heartbeat_timer_ = 0;
  bool heartbeat_out_ = false;
  reactor::Clock::time_point heartbeat_sent_{};
  reactor::Clock::time_point last_refusal_log_{};
  BackplaneStats stats_;
};

}  // namespace chat
