// chat-server: the chat service. Speaks the article's protocol (JSON objects in, "[user] text"
// lines out, everyone in the lobby) and the native JSON-lines protocol (docs/PROTOCOL.md) on one port.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <iostream>
#include <vector>
#include <thread>

#include "app/cli.h"
#include "app/config.h"
#include "app/redis_url.h"
#include "app/workers.h"
#include "chat/cluster/redis_store.h"
#include "chat/core/names.h"
#include "chat/core/store.h"
#include "chat/frontends/irc/registration.h"
#include "chat/frontends/tcp/registration.h"
#include "chat/frontends/web/registration.h"
#include "chat/history/sqlite_store.h"
#include "chat/ops/auth.h"
#include "chat/server/server.h"
#include "reactor/log.h"
#include "reactor/tls.h"

namespace {

// --store and its companions.
struct StoreChoice {
  std::string kind = "sqlite";  // with --redis and no --store: redis (main())
  std::string data_dir = "chat-data";
  std::string sync = "normal";
  int64_t max_age_s = 7 * 24 * 3600;
  chat::Retention retention;
};

// The store a node keeps history in (main() has checked the choice against --redis), and in
// `redis_store` the same when it is Redis's (else null). Throws with one line.
std::unique_ptr<chat::Store> open_store(const StoreChoice& choice, bool redis, chat::RedisStore*& redis_store) {
  redis_store = nullptr;
  // With --redis, Redis Streams: every node reads the one history (the router's script writes it);
  // off keeps no stream, but Redis still numbers the messages and remembers their ids.
  if (redis && (choice.kind == "redis" || choice.kind == "off")) {
    chat::Retention kept = choice.retention;
    if (choice.kind == "off") kept.max_messages = 0;
    auto store = std::make_unique<chat::RedisStore>(kept);
    redis_store = store.get();
    return store;
  }
  if (choice.kind == "memory") return chat::make_memory_store(choice.retention);
  if (choice.kind == "off") return chat::make_memory_store(chat::Retention{.max_messages = 0});
  std::error_code ec;
  std::filesystem::create_directories(choice.data_dir, ec);
  if (ec) throw std::runtime_error("--data-dir " + choice.data_dir + ": " + ec.message());
  chat::SqliteOptions options;
  options.path = choice.data_dir + "/chat.db";
  options.retention = choice.retention;
  options.sync_full = choice.sync == "full";
  return chat::open_sqlite_store(options);
}

// One node: the chat service on this process's reactors until SIGINT/SIGTERM.
int run_node(const std::string& host, const chat::Limits& limits, chat::ServiceOptions options,
             const StoreChoice& store_choice, size_t grace_ms, size_t drain_ms,
             const std::shared_ptr<reactor::TlsServerContext>& tls) {
  try {
    // Signals are blocked here, before any other thread starts (the shards', the store's), so they
    // inherit the mask and only this thread's signalfd sees them.
    reactor::Reactor loop(options.backend);
    std::function<void(int)> graceful, report, drain;
    loop.on_signal(SIGINT, [&](int s) { graceful(s); });
    loop.on_signal(SIGTERM, [&](int s) { graceful(s); });
    loop.on_signal(SIGUSR1, [&](int s) { report(s); });
    loop.on_signal(SIGUSR2, [&](int s) { drain(s); });
    // SIGHUP: the certificate and key are read again; open connections keep theirs.
    loop.on_signal(SIGHUP, [&](int) {
      if (!tls) {
        LOG_INFO("SIGHUP: nothing to reload (no --tls-cert)");
      } else if (auto error = tls->reload()) {
        LOG_ERROR("SIGHUP: TLS certificate not reloaded, the one in use stays: %s", error->c_str());
      } else {
        LOG_INFO("SIGHUP: TLS certificate reloaded: %s", tls->describe().c_str());
      }
    });
    std::unique_ptr<chat::Store> store = open_store(store_choice, !options.redis_host.empty(), options.redis_store);
    options.store = store.get();
    options.retention = store_choice.retention;
    chat::ChatService service(loop, host, limits, options);
    bool stopping = false, draining = false;
    auto stop = [&] { service.shutdown(std::chrono::milliseconds(grace_ms), [&] { loop.stop(); }); };
    // SIGTERM: a lame duck first (members closed one by one over --drain-ms, each told to
    // reconnect), then the graceful stop. SIGINT (^C) and a SIGTERM during a drain: the stop at once.
    graceful = [&](int signo) {
      if (stopping) return;
      stopping = true;
      if (signo == SIGTERM && drain_ms > 0 && !draining) {
        LOG_INFO("signal %d (%s): stopping: members closed over %zu ms, each told to reconnect; then queued "
                 "output flushed for at most %zu ms", signo, strsignal(signo), drain_ms, grace_ms);
        draining = true;
        service.drain(std::chrono::milliseconds(drain_ms), stop);
        return;
      }
      LOG_INFO("signal %d (%s): stopping; flushing queued output for at most %zu ms", signo, strsignal(signo), grace_ms);
      stop();
    };
    // SIGUSR2: the lame duck alone. The process stays, answering HTTP (/healthz: 503) until SIGTERM.
    drain = [&](int signo) {
      if (stopping || draining) return;
      draining = true;
      LOG_INFO("signal %d (%s): draining: no new members; members closed over %zu ms, each told to reconnect",
               signo, strsignal(signo), drain_ms);
      service.drain(std::chrono::milliseconds(drain_ms), [&] {
        if (!stopping) LOG_INFO("drained: every member has been closed; /healthz says 503 until SIGTERM");
      });
    };
    report = [&](int) {
      service.collect_stats([&service, &store](const chat::Stats& s, const std::vector<chat::Stats>& shards) {
        std::string per_reactor;
        for (const chat::Stats& k : shards) per_reactor += (per_reactor.empty() ? "" : ",") + std::to_string(k.connections_open);
        std::string bp = service.backplane_stats();
        std::string st = store->describe();
        LOG_INFO("stats: %s; per reactor open=%s%s%s%s%s", s.to_string().c_str(), per_reactor.c_str(),
                 bp.empty() ? "" : " ", bp.c_str(), st.empty() ? "" : " ", st.c_str());
      });
    };
    service.start();
    std::printf("chat-server: listening on %s (%s, %zu thread%s%s%s)\n", service.local_address().to_string().c_str(),
                loop.backend_name(), options.threads, options.threads == 1 ? "" : "s",
                options.redis_host.empty() ? "" : ", redis ",
                // The loop has not run yet, so Redis has not answered: what follows is logged
                // ("connected", or why not and that this node serves its own members meanwhile).
                options.redis_host.empty() ? ""
                    : (options.redis_host + ":" + std::to_string(options.redis_port) + " connecting").c_str());
    if (service.serves("irc")) {
      std::printf("chat-server: irc listening on %s\n", service.address("irc").to_string().c_str());
    }
    if (service.serves("http")) {
      std::printf("chat-server: http listening on %s (the chat page: http://%s/)\n",
                  service.address("http").to_string().c_str(), service.address("http").to_string().c_str());
    }
    if (service.serves("tls")) {
      std::printf("chat-server: tls listening on %s (%s)\n", service.address("tls").to_string().c_str(),
                  tls->describe().c_str());
    }
    if (service.serves("https")) {
      std::printf("chat-server: https listening on %s (the chat page: https://%s/)\n",
                  service.address("https").to_string().c_str(), service.address("https").to_string().c_str());
    }
    if (service.serves("ircs")) {
      std::printf("chat-server: ircs listening on %s\n", service.address("ircs").to_string().c_str());
    }
    std::fflush(stdout);
    loop.run();
    service.stop_pool();
    std::string bp = service.backplane_stats();
    LOG_INFO("stopped. stats: %s%s%s", service.final_stats().to_string().c_str(), bp.empty() ? "" : " ", bp.c_str());
  } catch (const std::exception& e) {
    std::cerr << "chat-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A store's file past RLIMIT_FSIZE (or a full disk) is an error to report, not a reason to die.
  ::signal(SIGXFSZ, SIG_IGN);
  CLI::App cli{"Reactor Chat's server: the same chat rooms for native JSON-lines and article clients (TCP),\n"
               "the chat page and WebSocket clients (HTTP), and IRC clients.",
               "chat-server"};
  std::string host = "127.0.0.1", backend;
  uint16_t port = 1234;
  chat::Limits limits;
  size_t soft_grace_ms = static_cast<size_t>(limits.soft_grace.count());
  size_t grace_ms = 2000;
  size_t drain_ms = 3000;
  bool verbose = false;
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  size_t workers = 1;
  std::string accept = "handoff";
  bool reuse_port = false;
  std::string redis_url;
  uint16_t http_port = 8080;
  bool no_http = false, no_metrics = false;
  std::string web_root;
  std::vector<std::string> allowed_origins;
  size_t http_timeout_ms = 10000;
  size_t ws_ping_ms = 30000, ws_pong_timeout_ms = 10000;
  StoreChoice store;
  uint16_t irc_port = 6667;
  bool no_irc = false;
  std::string motd_file, irc_password_file, irc_operators_file;
  chat::IrcOptions irc;
  size_t irc_registration_ms = static_cast<size_t>(irc.registration_timeout.count());
  size_t irc_ping_ms = static_cast<size_t>(irc.ping_interval.count());
  size_t irc_ping_timeout_ms = static_cast<size_t>(irc.ping_timeout.count());
  cli.add_option("--host", host, "Address to listen on")->capture_default_str();
  cli.add_option("--port", port, "Port to listen on (0: any free port)")->capture_default_str();
  cli.add_option("--backend", backend, "How the reactors wait for their sockets: epoll, poll or select (default: the best available)")
      ->check(CLI::IsMember({"epoll", "poll", "select"}));
  cli.add_option("--max-frame", limits.max_frame, "Largest JSON object or line accepted, in bytes")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{16} << 20));
  cli.add_option("--output-limit", limits.output_hard,
                 "Hard limit on bytes queued to one member; past it the member is closed")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 32));
  cli.add_option("--soft-limit", limits.output_soft,
                 "Soft limit on bytes queued to one member; a member above it for longer than "
                 "--soft-ms is closed")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 32));
  cli.add_option("--soft-ms", soft_grace_ms, "How long a member may stay above --soft-limit, in milliseconds")
      ->capture_default_str();
  cli.add_option("--max-rooms", limits.max_rooms, "Rooms one connection may be in")->capture_default_str();
  cli.add_option("--max-room-members", limits.max_room_members,
                 "Members one room may have; a join past it is refused (0: no limit)")
      ->capture_default_str();
  cli.add_option("--max-server-rooms", limits.max_server_rooms,
                 "Rooms with members at once in this process; a join that would open one more is refused (0: no limit)")
      ->capture_default_str();
  cli.add_option("--presence-max-members", limits.presence_max_members,
                 "Rooms with more members than this get no join/leave events and no member lists")
      ->capture_default_str();
  cli.add_option("--max-connections-per-address", limits.per_address.max_connections,
                 "Connections at once from one client address (an IPv6 address: its /64), past which it is refused "
                 "(0: no limit)")
      ->capture_default_str();
  cli.add_option("--connect-rate", limits.per_address.connect_rate,
                 "New connections a second one address may open after its burst; over it, refused (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cli.add_option("--connect-burst", limits.per_address.connect_burst, "New connections one address may open at once")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e6));
  cli.add_option("--message-rate", limits.message_rate,
                 "Requests (messages, joins, leaves, history...: all but pings) a second one connection may make after "
                 "its burst; over it: rate_limited, not done (0: no limit; IRC has its own flood control besides)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  cli.add_option("--message-burst", limits.message_burst,
                 "Requests one connection may make at once; as many refusals in a row close it")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e7));
  size_t frame_timeout_ms = static_cast<size_t>(limits.frame_timeout.count());
  cli.add_option("--frame-timeout-ms", frame_timeout_ms,
                 "A line or JSON object once begun must end within this many milliseconds, or the connection is "
                 "closed (a client trickling bytes to hold connections open; 0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{3600000}));
  cli.add_option("--max-connections", limits.max_connections, "Connections at once in this process, whatever the reactor (0: as descriptors allow)")
      ->capture_default_str();
  cli.add_option("--shutdown-grace-ms", grace_ms,
                 "On stopping (Ctrl-C, SIGTERM), how long what is queued for members may take to leave before their "
                 "connections are closed, in milliseconds")
      ->capture_default_str();
  cli.add_option("--drain-ms", drain_ms,
                 "On SIGTERM (and SIGUSR2, which does this without stopping): take no new members and close the "
                 "members one by one over this many milliseconds, each told to reconnect (to another server, or "
                 "to this one once restarted), then stop (0: close them all at once)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{3600000}));
  cli.add_option("--threads", threads, "Reactors, one thread each (default: the number of cores)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, chat::ShardTable::kMaxShards));
  cli.add_option("--accept", accept,
                 "How new connections reach the reactors (the threads that serve them): handoff (one listening "
                 "socket; each new connection is handed to the next reactor in turn) or reuseport (a listening "
                 "socket per reactor on the same port, SO_REUSEPORT; the kernel spreads the connections, and "
                 "another process may share the port)")
      ->capture_default_str()
      ->check(CLI::IsMember({"handoff", "reuseport"}));
  cli.add_option("--redis", redis_url,
                 "Share rooms with other chat-server processes through Redis pub/sub: redis://HOST:PORT");
  cli.add_option("--workers", workers,
                 "Run this many server processes on one port (SO_REUSEPORT), joined through --redis")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{64}));
  cli.add_flag("--reuse-port", reuse_port,
               "Listen with SO_REUSEPORT, so that several chat-server processes share the port (as --workers does)");
  cli.add_option("--http-port", http_port,
                 "Port for HTTP: the chat page at /, /healthz, and WebSocket members at /ws (0: any free port)")
      ->capture_default_str();
  cli.add_flag("--no-http", no_http, "Serve no HTTP and no WebSocket (only the TCP dialects)");
  cli.add_flag("--no-metrics", no_metrics,
               "Serve no /metrics (Prometheus text: every counter of SIGUSR1's line, each reactor's loop lag)");
  cli.add_option("--web-root", web_root,
                 "Serve the page's files from this directory instead of the copy built into the binary");
  cli.add_option("--allowed-origin", allowed_origins,
                 "Origins allowed to open /ws, e.g. https://chat.example.org (repeatable; default: any)");
  cli.add_option("--http-timeout-ms", http_timeout_ms,
                 "How long an HTTP request may take to arrive whole, from the connection or the previous answer")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  cli.add_option("--ws-ping-ms", ws_ping_ms, "A WebSocket member silent this long is sent a ping, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  cli.add_option("--ws-pong-timeout-ms", ws_pong_timeout_ms,
                 "How long a pinged WebSocket member has to answer (any frame) before it is closed, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  cli.add_option("--irc-port", irc_port, "Port for IRC clients (0: any free port)")->capture_default_str();
  cli.add_flag("--no-irc", no_irc, "Serve no IRC");
  cli.add_option("--irc-server-name", irc.server_name, "The IRC server's name (the source of its own lines)")
      ->capture_default_str();
  cli.add_option("--irc-network", irc.network, "The IRC network's name (ISUPPORT NETWORK)")->capture_default_str();
  cli.add_option("--irc-motd", motd_file, "A file whose lines are the IRC message of the day (default: none)");
  cli.add_option("--irc-password-file", irc_password_file,
                 "A file whose first line is the password IRC clients must give (PASS) before registering");
  cli.add_option("--irc-operators-file", irc_operators_file,
                 "A file of IRC server operators (OPER), one a line: NAME HASH, HASH a crypt(3) hash of the "
                 "password (openssl passwd -6); without one OPER answers 491");
  cli.add_option("--irc-playback", irc.playback,
                 "Messages of a room's history sent to an IRC client that joins it (one with server-time and "
                 "without draft/chathistory; 0: none)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1000}));
  cli.add_option("--irc-flood-rate", irc.flood_rate,
                 "IRC lines a second a client may send after its burst; over it its lines wait (0: no flood control)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cli.add_option("--irc-flood-burst", irc.flood_burst, "IRC lines a client may send at once")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e6));
  cli.add_option("--irc-flood-backlog", irc.flood_backlog,
                 "Bytes of waiting lines past which a flooding IRC client is closed (Excess Flood)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{512}, size_t{1} << 24));
  cli.add_option("--irc-registration-timeout-ms", irc_registration_ms,
                 "How long an IRC client has to register (NICK and USER), in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  cli.add_option("--irc-ping-ms", irc_ping_ms, "An IRC member silent this long is sent a PING, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  cli.add_option("--irc-ping-timeout-ms", irc_ping_timeout_ms,
                 "How long a pinged IRC member has to answer (any line) before it is closed, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  reactor::TlsFiles tls_files;
  uint16_t tls_port = 1235, https_port = 8443, ircs_port = 6697;
  size_t tls_handshake_ms = 10000;
  auto* tls_cert = cli.add_option("--tls-cert", tls_files.cert,
                                  "PEM certificate (then its chain) of the TLS listeners, which it turns on with "
                                  "--tls-key (SIGHUP reads both again)");
  auto* tls_key = cli.add_option("--tls-key", tls_files.key, "PEM private key of --tls-cert");
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  cli.add_option("--tls-port", tls_port,
                 "Port for the TCP dialects (native JSON lines and the article's) over TLS (0: any free port)")
      ->capture_default_str();
  cli.add_option("--https-port", https_port,
                 "Port for HTTPS: the page, /healthz, /metrics, and wss:// members at /ws (0: any free port)")
      ->capture_default_str();
  cli.add_option("--ircs-port", ircs_port, "Port for IRC over TLS (0: any free port)")->capture_default_str();
  cli.add_option("--tls-handshake-timeout-ms", tls_handshake_ms,
                 "How long a TLS handshake may take before the connection is closed, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(size_t{100}, size_t{3600000}));
  auto* store_option = cli.add_option("--store", store.kind,
                 "Where rooms' history is kept: sqlite (a file in --data-dir), memory (until the process "
                 "exits), off (none: numbering and message ids only). With --redis: Redis Streams (redis) or off")
      ->check(CLI::IsMember({"sqlite", "memory", "off", "redis"}));
  cli.add_option("--data-dir", store.data_dir, "Directory of the sqlite store (created if missing)")
      ->capture_default_str();
  cli.add_option("--store-sync", store.sync,
                 "sqlite: normal (an acknowledged message survives a crash of the process) or full (also a "
                 "power loss; an fsync per batch)")
      ->capture_default_str()
      ->check(CLI::IsMember({"normal", "full"}));
  cli.add_option("--history-messages", store.retention.max_messages, "Messages kept per room (the newest)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}));
  cli.add_option("--history-age-s", store.max_age_s, "Messages older than this are forgotten, in seconds")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100LL * 365 * 24 * 3600}));
  cli.add_option("--history-reply-bytes", limits.history_reply_bytes,
                 "Bytes of messages one history answer carries at most (at least one message): past it, fewer "
                 "messages and \"more\": true (0: no cap)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1} << 30));
  cli.add_option("--history-rate", limits.history_rate,
                 "Bytes of history (history, CHATHISTORY, replays) one connection may be answered with a second after "
                 "--history-burst; its address four times as much; past it: rate_limited (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e12));
  cli.add_option("--history-burst", limits.history_burst, "Bytes of history one connection may be answered with at once")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e12));
  cli.add_option("--replay-limit", limits.replay_limit,
                 "Messages one reconnecting member may be replayed (a join with since); past it, it is told it missed "
                 "some (recovered: false) and reads the history instead")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100'000}));
  std::string auth_secret_file, mint_user;
  int64_t token_ttl_s = 3600;
  cli.add_option("--auth-secret", auth_secret_file,
                 "A file holding the secret (at least 32 bytes) that signs tokens: with it, every native and "
                 "WebSocket hello needs a token for its user, IRC a token as PASS or through SASL PLAIN, and the "
                 "article's dialect is refused (default: no authentication)");
  cli.add_option("--mint-token", mint_user,
                 "Print a token for this user, signed with --auth-secret's secret, and exit")
      ->configurable(false);
  cli.add_option("--token-ttl", token_ttl_s,
                 "With --mint-token: how long the token is valid, in seconds (at most 366 days: 31622400)")
      ->capture_default_str()
      ->configurable(false)
      ->check(CLI::Range(int64_t{1}, chat::TokenAuthority::kMaxLifetime));
  cli.add_flag("--verbose", verbose, "Log every connection's close");
  std::string config_file;
  bool check_config = false;
  app::add_config_flags(cli, config_file);
  cli.add_flag("--check-config", check_config,
               "Check the flags and the --config file (and the files they name), say so and exit: 0 if all is well")
      ->configurable(false);
  // --help by purpose (a test checks that every flag is in a group, and in docs/OPERATIONS.md).
  app::group_help(cli, {
      {"Listeners (where clients connect)",
       {"--host", "--port", "--http-port", "--no-http", "--web-root", "--allowed-origin", "--irc-port", "--no-irc",
        "--irc-server-name", "--irc-network", "--irc-motd"}},
      {"History (what is kept, and replayed to members who come back)",
       {"--store", "--data-dir", "--store-sync", "--history-messages", "--history-age-s", "--replay-limit",
        "--irc-playback"}},
      {"Limits (what one client may send, hold or cost)",
       {"--max-connections", "--max-connections-per-address", "--connect-rate", "--connect-burst", "--message-rate",
        "--message-burst", "--history-rate", "--history-burst", "--history-reply-bytes", "--max-frame", "--max-rooms", "--max-room-members", "--max-server-rooms",
        "--presence-max-members", "--output-limit", "--soft-limit", "--soft-ms", "--frame-timeout-ms",
        "--http-timeout-ms", "--ws-ping-ms", "--ws-pong-timeout-ms", "--irc-flood-rate", "--irc-flood-burst",
        "--irc-flood-backlog", "--irc-registration-timeout-ms", "--irc-ping-ms", "--irc-ping-timeout-ms"}},
      {"Cluster (threads, processes and machines)",
       {"--threads", "--backend", "--accept", "--workers", "--reuse-port", "--redis"}},
      {"TLS and authentication",
       {"--tls-cert", "--tls-key", "--tls-port", "--https-port", "--ircs-port", "--tls-handshake-timeout-ms",
        "--auth-secret", "--irc-password-file", "--irc-operators-file", "--mint-token", "--token-ttl"}},
      {"Stopping (Ctrl-C or SIGTERM)", {"--drain-ms", "--shutdown-grace-ms"}},
      {"Configuration and diagnostics",
       {"--config", "--check-config", "--verbose", "--no-metrics", "--version", "--help"}},
  });
  cli.footer(
      "Stop the server with Ctrl-C (a graceful stop at once) or SIGTERM (members are first told to\n"
      "reconnect, over --drain-ms). A token for a user: chat-server --auth-secret FILE --mint-token USER.\n"
      "Every flag in detail, with the signals and metrics: docs/OPERATIONS.md (installed in\n"
      "share/doc/reactor-chat/).");
  if (auto status = app::parse_with_config(cli, argc, argv)) return *status;
  // --auth-secret: read once, here (a missing or short secret stops the server, and --check-config).
  std::optional<chat::TokenAuthority> authority;
  if (!auth_secret_file.empty()) {
    try {
      authority.emplace(chat::TokenAuthority::load(auth_secret_file));
    } catch (const std::exception& e) {
      std::cerr << "chat-server: --auth-secret " << e.what() << "\n";
      return 2;
    }
  }
  if (!mint_user.empty()) {
    if (!authority) {
      std::cerr << "chat-server: --mint-token needs --auth-secret FILE (the secret the token is signed with)\n";
      return 2;
    }
    if (!chat::valid_native_name(mint_user)) {
      std::cerr << "chat-server: --mint-token: a user name is 1 to 32 characters from A-Z a-z 0-9 _ . -\n";
      return 2;
    }
    std::printf("%s\n", authority->mint(mint_user, token_ttl_s, chat::TokenAuthority::now()).c_str());
    return 0;
  }
  if (authority && !irc_password_file.empty()) {
    std::cerr << "chat-server: --irc-password-file cannot be used with --auth-secret: IRC clients then give "
                 "their token as the password (PASS) or through SASL PLAIN\n";
    return 2;
  }
  if (limits.output_soft > limits.output_hard) {
    std::cerr << "chat-server: --soft-limit must not be above --output-limit\n";
    return 2;
  }
  limits.soft_grace = std::chrono::milliseconds(soft_grace_ms);
  limits.frame_timeout = std::chrono::milliseconds(frame_timeout_ms);
  // An address is budgeted four times what one connection is (a few tabs, a reconnect or two).
  limits.per_address.history_rate = 4 * limits.history_rate;
  limits.per_address.history_burst = 4 * limits.history_burst;
  limits.per_address.request_rate = 4 * limits.message_rate;
  limits.per_address.request_burst = 4 * limits.message_burst;
  if (verbose) reactor::set_log_level(reactor::LogLevel::kDebug);
  app::tag_logs_if_worker();

  chat::ServiceOptions options;
  options.threads = threads;
  options.backend = backend;
  // Nodes that share rooms share one history: with --redis it is in Redis (or nowhere).
  if (!redis_url.empty() && store_option->count() == 0) store.kind = "redis";
  if (redis_url.empty() && store.kind == "redis") {
    std::cerr << "chat-server: --store redis needs --redis\n";
    return 2;
  }
  if (!redis_url.empty() && store.kind != "redis" && store.kind != "off") {
    std::cerr << "chat-server: --store " << store.kind
              << " cannot be used with --redis: nodes share one history, in Redis (--store redis, the "
                 "default with --redis) or none (--store off)\n";
    return 2;
  }
  if (!redis_url.empty()) {
    auto address = app::parse_redis_url(redis_url);
    if (!address) {
      std::cerr << "chat-server: --redis must look like redis://HOST:PORT, not '" << redis_url << "'\n";
      return 2;
    }
    options.redis_host = address->host;
    options.redis_port = address->port;
    try {  // once, here: hiredis would resolve a name again (blocking) at every reconnection
      options.redis_host = reactor::InetAddress::resolve(options.redis_host, options.redis_port).host();
    } catch (const std::exception& e) {
      std::cerr << "chat-server: --redis: " << e.what() << "\n";
      return 2;
    }
  }
  options.reuse_port = reuse_port;
  options.metrics = !no_metrics;
  chat::WebOptions web;
  web.web_root = web_root;
  web.allowed_origins = allowed_origins;
  web.request_timeout = std::chrono::milliseconds(http_timeout_ms);
  web.ws_ping_interval = std::chrono::milliseconds(ws_ping_ms);
  web.ws_pong_timeout = std::chrono::milliseconds(ws_pong_timeout_ms);
  options.listener_per_shard = accept == "reuseport";
  irc.registration_timeout = std::chrono::milliseconds(irc_registration_ms);
  irc.ping_interval = std::chrono::milliseconds(irc_ping_ms);
  irc.ping_timeout = std::chrono::milliseconds(irc_ping_timeout_ms);
  if (!motd_file.empty()) {
    std::ifstream in(motd_file);
    if (!in) {
      std::cerr << "chat-server: --irc-motd " << motd_file << ": cannot be read\n";
      return 2;
    }
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      irc.motd.push_back(line.substr(0, 400));
    }
    if (irc.motd.empty()) irc.motd.push_back("");
  }
  if (!irc_password_file.empty()) {
    std::ifstream in(irc_password_file);
    if (!in || !std::getline(in, irc.password) || (irc.password.erase(irc.password.find_last_not_of("\r\n ") + 1), irc.password.empty())) {
      std::cerr << "chat-server: --irc-password-file " << irc_password_file << ": cannot be read, or its first line is empty\n";
      return 2;
    }
  }
  if (!irc_operators_file.empty()) {
    std::ifstream in(irc_operators_file);
    if (!in) {
      std::cerr << "chat-server: --irc-operators-file " << irc_operators_file << ": cannot be read\n";
      return 2;
    }
    size_t number = 0;
    for (std::string line; std::getline(in, line);) {
      ++number;
      std::istringstream words(line);
      chat::IrcOperator op;
      std::string extra;
      if (!(words >> op.name) || op.name[0] == '#') continue;  // blank lines and comments
      if (!(words >> op.hash) || (words >> extra) || !chat::irc_hash_usable(op.hash)) {
        std::cerr << "chat-server: --irc-operators-file " << irc_operators_file << ":" << number
                  << ": want NAME HASH, HASH a crypt(3) hash of the password (make one with: openssl passwd -6)\n";
        return 2;
      }
      irc.operators.push_back(std::move(op));
    }
  }
  // The front ends served, each with its flags: the chat port's first (the service's address, and
  // the port every reactor listens on with --accept reuseport).
  options.fronts.push_back(chat::serve_tcp(port, tls_port));
  if (!no_http) options.fronts.push_back(chat::serve_web(http_port, https_port, web));
  if (!no_irc) options.fronts.push_back(chat::serve_irc(irc_port, ircs_port, irc));
  std::shared_ptr<reactor::TlsServerContext> tls;
  if (!tls_files.cert.empty()) {
    try {
      tls = std::make_shared<reactor::TlsServerContext>(tls_files);
    } catch (const std::exception& e) {
      std::cerr << "chat-server: --tls-cert/--tls-key: " << e.what() << "\n";
      return 2;
    }
    options.tls = tls;
    options.tls_handshake_timeout = std::chrono::milliseconds(tls_handshake_ms);
  }
  options.authority = authority ? &*authority : nullptr;
  if (check_config) {
    std::printf("chat-server: configuration OK%s%s\n", config_file.empty() ? "" : " (", config_file.empty() ? "" : (config_file + ")").c_str());
    return 0;
  }
  if (workers > 1) {
    if (redis_url.empty()) {
      std::cerr << "chat-server: --workers needs --redis: worker processes share rooms through Redis\n";
      return 2;
    }
    try {
      return app::supervise_on_port(workers, host, port, argc, argv);
    } catch (const std::exception& e) {
      std::cerr << "chat-server: " << e.what() << "\n";
      return 1;
    }
  }
  store.retention.max_age_ms = store.max_age_s * 1000;
  return run_node(host, limits, options, store, grace_ms, drain_ms, tls);
}
