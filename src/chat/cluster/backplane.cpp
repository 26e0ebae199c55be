#include "chat/cluster/backplane.h"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/core/random_id.h"
#include "chat/core/store.h"
#include "chat/ops/json.h"
#include "reactor/log.h"

namespace chat {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr reactor::Clock::duration kFirstRetry = 100ms;
constexpr reactor::Clock::duration kLongestRetry = 2s;
constexpr reactor::Clock::duration kIdleUnsubscribe = 5s;  // an unwanted channel stays this long
constexpr reactor::Clock::duration kSweepEvery = 1s;
constexpr reactor::Clock::duration kTickEvery = 250ms;
constexpr unsigned kTicksPerHeartbeat = 4;                 // a heartbeat fence every second
constexpr reactor::Clock::duration kSilenceLimit = 4s;     // nothing back for this long: away

// One script, so numbering, keeping and publishing are one step (Redis runs scripts one at a time,
// and a script's writes are all done or, if Redis dies meanwhile, lost together):
//   the epoch: read, or set (ARGV[11], new) if missing: Redis lost what it had;
//   the id: if the room has seen (id, user), answer its number and do nothing else (and say so if
//   the text's fingerprint, ARGV[14], is not the one the id was first given with);
//   INCR the room's counter (never below the publisher's floor), XADD the message to the room's
//   stream with that number as its ID (fields user, text, ts, and id and front when not empty;
//   trimmed to ARGV[7] messages and none older than ARGV[8] ms), remember the id (the room's last
//   ARGV[9] ids, or younger than ARGV[10] ms, whichever keeps it longer), PUBLISH "NUMBER BODY" (the
//   body carries the same user, text, ts, id and front).
// Returns {number, 1 if new, 0 if seen before or 2 if seen before with another text, epoch}. The counter never expires: numbers must not
// come back within an epoch. The stream and the ids expire once the room has been quiet for as long
// as they are kept.
// KEYS: counter, channel, stream, ids hash, ids by time, epoch.
// ARGV: body, floor, user, text, ts, id, max messages, max age, dedupe ids, dedupe ms, new epoch,
// dedupe max ids, front (the sender's front end, "" if not known), the text's fingerprint (decimal).
// The ids hash maps "ID USER" to "NUMBER FINGERPRINT" (or "NUMBER" alone, written before fingerprints).
constexpr const char* kPublishScript = R"lua(
local epoch = redis.call('GET', KEYS[6])
if not epoch then epoch = ARGV[11]; redis.call('SET', KEYS[6], epoch) end
local id = ARGV[6]
local idkey = id .. ' ' .. ARGV[3]
if id ~= '' then
  local seen = redis.call('HGET', KEYS[4], idkey)
  if seen then
    local n, fp = string.match(seen, '^(%d+) ?(%d*)$')
    if fp ~= '' and fp ~= ARGV[14] then return {tonumber(n), 2, epoch} end
    return {tonumber(n), 0, epoch}
  end
end
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[2])
if n < floor then n = floor; redis.call('SET', KEYS[1], n) end
local ts = tonumber(ARGV[5])
local keep = tonumber(ARGV[7])
local age = tonumber(ARGV[8])
if keep > 0 then
  -- Never at or below the stream's last entry (a counter lost on its own: XADD would refuse it).
  local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
  if top then
    local last = tonumber(string.match(top[1], '^(%d+)'))
    if last and n <= last then n = last + 1; redis.call('SET', KEYS[1], n) end
  end
  -- id and front only when there is one: an entry without them reads as "none" and "not known".
  local fields = {'user', ARGV[3], 'text', ARGV[4], 'ts', ARGV[5]}
  if id ~= '' then fields[#fields + 1] = 'id'; fields[#fields + 1] = id end
  if ARGV[13] ~= '' then fields[#fields + 1] = 'front'; fields[#fields + 1] = ARGV[13] end
  redis.call('XADD', KEYS[3], 'MAXLEN', keep, n .. '-0', unpack(fields))
  local oldest = ts - age
  local function ts_of(e)
    for i = 1, #e[2], 2 do if e[2][i] == 'ts' then return tonumber(e[2][i + 1]) or 0 end end
    return 0
  end
  local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if head[1] and ts_of(head[1]) < oldest then
    local batch = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 100)
    local min = nil
    for _, e in ipairs(batch) do
      if ts_of(e) >= oldest then min = e[1]; break end
    end
    if min then redis.call('XTRIM', KEYS[3], 'MINID', min) end
  end
  redis.call('PEXPIRE', KEYS[3], age)
end
if id ~= '' then
  local window = tonumber(ARGV[10])
  redis.call('HSET', KEYS[4], idkey, n .. ' ' .. ARGV[14])
  redis.call('ZADD', KEYS[5], ARGV[5], idkey)
  local count = redis.call('ZCARD', KEYS[5])
  local over_max = count - math.max(tonumber(ARGV[12]), tonumber(ARGV[9]))
  if over_max > 0 then
    -- Past the hard bound the oldest go whatever their age.
    local popped = redis.call('ZPOPMIN', KEYS[5], over_max)
    for i = 1, #popped, 2 do redis.call('HDEL', KEYS[4], popped[i]) end
    count = count - over_max
  end
  local over = count - tonumber(ARGV[9])
  if over > 0 then
    local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. (ts - window), 'LIMIT', 0, math.min(over, 1000))
    for _, k in ipairs(old) do
      redis.call('HDEL', KEYS[4], k)
      redis.call('ZREM', KEYS[5], k)
    end
  end
  local life = math.max(age, window)
  redis.call('PEXPIRE', KEYS[4], life)
  redis.call('PEXPIRE', KEYS[5], life)
