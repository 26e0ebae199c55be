#include "redis/connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <vector>

namespace redis {

namespace {

// One context's socket on the loop: what hiredis wants to wait for, as a Reactor registration.
struct Watch {
  reactor::Reactor* loop;
  redisAsyncContext* ac;
  int fd;
  reactor::Interest interest = reactor::Interest::kNone;
  std::shared_ptr<int> alive = std::make_shared<int>(0);  // gone once hiredis cleaned up
};

void on_events(Watch* w, const std::weak_ptr<int>& alive, reactor::Events events) {
  redisAsyncContext* ac = w->ac;
  if (events & (reactor::kReadable | reactor::kError | reactor::kHangup)) {
    redisAsyncHandleRead(ac);  // may free the context, and `w` with it
    if (alive.expired()) return;
  }
  if (events & reactor::kWritable) redisAsyncHandleWrite(ac);
}

void update(Watch* w, reactor::Interest want) {
  if (want == w->interest) return;
  bool was_registered = w->interest != reactor::Interest::kNone;
  w->interest = want;
  if (want == reactor::Interest::kNone) {
    w->loop->remove(w->fd);
  } else if (was_registered) {
    w->loop->modify(w->fd, want);
  } else {
    w->loop->add(w->fd, want, [w, alive = std::weak_ptr<int>(w->alive)](reactor::Events events) {
      if (!alive.expired()) on_events(w, alive, events);
    });
  }
}

Watch* watch_of(void* privdata) { return static_cast<Watch*>(privdata); }
void add_read(void* p) { update(watch_of(p), watch_of(p)->interest | reactor::Interest::kRead); }
void del_read(void* p) { update(watch_of(p), reactor::without(watch_of(p)->interest, reactor::Interest::kRead)); }
void add_write(void* p) { update(watch_of(p), watch_of(p)->interest | reactor::Interest::kWrite); }
void del_write(void* p) { update(watch_of(p), reactor::without(watch_of(p)->interest, reactor::Interest::kWrite)); }
void cleanup(void* p) {
  update(watch_of(p), reactor::Interest::kNone);
  delete watch_of(p);
}

}  // namespace

void attach(reactor::Reactor& loop, redisAsyncContext* ac) {
  auto* w = new Watch{&loop, ac, ac->c.fd};
  ac->ev.data = w;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  // hiredis learns that its non-blocking connect() finished from the first write event.
  add_write(w);
}

// ---- Connection -------------------------------------------------------------------------------
// ac->data points at the Connection while it wants hiredis's callbacks; close() clears it first,
// so a context that hiredis frees later (close() inside a reply callback) calls nobody.

Connection::Connection(reactor::Reactor& loop, std::string host, uint16_t port, Callbacks callbacks)
    : loop_(loop), host_(std::move(host)), port_(port), callbacks_(std::move(callbacks)) {}

Connection::~Connection() { close(); }

void Connection::connect() {
  close();
  redisAsyncContext* ac = redisAsyncConnect(host_.c_str(), port_);
  if (ac == nullptr) return lost("cannot allocate a hiredis context");
  if (ac->err) {
    std::string reason = ac->errstr;
    redisAsyncFree(ac);
    return lost(reason);
  }
  ac->data = this;
  redisAsyncSetConnectCallback(ac, on_connect_hook);
  redisAsyncSetDisconnectCallback(ac, on_disconnect_hook);
  attach(loop_, ac);
  ac_ = ac;
}

void Connection::close() {
  if (ac_ == nullptr) return;
  redisAsyncContext* ac = ac_;
  ac_ = nullptr;
  connected_ = false;
  ++attempt_;
  ac->data = nullptr;
  redisAsyncFree(ac);  // inside a hiredis callback, hiredis frees it when the callback returns
}

void Connection::lost(std::string reason) {
  ac_ = nullptr;  // hiredis frees the context itself
  connected_ = false;
  loop_.defer([this, alive = std::weak_ptr<int>(alive_), attempt = ++attempt_, reason = std::move(reason)] {
    if (alive.expired() || attempt != attempt_) return;
    if (callbacks_.on_closed) callbacks_.on_closed(reason);
  });
}

void Connection::on_connect_hook(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<Connection*>(ac->data);
  if (self == nullptr) return;
  if (status != REDIS_OK) {
    return self->lost(std::string("cannot connect: ") + (ac->errstr ? ac->errstr : "error"));
  }
  self->connected_ = true;
  // Not from inside hiredis: the callback may close or reconnect.
  self->loop_.defer([self, alive = std::weak_ptr<int>(self->alive_), attempt = self->attempt_] {
    if (alive.expired() || attempt != self->attempt_ || !self->connected()) return;
    if (self->callbacks_.on_connected) self->callbacks_.on_connected();
  });
}

void Connection::on_disconnect_hook(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<Connection*>(ac->data);
  if (self == nullptr) return;
  self->lost(status == REDIS_OK ? std::string("connection closed")
                                : std::string("connection lost: ") + (ac->errstr ? ac->errstr : "error"));
}

void Connection::on_reply_hook(redisAsyncContext* ac, void* reply, void* privdata) {
  std::unique_ptr<ReplyCallback> callback(static_cast<ReplyCallback*>(privdata));
  if (ac->data == nullptr || !callback || !*callback) return;
  (*callback)(static_cast<const redisReply*>(reply));
}

void Connection::on_push_hook(redisAsyncContext* ac, void* reply, void*) {
  auto* self = static_cast<Connection*>(ac->data);
  if (self == nullptr || reply == nullptr || !self->callbacks_.on_push) return;
  self->callbacks_.on_push(*static_cast<const redisReply*>(reply));
}

template <typename Args>
bool Connection::send(const Args& argv, void (*fn)(redisAsyncContext*, void*, void*), void* privdata) {
  if (!connected()) return false;
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  args.reserve(argv.size());
  lengths.reserve(argv.size());
  for (std::string_view a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  return redisAsyncCommandArgv(ac_, fn, privdata, static_cast<int>(args.size()), args.data(), lengths.data()) ==
         REDIS_OK;
}

bool Connection::command(std::initializer_list<std::string_view> argv, ReplyCallback callback) {
  auto* privdata = new ReplyCallback(std::move(callback));
  if (send(argv, on_reply_hook, privdata)) return true;
  delete privdata;
  return false;
}

bool Connection::command(const std::vector<std::string>& argv, ReplyCallback callback) {
  auto* privdata = new ReplyCallback(std::move(callback));
  if (send(argv, on_reply_hook, privdata)) return true;
  delete privdata;
  return false;
}

bool Connection::subscribe(std::string_view channel) {
  return send(std::initializer_list<std::string_view>{"SUBSCRIBE", channel}, on_push_hook, nullptr);
}

bool Connection::unsubscribe(std::string_view channel) {
  return send(std::initializer_list<std::string_view>{"UNSUBSCRIBE", channel}, on_push_hook, nullptr);
}

}  // namespace redis
