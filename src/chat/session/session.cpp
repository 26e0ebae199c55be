#include "chat/session/session.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>

#include "reactor/log.h"

namespace chat {

// Every byte of a session is paid per connection.
static_assert(sizeof(Session) <= 192);

Session::Session(SessionContext& shard, Transport& transport, uint64_t id, std::unique_ptr<Codec> codec)
    : shard_(shard),
      transport_(transport),
      codec_(std::move(codec)),
      id_(id),
      format_(codec_->format().id()),
      hooks_(codec_->has_hooks()) {}

Session::~Session() = default;

void Session::start() {
  ++stats().sessions[format_];
  hub().add_member(this);
  // With --auth-secret the hello (or IRC's registration) is owed from the start: a connection that
  // sends nothing is closed by the frame timeout too (without it, a silent connection is an
  // article client listening, and stays).
  if (table().authority() != nullptr) partial_since_ms_ = std::max<uint32_t>(clock_ms(), 1);
  codec_->start(*this);
}

void Session::input(reactor::Buffer& input) {
  if (waiting_room_) return;  // paused: resume_input() offers these bytes again
  // The buffer may start with bytes left from an earlier call (a partial frame, or frames not yet
  // handled while waiting for room): only what is new counts in.
  stats().bytes_in += input.size() - left_in_;
  size_t before = input.size();
  bool partial = frame_input(input);
  bool progressed = input.size() < before;
  if (lost_) input.clear();
  left_in_ = static_cast<uint32_t>(input.size());
  note_framing(partial, progressed);
}

void Session::note_framing(bool partial, bool progressed) {
  // The frame left unfinished began in this call if earlier frames ended in it (a client streaming
  // frames ends most reads in the middle of one: that is not one frame taking long), else it is the
  // one left last time. Complete frames held back (flood control, a wait for room) are not one.
  if (!partial || lost_) {
    partial_since_ms_ = 0;
  } else if (partial_since_ms_ == 0 || progressed) {
    partial_since_ms_ = std::max<uint32_t>(clock_ms(), 1);  // never 0: 0 is "none"
  }
}

bool Session::frame_input(reactor::Buffer& input) {
  // Right after a wait for room, one request goes through whatever the others did first: every
  // waiting connection resumes at once, and without this a flooder resumed before a calm member
  // would fill the inboxes again before the calm member's first request, every time.
  bool fair_turn = std::exchange(resumed_, false);
  while (!input.empty() && !lost_ && transport_.open()) {
    if (holding_) return false;  // paced (hold_input): resume_reading offers the rest again
    if (paced_) {
      // Past its budget with more pipelined: each next request waits, unread, for its token
      // (refusing each would cost as much as doing it, and tell the client nothing new).
      if (uint32_t wait = request_wait_ms()) {
        hold_input(wait);
        return false;
      }
    }
    if (!std::exchange(fair_turn, false) && table().congested()) {
      wait_for_room();
      return false;
    }
    if (hooks_ && codec_->hold_input(*this, input.size())) return false;
    FrameResult r = codec_->next_frame(input.view());
    switch (r.status) {
      case FrameStatus::kFrame:
        if (auto next = codec_->on_frame(*this, r.frame)) switch_codec(std::move(next));
        break;
      case FrameStatus::kNeedMore:
        if (r.consumed == 0) return true;  // a partial frame stays in the buffer
        break;
      case FrameStatus::kGarbage:
        ++stats().errors_garbage;
        codec_->on_bad_frame(*this, r, input.view().substr(0, r.consumed));
        break;
      case FrameStatus::kTooLong:
        ++stats().errors_too_long;
        codec_->on_bad_frame(*this, r, {});
        break;
      case FrameStatus::kLost:
        ++stats().unsynced_closes;
        lost_ = true;
        codec_->on_bad_frame(*this, r, {});
        transport_.close_after_flush(reactor::CloseCode::kProtocol,
                                     "stream cannot be resynchronised: a frame went on past " +
                                         std::to_string(limits().max_frame * kDiscardFactor) + " bytes");
        break;
    }
    input.consume(r.consumed);
  }
  if (input.empty()) paced_ = false;  // caught up: the next burst is answered as it comes
  return false;
}

void Session::switch_codec(std::unique_ptr<Codec> next) {
  // Only between rooms: the owners count members per format, as they joined.
  assert(rooms_.empty());
  --stats().sessions[format_];
  codec_ = std::move(next);
  format_ = codec_->format().id();
  hooks_ = codec_->has_hooks();
  ++stats().sessions[format_];
}

void Session::refresh_format() {
  assert(rooms_.empty());
  --stats().sessions[format_];
  format_ = codec_->format().id();
  ++stats().sessions[format_];
}

void Session::redeliver_after(reactor::Clock::duration delay) {
  table().reactor(hub().shard()).run_after(delay, [alive = weak_from_this()] {
    auto self = alive.lock();
    if (self && !self->waiting_room_ && self->transport_.open()) self->transport_.redeliver_input();
  });
}

void Session::wait_for_room() {
  // Like a full TCP window: stop reading, keep what is buffered, and go on where we stopped once
  // the reactors have room (ShardTable).
  waiting_room_ = true;
  transport_.pause_reading();
  hub().wait_for_room([alive = weak_from_this()] {
    if (auto self = alive.lock()) self->resume_input();
  });
}

void Session::resume_input() {
  waiting_room_ = false;
  resumed_ = true;
  partial_since_ms_ = 0;  // the time the server held it back is not the client's: the clock starts again
  if (!holding_) transport_.resume_reading();  // offers the buffered bytes to input() again
}

void Session::hold_input(uint32_t ms) {
  if (holding_) return;
  holding_ = true;
  transport_.pause_reading();
  table().reactor(hub().shard()).run_after(std::chrono::milliseconds(ms), [alive = weak_from_this()] {
    auto self = alive.lock();
    if (!self) return;
    self->holding_ = false;
    self->partial_since_ms_ = 0;  // held by the server: the frame clock starts again
    if (!self->waiting_room_ && self->transport_.open()) self->transport_.resume_reading();
  });
}

void Session::set_name(std::string name) { name_ = std::move(name); }

bool Session::claim_name(const std::string& name, const std::string& front, const std::string& user,
                         const std::string& realname) {
  return table().claim_name(name, ShardTable::NameHolder{id(), hub().shard(), front, user, realname});
}

void Session::rename(std::string name) {
  std::string old = std::exchange(name_, std::move(name));
  hub().rename(this, old, rooms_);
  for (const std::string& room : rooms_) touched(room);
  // A change of case only keeps the claim (names are one, whatever their case).
  if (ShardTable::fold_name(old) != ShardTable::fold_name(name_)) table().release_name(old, id());
}

HubError Session::join(const std::string& room, bool want_reply, const std::string& key) {
  HubError e = hub().join(room, this, want_reply, key);
  if (e != HubError::kNone) return e;
  rooms_.push_back(room);
  touched(room);
  return e;
}

HubError Session::join_since(const std::string& room, uint64_t since, std::string epoch) {
  if (in_room(room)) return HubError::kAlreadyMember;
  if (!recovering_) recovering_ = std::make_unique<std::vector<Recovery>>();
  Recovery& r = recovering_->emplace_back();
  r.room = room;
  r.since = since;
  r.epoch = std::move(epoch);
  r.serial = ++recovery_serial_;
  return join(room, /*want_reply=*/true);
}

HubError Session::join_recent(const std::string& room, size_t count, const std::string& key, const std::string& reader) {
  if (in_room(room)) return HubError::kAlreadyMember;
  if (!recovering_) recovering_ = std::make_unique<std::vector<Recovery>>();
  Recovery& r = recovering_->emplace_back();
  r.room = room;
  r.recent = std::max<size_t>(count, 1);
  r.reader = reader;
  r.serial = ++recovery_serial_;
  HubError e = join(room, /*want_reply=*/true, key);
  if (e != HubError::kNone) end_recovery(room);
  return e;
}

HubError Session::leave(const std::string& room, const std::string& reason) {
  HubError e = hub().leave(room, this, /*quit=*/false, reason);
  if (e != HubError::kNone) return e;
  end_recovery(room);
  std::erase(rooms_, room);
  touched(room);
  return e;
}

void Session::depart() {
  leave_all(/*quit=*/true);
  if (!name_.empty()) table().release_name(name_, id());
  name_.clear();
}

void Session::going_away(bool restart) {
  if (auto bytes = codec_->going_away(*this, restart); bytes && transport_.open()) transport_.send(bytes);
}

void Session::leave_all(bool quit) {
  hub().leave_all(this, rooms_, quit, quit ? codec_->quit_reason() : std::string());
  rooms_.clear();
  recovering_.reset();
}

uint32_t Session::clock_ms() {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(reactor::Clock::now().time_since_epoch()).count());
}