end
redis.call('PUBLISH', KEYS[2], n .. ' ' .. ARGV[1])
return {n, 1, epoch}
)lua";

// At every connection: the epoch, set (ARGV[1]) if Redis has none.
constexpr const char* kEpochScript =
    "local e = redis.call('GET', KEYS[1])\n"
    "if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end\n"
    "return e\n";

std::string_view str_of(const redisReply* r) {
  return r && r->type == REDIS_REPLY_STRING ? std::string_view(r->str, r->len) : std::string_view();
}

long long seconds(reactor::Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

}  // namespace

std::string encode_published_body(std::string_view user, std::string_view text, int64_t ts_ms, std::string_view node,
                                  uint64_t n, std::string_view id, std::string_view front, bool notice) {
  json body = {{"user", user}, {"text", text}, {"ts", ts_ms}};
  if (notice) body["notice"] = true;
  if (!id.empty()) body["id"] = id;
  if (!front.empty()) body["front"] = front;
  if (!node.empty()) {
    body["node"] = node;
    body["n"] = n;
  }
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool parse_published(std::string_view payload, Published& out) {
  size_t space = payload.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + space, out.seq);
  if (ec != std::errc() || end != payload.data() + space || out.seq == 0) return false;
  Json body;  // anyone who can reach Redis can publish here: parsed with the nesting limit
  if (parse_json(payload.substr(space + 1), body) != JsonStatus::kOk || !body.is_object()) return false;
  auto user = body.find("user"), text = body.find("text"), ts = body.find("ts");
  if (user == body.end() || !user->is_string() || text == body.end() || !text->is_string()) return false;
  if (ts != body.end() && !ts->is_number_integer()) return false;
  auto node = body.find("node"), n = body.find("n");
  if (node != body.end() && !node->is_string()) return false;
  if (n != body.end() && !n->is_number_unsigned()) return false;
  auto id = body.find("id");
  if (id != body.end()) {
    if (!id->is_string()) return false;
    const auto& s = id->get_ref<const std::string&>();
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
      if (c < 0x21 || c > 0x7e) return false;
    }
    out.id = s;
  } else {
    out.id.clear();
  }
  // Absent in what older nodes send: not known.
  auto front = body.find("front");
  if (front != body.end()) {
    if (!front->is_string() || !valid_front(front->get_ref<const std::string&>())) return false;
    out.front = front->get<std::string>();
  } else {
    out.front.clear();
  }
  auto notice = body.find("notice");
  if (notice != body.end() && !notice->is_boolean()) return false;
  out.notice = notice != body.end() && notice->get<bool>();
  out.user = user->get<std::string>();
  out.text = text->get<std::string>();
  out.ts_ms = ts == body.end() ? 0 : ts->get<int64_t>();
  out.node = node == body.end() ? std::string() : node->get<std::string>();
  out.n = n == body.end() ? 0 : n->get<uint64_t>();
  return true;
}

