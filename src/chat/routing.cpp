#include "chat/routing.h"

#include "chat/backplane.h"
#include "chat/hub.h"

namespace chat {

// ---- LocalRouter ------------------------------------------------------------------------------

void LocalRouter::when_visible(Hub& owner, const std::string&, std::function<void(size_t)> ready) {
  ready(owner.shard());  // the owner delivers every message itself: a member is in as it is counted
}

void LocalRouter::route(Hub& owner, const std::string& room, Publish p) {
  ShardTable& table = owner.table();
  reactor::Reactor& here = table.reactor(owner.shard());
  RoomLog& log = owner.log(room);
  if (!p.id.empty() && log.ids) {
    if (IdWindow::Entry* seen = log.ids->find(p.user, p.id)) {
      if (seen->stored) return owner.ack(p, room, seen->seq, true);  // a retry: the same answer, no copy
      // The first one is still on its way into the store: decide once it got there.
      table.store().fence(here, [this, &owner, room, p = std::move(p)]() mutable { route(owner, room, std::move(p)); });
      return;
    }
  }
  // Numbered here, delivered once kept: every number a member sees is in the store (unless the
  // store failed), so a restart never reuses one.
  StoredMessage m{.seq = ++log.last_seq, .ts_ms = now_ms(), .user = p.user, .text = p.text, .id = p.id};
  if (!p.id.empty()) {
    if (!log.ids) log.ids = std::make_unique<IdWindow>();
    log.ids->add(p.user, p.id, {.seq = m.seq, .ts_ms = m.ts_ms, .stored = false}, table.retention());
  }
  table.store().append(here, room, m, [&owner, room, m, p = std::move(p)](bool stored) {
    owner.deliver_message(room, m);  // live chat goes on when the store fails
    if (p.id.empty()) return;
    IdWindow& ids = *owner.log(room).ids;
    if (IdWindow::Entry* e = ids.find(p.user, p.id); e && e->seq == m.seq && stored) {
      e->stored = true;
    } else if (!stored) {
      ids.forget(p.user, p.id);  // nothing is acknowledged that was not stored: a retry may be
    }
    owner.ack(p, room, m.seq, stored);
  });
}

// ---- RedisRouter ------------------------------------------------------------------------------

RedisRouter::RedisRouter(ShardTable& table, reactor::Reactor& main, std::string host, uint16_t port)
    : table_(table) {
  // Messages come back from Redis on shard 0 and go to their room's owner, which numbers nothing
  // (Redis did) and sends them to the shards with members.
  backplane_ = std::make_unique<Backplane>(main, std::move(host), port, [this](Backplane::Message m) {
    size_t owner = table_.owner_of(m.room);
    size_t cost = ShardTable::message_cost(m.room, m.user, m.text);
    table_.run_on(
        owner, 0,
        [hub = &table_.hub(owner), m = std::move(m)] {
          hub->deliver_message(m.room, StoredMessage{.seq = m.seq, .ts_ms = m.ts_ms, .user = m.user, .text = m.text, .id = {}});
        },
        cost);
  });
}

RedisRouter::~RedisRouter() = default;

void RedisRouter::start() { backplane_->start(); }

void RedisRouter::room_opened(Hub& owner, const std::string& room) {
  table_.run_on(0, owner.shard(), [bp = backplane_.get(), room] { bp->want(room); });
}

void RedisRouter::room_closed(Hub& owner, const std::string& room) {
  table_.run_on(0, owner.shard(), [bp = backplane_.get(), room] { bp->unwant(room); });
}

void RedisRouter::when_visible(Hub& owner, const std::string& room, std::function<void(size_t)> ready) {
  // "joined" means: everything published after, on any node, reaches you. So it waits for the
  // node's subscription to the room's channel.
  table_.run_on(0, owner.shard(), [bp = backplane_.get(), room, ready = std::move(ready)] {
    bp->when_subscribed(room, [ready] { ready(0); });
  });
}

void RedisRouter::route(Hub& owner, const std::string& room, Publish p) {
  // Through Redis to every node, this one included; it comes back through deliver_message.
  // Redis keeps no history yet: a publish with an id is answered not stored.
  if (!p.id.empty()) owner.ack(p, room, 0, false);
  uint64_t next_seq = owner.log(room).last_seq + 1;
  size_t cost = ShardTable::message_cost(room, p.user, p.text);
  table_.run_on(
      0, owner.shard(),
      [bp = backplane_.get(), room, user = std::move(p.user), text = std::move(p.text), next_seq] {
        bp->publish(room, user, text, next_seq);
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
         " waiting_bytes=" + std::to_string(backplane_->waiting_bytes()) + " outages=" + std::to_string(s.outages);
}

}  // namespace chat
