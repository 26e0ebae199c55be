#include "chat/cluster/redis_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

#include "chat/cluster/backplane.h"
#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/core/random_id.h"

namespace chat {
namespace {

std::string_view str_of(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? std::string_view(r->str, r->len)
                                                                               : std::string_view();
}

}  // namespace

// One stream entry: ["SEQ-0", [field, value, ...]]. False if it is not one of ours.
bool parse_stream_entry(const redisReply* e, StoredMessage& m) {
  if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements != 2) return false;
  std::string_view id = str_of(e->element[0]);
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), m.seq);
  if (ec != std::errc() || m.seq == 0) return false;
  const redisReply* fields = e->element[1];
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
  bool user = false, text = false;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    std::string_view name = str_of(fields->element[i]), value = str_of(fields->element[i + 1]);
    if (name == "user") {
      m.user = value;
      user = true;
    } else if (name == "text") {
      m.text = value;
      text = true;
    } else if (name == "ts") {
      std::from_chars(value.data(), value.data() + value.size(), m.ts_ms);
    } else if (name == "id") {
      m.id = value;
    } else if (name == "front") {
      // The IRC host of the sender: a name of ours, or the entry is not ours (entries kept before
      // front ends were recorded have none: not known).
      if (!valid_front(value)) return false;
      m.front = value;
    }
  }
  return user && text;
}

RedisStore::RedisStore(const Retention& retention) : retention_(retention), epoch_(random_hex(32)) {}

void RedisStore::attach(reactor::Reactor& main, Backplane* backplane) {
  main_ = &main;
  backplane_ = backplane;
}

void RedisStore::detach() { backplane_ = nullptr; }

void RedisStore::learned_epoch(const std::string& epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_ = epoch;
}

std::string RedisStore::epoch() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return epoch_;
}

void RedisStore::append(reactor::Reactor&, const std::string&, StoredMessage, AppendDone done) { done(false); }

void RedisStore::read(reactor::Reactor& reactor, const std::string& room, uint64_t after, uint64_t before, size_t limit,
                      bool newest, ReadDone done) {
  auto answer = [&reactor, done = std::move(done)](ReadResult result) mutable {
    reactor.post([done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
  };
  if (main_ == nullptr) return answer({});
  main_->post([this, room, after, before, limit, newest, answer = std::move(answer)]() mutable {
    if (backplane_ == nullptr) return answer({});
    // Entry IDs are "SEQ-0": after < seq < before is the ID range [after + 1, before - 1].
    if (limit == 0 || retention_.max_messages == 0 || (before != 0 && before <= after + 1)) {
      // Nothing to read, but answered in its turn, after the queries asked before it.
      return backplane_->query({"PING"}, [answer = std::move(answer)](const redisReply* r) mutable {
        answer(ReadResult{.ok = r != nullptr, .messages = {}});
      });
    }
    std::string low = std::to_string(after + 1), high = before == 0 ? "+" : std::to_string(before - 1);
    std::vector<std::string> argv{newest ? "XREVRANGE" : "XRANGE", Backplane::kStreamPrefix + room,
                                  newest ? high : low, newest ? low : high, "COUNT", std::to_string(limit)};
    int64_t oldest = now_ms() - retention_.max_age_ms;
    backplane_->query(std::move(argv), [answer = std::move(answer), newest, oldest](const redisReply* r) mutable {
      ReadResult result;
      if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return answer(std::move(result));  // away, or an error
      result.ok = true;
      for (size_t i = 0; i < r->elements; ++i) {
        StoredMessage m;
        // Not ours, or older than the retention (the stream is trimmed only as messages arrive):
        // left out, so a replay that needs it sees the gap.
        if (parse_stream_entry(r->element[i], m) && m.ts_ms >= oldest) result.messages.push_back(std::move(m));
      }
      if (newest) std::reverse(result.messages.begin(), result.messages.end());
      answer(std::move(result));
    });
  });
}

void RedisStore::fence(reactor::Reactor& reactor, std::function<void()> done) {
  auto answer = [&reactor, done = std::move(done)]() mutable { reactor.post(std::move(done)); };
  if (main_ == nullptr) return answer();
  main_->post([this, answer = std::move(answer)]() mutable {
    if (backplane_ == nullptr) return answer();
    // Answered after every query sent before it (a fence passes at once while Redis is away, after
    // those were failed).
    backplane_->query({"PING"}, [answer = std::move(answer)](const redisReply*) mutable { answer(); });
  });
}

std::string RedisStore::describe() const {
  return retention_.max_messages > 0 ? "store=redis" : "store=off";
}

}  // namespace chat
