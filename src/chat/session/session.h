// Session: one member's connection, whatever its front end: a codec (its wire protocol,
// chat/session/codec.h) over a transport (how its bytes travel, chat/session/transport.h). The session is what the
// two share: it asks the codec for frames and lets it turn each into requests; it carries those to
// the hub (join, leave, publish) and keeps the member's rooms and name; it answers in request order
// (a pong only after every earlier answer, also those from other shards); it takes the hub's
// deliveries in its format to the transport, applying the output limits; and it stops reading
// while the reactors are congested.
#pragma once

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/core/hub.h"
#include "chat/ops/limits.h"
#include "chat/ops/stats.h"
#include "chat/ops/token_bucket.h"
#include "chat/session/codec.h"
#include "chat/session/output_limit.h"
#include "chat/session/transport.h"
#include "reactor/buffer.h"

namespace chat {

// What every session of a shard shares (one per shard, owned by its server).
struct SessionContext {
  Hub& hub;
  Stats& stats;
  const Limits& limits;
  OutputLimit output_limit;
};

class Session : public Member, public std::enable_shared_from_this<Session> {
 public:
  // `transport` must outlive the session (a front end is usually both); `id` is the connection's,
  // unique in the process.
  Session(SessionContext& shard, Transport& transport, uint64_t id, std::unique_ptr<Codec> codec);
  ~Session() override;

  // ---- Called by the front end (the transport's owner) ----
  // The connection opened: the codec starts (the article's dialect joins the lobby).
  void start();
  // Bytes arrived: every complete frame is handled, the rest stays in `input`.
  void input(reactor::Buffer& input);
  // The peer will send no more: close once every request before has been answered.
  void peer_closed();
  // The connection closed: leave every room, give the name back.
  void closed();
  // About once a second, for codecs with timeouts (Codec::tick).
  void tick(reactor::Clock::time_point now) { codec_->tick(*this, now); }

  // ---- Member (called by the hub) ----
  uint64_t id() const override { return id_; }
  FormatId format() const override { return format_; }
  const std::string& name() const override { return name_; }
  void deliver(const Delivery& delivery) override;
  void joined(const std::string& room, const JoinReply& reply) override;
  void acked(const std::string& room, const std::string& id, uint64_t seq, bool stored) override;
  DirectResult direct(const DirectMessage& message) override;
  MemberInfo describe() const override;
  void join_refused(const std::string& room, Refusal why) override;
  void publish_refused(const std::string& room, Refusal why, const std::string& id) override;
  void removed(const std::string& room) override;

  // ---- Called by the codec ----
  Stats& stats() { return shard_.stats; }
  const Limits& limits() const { return shard_.limits; }
  const std::vector<std::string>& rooms() const { return rooms_; }
  bool in_room(const std::string& room) const { return shard_.hub.is_member(room, this); }
  // Names the member (claimed by the codec through ShardTable::claim_name; given back at close).
  // Only while in no room: the owners know a member by the name it joined with.
  void set_name(std::string name);
  // Claims `name` for this member (ShardTable::claim_name), as a member of front end `front` (with
  // the user name and real name IRC shows, if its front end has them).
  bool claim_name(const std::string& name, const std::string& front, const std::string& user = {},
                  const std::string& realname = {});
  // Renames the member in its rooms (a name already claimed by the codec; the old one is given back).
  void rename(std::string name);
  // The codec's format changed (IRC capabilities before registration). Only while in no room.
  void refresh_format();
  // Offers the unread input again after `delay` (a codec that held it back, Codec::hold_input).
  void redeliver_after(reactor::Clock::duration delay);
  // Joins `room`; with `want_reply`, the room's owner answers through Codec::joined.
  // `key`: the room's key, if it has one (the owner may refuse: Codec::join_refused).
  HubError join(const std::string& room, bool want_reply, const std::string& key = {});
  // Joins `room` and, after the owner's answer, sends every message of it numbered after `since` in
  // `epoch` (replayed from the store), then the live ones: no gap, no duplicate. The answer says
  // whether all could be replayed (Codec::joined's `recovered`); if not, nothing is replayed.
  HubError join_since(const std::string& room, uint64_t since, std::string epoch);
  // Leaves `room`; the other members hear `reason` if the front end carries one (IRC's PART).
  HubError leave(const std::string& room, const std::string& reason = {});
  // Leaves every room; `quit`: because the connection is closing (the rooms hear the codec's
  // quit_reason).
  void leave_all(bool quit = false);
  // The member is going (IRC's QUIT, a flood, a timeout) while its connection still flushes its
  // last lines: its rooms hear of it now, and its name is free now, not once the peer has closed.
  void depart();
  // True (and closed) if a frame has been left unfinished longer than --frame-timeout-ms at `now`
  // (the steady clock in ms, as Session::clock_ms): a client trickling its bytes (slowloris).
  bool frame_timed_out(uint32_t now_ms);
  static uint32_t clock_ms();
  // The server is going away (`restart`: draining): the codec's last words are queued, after
  // everything queued before; the caller closes the connection after the flush.
  void going_away(bool restart);
  // Publishes `text` from `user` to `room` (the sender must be a member).
  // With an `id`, the codec's `acked` answers once the message is stored (Hub::publish).
  // With `external`, also to a room the member is not in, if the room allows it (Hub::publish).
  HubError publish(const std::string& room, std::string_view user, std::string_view text, std::string_view id = {},
                   bool external = false, bool notice = false);
  // `room`'s messages numbered between `after` and `before` (0: no bound), at most `limit` and at most
  // --history-reply-bytes of them: the newest of them, or with `newest` false the oldest; answered
  // through Codec::history (oldest first). The caller checks membership. False (counted in
  // rate_limited, nothing read) while the connection's or its address's history budget is spent:
  // the codec answers.
  bool history(const std::string& room, uint64_t after, uint64_t before, size_t limit, bool newest = true);
  // Joins `room` and, after the owner's answer, sends its last `count` messages (replayed from the
  // store), then the live ones, with no gap and no duplicate (as join_since does); nothing is
  // replayed if they cannot all be.
  // With a `reader` (a folded IRC nick): only what is numbered past the reader's read mark in the
  // store (Store::get_mark), if it has one: history is played back once.
  HubError join_recent(const std::string& room, size_t count, const std::string& key = {}, const std::string& reader = {});

