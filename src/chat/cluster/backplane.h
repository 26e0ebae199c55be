// Backplane: rooms shared between chat-server processes (nodes) through Redis: pub/sub for delivery,
// and a Stream per room for history.
//
// One channel per room ("reactor-chat:room:NAME"), subscribed while this node has a member there.
// A message is not delivered where it is sent: it goes to Redis (EVAL of one script: INCR the room's
// counter, XADD the message to the room's stream, remember its id, PUBLISH it with that number), and
// every node, this one included, delivers it when it comes back on its subscription. Redis sends a
// channel's messages to every subscriber in one order, so all members of a room, on every node, see
// the same order and the same numbers, and every number a member sees is in the stream.
//
// A message with an id is answered (Acked) once Redis has it: when it comes back here (after its
// copy was handed to `deliver`), or at once when the script says the room has seen the (user, id)
// (then nothing is published again). One delivered here without Redis is answered "not stored".
//
// Two connections (a subscribed connection takes no other commands): `pub` for EVAL and the
// history store's queries (chat/cluster/redis_store.h), and `sub` for (UN)SUBSCRIBE and what arrives. The
// link is up only once Redis has answered on both (the epoch script, and the subscription to this
// node's fence channel). Every message sent carries this node's id and a counter, and is kept until
// it comes back here: when Redis goes away (the connection broke, or something sent has not come
// back within 4 s), the ones that never came back are delivered to this node's members, in order,
// and so is everything published until the link is up again. The node reconnects with backoff,
// resubscribes every room that still has members, and goes back to Redis. What waits for Redis is
// bounded in bytes; past the bound a message is delivered here only.
//
// The epoch (Store::epoch): a random string in "reactor-chat:epoch", set by whoever finds it
// missing. Redis keeps it exactly as long as it keeps the counters and streams, so a Redis that lost
// its data has a new one. Read at every connection and with every publish.
//
// Threading: everything on one reactor's thread (shard 0's); the hub posts to it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/core/store.h"
#include "reactor/log.h"
#include "reactor/reactor.h"
#include "redis/connection.h"

namespace chat {

struct BackplaneStats {
  uint64_t published = 0;      // messages sent to Redis
  uint64_t received = 0;       // messages that came back from Redis (from every node)
  uint64_t local_only = 0;     // messages delivered only here: Redis was away, refused them, or the bound was reached
  uint64_t refused = 0;        // publishes Redis answered with an error (delivered here only)
  uint64_t overflow = 0;       // messages delivered here only because kMaxWaitingBytes was reached
  uint64_t outages = 0;        // times the link to Redis was lost, silent, or could not be made
  uint64_t duplicates = 0;     // publishes whose (room, user, id) Redis had seen: answered, not sent again
};

// What travels on a room's channel:
// "NUMBER {"front":F,"id":X,"n":K,"node":ID,"text":T,"ts":MS,"user":U}" (the publish script puts
// the number in front of the body a node sends). `node` and `n` name the sending node and its
// counter, so a node knows its own messages when they come back; `id` is the sender's message id,
// absent if none; `front` is the sender's front end (Format::front: "native", "irc", ...), absent if
// not known (and in what nodes from before front ends travelled send); `notice` is true for IRC's
// NOTICE, absent otherwise.
std::string encode_published_body(std::string_view user, std::string_view text, int64_t ts_ms,
                                  std::string_view node = {}, uint64_t n = 0, std::string_view id = {},
                                  std::string_view front = {}, bool notice = false);
// Parses what arrived on a channel; false for anything malformed (never throws). `node`, `n`, `id`
// and `front` are optional (empty and 0 when absent); an `id` that is not 1 to 64 printable ASCII,
// or a `front` that is not valid_front, is malformed.
struct Published {
  uint64_t seq = 0;
  std::string user, text;
  int64_t ts_ms = 0;
  std::string node;
  uint64_t n = 0;
  std::string id;
  std::string front;
  bool notice = false;  // "notice": true (IRC's NOTICE); absent: a plain message
};
bool parse_published(std::string_view payload, Published& out);

class Backplane {
 public:
  struct Message {
    std::string room, user, text;
    int64_t ts_ms = 0;
    uint64_t seq = 0;  // 0: not numbered by Redis (delivered locally: Redis away, refused, or the bound reached)
    std::string id;    // the sender's message id ("" if none)
    std::string front;  // the sender's front end (Format::front; "" if not known)
    bool notice = false;  // IRC's NOTICE (StoredMessage::notice); not kept in the stream
  };
  using Deliver = std::function<void(Message)>;
  // The answer to a publish with an id: stored with Redis's number; not stored (seq 0); or refused
  // because its sender gave that id to another message (the number of that one).
  enum class Outcome : uint8_t { kStored, kNotStored, kIdReused };
  using Acked = std::function<void(uint64_t seq, Outcome outcome)>;
  // A query's answer; nullptr when Redis is away (or went away before answering).
  using Reply = std::function<void(const redisReply* reply)>;
  using EpochChanged = std::function<void(const std::string& epoch)>;