bool Session::frame_timed_out(uint32_t now_ms) {
  // Not while the server itself holds the connection's input back (a wait for room between
  // reactors, a client paced past its budget).
  if (partial_since_ms_ == 0 || waiting_room_ || holding_ || lost_ || !transport_.open()) return false;
  // As a signed difference: the clock wraps every 49 days, and `now_ms` may be a little behind.
  if (static_cast<int32_t>(now_ms - partial_since_ms_) <= limits().frame_timeout.count()) return false;
  // Bytes the server has not read yet: the reactor is behind (a busy loop runs its timers before
  // its reads), not the peer. Looked at again at the next sweep, after they are read.
  if (transport_.input_pending()) return false;
  ++stats().frame_timeouts;
  lost_ = true;
  std::string ms = std::to_string(limits().frame_timeout.count());
  transport_.close_after_flush(reactor::CloseCode::kProtocol,
                               name_.empty() && table().authority() != nullptr
                                   ? "no hello within " + ms + " ms of the connection (--frame-timeout-ms, --auth-secret)"
                                   : "a frame begun " + ms + " ms ago is not finished (--frame-timeout-ms)");
  return true;
}

uint32_t Session::address_borrow_size() const {
  // A few at a time (the lock is then seldom taken), but a small part of the address's burst.
  return static_cast<uint32_t>(std::clamp(limits().per_address.request_burst / 64, 1.0, double{kAddressBorrow}));
}