  // ---- Sending: four ways, one for each kind of bytes a codec sends ----
  // The session answers in request order: a pong (after_earlier_answers) leaves only once every
  // answer to the requests before it has, including answers that come from other shards (a room's
  // owner, a name's holder), and the answers to later requests wait behind a waiting pong.
  //
  // 1. reply: an answer to the request being handled, ready now (an error, a welcome, a numeric).
  //    Called from an ask_*'s `answer` (4.), it is that answer: sent as it comes.
  void reply(reactor::SharedBytes bytes);
  // 2. after_earlier_answers: an answer that must follow every earlier answer, also those still
  //    coming from other shards (a pong); later replies wait behind it. Null: the close that follows
  //    a half-close.
  void after_earlier_answers(reactor::SharedBytes bytes);
  // 3. push: bytes for this member that answer nothing of its own (a message to it alone, a
  //    bulletin: what Codec::direct renders): counted as a delivery, never held back.
  void push(const reactor::SharedBytes& bytes);
  // 4. ask_*: an answer that will come from another shard. The session asks the hub, notes which
  //    shard (or every shard) answers, so that a later pong waits for it, and runs
  //    `answer(Session&, result)` on this shard when the result comes, if the connection is still
  //    open; what `answer` replies (1.) is sent then. Say what is asked, not where: the session
  //    knows who answers.
  //    `room`'s owner: the room as it is now (Hub::inspect).
  template <class Answer>
  void ask_room(const std::string& room, Answer answer) {
    shard_.hub.inspect(room, answering(std::move(answer)));
    touched(room);
  }
  //    `room`'s owner: a request about its policy (Hub::policy: topic, modes, kick, invitation).
  template <class Answer>
  void ask_policy(const std::string& room, PolicyRequest request, Answer answer) {
    shard_.hub.policy(room, this, std::move(request), answering(std::move(answer)));
    touched(room);
  }
  //    The holder of `message.to`: the message given (Hub::direct), and what became of it.
  template <class Answer>
  void ask_direct(DirectMessage message, Answer answer) {
    auto shard = shard_.hub.direct(std::move(message), answering(std::move(answer)));
    if (shard) remote_ |= uint64_t{1} << *shard;
  }
  //    The holder of `name`: the member as it describes itself (Hub::describe_member).
  template <class Answer>
  void ask_member(const std::string& name, Answer answer) {
    auto shard = shard_.hub.describe_member(name, answering(std::move(answer)));
    if (shard) remote_ |= uint64_t{1} << *shard;
  }
  //    Every shard: the members whose names match `pattern` (Hub::find_members).
  template <class Answer>
  void ask_members(const std::string& pattern, size_t limit, Answer answer) {
    shard_.hub.find_members(pattern, limit, answering(std::move(answer)));
    awaiting_all();
  }
  //    Every shard: the rooms and their counts (Hub::list_rooms).
  template <class Answer>
  void ask_rooms(size_t limit, Answer answer) {
    shard_.hub.list_rooms(limit, answering(std::move(answer)));
    awaiting_all();
  }
  //    The owners of `rooms`: the modes in each of the member named `name` (Hub::member_modes).
  template <class Answer>
  void ask_member_modes(const std::string& name, const std::vector<std::string>& rooms, Answer answer) {
    shard_.hub.member_modes(name, rooms, answering(std::move(answer)));
    awaiting_all();
  }
  // Not a send: `message` for the member it names (an invitation) or for every member (a bulletin),
  // with no answer to wait for.
  void tell(DirectMessage message) { shard_.hub.direct(std::move(message), [](const DirectResult&) {}); }
  void tell_everyone(const DirectMessage& message) { shard_.hub.everyone(message); }

