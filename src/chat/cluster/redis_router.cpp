#include "chat/cluster/redis_router.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

#include "chat/cluster/backplane.h"
#include "chat/cluster/redis_store.h"
#include "chat/core/hub.h"
#include "chat/ops/metrics.h"

namespace chat {

// ---- RedisRouter ------------------------------------------------------------------------------

RedisRouter::RedisRouter(ShardTable& table, RedisStore* store, reactor::Reactor& main, std::string host, uint16_t port)
    : table_(table), store_(store) {
  // Without a RedisStore (a test's service with the default store): numbering and ids, no stream.
  Retention history = store_ ? store_->retention() : Retention{.max_messages = 0};
  // Messages come back from Redis on shard 0 and go to their room's owner, which numbers nothing
  // (Redis did) and sends them to the shards with members.
  backplane_ = std::make_unique<Backplane>(
      main, std::move(host), port, history,
      [this](Backplane::Message m) {
        size_t owner = table_.owner_of(m.room);
        size_t cost = ShardTable::message_cost(m.room, m.user, m.text) + m.id.size() + m.front.size();
        table_.run_on(
            owner, 0,
            [hub = &table_.hub(owner), m = std::move(m)] {
              hub->deliver_message(m.room, StoredMessage{.seq = m.seq, .ts_ms = m.ts_ms, .user = m.user, .text = m.text, .id = m.id, .front = m.front, .automatic = m.notice});
            },
            cost);
      },
      [store = store_](const std::string& epoch) {
        if (store) store->learned_epoch(epoch);
      });
  if (store_) store_->attach(main, backplane_.get());
}

RedisRouter::~RedisRouter() {
  if (store_) store_->detach();
}

void RedisRouter::start() { backplane_->start(); }

void RedisRouter::room_opened(Hub& owner, const std::string& room) {
  table_.run_on(0, owner.shard(), [bp = backplane_.get(), room] { bp->want(room); });
}

void RedisRouter::room_closed(Hub& owner, const std::string& room) {
  table_.run_on(0, owner.shard(), [bp = backplane_.get(), room] { bp->unwant(room); });
}

void RedisRouter::when_visible(Hub& owner, const std::string& room, std::function<void(size_t)> ready) {
  // "joined" means: everything published after, on any node, reaches you. So it waits for the
  // node's subscription to the room's channel. Then Redis's counter, read after the subscription
  // is in place: every number above it is published after, so it reaches the member live, and
  // every number up to it is in the stream. The owner's number follows it (a node with no member
  // in the room saw none of its messages), and the owner answers the join.
  ShardTable* table = &table_;
  size_t shard = owner.shard();
  table_.run_on(0, shard, [table, bp = backplane_.get(), shard, room, ready = std::move(ready)] {
    bp->when_subscribed(room, [table, bp, shard, room, ready] {
      bp->query({"GET", Backplane::kSeqPrefix + room}, [table, shard, room, ready](const redisReply* r) {
        uint64_t seq = 0;
        if (r != nullptr && r->type == REDIS_REPLY_STRING) std::from_chars(r->str, r->str + r->len, seq);
        table->run_on(shard, 0, [hub = &table->hub(shard), shard, room, seq, ready] {
          RoomLog& log = hub->log(room);
          log.last_seq = std::max(log.last_seq, seq);
          log.delivered_seq = std::max(log.delivered_seq, seq);
          ready(shard);
        });
      });
    });
  });
}

void RedisRouter::route(Hub& owner, const std::string& room, Publish p) {
  // Through Redis to every node, this one included; it comes back through deliver_message. Redis
  // numbers it, keeps it in the room's stream and remembers its id in the same step; a publish
  // with an id is answered from there (after its copy, through this owner, as the copy goes).
  Backplane::Acked acked;
  if (!p.id.empty()) {
    acked = [table = &table_, shard = owner.shard(), room, ack = Publish{.user = {}, .text = {}, .id = p.id, .front = {}, .shard = p.shard, .member_id = p.member_id, .external = false, .automatic = false}](
                uint64_t seq, Backplane::Outcome outcome) {
      table->run_on(shard, 0, [hub = &table->hub(shard), room, ack, seq, outcome] {
        if (outcome == Backplane::Outcome::kIdReused) return hub->id_reused(ack, room);
        hub->ack(ack, room, seq, outcome == Backplane::Outcome::kStored);
      });
    };
  }
  uint64_t next_seq = owner.log(room).last_seq + 1;
  size_t cost = ShardTable::message_cost(room, p.user, p.text) + p.id.size() + p.front.size();
  table_.run_on(
      0, owner.shard(),
      [bp = backplane_.get(), room, p = std::move(p), next_seq, acked = std::move(acked)]() mutable {
        bp->publish(room, p.user, p.text, p.id, p.front, next_seq, std::move(acked), p.automatic);
      },
      cost);
}

void RedisRouter::pass(size_t shard, std::function<void()> then) {
  // The owners' work went on to shard 0's backplane: pass through there too, wait until what was
  // published before has come back from Redis, and come back the way those messages went
  // (0 -> owner -> member's shard).
  ShardTable* table = &table_;
  table_.run_on(0, shard, [table, bp = backplane_.get(), shard, then = std::move(then)] {
    bp->fence([table, shard, then] { table->run_on(shard, 0, then); });
  });
}

std::string RedisRouter::describe() const {
  const BackplaneStats& s = backplane_->stats();
  return "redis=" + std::string(backplane_->state()) + " published=" + std::to_string(s.published) +
         " received=" + std::to_string(s.received) + " local_only=" + std::to_string(s.local_only) +
         " refused=" + std::to_string(s.refused) + " overflow=" + std::to_string(s.overflow) +
         " duplicates=" + std::to_string(s.duplicates) +
         " waiting_bytes=" + std::to_string(backplane_->waiting_bytes()) + " outages=" + std::to_string(s.outages);
}

void RedisRouter::metrics(Exposition& out) const {
  const BackplaneStats& s = backplane_->stats();
  out.gauge("chat_backplane_up", "1 while the link to Redis is up", uint64_t{backplane_->up()});
  out.counter("chat_backplane_outages_total", "Times the link to Redis was lost, silent, or could not be made", s.outages);
  out.counter("chat_backplane_published_total", "Messages sent to Redis", s.published);
  out.counter("chat_backplane_received_total", "Messages that came back from Redis (from every node)", s.received);
  out.counter("chat_backplane_local_only_total", "Messages delivered on this node only (Redis away, refusing, or the bound reached)",
          s.local_only);
  out.counter("chat_backplane_refused_total", "Publishes Redis answered with an error", s.refused);
  out.counter("chat_backplane_overflow_total", "Messages delivered here only because the bound on waiting bytes was reached",
          s.overflow);
  out.counter("chat_backplane_duplicates_total", "Publishes whose (room, user, id) Redis had seen", s.duplicates);
  out.gauge("chat_backplane_waiting_bytes", "Bytes of publishes waiting for Redis", uint64_t{backplane_->waiting_bytes()});
}

}  // namespace chat