bool Session::address_credit_ready() {
  if (address_credit_ > 0) return true;
  AddressTable* addresses = table().addresses();
  if (addresses == nullptr || limits().per_address.request_rate <= 0) return true;  // no address budget
  AddressKey key = peer_address();
  if (!key.counted()) return true;
  uint32_t got = addresses->borrow_requests(key, reactor::Clock::now(), address_borrow_size());
  address_credit_ = static_cast<uint8_t>(got);
  return got > 0;
}

void Session::refill_request_tokens() {
  const Limits& l = limits();
  requests_.refill(clock_ms(), l.message_rate, l.message_burst);
}

uint32_t Session::request_wait_ms() {
  const Limits& l = limits();
  if (l.message_rate <= 0) return 0;
  refill_request_tokens();
  if (!requests_.at_least(1)) {
    return static_cast<uint32_t>(std::clamp(1000.0 * requests_.seconds_until(1, l.message_rate), 1.0, 1000.0));
  }
  if (address_credit_ready()) return 0;  // the request's own take_request_token takes it
  // The address's budget is spent (other connections of it share it): look again once a borrow's worth is due.
  return static_cast<uint32_t>(std::clamp(1000.0 * address_borrow_size() / l.per_address.request_rate, 10.0, 1000.0));
}

bool Session::take_request_token(bool pace) {
  const Limits& l = limits();
  if (l.message_rate <= 0) return true;
  refill_request_tokens();
  if (requests_.at_least(1) && address_credit_ready()) {
    if (address_credit_ > 0) --address_credit_;
    requests_.take();
    refused_in_row_ = 0;
    return true;
  }
  ++stats().rate_limited;
  if (pace) {
    // What it pipelined after waits (unread, its TCP window pushing back) until its token is due.
    paced_ = true;
    return false;
  }
  if (++refused_in_row_ > l.message_burst && !lost_) {
    // Going on regardless: closed once the codec has said why (in the deferred phase, after this
    // dispatch); what else it sent is not read.
    ++stats().rate_limit_closes;
    lost_ = true;
    table().reactor(hub().shard()).defer([self = weak_from_this()] {
      if (auto s = self.lock()) {
        s->transport_.close_after_flush(reactor::CloseCode::kProtocol, "requests past --message-rate, refusal after refusal");
      }
    });
  }
  return false;
}

HubError Session::publish(const std::string& room, std::string_view user, std::string_view text,
                          std::string_view id, bool external, bool notice) {
  if (!take_request_token(/*pace=*/false)) return HubError::kRateLimited;
  HubError e = hub().publish(room, this, user, text, id, external, notice);
  if (e != HubError::kNone) return e;
  ++stats().messages_in;
  touched(room);
  return e;
}

