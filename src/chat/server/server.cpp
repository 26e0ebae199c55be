#include "chat/server/server.h"

#include <malloc.h>

#include <algorithm>
#include <stdexcept>

#include "chat/cluster/redis_router.h"
#include "chat/frontends/irc/registration.h"
#include "chat/frontends/tcp/registration.h"
#include "chat/frontends/web/registration.h"
#include "chat/ops/metrics.h"
#include "reactor/log.h"

namespace chat {

// ---- The front ends --------------------------------------------------------------------------

std::span<const FrontEnd* const> front_ends() {
  static const FrontEnd* const fronts[] = {&tcp_front_end(), &web_front_end(), &irc_front_end()};
  return fronts;
}

FrontEnds::FrontEnds(std::span<const FrontEnd* const> fronts) : fronts_(fronts.begin(), fronts.end()) {
  for (bool tls : {false, true}) {
    for (size_t f = 0; f < fronts_.size(); ++f) {
      listeners_.push_back({f, tls, tls ? fronts_[f]->tls_name : fronts_[f]->name});
      names_.push_back(listeners_.back().name);
    }
  }
  if (listeners_.size() > kMaxListeners) throw std::length_error("too many listeners (at most kMaxListeners)");
}

size_t FrontEnds::listener(std::string_view name) const {
  for (size_t l = 0; l < listeners_.size(); ++l) {
    if (listeners_[l].name == name) return l;
  }
  return listeners_.size();
}

size_t FrontEnds::index(const FrontEnd* front) const {
  return static_cast<size_t>(std::find(fronts_.begin(), fronts_.end(), front) - fronts_.begin());
}

// ---- ChatServer -------------------------------------------------------------------------------

ChatServer::ChatServer(reactor::Reactor& reactor, ShardTable& table, size_t shard, const Limits& limits,
                       const ShardDoors& doors)
    : reactor_(reactor),
      limits_(limits),
      hub_(table, shard),
      sessions_{hub_, stats_, limits_, OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)},
      fronts_(*doors.fronts) {
  // The formats of every front end, registered in a fixed order (their ids order the stats line).
  auto fronts = fronts_.fronts();
  for (const FrontEnd* front : fronts) front->register_formats();
  table.attach(shard, reactor, hub_);
  shared_ = doors.shared;
  shared_.resize(fronts.size());
  parts_.resize(fronts.size());
  sweep_timers_.resize(fronts.size(), 0);
  open_by_front_.resize(fronts.size(), 0);
  auto all = fronts_.listeners();
  for (size_t l = 0; l < all.size(); ++l) {
    if (!doors.open[l]) continue;
    reactor::ConnectionOptions options;
    if (all[l].tls) {
      options.filter = doors.tls;
      options.handshake_timeout = doors.tls_handshake_timeout;
    } else {
      options.refuse_tls = true;  // a TLS client on a plain port: a clean close, counted
    }
    // Input goes to each connection's own handler (its session); the server hears of closes.
    doors_[l] = std::make_unique<reactor::TcpServer>(reactor, close_callbacks(), options);
    if (doors.listen_on[l]) doors_[l]->listen(*doors.listen_on[l], doors.listen_options);
    doors_[l]->set_on_connection([this, l](const reactor::TcpConnectionPtr& conn) { on_connection(conn, l); });
    // Its front end's part on this shard, once for both its listeners.
    size_t f = all[l].front;
    if (parts_[f]) continue;
    FrontEndShard lent{reactor_, shard, sessions_, draining_, [this](uint64_t id) { became_member(id); }, {}};
    if (doors.metrics && fronts[f]->serves_metrics) {
      lent.metrics = [source = doors.metrics, shard](std::function<void(std::string)> done) { source(shard, std::move(done)); };
      if (!lag_probe_) lag_probe_ = std::make_unique<reactor::LoopLagProbe>(reactor, std::chrono::milliseconds(100));
    }
    parts_[f] = fronts[f]->make(lent, shared_[f].get());
    auto every = parts_[f]->sweep_every();
    if (every.count() > 0) sweep_timers_[f] = reactor_.run_every(every, [this, f] { sweep(f); });
  }
  if (limits.frame_timeout.count() > 0) {
    // Frames left unfinished (slowloris): one sweep per shard over its members, often enough to
    // close one within a quarter of the timeout past it (and at least once a second).
    auto every = std::clamp(limits.frame_timeout / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
    frame_timer_ = reactor_.run_every(every, [this] {
      uint32_t now = Session::clock_ms();
      std::vector<Session*> members;
      for (auto& [id, open] : connections_) {
        if (!open.member) continue;  // HTTP has its own request timeout
        if (auto* s = dynamic_cast<Session*>(open.conn->handler())) members.push_back(s);
      }
      for (Session* s : members) s->frame_timed_out(now);  // a close is deferred: the map stays as it is
    });
  }
}

ChatServer::~ChatServer() {
  for (reactor::TimerId timer : sweep_timers_) {
    if (timer) reactor_.cancel(timer);
  }
  if (drain_timer_) reactor_.cancel(drain_timer_);
  if (frame_timer_) reactor_.cancel(frame_timer_);
  // Close what is still open. The loops have stopped: nothing is told to the other shards.
  auto open = std::move(connections_);
  for (auto& [id, o] : open) {
    o.conn->close(reactor::CloseCode::kShutdown, "server destroyed");
    o.conn->set_handler(nullptr);  // its session goes now, while the hub it points to exists
  }
}

reactor::ConnectionCallbacks ChatServer::close_callbacks() {
  reactor::ConnectionCallbacks cb;
  cb.on_close = [this, alive = std::weak_ptr<int>(alive_)](const reactor::TcpConnectionPtr& conn,
                                                           const reactor::CloseReason& reason) {
    if (!alive.expired()) on_close(conn, reason);
  };
  return cb;
}

void ChatServer::start() {
  for (auto& door : doors_) {
    if (door) door->start();
  }
}

Stats ChatServer::stats() const {
  Stats s = stats_;
  s.rooms = hub_.owned_room_count();
  s.members = hub_.local_membership_count();
  s.presence_coalesced = hub_.presence_held();
  if (lag_probe_) s.loop_lag = lag_probe_->histogram();
  for (const auto& door : doors_) {
    if (door) s.connections_refused += door->stats().rejected;
  }
  return s;
}

void ChatServer::on_connection(const reactor::TcpConnectionPtr& conn, size_t door) {
  AddressKey address;
  if (!admit(conn, door, address)) return;
  size_t front = fronts_.listeners()[door].front;  // over TLS or not, the same front end
  bool member = parts_[front]->connect(*conn);
  connections_.emplace(conn->id(), Open{conn, address, static_cast<uint8_t>(door), member});
  ++open_by_front_[front];
  if (!member) ++visitors_;
  stats_.connections_open = connections_.size();
  bool closing = member ? shutdown_done_ || quiesced_ : visitors_closing_;
  if (closing) conn->close_after_flush(reactor::CloseCode::kShutdown, "server shutting down");
}

void ChatServer::became_member(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.member) return;
  it->second.member = true;
  --visitors_;
}

