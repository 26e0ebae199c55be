// RedisStore: rooms' history in Redis Streams (--redis), one stream per room
// ("reactor-chat:history:ROOM", entry IDs "SEQ-0"), shared by every node.
//
// Nothing is appended through this store: the backplane's publish script numbers, keeps (XADD)
// and publishes a message in one step (chat/cluster/backplane.h), and the router answers its sender. This
// store reads (XRANGE / XREVRANGE) and fences (a PING) on the backplane's command connection, on
// shard 0's reactor, after whatever was sent there before, so a read sees every message delivered
// before it was asked, and one reactor's completions come in the order it asked. While Redis is
// away a read answers ok=false at once (a history request gets `unavailable`, a recovery
// `recovered:false`) and a fence passes.
//
// The epoch is Redis's ("reactor-chat:epoch"), learned by the backplane at every connection and with
// every publish; until Redis first answers it is a random one of this process's.
//
// Threading: read, fence and epoch from any reactor; attach/detach and learned_epoch on shard 0's.
#pragma once

#include <mutex>
#include <string>

#include "chat/core/store.h"

struct redisReply;

namespace chat {

class Backplane;

// One entry of a room's stream as XRANGE gives it: ["SEQ-0", [field, value, ...]] with the fields
// user, text, ts, and id and front when the message had them. False if it is not one of ours (no
// positive number, no user or text, a front that is not valid_front).
bool parse_stream_entry(const redisReply* entry, StoredMessage& m);

class RedisStore final : public Store {
 public:
  // `retention`: what the streams keep (max_messages 0: nothing; --store off).
  explicit RedisStore(const Retention& retention);

  // Before any traffic, on `main`'s thread (the router's constructor); detach before `backplane` goes.
  void attach(reactor::Reactor& main, Backplane* backplane);
  void detach();
  void learned_epoch(const std::string& epoch);
  const Retention& retention() const { return retention_; }

  std::string epoch() const override;
  std::vector<StoredRoom> load() override { return {}; }  // the numbering and the ids live in Redis
  // Not used: the publish script appends. Answers false (not stored) if called.
  void append(reactor::Reactor& reactor, const std::string& room, StoredMessage message, AppendDone done) override;
  void read(reactor::Reactor& reactor, const std::string& room, uint64_t after, uint64_t before, size_t limit,
            bool newest, ReadDone done) override;
  void fence(reactor::Reactor& reactor, std::function<void()> done) override;
  bool asynchronous() const override { return true; }
  std::string describe() const override;

 private:
  Retention retention_;
  reactor::Reactor* main_ = nullptr;
  Backplane* backplane_ = nullptr;  // on main_'s thread only
  mutable std::mutex mutex_;
  std::string epoch_;  // guarded by mutex_
};

}  // namespace chat