bool Session::history(const std::string& room, uint64_t after, uint64_t before, size_t limit, bool newest) {
  if (history_in_debt()) {
    ++stats().rate_limited;
    // Until the connection's debt is paid (its address's, if that is what is spent, is checked again then).
    double ms = history_left_.at_least(0) ? 100.0 : 1000.0 * history_left_.seconds_until(0, limits().history_rate);
    hold_input(static_cast<uint32_t>(std::clamp(ms, 10.0, 2000.0)));
    return false;
  }
  Store& store = table().store();
  if (store.asynchronous()) remote_ |= uint64_t{1} << hub().shard();  // a later pong waits for it
  store.read(table().reactor(hub().shard()), room, after, before, limit, newest,
             [alive = weak_from_this(), room, &store, newest](ReadResult result) {
               auto self = alive.lock();
               if (!self || !self->transport_.open()) return;
               ++self->stats().history_reads;
               self->charge_history(result, newest);
               // Not through reply(): like "joined", an answer from another thread.
               if (auto bytes = self->codec_->history(room, store.epoch(), result)) self->send(bytes);
             });
  return true;
}

namespace {
// What one stored message costs an answer: its fields and the format's framing around them.
size_t answer_bytes(const StoredMessage& m) { return m.user.size() + m.text.size() + m.id.size() + 96; }
}  // namespace

AddressKey Session::peer_address() const {
  int fd = transport_.peer_fd();
  if (fd < 0) return {};
  try {
    return AddressKey::of(reactor::InetAddress::peer_of(fd));
  } catch (const std::exception&) {
    return {};  // gone meanwhile: it will close
  }
}

bool Session::history_in_debt() {
  const Limits& l = limits();
  if (l.history_rate <= 0) return false;
  history_left_.refill(clock_ms(), l.history_rate, l.history_burst);
  if (!history_left_.at_least(0)) return true;
  AddressTable* addresses = table().addresses();
  if (addresses == nullptr) return false;
  AddressKey key = peer_address();
  return key.counted() && addresses->history_in_debt(key, reactor::Clock::now());
}

void Session::charge_history(ReadResult& result, bool newest, bool trim) {
  auto& m = result.messages;
  size_t cap = trim ? limits().history_reply_bytes : 0;
  size_t bytes = 0, kept = 0;
  // From the end the answer keeps: the newest messages, or the oldest.
  for (; kept < m.size(); ++kept) {
    size_t cost = answer_bytes(newest ? m[m.size() - 1 - kept] : m[kept]);
    if (cap > 0 && kept > 0 && bytes + cost > cap) break;
    bytes += cost;
  }
  if (kept < m.size()) {
    result.more = true;
    if (newest) {
      m.erase(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(m.size() - kept));
    } else {
      m.resize(kept);
    }
  }
  if (limits().history_rate <= 0) return;
  history_left_.spend(static_cast<double>(bytes));
  AddressTable* addresses = table().addresses();
  if (addresses == nullptr) return;
  if (AddressKey key = peer_address(); key.counted()) addresses->charge_history(key, reactor::Clock::now(), static_cast<double>(bytes));
}

void Session::joined(const std::string& room, const JoinReply& reply) {
  if (hooks_) codec_->counted(*this, room);
  if (Recovery* r = recovery(room); r && !r->done) return recover(*r, reply);
  // Not through reply(): this answer is what a waiting pong waits for.
  if (auto bytes = codec_->joined(*this, room, reply, std::nullopt)) send(bytes);
}

void Session::acked(const std::string& room, const std::string& id, uint64_t seq, bool stored) {
  ++(stored ? stats().acks : stats().not_stored);
  if (auto bytes = codec_->acked(room, id, seq, stored)) send(bytes);
}

Session::Recovery* Session::recovery(std::string_view room) {
  if (!recovering_) return nullptr;
  for (Recovery& r : *recovering_) {
    if (r.room == room) return &r;
  }
  return nullptr;
}

void Session::end_recovery(std::string_view room) {
  if (!recovering_) return;
  std::erase_if(*recovering_, [room](const Recovery& r) { return r.room == room; });
  if (recovering_->empty()) recovering_.reset();
}