void ChatServer::sweep(size_t front) {
  if (open_by_front_[front] == 0) return;
  auto now = reactor::Clock::now();
  auto all = fronts_.listeners();
  std::vector<reactor::TcpConnectionPtr> swept;  // a sweep may close (deferred) its connection
  swept.reserve(open_by_front_[front]);
  for (auto& [id, open] : connections_) {
    if (all[open.door].front == front && open.conn->handler() != nullptr) swept.push_back(open.conn);
  }
  for (auto& conn : swept) {
    if (auto* handler = conn->handler()) parts_[front]->sweep(*handler, now);
  }
}

bool ChatServer::admit(const reactor::TcpConnectionPtr& conn, size_t listener, AddressKey& address) {
  ++stats_.accepted[listener];
  AddressTable* addresses = hub_.table().addresses();
  if (addresses != nullptr) {
    AddressKey key;
    try {
      key = AddressKey::of(reactor::InetAddress::peer_of(conn->fd()));
    } catch (const std::exception&) {
      // Gone already (reset before we looked): not counted, and it closes on its first read.
    }
    if (key.counted()) {
      switch (addresses->admit(key, reactor::Clock::now())) {
        case Admission::kAdmitted: address = key; break;
        case Admission::kTooMany:
          ++stats_.refused_per_address;
          refuse(conn, "too many connections from its address (--max-connections-per-address)");
          return false;
        case Admission::kTooFast:
          ++stats_.refused_connect_rate;
          refuse(conn, "its address connects too fast (--connect-rate)");
          return false;
      }
    }
  }
  if (limits_.max_connections && !hub_.table().admit(limits_.max_connections)) {
    if (address.counted()) addresses->release(address);
    address = {};
    refuse(conn, "over the connection limit (--max-connections)");
    return false;
  }
  return true;
}

