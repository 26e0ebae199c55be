// The chat service on one reactor (ChatServer, a shard) or on several (ChatService).
//
// ChatServer: a TcpServer whose connections each carry a Session, with the shard's Hub and Stats.
// ChatService: shard 0 runs on the caller's reactor and owns the listening socket; threads - 1 more
// shards run in a ReactorPool. Accepted sockets are handed round-robin to the shards (one posted
// task per connection), so a connection lives on one reactor for its whole life. With one thread
// there is no pool and nothing is posted: the single-threaded server.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/core/hub.h"
#include "chat/core/router.h"
#include "chat/frontends/frontend.h"
#include "chat/ops/limits.h"
#include "chat/ops/stats.h"
#include "chat/session/session.h"
#include "reactor/loop_lag.h"
#include "reactor/reactor_pool.h"
#include "reactor/tcp_server.h"

namespace chat {

// Every front end chat-server knows, in a fixed order (TCP, web, IRC): a service's default.
std::span<const FrontEnd* const> front_ends();

// The front ends a service knows and their listeners. Their formats are registered in the
// order of the list, and their listeners are numbered every front end's plain one in that order,
// then their TLS twins in the same order (Stats::accepted's order), whether served or not: the
// stats line and /metrics show the same figures whatever is served.
class RedisStore;

class FrontEnds {
 public:
  struct Listener {
    size_t front;  // in fronts()
    bool tls;      // the TLS twin
    std::string_view name;
  };
  explicit FrontEnds(std::span<const FrontEnd* const> fronts);
  std::span<const FrontEnd* const> fronts() const { return fronts_; }
  const FrontEnd& front_of(size_t listener) const { return *fronts_[listeners_[listener].front]; }
  std::span<const Listener> listeners() const { return listeners_; }
  std::span<const std::string_view> names() const { return names_; }
  // The listener called `name` ("tcp", "ircs"), or listeners().size(); the index of `front`, or fronts().size().
  size_t listener(std::string_view name) const;
  size_t index(const FrontEnd* front) const;

 private:
  std::vector<const FrontEnd*> fronts_;
  std::vector<Listener> listeners_;
  std::vector<std::string_view> names_;
};

// Where a shard's GET /metrics gets its text: called on shard `shard`, answers there.
using MetricsSource = std::function<void(size_t shard, std::function<void(std::string)> done)>;

// Where a shard's connections come in, by listener (FrontEnds::listeners): whether it takes that
// listener's connections at all, and whether it listens itself (on `listen_on`) or they arrive
// through ChatServer::adopt from the shard that accepted them; and what each front end it serves
// shares across shards (FrontEnd::prepare, by front end).
struct ShardDoors {
  const FrontEnds* fronts = nullptr;  // outlives the shard's server
  std::array<bool, kMaxListeners> open{};
  std::array<std::optional<reactor::InetAddress>, kMaxListeners> listen_on;
  reactor::ListenOptions listen_options;
  // The TLS listeners' connections: the certificate, and how long a handshake may take.
  std::shared_ptr<reactor::FilterFactory> tls = nullptr;
  std::chrono::milliseconds tls_handshake_timeout{10000};
  std::vector<std::shared_ptr<const void>> shared;  // by front end (FrontEnds::fronts)
  MetricsSource metrics;  // null: no /metrics (and no loop-lag probe)
};

class ChatServer {
 public:
  using AcceptHook = std::function<bool(reactor::Handle&, const reactor::InetAddress&)>;
  // `doors` says which listeners' connections the shard takes, which it listens on itself, and
  // what the front ends of those listeners are given.
  ChatServer(reactor::Reactor& reactor, ShardTable& table, size_t shard, const Limits& limits, const ShardDoors& doors);
  ~ChatServer();