void Session::recover(Recovery& r, const JoinReply& reply) {
  // The owner has counted this member: what it was sent before this answer preceded the join, and
  // every message it missed is now either in the store (numbered up to reply.seq, kept before it
  // was delivered) or on its way here live (buffered from now on).
  r.live.clear();
  r.live_bytes = 0;
  r.reply = reply;
  // What the reply points to is the owner's, valid during this call only: kept here.
  if (reply.names) r.names = *reply.names;
  if (reply.modes) r.modes = *reply.modes;
  if (reply.topic) r.topic = *reply.topic;
  if (reply.topic_by) r.topic_by = *reply.topic_by;
  r.reply.names = nullptr;
  r.reply.modes = nullptr;
  r.reply.topic = r.reply.topic_by = nullptr;
  if (!r.reader.empty() && !r.mark_asked) {
    // Live messages are buffered meanwhile (r.live), as during the read.
    r.mark_asked = true;
    Store& store = table().store();
    if (store.asynchronous()) remote_ |= uint64_t{1} << hub().shard();
    store.get_mark(table().reactor(hub().shard()), r.reader, r.room,
                   [alive = weak_from_this(), room = r.room, serial = r.serial](uint64_t mark) {
                     auto self = alive.lock();
                     if (!self || !self->transport_.open()) return;
                     Recovery* rr = self->recovery(room);
                     if (rr == nullptr || rr->serial != serial || rr->done) return;  // left meanwhile
                     self->read_replay(*rr, mark);
                   });
    return;
  }
  read_replay(r, 0);
}

void Session::read_replay(Recovery& r, uint64_t mark) {
  const JoinReply& reply = r.reply;
  if (r.recent > 0) {
    r.since = reply.seq > r.recent ? reply.seq - r.recent : 0;
    // What the reader was sent before is not sent again (a mark past the room's number is stale:
    // the room's history was lost since).
    if (mark <= reply.seq) r.since = std::max(r.since, mark);
    r.epoch = reply.epoch;
  }
  if (r.epoch != reply.epoch || r.since > reply.seq) return finish_recovery(r, false, {});
  if (r.since == reply.seq) return finish_recovery(r, true, {});
  // A replay is history too (--history-rate): with the budget spent, nothing is replayed (the
  // answer says recovered false, and the client may page with history later).
  if (history_in_debt()) {
    ++stats().rate_limited;
    return finish_recovery(r, false, {});
  }
  size_t limit = limits().replay_limit;
  table().store().read(table().reactor(hub().shard()), r.room, r.since, 0, limit + 1, /*newest=*/false,
                       [alive = weak_from_this(), room = r.room, serial = r.serial](ReadResult result) {
                         if (auto self = alive.lock()) self->replayed(room, serial, std::move(result));
                       });
}

void Session::replayed(const std::string& room, uint64_t serial, ReadResult result) {
  Recovery* r = recovery(room);
  if (r == nullptr || r->serial != serial || !transport_.open()) return;  // left meanwhile
  // All of it, or nothing: the numbers from since + 1 on without a hole, reaching the number the
  // owner had when it counted the member, within the replay limit.
  auto& m = result.messages;
  // Numbers past the owner's come live (the member was counted before they were given), also those
  // the store already has: replayed too, they would come twice.
  while (!m.empty() && m.back().seq > r->reply.seq) m.pop_back();
  bool complete = result.ok && !m.empty() && m.size() <= limits().replay_limit && m.front().seq == r->since + 1 &&
                  m.back().seq == r->reply.seq && m.back().seq - m.front().seq + 1 == m.size();
  if (complete) charge_history(result, /*newest=*/true, /*trim=*/false);
  finish_recovery(*r, complete, complete ? m : std::vector<StoredMessage>{});
}

