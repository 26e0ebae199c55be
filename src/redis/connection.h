// A hiredis asynchronous connection driven by our Reactor.
//
// hiredis runs on a foreign event loop through five hooks (addRead, delRead, addWrite, delWrite,
// cleanup) that it calls whenever it wants to read, write or let go of its socket; attach() turns
// them into Reactor registrations, and readiness back into redisAsyncHandleRead/Write. Connection
// wraps a context in C++: callbacks as std::function, and a lifetime that is safe against hiredis
// freeing the context inside its own calls (an error while reading, a connect that failed).
//
// Threading: everything on the reactor's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/reactor.h"

struct redisAsyncContext;
struct redisReply;

namespace redis {

// The adapter hiredis expects from an event loop. Call once, right after creating the context.
void attach(reactor::Reactor& loop, redisAsyncContext* ac);

class Connection {
 public:
  struct Callbacks {
    std::function<void()> on_connected;
    // The connection could not be made or was lost; never called after close() or destruction.
    // Runs from the reactor's deferred phase, never inside hiredis.
    std::function<void(const std::string& reason)> on_closed;
    // Replies of a subscribed connection: ["message", channel, payload], ["subscribe", channel, n],
    // ["unsubscribe", channel, n].
    std::function<void(const redisReply& reply)> on_push;
  };
  // nullptr: the connection went away before the reply came.
  using ReplyCallback = std::function<void(const redisReply* reply)>;

  Connection(reactor::Reactor& loop, std::string host, uint16_t port, Callbacks callbacks);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting; on_connected or on_closed follows.
  void connect();
  bool connected() const { return ac_ != nullptr && connected_; }
  // Queues a command; false when not connected. hiredis writes what was queued in one iteration
  // with one write once the socket is writable.
  bool command(std::initializer_list<std::string_view> argv, ReplyCallback callback = nullptr);
  // The same with arguments made at run time.
  bool command(const std::vector<std::string>& argv, ReplyCallback callback);
  // SUBSCRIBE / UNSUBSCRIBE one channel; the answers come through on_push.
  bool subscribe(std::string_view channel);
  bool unsubscribe(std::string_view channel);
  // Drops the connection now; pending reply callbacks are not called.
  void close();

 private:
  static void on_connect_hook(const redisAsyncContext* ac, int status);
  static void on_disconnect_hook(const redisAsyncContext* ac, int status);
  static void on_reply_hook(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_push_hook(redisAsyncContext* ac, void* reply, void* privdata);
  template <typename Args>
  bool send(const Args& argv, void (*fn)(redisAsyncContext*, void*, void*), void* privdata);
  void lost(std::string reason);

  reactor::Reactor& loop_;
  std::string host_;
  uint16_t port_;
  Callbacks callbacks_;
  redisAsyncContext* ac_ = nullptr;
  bool connected_ = false;
  uint64_t attempt_ = 0;  // deferred callbacks of an older attempt are dropped
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace redis