  // ---- What codecs read of the process (ShardTable): names and the token authority ----
  // --auth-secret: who checks tokens (null: no authentication).
  const TokenAuthority* authority() const { return shard_.hub.table().authority(); }
  // Who holds `name`, if anyone (names compared without regard to ASCII case).
  std::optional<ShardTable::NameHolder> find_name(const std::string& name) { return table().find_name(name); }
  bool name_held(const std::string& name) { return table().name_held(name); }
  // Names given back lately (WHOWAS), newest first; names held now and the most held at once.
  std::vector<ShardTable::PastName> past_names(const std::string& name, size_t max) {
    return table().past_names(name, max);
  }
  size_t names_held() { return table().name_count(); }
  size_t names_peak() { return table().name_peak(); }
  // What is kept with this member's name besides it (NameHolder's away and oper).
  void set_name_flags(bool away, bool oper) { table().set_name_flags(name_, id_, away, oper); }
  bool open() const { return transport_.open(); }
  // Closes the connection once what is queued has left.
  void close_after_flush(reactor::CloseCode code, std::string_view text);
  // The connection's request budget (--message-rate a second after a burst of --message-burst; its
  // address's, four times that, AddressLimits::request_rate): every request but a ping takes one
  // token (publish() takes its own). True if this one may go; false (counted in rate_limited) if
  // not, and past --message-burst refusals in a row the connection is closed once the codec has
  // answered. With `pace`, a refusal also holds the connection's input until a token is due
  // (its later requests wait, unread, instead of each being refused: what a refusal costs is then
  // paid once per wait, not per request pipelined).
  bool take_request_token(bool pace = true);
  // --auth-secret (ShardTable::authority): the connection gave no valid token. Counted; `last_words`
  // (the codec's way of saying so) leave, then the connection closes, and nothing more it sent is
  // read. `why` goes into the close's log line (within the closes' budget): never the token.
  void refuse_unauthenticated(reactor::SharedBytes last_words, std::string_view why);

  // ---- Called by the transport ----
  // The hard output limit, for what a transport sends of its own (a WebSocket pong): false, and
  // the member closed as a slow consumer, if `bytes` more would pass it.
  bool output_fits(size_t bytes);
  // Where the transport's own framing is (WebSocket: its frames and fragmented messages, which reach
  // input() whole): `partial` if a frame or message is begun and not ended, `progressed` if one
  // ended in this read. The frame timeout (frame_timed_out) counts from there.
  void note_framing(bool partial, bool progressed);