void Session::finish_recovery(Recovery& recovery, bool recovered, const std::vector<StoredMessage>& messages) {
  // What follows is live, past the floor; the rest of the state goes (sending may close the
  // connection, which ends every recovery: nothing below uses `recovery`).
  Recovery r = std::move(recovery);
  recovery.room = r.room;
  recovery.live.clear();
  recovery.live_bytes = 0;
  recovery.names.reset();
  recovery.done = true;
  recovery.floor = messages.empty() ? r.reply.seq : messages.back().seq;
  if (r.recent == 0) ++(recovered ? stats().recoveries : stats().recoveries_failed);
  JoinReply reply = r.reply;
  reply.names = r.names ? &*r.names : nullptr;
  reply.modes = r.names ? &r.modes : nullptr;
  reply.topic = &r.topic;
  reply.topic_by = &r.topic_by;
  reply.epoch = table().store().epoch();
  reply.seq = recovery.floor;
  if (auto bytes = codec_->joined(*this, r.room, reply, recovered)) send(bytes);
  const Format& format = codec_->format();
  // As the codec shows history (IRC: in a batch, after a notice), or each as if live.
  reactor::SharedBytes rendered = messages.empty() ? nullptr : codec_->replay(*this, r.room, messages);
  if (rendered) {
    stats().replayed += messages.size();
    send(rendered);
  }
  for (const StoredMessage& m : messages) {
    if (rendered) break;
    auto bytes = format.encode(message_event(r.room, m));
    if (!bytes) continue;
    ++stats().replayed;
    send(bytes);
  }
  // Then what came live meanwhile, past what was replayed (or past the owner's number).
  for (const Buffered& b : r.live) {
    if (b.seq != 0 && b.seq <= reply.seq) continue;
    ++stats().deliveries;
    send(b.bytes);
    if (b.seq != 0) end_recovery(r.room);  // past the floor: nothing more to drop
  }
}

void Session::touched(const std::string& room) {
  size_t owner = table().owner_of(room);
  // With a store on another thread every answer about a room comes from there.
  if (table().router().answered_elsewhere(owner, hub().shard()) || table().store().asynchronous()) {
    remote_ |= uint64_t{1} << owner;
  }
}

void Session::peer_closed() {
  // A client may send its requests and half-close at once: it still gets every answer, also
  // those coming from other shards, and then the connection closes.
  after_earlier_answers(nullptr);
}

void Session::after_earlier_answers(reactor::SharedBytes bytes) {
  if (remote_ == 0) return reply(std::move(bytes));
  if (held_ && held_->replies.size() > kMaxHeld) return reply(std::move(bytes));  // closes
  std::vector<size_t> shards;
  for (size_t k = 0; k < ShardTable::kMaxShards; ++k) {
    if (remote_ & (uint64_t{1} << k)) shards.push_back(k);
  }
  remote_ = 0;
  if (!held_) held_ = std::make_unique<HeldReplies>();
  uint64_t held_id = held_->next_id++;
  held_->replies.push_back({held_id, std::move(bytes), false});
  hub().barrier(shards, [this, alive = weak_from_this(), held_id] {
    if (alive.expired() || !held_) return;
    for (Held& h : held_->replies) {
      if (h.id == held_id) h.ready = true;
    }
    release_held();
  });
}

void Session::release_held() {
  auto& q = held_->replies;
  size_t n = 0;
  while (n < q.size() && q[n].ready) emit(q[n++].bytes);
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(n));
  if (q.empty()) held_.reset();
}

void Session::emit(const reactor::SharedBytes& bytes) {
  if (bytes) {
    send(bytes);
  } else {
    transport_.close_after_flush(reactor::CloseCode::kPeerClosed, "peer closed the connection");
  }
}

DirectResult Session::direct(const DirectMessage& message) {
  if (!transport_.open()) return {};
  if (message.kill) {
    // Whatever the front end: its last words, if it has any, then it goes as a QUIT would.
    if (auto bytes = codec_->killed(*this, message.from, message.text)) send(bytes);
    DirectResult r{DirectResult::kDelivered, name_, codec_->format().front(), {}};
    depart();
    close_after_flush(reactor::CloseCode::kProtocol, "killed by a server operator");
    return r;
  }
  DirectResult r = codec_->direct(*this, message);
  r.name = name_;
  r.front = codec_->format().front();
  return r;
}

void Session::join_refused(const std::string& room, Refusal why) {
  if (why == Refusal::kRoomLimit) ++stats().refused_room_members;
  if (why == Refusal::kServerRooms) ++stats().refused_server_rooms;
  std::erase(rooms_, room);
  end_recovery(room);
  if (auto bytes = codec_->join_refused(*this, room, why)) send(bytes);
}