void ChatServer::refuse(const reactor::TcpConnectionPtr& conn, const char* why) {
  ++stats_.connections_refused;
  static thread_local reactor::LogLimiter refusals(5, std::chrono::seconds(10));
  uint64_t left_out = 0;
  if (refusals.allow(&left_out)) {
    LOG_WARN("connection %llu refused: %s%s", static_cast<unsigned long long>(conn->id()), why,
             reactor::more_like_it(left_out).c_str());
  }
  conn->close(reactor::CloseCode::kRefused, why);
}

void ChatServer::on_close(const reactor::TcpConnectionPtr& conn, const reactor::CloseReason& reason) {
  // The connection's session has left its rooms already (its handler's on_close runs first).
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;  // refused before it had a session
  if (it->second.address.counted()) hub_.table().addresses()->release(it->second.address);
  if (!it->second.member) --visitors_;
  --open_by_front_[fronts_.listeners()[it->second.door].front];
  connections_.erase(it);
  if (limits_.max_connections) hub_.table().release_admission();
  stats_.connections_open = connections_.size();
  if (reason.reset) ++stats_.linger_resets;
  switch (conn->handshake()) {
    case reactor::Handshake::kPending:
    case reactor::Handshake::kFailed: ++stats_.tls_failures; break;
    case reactor::Handshake::kTimedOut: ++stats_.tls_timeouts; break;
    case reactor::Handshake::kWrongProtocol: ++stats_.wrong_protocol; break;
    case reactor::Handshake::kNone:
    case reactor::Handshake::kDone: break;
  }
  if (drain_timer_ && connections_.size() == visitors_) drain_step();  // the last member went
  // Closes come at the rate clients connect: logged within a budget per reactor.
  static thread_local reactor::LogLimiter closes(20, std::chrono::seconds(1));
  bool notable = reason.code == reactor::CloseCode::kSlowConsumer || reason.code == reactor::CloseCode::kProtocol ||
                 reason.code == reactor::CloseCode::kTimeout;
  reactor::LogLevel level = notable ? reactor::LogLevel::kInfo : reactor::LogLevel::kDebug;
  uint64_t left_out = 0;
  if (reactor::log_level() <= level && closes.allow(&left_out)) {
    reactor::log(level, "connection %llu closed: %s%s", static_cast<unsigned long long>(conn->id()),
                 reason.text.c_str(), reactor::more_like_it(left_out).c_str());
  }
  maybe_finish_shutdown();
}

void ChatServer::quiesce() {
  if (quiesced_) return;
  quiesced_ = true;
  draining_ = true;
  stop_member_doors(/*close_listeners=*/false);
  hub_.drop_paused();  // sessions waiting for room never resume reading
  // Members stop reading; plain HTTP connections go on, so that /healthz can say 503 meanwhile.
  for (auto& [id, open] : connections_) {
    if (open.member) open.conn->pause_reading();
  }
}

void ChatServer::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  if (shutdown_done_) return;
  shutdown_done_ = std::move(done);
  stop_member_doors(/*close_listeners=*/false);
  // Members flush and close (those a drain has closed already are flushing); plain HTTP goes on
  // (every answer closing its connection, /healthz saying 503) until the last member of this shard
  // is gone (maybe_finish_shutdown).
  for (auto& [id, open] : connections_) {
    if (open.member && open.conn->accepts_output()) farewell(open.conn, /*restart=*/false);
  }
  shutdown_timer_ = reactor_.run_after(grace, [this] {
    shutdown_timer_ = 0;
    if (!connections_.empty()) {
      LOG_WARN("shutdown: %zu connection(s) still had output after the grace period; closing", connections_.size());
    }
    auto open = connections_;  // close() calls back into on_close (deferred), not into this loop
    for (auto& [id, o] : open) o.conn->close(reactor::CloseCode::kShutdown, "server shutting down (grace period over)");
  });
  maybe_finish_shutdown();
}

