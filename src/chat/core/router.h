// Routing: who puts a room's messages in order, numbers them, and keeps them. The hub calls one
// interface; two implementations:
//   LocalRouter  the room's owner shard numbers them, hands them to the store (chat/core/store.h), and
//                delivers each once the store has it (one process; the default).
//   RedisRouter  Redis does (--redis): the owner hands each message to the backplane on shard 0,
//                whose script numbers it, keeps it in the room's stream (the RedisStore reads it
//                back, chat/cluster/redis_store.h) and publishes it; every node receives it back on its
//                subscription, numbered, and the owner delivers it then. A room's channel is
//                subscribed while the node has members there.
// Either way the hub's rule holds: every member of a room sees its messages in one order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "reactor/reactor.h"

namespace chat {

class Exposition;

class Hub;
class ShardTable;
struct Publish;

class Router {
 public:
  virtual ~Router() = default;

  // On the owner's thread: `room` got its first member in this process, or lost its last.
  virtual void room_opened(Hub& owner, const std::string& room) = 0;
  virtual void room_closed(Hub& owner, const std::string& room) = 0;
  // On the owner's thread: runs `ready(from)` on the owner (`from`: the owner's shard) once a member
  // who joins now receives everything published to `room` after, wherever it is published, and the
  // owner's RoomLog::last_seq has every number published before (all of them kept).
  virtual void when_visible(Hub& owner, const std::string& room, std::function<void(size_t from)> ready) = 0;
  // On the owner's thread: a message to order, number, keep and deliver. It reaches the room
  // through Hub::deliver_message on the owner, now or once numbered and kept elsewhere; a publish
  // with an id is answered through Hub::ack, and one whose (user, id) was seen is only answered.
  virtual void route(Hub& owner, const std::string& room, Publish publish) = 0;
  // On shard `shard`: runs `then` there once what `shard` handed to the router before has come
  // back to the owners (a barrier's step through the router).
  virtual void pass(size_t shard, std::function<void()> then) = 0;
  // Whether what a member of `shard` asks of a room owned by `owner` is answered from another
  // thread (then a later pong waits for it, Session::after_earlier_answers).
  virtual bool answered_elsewhere(size_t owner, size_t shard) const = 0;

  virtual void start() {}
  // A log line of the router's state and counters ("" if it has none).
  virtual std::string describe() const { return ""; }
  // The same figures for GET /metrics (none by default). On shard 0's thread.
  virtual void metrics(Exposition&) const {}
};

class LocalRouter final : public Router {
 public:
  void room_opened(Hub&, const std::string&) override {}
  void room_closed(Hub&, const std::string&) override {}
  void when_visible(Hub& owner, const std::string& room, std::function<void(size_t)> ready) override;
  void route(Hub& owner, const std::string& room, Publish publish) override;
  void pass(size_t, std::function<void()> then) override { then(); }
  bool answered_elsewhere(size_t owner, size_t shard) const override { return owner != shard; }
};

}  // namespace chat
