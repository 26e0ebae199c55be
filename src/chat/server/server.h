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
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "chat/core/hub.h"
#include "chat/core/router.h"
#include "chat/frontends/irc/irc.h"
#include "chat/frontends/web/http_session.h"
#include "chat/ops/limits.h"
#include "chat/ops/stats.h"
#include "chat/session/session.h"
#include "reactor/loop_lag.h"
#include "reactor/reactor_pool.h"
#include "reactor/tcp_server.h"

namespace chat {

// Where a shard's GET /metrics gets its text: called on shard `shard`, answers there.
using MetricsSource = std::function<void(size_t shard, std::function<void(std::string)> done)>;

// Where a shard's connections come in, by listener (stats.h): whether it takes that listener's
// connections at all, and whether it listens itself (on `listen_on`) or they arrive through
// ChatServer::adopt from the shard that accepted them.
struct ShardDoors {
  std::array<bool, kListeners> open{};
  std::array<std::optional<reactor::InetAddress>, kListeners> listen_on;
  reactor::ListenOptions listen_options;
  // The TLS listeners' connections: the certificate, and how long a handshake may take.
  std::shared_ptr<reactor::FilterFactory> tls = nullptr;
  std::chrono::milliseconds tls_handshake_timeout{10000};
};

// A shard's HTTP side (ChatServer), with Listener::kHttp or kHttps open.
struct ShardWeb {
  const WebOptions* options = nullptr;
  const http::StaticFiles* files = nullptr;
  MetricsSource metrics;  // null: no /metrics (and no loop-lag probe)
};

class ChatServer {
 public:
  using AcceptHook = std::function<bool(reactor::Handle&, const reactor::InetAddress&)>;
  // `doors` says which listeners' connections the shard takes and which it listens on itself; with
  // kHttp or kHttps, `web` says how HTTP and WebSocket are served; with kIrc or kIrcs, `irc` IRC.
  ChatServer(reactor::Reactor& reactor, ShardTable& table, size_t shard, const Limits& limits,
             const ShardDoors& doors, ShardWeb web = ShardWeb(), const IrcOptions* irc = nullptr);
  ~ChatServer();

  void start();
  // A socket another shard accepted on `door` (a listener this shard has open).
  void adopt(Listener door, reactor::Handle socket, const reactor::InetAddress& peer) {
    doors_[index(door)]->adopt(std::move(socket), peer);
  }
  // Sees each socket accepted on `door` first (see reactor::TcpServer::set_accept_hook).
  void set_accept_hook(Listener door, AcceptHook hook) { doors_[index(door)]->set_accept_hook(std::move(hook)); }
  bool serves(Listener door) const { return doors_[index(door)] != nullptr; }
  bool listens(Listener door) const { return serves(door) && doors_[index(door)]->listening(); }
  // The address a listener of this shard is bound to (one it listens on).
  const reactor::InetAddress& address(Listener door) const { return doors_[index(door)]->local_address(); }
  // First step of a graceful stop: accept no more connections and read no more requests. Answers
  // to what was read, and messages other shards are still sending, go on being delivered.
  void quiesce();
  // Graceful stop: stop accepting, let every connection's queued output leave, close each one,
  // and call `done` when all are closed or `grace` has passed (what is left is closed then).
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);
  // Lame duck: accept no more members (HTTP goes on: /healthz says 503, /ws is refused) and close
  // the members one by one over `window`, the i-th of n at window * (i + 1) / n, each told first
  // (Codec::going_away: native and WebSocket `reconnect`, then WebSocket's close 1012; IRC's
  // ERROR). Members chat as usual until their turn. `done` once every member's close has begun
  // (at once on a second call).
  void drain(std::chrono::milliseconds window, std::function<void()> done);

  // The shard's counters, with the connections its TcpServer could not register (select's
  // FD_SETSIZE) among the refused.
  Stats stats() const;