void ChatServer::stop_member_doors(bool close_listeners) {
  for (size_t l = 0; l < fronts_.listeners().size(); ++l) {
    if (!doors_[l] || fronts_.front_of(l).outlives_members) continue;  // HTTP goes on (/healthz)
    if (close_listeners) {
      doors_[l]->close_listener();
    } else {
      doors_[l]->stop_accepting();
    }
  }
}

void ChatServer::farewell(const reactor::TcpConnectionPtr& conn, bool restart) {
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;
  parts_[fronts_.listeners()[it->second.door].front]->farewell(*conn, restart);
}

void ChatServer::drain(std::chrono::milliseconds window, std::function<void()> done) {
  if (drain_started_) {
    if (done) done();
    return;
  }
  drain_started_ = true;
  draining_ = true;  // /healthz says 503, /ws is refused
  // Refused, not left waiting in a backlog: a client (or a balancer) tries another node at once.
  stop_member_doors(/*close_listeners=*/true);
  for (auto& [id, open] : connections_) {
    if (open.member) drain_order_.push_back(id);
  }
  drain_start_ = reactor::Clock::now();
  drain_window_ = window;
  drain_done_ = std::move(done);
  drain_step();
  // Closes in batches every 20 ms: 10,000 members over 5 s are 40 a batch, not a timer each.
  if (drain_next_ < drain_order_.size()) {
    drain_timer_ = reactor_.run_every(std::chrono::milliseconds(20), [this] { drain_step(); });
  }
}

void ChatServer::drain_step() {
  size_t n = drain_order_.size();
  auto elapsed = reactor::Clock::now() - drain_start_;
  size_t due = n;
  if (drain_window_.count() > 0 && elapsed < drain_window_) {
    due = static_cast<size_t>(static_cast<double>(n) * (std::chrono::duration<double>(elapsed) / drain_window_));
  }
  for (; drain_next_ < due; ++drain_next_) {
    auto it = connections_.find(drain_order_[drain_next_]);
    if (it != connections_.end() && it->second.conn->accepts_output()) farewell(it->second.conn, /*restart=*/true);
  }
  // Done at the end of the window, or sooner once every member has gone by itself.
  if (drain_next_ < n && connections_.size() > visitors_) return;
  drain_next_ = n;
  if (drain_timer_) reactor_.cancel(drain_timer_);
  drain_timer_ = 0;
  drain_order_ = {};
  if (auto done = std::move(drain_done_)) done();
  drain_done_ = nullptr;
}

void ChatServer::maybe_finish_shutdown() {
  if (!shutdown_done_ || connections_.size() > visitors_) return;  // members still flushing
  if (!visitors_closing_) {
    visitors_closing_ = true;
    for (size_t l = 0; l < fronts_.listeners().size(); ++l) {
      if (doors_[l] && fronts_.front_of(l).outlives_members) doors_[l]->stop_accepting();
    }
    std::vector<reactor::TcpConnectionPtr> visitors;
    for (auto& [id, open] : connections_) {
      if (!open.member) visitors.push_back(open.conn);
    }
    for (auto& conn : visitors) conn->close_after_flush(reactor::CloseCode::kShutdown, "server shutting down");
  }
  if (!connections_.empty()) return;
  if (shutdown_timer_) reactor_.cancel(shutdown_timer_);
  shutdown_timer_ = 0;
  auto done = std::move(shutdown_done_);
  shutdown_done_ = [] {};  // stays non-empty: the server is shutting down
  done();
}

// ---- ChatService ------------------------------------------------------------------------------