Backplane::Backplane(reactor::Reactor& loop, std::string host, uint16_t port, const Retention& history,
                     Deliver deliver, EpochChanged epoch_changed)
    : loop_(loop),
      host_(std::move(host)),
      port_(port),
      history_(history),
      deliver_(std::move(deliver)),
      epoch_changed_(std::move(epoch_changed)),
      node_id_(random_hex(16)),
      fence_channel_("reactor-chat:fence:" + node_id_),
      backoff_(kFirstRetry) {
  auto closed = [this](const std::string& reason) { down(reason); };
  pub_ = std::make_unique<redis::Connection>(loop_, host_, port_,
                                             redis::Connection::Callbacks{[this] { on_connected(); }, closed, {}});
  sub_ = std::make_unique<redis::Connection>(
      loop_, host_, port_,
      redis::Connection::Callbacks{[this] { on_connected(); }, closed, [this](const redisReply& r) {
        try {
          on_push(r);
        } catch (const std::exception& e) {  // never unwind through hiredis's C code
          LOG_WARN("redis: message ignored: %s", e.what());
        }
      }});
}

Backplane::~Backplane() {
  for (reactor::TimerId t : {retry_timer_, sweep_timer_, tick_timer_}) {
    if (t) loop_.cancel(t);
  }
}

void Backplane::start() {
  sweep_timer_ = loop_.run_every(kSweepEvery, [this] { sweep(); });
  tick_timer_ = loop_.run_every(kTickEvery, [this] { tick(); });
  connect();
}

void Backplane::connect() {
  retry_timer_ = 0;
  connections_up_ = 0;
  ping_answered_ = false;
  fence_on_ = false;
  ++link_;
  attempt_started_ = reactor::Clock::now();
  pub_->connect();
  sub_->connect();
}

// Both TCP connections are made; that proves nothing (a stopped Redis's kernel still accepts). The
// link is up once Redis answers a PING on `pub` and confirms the fence subscription on `sub`.
void Backplane::on_connected() {
  if (++connections_up_ < 2) return;
  // The rooms first and the fence channel last: when Redis confirms the fence subscription it has
  // run every SUBSCRIBE before it, so once the link is up every wanted room is subscribed.
  for (auto& [room, c] : channels_) {
    if (c.wanted) subscribe(room, c);
  }
  sub_->subscribe(fence_channel_);
  // The publish script, loaded once per connection: each publish then names it by its SHA1 instead
  // of sending its 2 KB again.
  publish_sha_.clear();
  pub_->command({"SCRIPT", "LOAD", kPublishScript}, [this, link = link_](const redisReply* r) {
    if (r != nullptr && link == link_ && r->type == REDIS_REPLY_STRING) publish_sha_ = str_of(r);
  });
  // Redis's answer on `pub`, and the epoch: known before anything is delivered from this link.
  pub_->command({"EVAL", kEpochScript, "1", kEpochKey, random_hex(32)}, [this, link = link_](const redisReply* r) {
    if (r == nullptr || link != link_) return;
    if (r->type == REDIS_REPLY_STRING) learned_epoch(str_of(r));
    ping_answered_ = true;
    answered_handshake();
  });
}

void Backplane::learned_epoch(std::string_view epoch) {
  if (epoch.empty() || epoch == epoch_) return;
  if (!epoch_.empty()) {
    LOG_WARN("redis %s:%u: the epoch changed (Redis lost its data): the rooms' history starts again", host_.c_str(),
             port_);
  }
  epoch_ = epoch;
  if (epoch_changed_) epoch_changed_(epoch_);
}

void Backplane::query(std::vector<std::string> argv, Reply done) {
  if (!(up_ || first_attempt())) return done(nullptr);
  queries_.push_back(Query{std::move(argv), std::move(done), false});
  send_queries();
}