 private:
  static size_t index(Listener door) { return static_cast<size_t>(door); }
  // A connection accepted on (or handed over from) `door`: a session of its front end.
  void on_connection(const reactor::TcpConnectionPtr& conn, Listener door);
  reactor::ConnectionCallbacks close_callbacks();
  // Each listener that stops with the members (all but HTTP's), when asked to.
  void stop_member_doors(bool close_listeners);
  // Counts the connection in (per listener, per address, per process), or refuses and closes it.
  bool admit(const reactor::TcpConnectionPtr& conn, Listener listener, AddressKey& address);
  void refuse(const reactor::TcpConnectionPtr& conn, const char* why);
  void on_close(const reactor::TcpConnectionPtr& conn, const reactor::CloseReason& reason);
  void maybe_finish_shutdown();
  void drain_step();
  // Its last words (Session::going_away), then a close after the flush (WebSocket: a close frame).
  void farewell(const reactor::TcpConnectionPtr& conn, bool restart);

  reactor::Reactor& reactor_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // close callbacks run later: check first
  Limits limits_;
  Stats stats_;
  Hub hub_;
  SessionContext sessions_;
  bool draining_ = false;  // quiesced: /healthz says 503
  bool http_closing_ = false;  // shutting down, and the members are gone: HTTP stops too
  std::unordered_set<uint64_t> http_ids_;  // connections still speaking HTTP (not members)
  std::unordered_set<uint64_t> irc_ids_;   // IRC members (swept once a second for their timeouts)
  const IrcOptions* irc_options_ = nullptr;
  std::unique_ptr<WebContext> web_;
  std::unique_ptr<reactor::LoopLagProbe> lag_probe_;  // with /metrics
  std::array<std::unique_ptr<reactor::TcpServer>, kListeners> doors_;  // by Listener; null: not served
  struct Open {
    reactor::TcpConnectionPtr conn;
    AddressKey address;  // counted in the table of addresses (if limited)
  };
  std::unordered_map<uint64_t, Open> connections_;
  bool quiesced_ = false;
  std::function<void()> shutdown_done_;
  reactor::TimerId shutdown_timer_ = 0;
  reactor::TimerId keepalive_timer_ = 0;
  reactor::TimerId irc_timer_ = 0;
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
  Retention retention;      // and for how long (the dedupe window of ids included)
  bool http = false;        // serve HTTP and WebSocket on http_port (same host)
  uint16_t http_port = 8080;
  WebOptions web;
  bool metrics = true;      // GET /metrics on the HTTP port, and each reactor's loop-lag probe
  bool irc = false;         // serve IRC on irc_port (same host)
  uint16_t irc_port = 6667;
  IrcOptions irc_options;
  // With a certificate: the TLS listeners beside the plain ones (same host): the TCP dialects on
  // tls_port, HTTPS and wss on https_port (with http), IRC on ircs_port (with irc).
  std::shared_ptr<reactor::FilterFactory> tls = nullptr;
  uint16_t tls_port = 1235;
  uint16_t https_port = 8443;
  uint16_t ircs_port = 6697;
  std::chrono::milliseconds tls_handshake_timeout{10000};
  // --auth-secret: hellos (native, WebSocket) and IRC registrations need a token it signed (null:
  // no authentication). Not owned; outlives the service.
  const TokenAuthority* authority = nullptr;
};

class ChatService {
 public:
  // `main` is shard 0 and must be the calling thread's reactor.
  ChatService(reactor::Reactor& main, const reactor::InetAddress& address, const Limits& limits,
              const ServiceOptions& options);
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
  bool serves(Listener door) const { return servers_[0]->serves(door); }
  // Where `door` listens (one the service serves).
  const reactor::InetAddress& address(Listener door) const { return servers_[0]->address(door); }
  const reactor::InetAddress& local_address() const { return address(Listener::kTcp); }

 private:
  static constexpr size_t kTrimAbove = 4 << 20;  // free bytes in malloc's arenas worth giving back

  reactor::Reactor& main_;
  Limits limits_;
  ShardTable table_;
  std::unique_ptr<AddressTable> addresses_;  // with per-address limits; outlives the shards
  reactor::TimerId address_sweep_timer_ = 0;
  std::vector<reactor::Reactor*> reactors_;
  std::vector<std::unique_ptr<ChatServer>> servers_;
  std::vector<Stats> final_;
  std::unique_ptr<reactor::ReactorPool> pool_;
  std::array<size_t, kListeners> next_shard_{};  // per listener: where its next connection goes
  IrcOptions irc_options_;
  std::unique_ptr<http::StaticFiles> files_;
  WebOptions web_options_;
  Store* store_ = nullptr;
  std::unique_ptr<Router> router_;  // with --redis (on `main`); destroyed first
  reactor::TimerId trim_timer_ = 0;
};

}  // namespace chat