  // At most this many bytes of messages wait for Redis (queued, or sent and not back yet), each
  // counted as its room, user, text, id and front end plus kMessageOverhead. Past it, a message is
  // delivered on this node only.
  static constexpr size_t kMaxWaitingBytes = size_t{8} << 20;
  static constexpr size_t kMessageOverhead = 512;  // the script and framing of its EVAL, and bookkeeping

  // `deliver` runs on this reactor for every message of a subscribed room; `history` says how much
  // the streams keep (max_messages 0: no stream, numbering and ids only) and how long ids are
  // remembered; `epoch_changed` runs when Redis's epoch is learned or found changed.
  Backplane(reactor::Reactor& loop, std::string host, uint16_t port, const Retention& history, Deliver deliver,
            EpochChanged epoch_changed = {});
  ~Backplane();

  void start();
  // The node has members in `room` (want) or none any more (unwant).
  void want(const std::string& room);
  void unwant(const std::string& room);
  // Runs `ready` once the room's subscription is in place (at once while Redis is away), so a
  // member told "joined" then receives everything published after, from any node.
  void when_subscribed(const std::string& room, std::function<void()> ready);
  // Sends a message to every node and keeps it in the room's stream; `floor` (the next number this
  // node would use) keeps a room's numbers rising even after Redis lost its counter. With an `id`,
  // `acked` runs here once (see above). `front` (the sender's front end, "" if not known) travels
  // with the message and is kept in the stream.
  void publish(const std::string& room, const std::string& user, const std::string& text, const std::string& id,
               const std::string& front, uint64_t floor, Acked acked = {}, bool notice = false);
  // Runs a command on `pub` (after everything sent there before: a read after a publish sees it).
  // `done` runs here with the reply, or with nullptr if Redis is away or goes away first; answers
  // come in the order asked. During the first attempt it waits for the link, as messages do.
  void query(std::vector<std::string> argv, Reply done);
  // Runs `done` once everything published here before has come back, or has been delivered here
  // because Redis went away (at once while Redis is away).
  void fence(std::function<void()> done);

  // Up: Redis has answered on both connections since they were made.
  bool up() const { return up_; }
  // "up", "connecting" (the first attempt has not been answered yet) or "down".
  const char* state() const { return up_ ? "up" : stats_.outages == 0 ? "connecting" : "down"; }
  // Bytes of messages waiting for Redis, as counted against kMaxWaitingBytes.
  size_t waiting_bytes() const { return waiting_bytes_; }
  const BackplaneStats& stats() const { return stats_; }
  static std::string channel_of(const std::string& room) { return kRoomPrefix + room; }

  static constexpr const char* kRoomPrefix = "reactor-chat:room:";
  static constexpr const char* kSeqPrefix = "reactor-chat:seq:";
  static constexpr const char* kStreamPrefix = "reactor-chat:history:";
  static constexpr const char* kIdsPrefix = "reactor-chat:ids:";          // hash "ID USER" -> seq
  static constexpr const char* kIdTimesPrefix = "reactor-chat:idtimes:";  // zset "ID USER" by ts
  static constexpr const char* kEpochKey = "reactor-chat:epoch";

 private:
  enum class State : uint8_t { kOff, kSubscribing, kOn, kUnsubscribing };
  struct Channel {
    bool wanted = false;
    State state = State::kOff;
    uint64_t unsettled_since = 0;      // want_gen_ when it became wanted-but-not-on; 0: settled
    reactor::Clock::time_point idle_since{};  // when it stopped being wanted (lazy unsubscribe)
    std::vector<std::function<void()>> waiters;  // when_subscribed
  };
  // A message or a fence waiting to be sent (`queue_`), then sent and waiting to come back
  // (`in_flight_`). `id` is this node's counter, in the payload; ids rise in sending order.
  struct Outgoing {
    std::string room;  // empty: a fence
    std::string user, text;
    std::string msg_id;  // the sender's id ("" if none)
    std::string front;   // the sender's front end ("" if not known)
    bool notice = false;
    Acked acked;         // with an id: run once
    uint64_t seq = 0;    // Redis's number, once the script answered
    int64_t ts_ms = 0;
    uint64_t floor = 0;
    uint64_t fence_gen = 0;  // a fence waits for the subscriptions wanted before it
    uint64_t id = 0;
    reactor::Clock::time_point since{};  // when published: waiting longer than kSilenceLimit means Redis is away
    bool answered = false;  // Redis ran its EVAL (answered without an error)
    bool done = false;      // came back, or will not: nothing more to do for it here
    size_t bytes() const {
      return room.size() + user.size() + text.size() + msg_id.size() + front.size() + kMessageOverhead;
    }
  };
  struct Query {
    std::vector<std::string> argv;
    Reply done;
    bool sent = false;
  };
  // An answer to run once the message it belongs to has been handed on.
  using PendingAcks = std::vector<std::pair<Acked, uint64_t>>;