// Answers come in the order sent on one connection; one that could not be sent stays unsent, and
// with it everything after (the link is going: down() fails them in order).
void Backplane::send_queries() {
  if (!up_) return;
  for (Query& q : queries_) {
    if (q.sent) continue;
    bool sent = pub_->command(q.argv, [this, link = link_](const redisReply* r) {
      if (r == nullptr || link != link_ || queries_.empty()) return;
      Reply done = std::move(queries_.front().done);
      queries_.pop_front();
      done(r);
    });
    if (!sent) return;
    q.sent = true;
    std::vector<std::string>().swap(q.argv);
  }
}

void Backplane::fail_queries() {
  auto failed = std::move(queries_);
  queries_.clear();
  for (Query& q : failed) q.done(nullptr);
}

void Backplane::answered_handshake() {
  if (up_ || !ping_answered_ || !fence_on_) return;
  up_ = true;
  backoff_ = kFirstRetry;  // Redis answers: the link has proved itself
  size_t rooms = std::count_if(channels_.begin(), channels_.end(), [](const auto& c) { return c.second.wanted; });
  LOG_INFO("redis %s:%u: connected%s; %zu room(s) subscribed", host_.c_str(), port_, stats_.outages ? " again" : "",
           rooms);
  send_queries();
  drain();
}

void Backplane::down(const std::string& reason) {
  if (retry_timer_) return;  // the other connection's news of the same outage
  pub_->close();
  sub_->close();
  bool was_up = up_;
  up_ = false;
  connections_up_ = 0;
  ping_answered_ = false;
  fence_on_ = false;
  heartbeat_out_ = false;
  ++stats_.outages;
  if (was_up || stats_.outages == 1) {
    LOG_WARN("redis %s:%u: %s; serving this node's members only, reconnecting", host_.c_str(), port_, reason.c_str());
  } else {
    LOG_DEBUG("redis %s:%u: %s; retrying", host_.c_str(), port_, reason.c_str());
  }
  // Nothing waits for Redis while it is away: joins are answered, messages go to this node's
  // members only, fences pass.
  std::vector<std::function<void()>> release;
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& c = it->second;
    c.state = State::kOff;
    settle(c);
    for (auto& w : c.waiters) release.push_back(std::move(w));
    c.waiters.clear();
    it = c.wanted ? std::next(it) : channels_.erase(it);
  }
  // What was sent and never came back, then what was never sent: in the order they were published.
  // A message whose copy came back was delivered then, and is not here any more.
  auto sent = std::move(in_flight_);
  auto queued = std::move(queue_);
  in_flight_.clear();
  queue_.clear();
  waiting_bytes_ = 0;
  std::vector<uint64_t> fence_ids;
  for (auto* items : {&sent, &queued}) {
    for (Outgoing& o : *items) {
      if (o.done) continue;
      if (o.room.empty()) {
        fence_ids.push_back(o.id);
      } else {
        deliver_locally(o);
      }
    }
  }
  // Fences after the messages published before them (and in their order).
  std::sort(fence_ids.begin(), fence_ids.end());
  for (uint64_t id : fence_ids) {
    auto it = fences_.find(id);
    if (it == fences_.end()) continue;
    release.push_back(std::move(it->second));
    fences_.erase(it);
  }
  for (auto& [id, done] : fences_) release.push_back(std::move(done));  // none expected
  fences_.clear();
  retry_timer_ = loop_.run_after(backoff_, [this] { connect(); });
  backoff_ = std::min(backoff_ * 2, kLongestRetry);
  fail_queries();
  for (auto& f : release) f();
}

void Backplane::settle(Channel& c) {
  bool unsettled = c.wanted && c.state != State::kOn;
  if (unsettled && c.unsettled_since == 0) {
    c.unsettled_since = ++want_gen_;
    unsettled_.insert(c.unsettled_since);
  } else if (!unsettled && c.unsettled_since != 0) {
    unsettled_.erase(c.unsettled_since);
    c.unsettled_since = 0;
  }
}

void Backplane::want(const std::string& room) {
  Channel& c = channels_[room];
  c.wanted = true;
  if (connections_up_ == 2 && c.state == State::kOff) subscribe(room, c);
  settle(c);
}

// The channel stays subscribed for a while: a room that empties and fills again (the lobby, as
// connections say hello) costs no SUBSCRIBE/UNSUBSCRIBE pair each time.
void Backplane::unwant(const std::string& room) {
  auto it = channels_.find(room);
  if (it == channels_.end()) return;
  Channel& c = it->second;
  c.wanted = false;
  c.idle_since = reactor::Clock::now();
  settle(c);
  if (c.state == State::kOff) channels_.erase(it);
}