  void start();
  // A socket another shard accepted on listener `door` (one this shard has open).
  void adopt(size_t door, reactor::Handle socket, const reactor::InetAddress& peer) {
    doors_[door]->adopt(std::move(socket), peer);
  }
  // Sees each socket accepted on `door` first (see reactor::TcpServer::set_accept_hook).
  void set_accept_hook(size_t door, AcceptHook hook) { doors_[door]->set_accept_hook(std::move(hook)); }
  bool serves(size_t door) const { return door < doors_.size() && doors_[door] != nullptr; }
  bool listens(size_t door) const { return serves(door) && doors_[door]->listening(); }
  // The address a listener of this shard is bound to (one it listens on).
  const reactor::InetAddress& address(size_t door) const { return doors_[door]->local_address(); }
  // First step of a graceful stop: accept no more connections and read no more requests. Answers
  // to what was read, and messages other shards are still sending, go on being delivered.
  void quiesce();
  // Graceful stop: stop accepting, let every connection's queued output leave, close each one,
  // and call `done` when all are closed or `grace` has passed (what is left is closed then).
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);
  // Lame duck: accept no more members (HTTP goes on: /healthz says 503, /ws is refused) and close
  // the members one by one over `window`, the i-th of n at window * (i + 1) / n, each told first
  // (FrontEndPart::farewell: native and WebSocket `reconnect`, then WebSocket's close 1012; IRC's
  // ERROR). Members chat as usual until their turn. `done` once every member's close has begun
  // (at once on a second call).
  void drain(std::chrono::milliseconds window, std::function<void()> done);

  // The shard's counters, with the connections its TcpServer could not register (select's
  // FD_SETSIZE) among the refused.
  Stats stats() const;

 private:
  // A connection accepted on (or handed over from) `door`: a session of its front end.
  void on_connection(const reactor::TcpConnectionPtr& conn, size_t door);
  reactor::ConnectionCallbacks close_callbacks();
  // Each listener that stops with the members (all but those of front ends that outlive them:
  // HTTP's), when asked to.
  void stop_member_doors(bool close_listeners);
  // Counts the connection in (per listener, per address, per process), or refuses and closes it.
  bool admit(const reactor::TcpConnectionPtr& conn, size_t listener, AddressKey& address);
  void refuse(const reactor::TcpConnectionPtr& conn, const char* why);
  void on_close(const reactor::TcpConnectionPtr& conn, const reactor::CloseReason& reason);
  void maybe_finish_shutdown();
  void drain_step();
  // A connection that was not a member has become one (HTTP's upgrade to WebSocket).
  void became_member(uint64_t id);
  // Its front end's last words to the member, and the close after them.
  void farewell(const reactor::TcpConnectionPtr& conn, bool restart);
  // Every open connection of front end `front`, through its part's sweep.
  void sweep(size_t front);

  reactor::Reactor& reactor_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // close callbacks run later: check first
  Limits limits_;
  Stats stats_;
  Hub hub_;
  SessionContext sessions_;
  bool draining_ = false;  // quiesced: /healthz says 503
  bool visitors_closing_ = false;  // shutting down, and the members are gone: the others stop too
  std::unique_ptr<reactor::LoopLagProbe> lag_probe_;  // with /metrics
  const FrontEnds& fronts_;
  // By front end (FrontEnds::fronts): what its shards share (kept while its part uses it), its part on
  // this shard (null: not served), and its sweep's timer.
  std::vector<std::shared_ptr<const void>> shared_;
  std::vector<std::unique_ptr<FrontEndPart>> parts_;
  std::vector<reactor::TimerId> sweep_timers_;
  std::vector<size_t> open_by_front_;  // its connections open (a sweep of none looks at nothing)
  std::array<std::unique_ptr<reactor::TcpServer>, kMaxListeners> doors_;  // by listener; null: not served
  struct Open {
    reactor::TcpConnectionPtr conn;
    AddressKey address;  // counted in the table of addresses (if limited)
    uint8_t door;        // the listener it came in by
    bool member;         // a member (a Session), not a connection that serves requests (HTTP)
  };
  std::unordered_map<uint64_t, Open> connections_;
  size_t visitors_ = 0;  // connections open that are not members
  bool quiesced_ = false;
  std::function<void()> shutdown_done_;
  reactor::TimerId shutdown_timer_ = 0;
  reactor::TimerId frame_timer_ = 0;  // --frame-timeout-ms: the sweep over the members
  // drain(): the members to close, in order, how far, and over what time.
  bool drain_started_ = false;
  std::vector<uint64_t> drain_order_;
  size_t drain_next_ = 0;
  reactor::Clock::time_point drain_start_{};
  std::chrono::milliseconds drain_window_{0};
  std::function<void()> drain_done_;
  reactor::TimerId drain_timer_ = 0;
};

