// The router of --redis: Redis orders, numbers and keeps a room's messages (chat/core/router.h
// says what a router promises; chat/cluster/backplane.h how the messages travel).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "chat/core/router.h"

namespace chat {

class Backplane;
class RedisStore;

// Owns the Backplane, on shard 0's reactor (`main`).
class RedisRouter final : public Router {
 public:
  // `store`: the table's store when it is Redis's (null: numbering and ids only, no stream).
  RedisRouter(ShardTable& table, RedisStore* store, reactor::Reactor& main, std::string host, uint16_t port);
  ~RedisRouter() override;

  void room_opened(Hub& owner, const std::string& room) override;
  void room_closed(Hub& owner, const std::string& room) override;
  void when_visible(Hub& owner, const std::string& room, std::function<void(size_t)> ready) override;
  void route(Hub& owner, const std::string& room, Publish publish) override;
  void pass(size_t shard, std::function<void()> then) override;
  bool answered_elsewhere(size_t, size_t) const override { return true; }  // through Redis, always
  void start() override;
  std::string describe() const override;
  void metrics(Exposition& out) const override;

 private:
  ShardTable& table_;
  RedisStore* store_;  // the table's store if it is Redis's (null otherwise); not owned
  std::unique_ptr<Backplane> backplane_;
};

}  // namespace chat