  // Start-up, until Redis first answers or the first attempt fails (at most kSilenceLimit): joins,
  // messages and fences wait for the link instead of serving this node only, so a node that takes
  // connections as it starts (a --workers worker) does not keep its first messages to itself.
  bool first_attempt() const { return !up_ && stats_.outages == 0; }
  void connect();
  void on_connected();
  void answered_handshake();
  void down(const std::string& reason);
  void on_push(const redisReply& reply);
  void on_message(const std::string& channel, std::string_view payload);
  void subscribe(const std::string& room, Channel& c);
  void confirmed(const std::string& room, bool subscribed);
  void drain();
  void send_message(Outgoing o);
  void on_publish_answer(uint64_t id, const redisReply* reply);
  // An item of ours with `id` came back on `sub`: it and every older one that Redis has run are
  // done (Redis writes a subscriber's messages in the order it ran the publishes).
  void came_back(uint64_t id, PendingAcks& acks);
  static void answer(Outgoing& o, uint64_t seq, Outcome outcome, PendingAcks* later = nullptr);
  void learned_epoch(std::string_view epoch);
  void send_queries();
  void fail_queries();
  Outgoing* in_flight(uint64_t id);
  void finish(Outgoing& o);
  void pop_finished();
  void deliver_locally(Outgoing& o);
  // Keeps `unsettled_` (the generations of channels wanted but not yet subscribed) up to date.
  void settle(Channel& c);
  void sweep();      // unsubscribes channels unwanted for a while
  void tick();       // a heartbeat fence every second; anything unanswered for kSilenceLimit: away
  void overflowed();

  reactor::Reactor& loop_;
  std::string host_;
  uint16_t port_;
  Retention history_;
  Deliver deliver_;
  EpochChanged epoch_changed_;
  std::string epoch_;  // as last learned from Redis ("" before)
  std::string publish_sha_;  // the publish script's SHA1 once loaded on this link ("": EVAL it)
  std::unique_ptr<redis::Connection> pub_, sub_;
  std::deque<Query> queries_;  // asked and not answered, in order (the unsent ones last)
  int connections_up_ = 0;
  uint64_t link_ = 0;       // the attempt the connections belong to; answers of older ones are ignored
  bool up_ = false;         // Redis answered on both connections
  bool ping_answered_ = false;
  bool fence_on_ = false;   // this node's fence channel is subscribed
  std::set<uint64_t> unsettled_;  // Channel::unsettled_since of every unsettled channel
  uint64_t want_gen_ = 0;
  std::string node_id_;
  std::string fence_channel_;
  std::unordered_map<std::string, Channel> channels_;
  std::deque<Outgoing> queue_;      // waiting for a subscription to be in place, in order
  std::deque<Outgoing> in_flight_;  // sent, not known to be done; in id order
  std::unordered_map<uint64_t, std::function<void()>> fences_;  // by id: sent or queued, not back
  uint64_t next_id_ = 1;
  uint64_t last_back_ = 0;   // the highest id of ours that came back on this link
  size_t waiting_bytes_ = 0;
  reactor::Clock::duration backoff_;
  reactor::Clock::time_point attempt_started_{};
  reactor::TimerId retry_timer_ = 0, sweep_timer_ = 0, tick_timer_ = 0;
  unsigned ticks_ = 0;
  bool heartbeat_out_ = false;
  // Each kind of repeated warning: at most one line per 10 s, counting what it left out.
  reactor::LogLimiter refusal_log_{1, std::chrono::seconds(10)};
  reactor::LogLimiter overflow_log_{1, std::chrono::seconds(10)};
  reactor::LogLimiter malformed_log_{1, std::chrono::seconds(10)};
  BackplaneStats stats_;
};

}  // namespace chat