ChatService::ChatService(reactor::Reactor& main, const std::string& host, const Limits& limits,
                         const ServiceOptions& options)
    : main_(main),
      limits_(limits),
      fronts_(options.known.empty() ? front_ends() : std::span<const FrontEnd* const>(options.known)),
      table_(options.threads, limits.presence_max_members),
      reactors_(options.threads, nullptr),
      servers_(options.threads),
      final_(options.threads) {
  // Before any shard is built: each room's owner takes the numbering and ids the store knows.
  if (options.store) table_.set_store(options.store, options.retention, options.store->load());
  store_ = options.store;
  table_.set_room_limits(limits.max_room_members, limits.max_server_rooms);
  table_.set_authority(options.authority);
  if (AddressTable(limits.per_address).enabled()) {
    addresses_ = std::make_unique<AddressTable>(limits.per_address);
    table_.set_addresses(addresses_.get());
    // Addresses with nothing open and a full bucket are forgotten: the table holds the addresses
    // connected now and those that connected in the last burst / rate seconds.
    address_sweep_timer_ = main.run_every(std::chrono::seconds(5), [this] { addresses_->sweep(reactor::Clock::now()); });
  }
  // GET /metrics on any shard: the figures are put together on `main`, the text goes back.
  MetricsSource metrics;
  if (options.metrics) {
    metrics = [this](size_t k, std::function<void(std::string)> done) {
      table_.run_on(0, k, [this, k, done = std::move(done)] {
        metrics_text([this, k, done](std::string text) {
          table_.run_on(k, 0, [done, text = std::move(text)] { done(text); });
        });
      });
    };
  }
  reactors_[0] = &main;
  bool per_shard = options.listener_per_shard && options.threads > 1;
  // Shard 0 listens on every door; the others take what it hands them (and, with a listener per
  // shard, listen on the chat port too).
  ShardDoors doors;
  doors.listen_options = {.reuse_port = options.reuse_port || per_shard};
  doors.tls = options.tls;
  doors.tls_handshake_timeout = options.tls_handshake_timeout;
  doors.metrics = metrics;
  doors.fronts = &fronts_;
  // Each front end served opens its listener, and its TLS twin with a certificate.
  auto all = fronts_.listeners();
  for (size_t l = 0; l < all.size(); ++l) {
    if (all[l].tls && !options.tls) continue;
    for (const ServedFrontEnd& served : options.fronts) {
      if (fronts_.index(served.front) != all[l].front) continue;
      doors.open[l] = true;
      doors.listen_on[l] = reactor::InetAddress::resolve(host, all[l].tls ? served.tls_port : served.port);
    }
  }
  // What each front end's shards share, made once.
  doors.shared.resize(fronts_.fronts().size());
  for (const ServedFrontEnd& served : options.fronts) {
    size_t f = fronts_.index(served.front);
    if (f == fronts_.fronts().size()) throw std::invalid_argument("a front end served but not known");
    doors.shared[f] = served.front->prepare ? served.front->prepare(served.options) : served.options;
  }
  if (!options.fronts.empty()) first_door_ = fronts_.listener(options.fronts.front().front->name);
  servers_[0] = std::make_unique<ChatServer>(main, table_, 0, limits_, doors);
  ShardDoors others = doors;
  others.listen_on = {};
  // With a listener per shard, the others bind the port shard 0 got (it may have been 0).
  if (per_shard) others.listen_on[first_door_] = servers_[0]->address(first_door_);
  if (!options.redis_host.empty()) {
    router_ = std::make_unique<RedisRouter>(table_, options.redis_store, main, options.redis_host, options.redis_port);
    table_.set_router(router_.get());
  }
  if (options.threads > 1) {
    // Each shard's server is built on its own thread (the owner rule) and destroyed there.
    pool_ = std::make_unique<reactor::ReactorPool>(
        options.threads - 1, options.backend,
        [this, others](reactor::Reactor& r, size_t i) {
          reactors_[i + 1] = &r;
          servers_[i + 1] = std::make_unique<ChatServer>(r, table_, i + 1, limits_, others);
        },
        [this](reactor::Reactor&, size_t i) {
          final_[i + 1] = servers_[i + 1]->stats();
          servers_[i + 1].reset();
        });
    // Each listener's connections (HTTP's: the WebSocket members they become) are handed out
    // round-robin, each listener in its own turn.
    for (size_t l = 0; l < all.size(); ++l) {
      if (!doors.open[l] || (l == first_door_ && per_shard)) continue;
      servers_[0]->set_accept_hook(l, [this, door = l, l](reactor::Handle& socket, const reactor::InetAddress& peer) {
        size_t k = next_shard_[l]++ % servers_.size();
        if (k == 0) return false;  // this shard keeps it
        reactors_[k]->post([server = servers_[k].get(), door, fd = socket.release(), peer] {
          server->adopt(door, reactor::Handle(fd), peer);
        });
        return true;
      });
    }
  }
}

ChatService::~ChatService() {
  main_.cancel(trim_timer_);
  if (address_sweep_timer_) main_.cancel(address_sweep_timer_);
  stop_pool();
}