void Backplane::sweep() {
  auto now = reactor::Clock::now();
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& c = it->second;
    if (!c.wanted && c.state == State::kOn && up_ && now - c.idle_since >= kIdleUnsubscribe) {
      sub_->unsubscribe(channel_of(it->first));
      c.state = State::kUnsubscribing;
    }
    it = (!c.wanted && c.state == State::kOff) ? channels_.erase(it) : std::next(it);
  }
}

// Everything sent to Redis comes back on `sub` (the messages of subscribed rooms, the fences) or is
// answered on `pub`. Something that waited kSilenceLimit means Redis is away, whatever TCP says
// (a stopped process, a partition); the heartbeat fence makes sure something is always waiting.
void Backplane::tick() {
  auto now = reactor::Clock::now();
  if (!up_) {
    if (!retry_timer_ && now - attempt_started_ > kSilenceLimit) {
      down("no answer within " + std::to_string(seconds(kSilenceLimit)) + " s of connecting");
    }
    return;
  }
  bool silent = (!in_flight_.empty() && now - in_flight_.front().since > kSilenceLimit) ||
                (!queue_.empty() && now - queue_.front().since > kSilenceLimit);
  if (silent) return down("no answer for " + std::to_string(seconds(kSilenceLimit)) + " s");
  if (++ticks_ % kTicksPerHeartbeat == 0 && !heartbeat_out_) {
    heartbeat_out_ = true;
    fence([this] { heartbeat_out_ = false; });
  }
}

void Backplane::subscribe(const std::string& room, Channel& c) {
  sub_->subscribe(channel_of(room));
  c.state = State::kSubscribing;
  settle(c);
}

void Backplane::when_subscribed(const std::string& room, std::function<void()> ready) {
  auto it = channels_.find(room);
  if (!(up_ || first_attempt()) || it == channels_.end() || it->second.state == State::kOn) return ready();
  it->second.waiters.push_back(std::move(ready));
}

void Backplane::publish(const std::string& room, const std::string& user, const std::string& text,
                        const std::string& id, const std::string& front, uint64_t floor, Acked acked, bool notice) {
  Outgoing o{.room = room, .user = user, .text = text, .msg_id = id, .front = front, .notice = notice, .acked = std::move(acked),
             .ts_ms = now_ms(), .floor = floor};
  if (!(up_ || first_attempt())) return deliver_locally(o);
  if (waiting_bytes_ + o.bytes() > kMaxWaitingBytes) {
    overflowed();
    return deliver_locally(o);
  }
  o.id = next_id_++;
  o.since = reactor::Clock::now();
  waiting_bytes_ += o.bytes();
  queue_.push_back(std::move(o));
  drain();
}

void Backplane::overflowed() {
  ++stats_.overflow;
  uint64_t before = 0;  // overflows since the last line
  if (!overflow_log_.allow(&before)) return;
  LOG_WARN("redis %s:%u: %zu bytes already wait for Redis; %llu message(s) delivered on this node only", host_.c_str(),
           port_, waiting_bytes_, static_cast<unsigned long long>(before + 1));
}

void Backplane::fence(std::function<void()> done) {
  if (!(up_ || first_attempt())) return done();
  uint64_t id = next_id_++;
  fences_.emplace(id, std::move(done));
  Outgoing f;
  f.fence_gen = want_gen_;
  f.id = id;
  f.since = reactor::Clock::now();
  queue_.push_back(std::move(f));
  drain();
}