void Session::publish_refused(const std::string& room, Refusal why, const std::string& id) {
  ++stats().errors_request;
  if (auto bytes = codec_->publish_refused(*this, room, why, id)) send(bytes);
}

void Session::removed(const std::string& room) {
  std::erase(rooms_, room);
  end_recovery(room);
  codec_->removed(*this, room);
}

MemberInfo Session::describe() const {
  return {name_, codec_->format().front(), rooms_, codec_->away()};
}

void Session::push(const reactor::SharedBytes& bytes) {
  if (!transport_.open()) return;
  ++stats().deliveries;
  send(bytes);
}

void Session::send_answer(const reactor::SharedBytes& bytes) {
  if (transport_.open()) send(bytes);
}

void Session::awaiting_all() {
  for (size_t k = 0; k < table().shards(); ++k) remote_ |= uint64_t{1} << k;
}

void Session::reply(reactor::SharedBytes bytes) {
  if (answering_) return send_answer(bytes);  // an answer from another shard: a waiting pong waits for it
  if (!held_) return emit(bytes);
  if (held_->replies.size() > kMaxHeld) {
    ++stats().errors_request;
    transport_.close_soon(reactor::CloseCode::kProtocol,
                          "too many requests waiting behind a ping (" + std::to_string(kMaxHeld) + ")");
    return;
  }
  held_->replies.push_back({held_->next_id++, std::move(bytes), true});
}

void Session::close_after_flush(reactor::CloseCode code, std::string_view text) {
  transport_.close_after_flush(code, text);
}

void Session::refuse_unauthenticated(reactor::SharedBytes last_words, std::string_view why) {
  if (lost_) return;
  ++stats().auth_refused;
  lost_ = true;  // what it pipelined after (a join, a message) is never looked at (nor, closing, read)
  if (last_words && transport_.open()) send(last_words);  // before anything held: they are the last
  transport_.close_after_flush(reactor::CloseCode::kProtocol, "unauthorized: " + std::string(why));
}

void Session::closed() {
  --stats().sessions[format_];  // counted up in start(): chat_connections_open{front} comes back down
  codec_->on_close(*this);
  leave_all(/*quit=*/true);
  hub().remove_member(this);
  if (!name_.empty()) table().release_name(name_, id());
}

void Session::deliver(const Delivery& delivery) {
  const reactor::SharedBytes& bytes = delivery.bytes[format_];
  if (!bytes) return;
  if (hooks_ && !codec_->accept(*this, delivery.event)) return;
  if (Recovery* r = recovering_ ? recovery(delivery.event.room) : nullptr) {
    if (r->done) {
      bool message = delivery.event.kind == EventKind::kMessage;
      if (message && delivery.event.seq <= r->floor) return;  // replayed already
      if (message) end_recovery(delivery.event.room);
      ++stats().deliveries;
      return send(bytes);
    }
    // Held until the replay is sent; it counts against the output limit as if queued.
    if (!output_fits(r->live_bytes + bytes->size())) return;
    r->live.push_back({bytes, delivery.event.kind == EventKind::kMessage ? delivery.event.seq : 0});
    r->live_bytes += bytes->size();
    return;
  }
  ++stats().deliveries;
  send(bytes);
}

bool Session::output_fits(size_t bytes) {
  const OutputLimit& limit = shard_.output_limit;
  QueuedOutput queued = transport_.queued();
  if (limit.before_send(queued.footprint(), bytes) != OutputLimit::Verdict::kOverHard) return true;
  if (transport_.open()) {
    ++stats().slow_consumer_closes;
    transport_.close_soon(reactor::CloseCode::kSlowConsumer,
                          limit.describe(OutputLimit::Verdict::kOverHard, queued.bytes, queued.chunks));
  }
  return false;
}

void Session::send(const reactor::SharedBytes& bytes) {
  if (!output_fits(bytes->size())) return;
  const OutputLimit& limit = shard_.output_limit;
  if (transport_.send(bytes) != reactor::SendResult::kQueued) return;
  stats().bytes_out += bytes->size();
  if (limit.after_send(transport_.queued().footprint(), output_state_) == OutputLimit::Verdict::kOverSoft) {
    ++stats().slow_consumer_closes;
    transport_.close_soon(reactor::CloseCode::kSlowConsumer, limit.describe(OutputLimit::Verdict::kOverSoft, 0, 0));
  }
}

}  // namespace chat