struct ServiceOptions {
  size_t threads = 1;
  std::string backend;      // "": the best available
  bool reuse_port = false;  // SO_REUSEPORT: other processes may listen on the same port (--workers)
  // How accepted connections reach the shards: shard 0 accepts and hands them out round-robin
  // (false), or every shard has its own SO_REUSEPORT listener and the kernel spreads them (true).
  bool listener_per_shard = false;
  std::string redis_host;   // "": no backplane, a stand-alone node
  uint16_t redis_port = 6379;
  Store* store = nullptr;   // where rooms' history is kept (null: none); not owned
  // `store` when it is Redis's (with redis_host: the router's script writes its stream), else null.
  RedisStore* redis_store = nullptr;
  Retention retention;      // and for how long (the dedupe window of ids included)
  // Every front end the service knows, in order (empty: front_ends()), and those it serves (on
  // the service's host), each on its port: the first one's listener
  // is the service's local_address(), and with listener_per_shard every shard listens on it.
  std::vector<const FrontEnd*> known;
  std::vector<ServedFrontEnd> fronts;
  bool metrics = true;      // GET /metrics (on a front end that serves it), and each reactor's loop-lag probe
  // With a certificate: each front end's TLS twin beside its plain listener, on its tls_port.
  std::shared_ptr<reactor::FilterFactory> tls = nullptr;
  std::chrono::milliseconds tls_handshake_timeout{10000};
  // --auth-secret: hellos (native, WebSocket) and IRC registrations need a token it signed (null:
  // no authentication). Not owned; outlives the service.
  const TokenAuthority* authority = nullptr;
};

class ChatService {
 public:
  // `main` is shard 0 and must be the calling thread's reactor.
  ChatService(reactor::Reactor& main, const std::string& host, const Limits& limits, const ServiceOptions& options);
  ~ChatService();

  void start();
  // On `main`'s thread: every shard stops gracefully; `done` runs on `main` when all have. In three
  // steps: every shard stops reading requests (quiesce); everything already accepted reaches the
  // output queues of its recipients on every shard (two rounds of Hub::barrier: a message's hops
  // are sender -> owner -> recipients); then each shard flushes and closes its connections. All
  // within `grace`, counted from this call.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);
  // On `main`'s thread: every shard drains (ChatServer::drain) over `window`; `done` runs on `main`
  // when every shard has begun closing all its members.
  void drain(std::chrono::milliseconds window, std::function<void()> done);
  // On `main`'s thread: `callback` gets the sum of every shard's counters, and each shard's own
  // (the balance between reactors), on `main`.
  void collect_stats(std::function<void(const Stats& sum, const std::vector<Stats>& shards)> callback);
  // On `main`'s thread: `done` gets GET /metrics's text (every shard's counters summed, each
  // reactor's loop lag, the router's and the store's figures), on `main`.
  void metrics_text(std::function<void(std::string)> done);
  // After shutdown and `main`'s loop has stopped: stops and joins the other shards.
  void stop_pool();
  // After stop_pool(): the sum of every shard's counters.
  Stats final_stats() const;
  // The router's state and counters as a log line ("" without --redis). On `main`'s thread.
  std::string backplane_stats() const { return router_ ? router_->describe() : ""; }

  size_t threads() const { return servers_.size(); }
  // Whether the listener called `name` ("tcp", "https": FrontEnd::name, tls_name) is served.
  bool serves(std::string_view name) const { return servers_[0]->serves(fronts_.listener(name)); }
  // Where listener `name` listens (one the service serves).
  const reactor::InetAddress& address(std::string_view name) const {
    return servers_[0]->address(fronts_.listener(name));
  }
  // Where the first front end served listens.
  const reactor::InetAddress& local_address() const { return servers_[0]->address(first_door_); }

 private:
  static constexpr size_t kTrimAbove = 4 << 20;  // free bytes in malloc's arenas worth giving back

  reactor::Reactor& main_;
  Limits limits_;
  FrontEnds fronts_;
  ShardTable table_;
  std::unique_ptr<AddressTable> addresses_;  // with per-address limits; outlives the shards
  reactor::TimerId address_sweep_timer_ = 0;
  std::vector<reactor::Reactor*> reactors_;
  std::vector<std::unique_ptr<ChatServer>> servers_;
  std::vector<Stats> final_;
  std::unique_ptr<reactor::ReactorPool> pool_;
  std::array<size_t, kMaxListeners> next_shard_{};  // per listener: where its next connection goes
  size_t first_door_ = 0;  // the first front end's plain listener
  Store* store_ = nullptr;
  std::unique_ptr<Router> router_;  // with --redis (on `main`); destroyed first
  reactor::TimerId trim_timer_ = 0;
};

}  // namespace chat