// Sends what is at the head of the queue, in order, as far as the subscriptions allow: a message
// waits until its room's subscription is in place (else this node would miss its own message), a
// fence until no subscription is pending (else a join's subscription could land after it).
void Backplane::drain() {
  while (up_ && pub_->connected() && sub_->connected() && !queue_.empty()) {
    Outgoing& o = queue_.front();
    if (o.room.empty()) {
      if (!fence_on_ || (!unsettled_.empty() && *unsettled_.begin() <= o.fence_gen)) return;
      if (!pub_->command({"PUBLISH", fence_channel_, std::to_string(o.id)})) return;  // the link is going
    } else {
      auto it = channels_.find(o.room);
      if (it != channels_.end() && it->second.wanted && it->second.state != State::kOn) return;
      std::string body = encode_published_body(o.user, o.text, o.ts_ms, node_id_, o.id, o.msg_id, o.front, o.notice);
      // EVALSHA once Redis has the script (loaded at connection); EVAL if it could not be loaded.
      bool by_sha = !publish_sha_.empty();
      bool sent = pub_->command(
          {by_sha ? "EVALSHA" : "EVAL", by_sha ? std::string_view(publish_sha_) : kPublishScript, "6", kSeqPrefix + o.room, channel_of(o.room), kStreamPrefix + o.room,
           kIdsPrefix + o.room, kIdTimesPrefix + o.room, kEpochKey, body, std::to_string(o.floor), o.user, o.text,
           std::to_string(o.ts_ms), o.msg_id, std::to_string(history_.max_messages),
           std::to_string(std::max<int64_t>(history_.max_age_ms, 1)), std::to_string(history_.dedupe_ids),
           std::to_string(history_.dedupe_ms), random_hex(32), std::to_string(history_.dedupe_max_ids), o.front,
           std::to_string(text_fingerprint(o.text))},
          [this, id = o.id, link = link_](const redisReply* r) {
            if (r != nullptr && link == link_) on_publish_answer(id, r);
          });
      if (!sent) return;  // the link is going: down() delivers it here
      ++stats_.published;
    }
    in_flight_.push_back(std::move(o));  // `since` stays the time it was published
    queue_.pop_front();
  }
}

Backplane::Outgoing* Backplane::in_flight(uint64_t id) {
  auto it = std::lower_bound(in_flight_.begin(), in_flight_.end(), id,
                             [](const Outgoing& o, uint64_t v) { return o.id < v; });
  return it != in_flight_.end() && it->id == id ? &*it : nullptr;
}

void Backplane::finish(Outgoing& o) {
  if (!o.room.empty()) waiting_bytes_ -= o.bytes();
  o.done = true;
}

void Backplane::pop_finished() {
  while (!in_flight_.empty() && in_flight_.front().done) in_flight_.pop_front();
}

// An error answer (Redis loading, out of memory, read-only): the message reached no node, so it
// goes to this node's members.
void Backplane::on_publish_answer(uint64_t id, const redisReply* r) {
  Outgoing* o = in_flight(id);
  if (o == nullptr || o->done) return;
  bool numbered = r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_INTEGER &&
                  r->element[0]->integer > 0 && r->element[1]->type == REDIS_REPLY_INTEGER;
  if (!numbered) {
    // Someone flushed Redis's scripts: this one is lost, the next ones carry the script.
    if (r->type == REDIS_REPLY_ERROR && std::string_view(r->str).starts_with("NOSCRIPT")) publish_sha_.clear();
    ++stats_.refused;
    if (refusal_log_.allow()) {
      LOG_WARN("redis %s:%u: publish refused (%s); delivering on this node only", host_.c_str(), port_,
               r->type == REDIS_REPLY_ERROR ? r->str : "an answer that is not the script's");
    }
    finish(*o);
    deliver_locally(*o);
    return pop_finished();
  }
  learned_epoch(str_of(r->element[2]));
  o->seq = static_cast<uint64_t>(r->element[0]->integer);
  if (r->element[1]->integer == 0 || r->element[1]->integer == 2) {
    // Seen before: nothing was published; the same answer as the first time (a retry), or a refusal
    // (another message under the same id).
    ++stats_.duplicates;
    finish(*o);
    answer(*o, o->seq, r->element[1]->integer == 0 ? Outcome::kStored : Outcome::kIdReused);
  } else {
    o->answered = true;
    // A later item of ours came back first: this one's room is not subscribed here (it has no
    // members here), so it will not come back.
    if (id < last_back_) {
      finish(*o);
      answer(*o, o->seq, Outcome::kStored);
    }
  }
  pop_finished();
}

void Backplane::answer(Outgoing& o, uint64_t seq, Outcome outcome, PendingAcks* later) {
  if (!o.acked) return;
  Acked acked = std::move(o.acked);
  o.acked = nullptr;
  if (later) {
    later->emplace_back(std::move(acked), seq);
  } else {
    acked(seq, outcome);
  }
}

