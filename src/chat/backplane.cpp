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

// INCR the room's counter (never below the publisher's floor), PUBLISH "NUMBER PAYLOAD" with it.
// One script, so numbering and publishing are one step: Redis runs scripts one at a time.
constexpr const char* kPublishScript =
    "local n = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[2])\n"
    "if n < floor then n = floor; redis.call('SET', KEYS[1], n) end\n"
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
      redis::Connection::Callbacks{[this] { on_connected(); }, closed, [this](const redisReply& r) { on_push(r); }});
}

Backplane::~Backplane() {
  if (retry_timer_) loop_.cancel(retry_timer_);
}

void Backplane::start() { connect(); }

void Backplane::connect() {
  retry_timer_ = 0;
  connections_up_ = 0;
  pub_->connect();
  sub_->connect();
}

void Backplane::on_connected() {
  if (++connections_up_ < 2) return;
  up_ = true;
  backoff_ = kFirstRetry;
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
  bool was_up = up_;
  up_ = false;
  connections_up_ = 0;
  fence_on_ = false;
  subscribing_ = 0;
  ++stats_.outages;
  if (was_up || stats_.outages == 1) {
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
    for (auto& w : c.waiters) release.push_back(std::move(w));
    c.waiters.clear();
    it = c.wanted ? std::next(it) : channels_.erase(it);
  }
  for (auto& [id, done] : fences_) release.push_back(std::move(done));
  fences_.clear();
  auto queued = std::move(queue_);
  queue_.clear();
  for (Outgoing& o : queued) {
    if (o.room.empty()) continue;  // a fence: released above or never sent
    deliver_locally(o);
  }
  for (auto& f : release) f();
  retry_timer_ = loop_.run_after(backoff_, [this] { connect(); });
  backoff_ = std::min(backoff_ * 2, kLongestRetry);
}

void Backplane::want(const std::string& room) {
  Channel& c = channels_[room];
  c.wanted = true;
  if (up_ && c.state == State::kOff) subscribe(room, c);
}

void Backplane::unwant(const std::string& room) {
  auto it = channels_.find(room);
  if (it == channels_.end()) return;
  Channel& c = it->second;
  c.wanted = false;
  if (up_ && c.state == State::kOn) {
    sub_->unsubscribe(channel_of(room));
    c.state = State::kUnsubscribing;
  } else if (c.state == State::kOff) {
    channels_.erase(it);
  }
  // kSubscribing / kUnsubscribing: confirmed() finishes the change.
}

void Backplane::subscribe(const std::string& room, Channel& c) {
  sub_->subscribe(channel_of(room));
  c.state = State::kSubscribing;
  ++subscribing_;
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
  queue_.push_back(Outgoing{{}, {}, {}, 0, id});
  drain();
}

// Sends what is at the head of the queue, in order, as far as the subscriptions allow: a message
// waits until its room's subscription is in place (else this node would miss its own message), a
// fence until no subscription is pending (else a join's subscription could land after it).
void Backplane::drain() {
  while (up_ && !queue_.empty()) {
    Outgoing& o = queue_.front();
    if (o.room.empty()) {
      if (!fence_on_ || subscribing_ > 0) return;
      pub_->command({"PUBLISH", fence_channel_, std::to_string(o.fence)});
    } else {
      auto it = channels_.find(o.room);
      if (it != channels_.end() && it->second.wanted && it->second.state != State::kOn) return;
      json payload = {{"user", o.user}, {"text", o.text}, {"ts", now_ms()}};
      std::string body = payload.dump(-1, ' ', false, json::error_handler_t::replace);
      std::string seq_key = kSeqPrefix + o.room, channel = channel_of(o.room), floor = std::to_string(o.floor);
      bool sent = pub_->command({"EVAL", kPublishScript, "2", seq_key, channel, body, floor},
                                [this](const redisReply* r) {
                                  if (r && r->type == REDIS_REPLY_ERROR) {
                                    LOG_WARN("redis %s:%u: publish failed: %s", host_.c_str(), port_, r->str);
                                  }
                                });
      if (!sent) {
        deliver_locally(o);
      } else {
        ++stats_.published;
      }
    }
    queue_.pop_front();
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
    if (c.state == State::kSubscribing) --subscribing_;
    c.state = State::kOn;
    auto waiters = std::move(c.waiters);
    c.waiters.clear();
    if (!c.wanted) {
      sub_->unsubscribe(channel_of(room));
      c.state = State::kUnsubscribing;
    }
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
  // "NUMBER {json}", as the publish script writes it.
  Message m;
  m.room = std::move(room);
  size_t space = payload.find(' ');
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + std::min(space, payload.size()), m.seq);
  json body = space == std::string_view::npos ? json() : json::parse(payload.substr(space + 1), nullptr, false);
  if (ec != std::errc() || m.seq == 0 || !body.is_object() || !body["user"].is_string() ||
      !body["text"].is_string()) {
    LOG_WARN("redis: malformed message on %s ignored", channel.c_str());
    return;
  }
  m.user = body["user"].get<std::string>();
  m.text = body["text"].get<std::string>();
  m.ts_ms = body.value("ts", int64_t{0});
  ++stats_.received;
  deliver_(std::move(m));
}

}  // namespace chat