void ChatService::start() {
  if (router_) router_->start();
  // Memory comes back after a burst: glibc keeps what the reactors' threads freed in their arenas
  // (a flood's queued messages, a slow consumer's output), and returns it only when asked. Asked
  // once a second, and only when there is a worthwhile amount free (mallinfo2 reads the bins).
  trim_timer_ = main_.run_every(std::chrono::seconds(1), [] {
    if (::mallinfo2().fordblks > kTrimAbove) ::malloc_trim(0);
  });
  for (size_t k = 0; k < servers_.size(); ++k) {
    table_.run_on(k, 0, [server = servers_[k].get()] { server->start(); });  // each on its own thread
  }
}

void ChatService::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  struct Stop {
    reactor::Clock::time_point deadline;
    std::function<void()> done;
    size_t remaining = 0;
    bool closing = false;
    reactor::TimerId timer = 0;
  };
  auto stop = std::make_shared<Stop>(Stop{reactor::Clock::now() + grace, std::move(done)});
  size_t n = servers_.size();
  // Step 3, once the drain is over or the grace period says so: each shard flushes and closes.
  auto close_all = [this, stop, n] {
    if (stop->closing) return;
    stop->closing = true;
    if (stop->timer) main_.cancel(stop->timer);
    stop->remaining = n;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(stop->deadline - reactor::Clock::now());
    left = std::max(left, std::chrono::milliseconds(0));
    for (size_t k = 0; k < n; ++k) {
      table_.run_on(k, 0, [this, k, left, stop] {
        servers_[k]->shutdown(left, [this, k, stop] {
          table_.run_on(0, k, [stop] {
            if (--stop->remaining == 0) stop->done();
          });
        });
      });
    }
  };
  stop->timer = main_.run_at(stop->deadline, close_all);  // a drain stuck on Redis ends here
  // Step 2: two rounds of barriers from shard 0 over every shard, once all have stopped reading.
  auto drain = [this, close_all, n] {
    std::vector<size_t> all(n);
    for (size_t k = 0; k < n; ++k) all[k] = k;
    table_.hub(0).barrier(all, [this, all, close_all] { table_.hub(0).barrier(all, close_all); });
  };
  // Step 1: every shard stops accepting and reading.
  stop->remaining = n;
  for (size_t k = 0; k < n; ++k) {
    table_.run_on(k, 0, [this, k, stop, drain] {
      servers_[k]->quiesce();
      table_.run_on(0, k, [stop, drain] {
        if (--stop->remaining == 0 && !stop->closing) drain();
      });
    });
  }
}

void ChatService::drain(std::chrono::milliseconds window, std::function<void()> done) {
  auto remaining = std::make_shared<size_t>(servers_.size());
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  for (size_t k = 0; k < servers_.size(); ++k) {
    table_.run_on(k, 0, [this, k, window, remaining, finished] {
      servers_[k]->drain(window, [this, k, remaining, finished] {
        table_.run_on(0, k, [remaining, finished] {
          if (--*remaining == 0 && *finished) (*finished)();
        });
      });
    });
  }
}

void ChatService::collect_stats(std::function<void(const Stats&, const std::vector<Stats>&)> callback) {
  struct Collect {
    Stats sum;
    std::vector<Stats> shards;
    size_t remaining;
    std::function<void(const Stats&, const std::vector<Stats>&)> callback;
  };
  auto c = std::make_shared<Collect>(Collect{{}, std::vector<Stats>(servers_.size()), servers_.size(), std::move(callback)});
  for (size_t k = 0; k < servers_.size(); ++k) {
    table_.run_on(k, 0, [this, k, c] {
      Stats s = servers_[k]->stats();
      table_.run_on(0, k, [c, k, s] {
        c->sum += s;
        c->shards[k] = s;
        if (--c->remaining == 0) c->callback(c->sum, c->shards);
      });
    });
  }
}

void ChatService::metrics_text(std::function<void(std::string)> done) {
  collect_stats([this, done = std::move(done)](const Stats& sum, const std::vector<Stats>& shards) {
    Exposition out;
    write_metrics(out, sum, shards, fronts_.names());
    if (router_) router_->metrics(out);
    if (store_) store_->metrics(out);
    done(out.text());
  });
}

void ChatService::stop_pool() {
  if (!pool_) return;
  pool_->stop();
  pool_->join();
  pool_.reset();
}

Stats ChatService::final_stats() const {
  Stats sum = servers_[0]->stats();
  for (size_t k = 1; k < final_.size(); ++k) sum += final_[k];
  return sum;
}

}  // namespace chat