void Backplane::came_back(uint64_t id, PendingAcks& acks) {
  last_back_ = std::max(last_back_, id);
  for (Outgoing& o : in_flight_) {
    if (o.id > id) break;
    if (!o.done && (o.id == id || o.answered)) {
      finish(o);
      // Its copy (o.id == id) is handed on first; the others are in rooms not subscribed here.
      if (o.id != id) answer(o, o.seq, Outcome::kStored, &acks);
      std::string().swap(o.text);
    }
  }
  pop_finished();
}

void Backplane::deliver_locally(Outgoing& o) {
  ++stats_.local_only;
  deliver_(Message{std::move(o.room), std::move(o.user), std::move(o.text), o.ts_ms, 0, o.msg_id, o.front, o.notice});
  answer(o, 0, Outcome::kNotStored);  // after its copy: Redis may not have it
}

void Backplane::on_push(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 3) return;
  std::string_view kind = str_of(reply.element[0]);
  std::string channel(str_of(reply.element[1]));
  if (kind == "message") return on_message(channel, str_of(reply.element[2]));
  bool subscribed = kind == "subscribe";
  if (!subscribed && kind != "unsubscribe") return;
  if (channel == fence_channel_) {
    fence_on_ = subscribed;
    answered_handshake();
    return drain();
  }
  std::string_view prefix = kRoomPrefix;
  if (!std::string_view(channel).starts_with(prefix)) return;
  confirmed(channel.substr(prefix.size()), subscribed);
}

void Backplane::confirmed(const std::string& room, bool subscribed) {
  auto it = channels_.find(room);
  if (it == channels_.end()) return;
  Channel& c = it->second;
  if (subscribed) {
    c.state = State::kOn;  // if nobody wants it any more, the sweep unsubscribes it later
    settle(c);
    auto waiters = std::move(c.waiters);
    c.waiters.clear();
    for (auto& w : waiters) w();
  } else {
    c.state = State::kOff;
    if (c.wanted) {
      subscribe(room, c);
    } else {
      channels_.erase(it);
    }
  }
  drain();
}

void Backplane::on_message(const std::string& channel, std::string_view payload) {
  if (channel == fence_channel_) {
    uint64_t id = 0;
    std::from_chars(payload.data(), payload.data() + payload.size(), id);
    Outgoing* o = in_flight(id);
    if (o == nullptr || o->done || !o->room.empty()) return;
    PendingAcks acks;
    came_back(id, acks);
    for (auto& [acked, seq] : acks) acked(seq, Outcome::kStored);
    auto it = fences_.find(id);
    if (it == fences_.end()) return;
    auto done = std::move(it->second);
    fences_.erase(it);
    return done();
  }
  std::string_view prefix = kRoomPrefix;
  if (!std::string_view(channel).starts_with(prefix)) return;
  Published p;
  if (!parse_published(payload, p)) {
    uint64_t before = 0;
    if (malformed_log_.allow(&before)) {
      LOG_WARN("redis: malformed message on %s ignored (%llu since the last report)", channel.c_str(),
               static_cast<unsigned long long>(before + 1));
    }
    return;
  }
  PendingAcks acks;
  if (p.node == node_id_) {
    // One of ours. Not waiting any more: it was delivered here already (Redis ran it after this
    // node had given up on it and delivered it itself, or it came back before).
    Outgoing* o = in_flight(p.n);
    if (o == nullptr || o->done) return;
    if (o->acked) acks.emplace_back(std::exchange(o->acked, nullptr), p.seq);
    came_back(p.n, acks);
  }
  std::string room = channel.substr(prefix.size());
  auto it = channels_.find(room);
  if (it != channels_.end() && it->second.wanted) {  // else being unsubscribed: nobody here
    Message m{std::move(room), std::move(p.user), std::move(p.text), p.ts_ms, p.seq, std::move(p.id),
              std::move(p.front), p.notice};
    ++stats_.received;
    deliver_(std::move(m));
  }
  // After the copy: the sender sees its message, then the answer (both go through the owner).
  for (auto& [acked, seq] : acks) acked(seq, Outcome::kStored);
}

}  // namespace chat