 private:
  Hub& hub() { return shard_.hub; }
  ShardTable& table() { return shard_.hub.table(); }
  // ask_*'s callback: runs `answer` if the session is alive and open, its replies sent as they come.
  template <class Answer>
  auto answering(Answer answer) {
    return [alive = weak_from_this(), answer = std::move(answer)](auto&& result) mutable {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      bool was = self->answering_;
      self->answering_ = true;
      answer(*self, result);
      self->answering_ = was;
    };
  }
  // An answer that came from another shard: sent as it comes (a later pong waits for it).
  void send_answer(const reactor::SharedBytes& bytes);
  void awaiting_all();
  // Frames and handles what `input` holds; true if it stopped at a frame not yet complete.
  bool frame_input(reactor::Buffer& input);
  void switch_codec(std::unique_ptr<Codec> next);
  // Sends `bytes` (null: closes the connection after its flush).
  void emit(const reactor::SharedBytes& bytes);
  void send(const reactor::SharedBytes& bytes);
  // Notes that a request about `room` is answered from another thread (ping waits for it).
  void touched(const std::string& room);
  void release_held();
  // Backpressure between reactors: stop reading until the table has room (ShardTable::congested).
  void wait_for_room();
  void resume_input();
  // History budgets (--history-rate): true while this connection's or its address's is spent.
  bool history_in_debt();
  // The --message-rate bucket, refilled for the time since its last refill.
  void refill_request_tokens();
  // True if a request may take one from the address's budget: credit borrowed earlier, a borrow of
  // address_borrow_size() now (into address_credit_), or no address budget at all.
  bool address_credit_ready();
  uint32_t address_borrow_size() const;
  static constexpr uint32_t kAddressBorrow = 16;
  // Stops reading the connection for `ms` (a client past its budget), then reads on.
  void hold_input(uint32_t ms);
  // 0 if a request could take its token (and its address's) now, else how long until it could.
  uint32_t request_wait_ms();
  // Spends the bytes of an answer from both; with `trim`, trims `result` to --history-reply-bytes
  // first (keeping the newest messages, or with `newest` false the oldest; `more` set if cut).
  void charge_history(ReadResult& result, bool newest, bool trim = true);
  AddressKey peer_address() const;
  // Recovery (join_since): live deliveries of the room wait in `live` until the replay is sent.
  struct Buffered {
    reactor::SharedBytes bytes;
    uint64_t seq;  // 0: not a message (presence)
  };
  struct Recovery {
    std::string room;
    uint64_t since = 0;
    std::string epoch;
    uint64_t serial = 0;  // tells this recovery from a later one of the same room
    size_t recent = 0;    // join_recent: replay the last `recent` messages (since and epoch from the answer)
    std::string reader;   // join_recent: whose read mark bounds the replay from below
    bool mark_asked = false;
    // Replayed and answered: live copies numbered up to `floor` may still be on their way (kept
    // before the replay read them, delivered after): they are dropped until one past it arrives.
    bool done = false;
    uint64_t floor = 0;
    JoinReply reply;  // the owner's answer (its names copied into `names`)
    std::optional<std::vector<std::string>> names;
    std::vector<MemberModes> modes;
    std::string topic, topic_by;
    std::vector<Buffered> live;
    size_t live_bytes = 0;
  };
  Recovery* recovery(std::string_view room);
  void recover(Recovery& r, const JoinReply& reply);
  // After the owner's answer (and the reader's mark, if any): reads what is to be replayed.
  void read_replay(Recovery& r, uint64_t mark);
  void replayed(const std::string& room, uint64_t serial, ReadResult result);
  void finish_recovery(Recovery& r, bool recovered, const std::vector<StoredMessage>& messages);
  void end_recovery(std::string_view room);

  SessionContext& shard_;
  Transport& transport_;
  std::unique_ptr<Codec> codec_;
  uint64_t id_;
  FormatId format_;
  bool lost_ = false;
  bool waiting_room_ = false;
  bool resumed_ = false;  // the first request after a wait for room is not held back again
  bool hooks_ = false;    // the codec's Codec::has_hooks()
  bool holding_ = false;  // input held back for a while (hold_input): past a budget
  bool paced_ = false;    // refused past its budget with more pipelined: each request waits for its token
  bool answering_ = false;  // in an ask_*'s answer: its replies go as they come
  uint8_t address_credit_ = 0;  // requests borrowed from the address's budget, not yet used
  uint32_t left_in_ = 0;  // bytes left in the input buffer by the last input() (counted in already)
  // --message-rate: the token bucket (refilled at ms of the steady clock, wrapping), refusals since
  // the last message taken.
  TokenBucket<float, uint32_t> requests_;
  uint32_t refused_in_row_ = 0;
  // --frame-timeout-ms: when the frame still unfinished in the input buffer began (0: none).
  uint32_t partial_since_ms_ = 0;
  // --history-rate: bytes of history this connection may still be answered with (in debt: negative).
  TokenBucket<float, uint32_t> history_left_;
  std::string name_;
  std::vector<std::string> rooms_;
  OutputLimit::State output_state_;
  // A pong is sent once every request before its ping has been answered, including the answers that
  // come from other shards (a join's "joined", a message's own copy): remote_ has a bit for each
  // shard sent requests since the last ping, and the pong waits for a Hub::barrier over them. Direct
  // replies after a waiting pong wait behind it; a join's "joined" is an answer from the room's
  // owner and comes when it comes (before the pong for a join sent before the ping). The queue of
  // held replies exists only while something is held: every byte here is paid per connection.
  struct Held {
    uint64_t id;
    reactor::SharedBytes bytes;  // null: the close that follows a half-close
    bool ready;
  };
  struct HeldReplies {
    std::vector<Held> replies;
    uint64_t next_id = 0;
  };
  // Replies that may wait behind the first waiting pong; a client that pipelines more is closed.
  static constexpr size_t kMaxHeld = 4096;
  uint64_t remote_ = 0;  // bit k: shard k (at most 64 shards, see ShardTable)
  std::unique_ptr<HeldReplies> held_;
  // Joins recovering what they missed (join_since); exists only while one does.
  std::unique_ptr<std::vector<Recovery>> recovering_;
  uint64_t recovery_serial_ = 0;
};

}  // namespace chat
