#include "chat/backplane.h"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <random>

#include "chat/hub.h"
#include "reactor/log.h"

namespace chat {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr reactor::Clock::duration kFirstRetry = 100ms;
constexpr reactor::Clock::duration kLongestRetry = 2s;
constexpr reactor::Clock::duration kIdleUnsubscribe = 5s;  // an unwanted channel stays this long
constexpr reactor::Clock::duration kHeartbeatEvery = 1s;
constexpr reactor::Clock::duration kSilenceLimit = 4s;     // no fence back for this long: away

// INCR the room's counter (never below the publisher's floor), PUBLISH "NUMBER PAYLOAD" with it.
// One script, so numbering and publishing are one step: Redis runs scripts one at a time. A room
// quiet for a day forgets its counter.
constexpr const char* kPublishScript =
    "local n = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[2])\n"
    "if n < floor then n = floor; redis.call('SET', KEYS[1], n) end\n"
    "redis.call('EXPIRE', KEYS[1], 86400)\n"
    "redis.call('PUBLISH', KEYS[2], n .. ' ' .. ARGV[1])\n"
    "return n\n";

std::string random_node_id() {
  std::random_device rd;
  uint64_t v = (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string_view str_of(const redisReply* r) {
  return r && r->type == REDIS_REPLY_STRING ? std::string_view(r->str, r->len) : std::string_view();
}

}  // namespace

std::string encode_published_body(std::string_view user, std::string_view text, int64_t ts_ms) {
  json body = {{"user", user}, {"text", text}, {"ts", ts_ms}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool parse_published(std::string_view payload, Published& out) {
  size_t space = payload.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + space, out.seq);
  if (ec != std::errc() || end != payload.data() + space || out.seq == 0) return false;
  json body = json::parse(payload.substr(space + 1), nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return false;
  auto user = body.find("user"), text = body.find("text"), ts = body.find("ts");
  if (user == body.end() || !user->is_string() || text == body.end() || !text->is_string()) return false;
  if (ts != body.end() && !ts->is_number_integer()) return false;
  out.user = user->get<std::string>();
  out.text = text->get<std::string>();
  out.ts_ms = ts == body.end() ? 0 : ts->get<int64_t>();
  return true;
}

Backplane::Backplane(reactor::Reactor& loop, std::string host, uint16_t port, Deliver deliver)
    : loop_(loop),
      host_(std::move(host)),
      port_(port),
      deliver_(std::move(deliver)),
      fence_channel_("reactor-chat:fence:" + random_node_id()),
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
  for (reactor::TimerId t : {retry_timer_, sweep_timer_, heartbeat_timer_}) {
    if (t) loop_.cancel(t);
  }
}

void Backplane::start() {
  sweep_timer_ = loop_.run_every(kIdleUnsubscribe, [this] { sweep(); });
  heartbeat_timer_ = loop_.run_every(kHeartbeatEvery, [this] { heartbeat(); });
  connect();
}

void Backplane::connect() {
  retry_timer_ = 0;
  connections_up_ = 0;
  pub_->connect();
  sub_->connect();
}

void Backplane::on_connected() {
  if (++connections_up_ < 2) return;
  up_ = true;
  size_t rooms = 0;
  sub_->subscribe(fence_channel_);
  for (auto& [room, c] : channels_) {
    if (c.wanted) {
      subscribe(room, c);
      ++rooms;
    }
  }
  LOG_INFO("redis %s:%u: connected%s; subscribing %zu room(s)", host_.c_str(), port_,
           stats_.outages ? " again" : "", rooms);
}

void Backplane::down(const std::string& reason) {
  if (retry_timer_) return;  // the other connection's news of the same outage
  pub_->close();
  sub_->close();
  bool was_proven = up_ && fence_on_;
  up_ = false;
  connections_up_ = 0;
  fence_on_ = false;
  ++stats_.outages;
  if (was_proven || stats_.outages == 1) {
    LOG_WARN("redis %s:%u: %s; serving this node's members only, reconnecting", host_.c_str(), port_,
             reason.c_str());
  } else {
    LOG_DEBUG("redis %s:%u: %s; retrying", host_.c_str(), port_, reason.c_str());
  }
  // Nothing waits for Redis while it is away: joins are answered, queued messages go to this
  // node's members only, fences pass.
  std::vector<std::function<void()>> release;
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& c = it->second;
    c.state = State::kOff;
    settle(c);
    for (auto& w : c.waiters) release.push_back(std::move(w));
    c.waiters.clear();
    it = c.wanted ? std::next(it) : channels_.erase(it);
  }
  for (auto& [id, done] : fences_) release.push_back(std::move(done));
  fences_.clear();
  auto queued = std::move(queue_);
  queue_.clear();
  for (Outgoing& o : queued) {
    if (o.room.empty()) continue;  // a fence: released above
    deliver_locally(o);
  }
  for (auto& f : release) f();
  retry_timer_ = loop_.run_after(backoff_, [this] { connect(); });
  backoff_ = std::min(backoff_ * 2, kLongestRetry);
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
  if (up_ && c.state == State::kOff) subscribe(room, c);
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

void Backplane::heartbeat() {
  if (!up_) return;
  if (heartbeat_out_) {
    if (reactor::Clock::now() - heartbeat_sent_ > kSilenceLimit) {
      down("no answer for " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kSilenceLimit).count()) +
           " s");
    }
    return;
  }
  heartbeat_out_ = true;
  heartbeat_sent_ = reactor::Clock::now();
  fence([this] { heartbeat_out_ = false; });
}

void Backplane::subscribe(const std::string& room, Channel& c) {
  sub_->subscribe(channel_of(room));
  c.state = State::kSubscribing;
  settle(c);
}

void Backplane::when_subscribed(const std::string& room, std::function<void()> ready) {
  auto it = channels_.find(room);
  if (!up_ || it == channels_.end() || it->second.state == State::kOn) return ready();
  it->second.waiters.push_back(std::move(ready));
}

void Backplane::publish(const std::string& room, const std::string& user, const std::string& text, uint64_t floor) {
  Outgoing o{room, user, text, floor, 0};
  if (!up_) return deliver_locally(o);
  queue_.push_back(std::move(o));
  drain();
}

void Backplane::fence(std::function<void()> done) {
  if (!up_) return done();
  uint64_t id = next_fence_++;
  fences_.emplace(id, std::move(done));
  queue_.push_back(Outgoing{{}, {}, {}, 0, id, want_gen_});
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
      pub_->command({"PUBLISH", fence_channel_, std::to_string(o.fence)});
      queue_.pop_front();
      continue;
    }
    auto it = channels_.find(o.room);
    if (it != channels_.end() && it->second.wanted && it->second.state != State::kOn) return;
    auto msg = std::make_shared<Outgoing>(std::move(o));
    queue_.pop_front();
    std::string body = encode_published_body(msg->user, msg->text, now_ms());
    std::string seq_key = kSeqPrefix + msg->room, channel = channel_of(msg->room), floor = std::to_string(msg->floor);
    // An error answer (Redis loading, out of memory, read-only): the message reached no node, so
    // it goes to this node's members. No answer at all (the link broke): at-most-once, as documented.
    bool sent = pub_->command({"EVAL", kPublishScript, "2", seq_key, channel, body, floor},
                              [this, msg](const redisReply* r) {
                                if (r == nullptr || r->type != REDIS_REPLY_ERROR) return;
                                ++stats_.refused;
                                auto now = reactor::Clock::now();
                                if (now - last_refusal_log_ > 10s) {
                                  last_refusal_log_ = now;
                                  LOG_WARN("redis %s:%u: publish refused (%s); delivering on this node only",
                                           host_.c_str(), port_, r->str);
                                }
                                deliver_locally(*msg);
                              });
    if (sent) {
      ++stats_.published;
    } else {
      deliver_locally(*msg);
    }
  }
}

void Backplane::deliver_locally(Outgoing& o) {
  ++stats_.local_only;
  deliver_(Message{std::move(o.room), std::move(o.user), std::move(o.text), now_ms(), 0});
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
    if (subscribed) backoff_ = kFirstRetry;  // Redis takes our commands: the link has proved itself
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
    auto it = fences_.find(id);
    if (it == fences_.end()) return;
    auto done = std::move(it->second);
    fences_.erase(it);
    return done();
  }
  std::string_view prefix = kRoomPrefix;
  if (!std::string_view(channel).starts_with(prefix)) return;
  std::string room = channel.substr(prefix.size());
  auto it = channels_.find(room);
  if (it == channels_.end() || !it->second.wanted) return;  // being unsubscribed: nobody here
  Published p;
  if (!parse_published(payload, p)) {
    LOG_WARN("redis: malformed message on %s ignored", channel.c_str());
    return;
  }
  Message m{std::move(room), std::move(p.user), std::move(p.text), p.ts_ms, p.seq};
  ++stats_.received;
  deliver_(std::move(m));
}

}  // namespace chat
