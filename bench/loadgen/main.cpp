// loadgen: the load generator of Reactor Chat (issue 4), built on our own Reactor.
//
//   --mode echo   N connections; A of them keep D payloads in flight each (verified byte for byte),
//                 the rest make one round trip and stay idle (the C10K shape). Reports rtt_per_s.
//   --mode chat   N members subscribe to a room; P publishers publish at --rate messages/s in all;
//                 every delivery is checked (loss, duplicates, order per publisher) and timed from
//                 the publisher's send. Reports deliveries_per_s. Dialects: native, article, redis,
//                 nats, ws (the native dialect over WebSocket; --port is then the HTTP port), irc
//                 (RFC 2812 clients in channel #room); see dialect.h.
//                 --ids: every publish carries an id; the server's acks are counted and timed
//                 (publish to ack). --window N: instead of --rate, each publisher keeps N messages
//                 unacknowledged (pipelining), sending the next as each ack arrives: reports
//                 acks_per_s, the acknowledged messages per second.
//   --mode recover  many members reconnecting at once, each recovering what it missed (join with
//                 since/epoch): --phase prepare, then (the server restarted) --phase storm; one
//                 process, see recover.h.
//
// The load runs in K worker processes (fork; one Reactor each); the parent coordinates them over
// pipes, samples the server (--server-pid) at the measured window's edges and prints one report
// (--json: exactly one JSON object on stdout). See coordinator.h for the phases.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "app/cli.h"
#include "loadgen/config.h"
#include "loadgen/coordinator.h"
#include "loadgen/message.h"
#include "loadgen/proc_stats.h"
#include "loadgen/recover.h"
#include "reactor/handle.h"
#include "reactor/inet_address.h"
#include "reactor/log.h"

namespace {

using loadgen::Config;
using loadgen::Dialect;
using loadgen::Mode;
using loadgen::Share;

constexpr int kConnectionsPerProcess = 15000;   // automatic --processes
// Automatic --source-addresses: at most 40% of the ephemeral port range per address (11,292 with
// Linux's default 32768..60999). Linux gives bind() odd ports first and connect() even ones; past
// half the range every new port is a long search. Measured here (2 cores, kernel 6.18), 30,000
// connections: 15,000 per address took 9.9 s to connect, 10,000 per address 1.2 s; 20,000 without
// bind() 4.1 s, 10,000 per address 0.7 s.
constexpr double kPortShare = 0.4;
constexpr int kReservedDescriptors = 64;        // per process: pipes, epoll, eventfd, stdio
// irc: the text's share of a 512-byte line, leaving room for the longest prefix a server adds
// (nick!user@host) and "PRIVMSG #room :" with a 64-byte room.
constexpr int kIrcMaxPayload = 300;

int bad(const std::string& what) {
  std::cerr << "loadgen: " << what << "\n";
  return 2;
}

bool valid_room(const std::string& r) {
  if (r.empty() || r.size() > 64) return false;
  for (char c : r) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '#' && c != '-') return false;
  }
  return true;
}

// One connect with a timeout, before anything is forked: a port nobody listens on is one clear
// line at once. Returns an empty string on success.
std::string probe(const reactor::InetAddress& address, int timeout_ms) {
  reactor::Handle s(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return std::string("socket: ") + std::strerror(errno);
  if (::connect(s.get(), address.get(), address.length()) == 0) return {};
  if (errno != EINPROGRESS) return std::strerror(errno);
  pollfd p{s.get(), POLLOUT, 0};
  int n = ::poll(&p, 1, timeout_ms);
  if (n == 0) return "no answer within " + std::to_string(timeout_ms / 1000) + " s";
  if (n < 0) return std::string("poll: ") + std::strerror(errno);
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return std::strerror(err);
  // An orderly close, not a reset: the article's Python server dies on a connection reset before
  // it accepted it (getpeername: ENOTCONN).
  return {};
}

std::vector<int64_t> even_split(int64_t total, int parts) {
  std::vector<int64_t> out(static_cast<size_t>(parts));
  for (int k = 0; k < parts; ++k) out[static_cast<size_t>(k)] = total / parts + (k < total % parts ? 1 : 0);
  return out;
}

// Each worker's share: echo connections split evenly; chat members split so that the process that
// also holds the publishers holds no more connections than the others.
std::vector<Share> plan(const Config& cfg, int processes) {
  std::vector<Share> shares(static_cast<size_t>(processes));
  std::vector<int64_t> counts;
  if (cfg.mode == Mode::kEcho || processes == 1) {
    counts = even_split(cfg.connections, processes);
  } else {
    int64_t total = cfg.total_connections();
    int64_t first = std::clamp<int64_t>((total + processes - 1) / processes - cfg.publishers, 0, cfg.connections);
    counts = even_split(cfg.connections - first, processes - 1);
    counts.insert(counts.begin(), first);
  }
  int64_t next = 0;
  for (int k = 0; k < processes; ++k) {
    Share& s = shares[static_cast<size_t>(k)];
    s.index = k;
    s.first = next;
    s.count = counts[static_cast<size_t>(k)];
    s.publishers = cfg.mode == Mode::kChat && k == 0;
    next += s.count;
  }
  return shares;
}

int64_t held(const Config& cfg, const Share& s) { return s.count + (s.publishers ? cfg.publishers : 0); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Load generator for the echo and chat servers (and Redis, NATS): echo round trips or chat "
               "fan-out, over many connections and processes; reports throughput, loss and latency.",
               "loadgen"};
  Config cfg;
  std::string mode = "echo", dialect = "native";
  cli.add_option("--mode", mode, "echo, chat or recover")->capture_default_str();
  cli.add_option("--host", cfg.host, "Server address")->capture_default_str();
  cli.add_option("--port", cfg.port, "Server port (--dialect ws: the server's HTTP port, where GET /ws upgrades)")
      ->required();
  cli.add_option("--connections,-c", cfg.connections, "Connections (echo) or members (chat)")->capture_default_str();
  cli.add_option("--duration", cfg.duration, "Seconds measured")->capture_default_str();
  cli.add_option("--warmup", cfg.warmup, "Seconds of load before the measurement")->capture_default_str();
  cli.add_option("--payload,-p", cfg.payload, "Bytes per echo payload or chat message text")->capture_default_str();
  auto* active = cli.add_option("--active,-a", cfg.active,
                                "echo: connections that keep sending (default: all); the rest make one "
                                "round trip and idle");
  auto* depth = cli.add_option("--depth,-d", cfg.depth, "echo: payloads in flight per active connection")
                    ->capture_default_str();
  auto* rate = cli.add_option("--rate", cfg.rate, "chat: messages per second, all publishers together")
                   ->capture_default_str();
  auto* publishers = cli.add_option("--publishers", cfg.publishers, "chat: publisher connections (not members)")
                         ->capture_default_str();
  auto* room = cli.add_option("--room", cfg.room, "chat: the room (article dialect: always lobby)")->capture_default_str();
  auto* dialect_opt = cli.add_option("--dialect", dialect,
                                     "chat: native, article, redis, nats, ws (the native JSON over WebSocket, "
                                     "masked frames; --port is then the HTTP port, where GET /ws upgrades) or irc "
                                     "(RFC 2812 clients: NICK/USER, JOIN #room, PRIVMSG; no capabilities)")
                          ->capture_default_str();
  auto* drain = cli.add_option("--drain", cfg.drain, "chat: seconds to wait for deliveries after publishing stops")
                    ->capture_default_str();
  auto* barrier = cli.add_option("--barrier-timeout", cfg.barrier_timeout,
                                 "chat: seconds allowed for every member to receive a warm-up message")
                      ->capture_default_str();
  auto* ids = cli.add_flag("--ids", cfg.ids,
                           "chat, native or ws: publish every message with an id; count the server's acks and "
                           "time them from the publish (publish-to-ack latency)");
  auto* window = cli.add_option("--window", cfg.window,
                                "chat, native or ws: instead of --rate, each publisher keeps this many messages "
                                "unacknowledged, sending the next as each ack arrives (implies --ids); reports "
                                "acknowledged messages per second");
  auto* phase = cli.add_option("--phase", cfg.phase,
                               "recover: prepare (members join and leave, then --missed messages are published) "
                               "or storm (every member reconnects at once with --since/--epoch)")
                   ->capture_default_str();
  auto* since = cli.add_option("--since", cfg.since, "recover --phase storm: the seq the members saw (prepare's since)");
  auto* epoch = cli.add_option("--epoch", cfg.epoch, "recover --phase storm: the epoch the members saw");
  auto* missed = cli.add_option("--missed", cfg.missed, "recover: messages the members missed (published by prepare)")
                     ->capture_default_str();
  cli.add_option("--processes", cfg.processes,
                 "Worker processes (0: enough that none holds more than 15000 connections)")
      ->capture_default_str();
  cli.add_option("--source-addresses", cfg.source_addresses,
                 "Bind client sockets round-robin to 127.0.0.2 .. 127.0.0.(K+1) (more ephemeral ports); "
                 "1: no bind; 0: enough that each address serves at most 40% of the ephemeral ports")
      ->capture_default_str();
  cli.add_flag("--tls", cfg.tls, "Speak TLS to the server (TLS 1.2 or later; its certificate is not checked)");
  cli.add_option("--connect-batch", cfg.connect_batch,
                 "Most connects in flight, all processes together (keep it below the server's listen backlog)")->capture_default_str();
  auto* until_ready = cli.add_flag("--batch-until-ready", cfg.batch_until_ready,
                                   "chat: a connection counts against --connect-batch until it is subscribed, not "
                                   "only until TCP connects (for servers with a short listen backlog that accept "
                                   "one connection per loop, such as ngircd)");
  cli.add_option("--connect-timeout", cfg.connect_timeout, "Seconds allowed for connecting and subscribing")
      ->capture_default_str();
  cli.add_option("--server-pid", cfg.server_pid,
                 "Sample this process's CPU time and RSS (server CPU per operation, RSS per connection)");
  cli.add_flag("--json", cfg.json, "Print exactly one JSON object on stdout");
  if (auto status = app::parse(cli, argc, argv)) return *status;

  // ---- Checks: one clear line and exit 2 for a mistake ----
  if (mode == "echo") {
    cfg.mode = Mode::kEcho;
  } else if (mode == "chat") {
    cfg.mode = Mode::kChat;
  } else if (mode == "recover") {
    cfg.mode = Mode::kRecover;
  } else {
    return bad("unknown --mode '" + mode + "' (echo, chat or recover)");
  }
  if (dialect == "native") {
    cfg.dialect = Dialect::kNative;
  } else if (dialect == "article") {
    cfg.dialect = Dialect::kArticle;
  } else if (dialect == "redis") {
    cfg.dialect = Dialect::kRedis;
  } else if (dialect == "nats") {
    cfg.dialect = Dialect::kNats;
  } else if (dialect == "ws") {
    cfg.dialect = Dialect::kWs;
  } else if (dialect == "irc") {
    cfg.dialect = Dialect::kIrc;
  } else {
    return bad("unknown --dialect '" + dialect + "' (native, article, redis, nats, ws or irc)");
  }
  const bool chat = cfg.mode == Mode::kChat;
  const bool recover = cfg.mode == Mode::kRecover;
  if (cfg.mode == Mode::kEcho) {
    for (auto* o : {rate, publishers, room, dialect_opt, drain, barrier, ids, window, until_ready}) {
      if (o->count() > 0) return bad(o->get_name() + " applies to --mode chat only");
    }
  } else {
    for (auto* o : {active, depth}) {
      if (o->count() > 0) return bad(o->get_name() + " applies to --mode echo only");
    }
  }
  if (!recover) {
    for (auto* o : {phase, since, epoch, missed}) {
      if (o->count() > 0) return bad(o->get_name() + " applies to --mode recover only");
    }
  } else {
    for (auto* o : {publishers, dialect_opt, barrier, ids, window, until_ready}) {
      if (o->count() > 0) return bad(o->get_name() + " does not apply to --mode recover (native members, one publisher)");
    }
  }
  if (cfg.port < 1 || cfg.port > 65535) return bad("--port must be 1..65535");
  if (cfg.connections < 1) return bad("--connections must be at least 1");
  if (!(cfg.duration > 0) || cfg.duration > 86400) return bad("--duration must be > 0 seconds (at most a day)");
  if (!(cfg.warmup >= 0) || cfg.warmup > 86400) return bad("--warmup must be >= 0 seconds");
  if (cfg.connect_batch < 1) return bad("--connect-batch must be at least 1");
  if (!(cfg.connect_timeout > 0) || cfg.connect_timeout > 3600) return bad("--connect-timeout must be > 0 seconds");
  if (cfg.server_pid < 0) return bad("--server-pid must be a process id");
  if (cfg.processes < 0 || cfg.processes > 64) return bad("--processes must be 0 (automatic) .. 64");
  if (cfg.source_addresses < 0 || cfg.source_addresses > 250) return bad("--source-addresses must be 0 .. 250");
  if (chat) {
    if (!(cfg.rate > 0) || cfg.rate > 10'000'000) return bad("--rate must be > 0 messages per second (chat mode)");
    if (cfg.publishers < 1 || cfg.publishers > 1024) return bad("--publishers must be 1..1024");
    if (cfg.payload < loadgen::kMinChatPayload || cfg.payload > 60000) {
      return bad("--payload must be " + std::to_string(loadgen::kMinChatPayload) +
                 "..60000 bytes in chat mode (the text carries a header)");
    }
    if (!(cfg.drain >= 0) || cfg.drain > 3600) return bad("--drain must be >= 0 seconds");
    if (!(cfg.barrier_timeout > 0) || cfg.barrier_timeout > 3600) return bad("--barrier-timeout must be > 0 seconds");
    if (cfg.dialect == Dialect::kArticle) {
      if (room->count() > 0 && cfg.room != "lobby") return bad("the article dialect has one room: lobby (--room)");
      cfg.room = "lobby";
    }
    if (!valid_room(cfg.room)) return bad("--room must be 1 to 64 of A-Z a-z 0-9 _ . # -");
    // irc: the relayed line (":nick!user@host PRIVMSG #room :text" and CRLF) must stay within 512 bytes.
    if (cfg.dialect == Dialect::kIrc && cfg.payload > kIrcMaxPayload) {
      return bad("--payload must be at most " + std::to_string(kIrcMaxPayload) +
                 " bytes with --dialect irc (an IRC line is at most 512 bytes)");
    }
    if (window->count() > 0) {
      if (cfg.window < 1 || cfg.window > 100000) return bad("--window must be 1..100000 messages");
      if (rate->count() > 0) return bad("--window and --rate: choose one (--window publishes as acks come back)");
      cfg.ids = true;
    }
    if (cfg.ids && cfg.dialect != Dialect::kNative && cfg.dialect != Dialect::kWs) {
      return bad(std::string(window->count() > 0 ? "--window" : "--ids") +
                 " needs --dialect native or ws (the others have no acks)");
    }
    if (static_cast<double>(cfg.connections) * cfg.publishers > 2e8) {
      return bad("--connections x --publishers is too large to track (at most 200 million)");
    }
  } else if (recover) {
    if (cfg.phase != "prepare" && cfg.phase != "storm") return bad("--phase must be prepare or storm");
    if (cfg.phase == "storm" && (since->count() == 0 || epoch->count() == 0 || cfg.epoch.empty())) {
      return bad("--phase storm needs --since and --epoch (what --phase prepare reported)");
    }
    if (cfg.missed < 1 || cfg.missed > 100000) return bad("--missed must be 1..100000");
    if (cfg.connections > 60000) return bad("--connections: at most 60000 in --mode recover (one process)");
    if (!(cfg.rate > 0) || cfg.rate > 100000) return bad("--rate must be > 0 and at most 100000 messages per second");
    if (cfg.payload < loadgen::kMinChatPayload || cfg.payload > 60000) {
      return bad("--payload must be " + std::to_string(loadgen::kMinChatPayload) + "..60000 bytes");
    }
    if (!(cfg.drain >= 0) || cfg.drain > 3600) return bad("--drain must be >= 0 seconds");
    if (!valid_room(cfg.room)) return bad("--room must be 1 to 64 of A-Z a-z 0-9 _ . # -");
  } else {
    if (cfg.active < 0) cfg.active = cfg.connections;
    if (cfg.active > cfg.connections) {
      return bad("--active " + std::to_string(cfg.active) + " is more than --connections " + std::to_string(cfg.connections));
    }
    if (cfg.depth < 1 || cfg.depth > 4096) return bad("--depth must be 1..4096");
    if (cfg.payload < 1 || cfg.payload > (1 << 24)) return bad("--payload must be 1..16777216 bytes");
  }

  // ---- Descriptors and processes ----
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  const int64_t per_process = rl.rlim_cur == RLIM_INFINITY
                                  ? int64_t{1} << 30
                                  : static_cast<int64_t>(rl.rlim_cur) - kReservedDescriptors;
  const int64_t total = cfg.total_connections();
  const int64_t auto_cap = std::min<int64_t>(kConnectionsPerProcess, per_process);
  if (cfg.processes == 0) {
    cfg.processes = static_cast<int>(std::min<int64_t>((total + auto_cap - 1) / auto_cap, 64));
  } else if (cfg.processes > total) {
    return bad("--processes " + std::to_string(cfg.processes) + " is more than the " + std::to_string(total) +
               " connections to share");
  }
  std::vector<Share> shares = plan(cfg, cfg.processes);
  for (const Share& s : shares) {
    if (held(cfg, s) > per_process) {
      int64_t need = (total + per_process - 1) / per_process;
      return bad(std::to_string(total) + " connections need at least " + std::to_string(need) +
                 " processes: one process may hold at most " + std::to_string(per_process) +
                 " (open-file limit " + std::to_string(rl.rlim_cur) + "); --processes is " +
                 std::to_string(cfg.processes));
    }
  }

  // ---- Source addresses ----
  reactor::InetAddress address;
  try {
    address = reactor::InetAddress::resolve(cfg.host, static_cast<uint16_t>(cfg.port));
  } catch (const std::exception& e) {
    return bad(e.what());
  }
  const int ports = loadgen::ephemeral_port_count();
  if (cfg.source_addresses == 0) {
    const auto per = static_cast<int64_t>(ports * kPortShare);
    cfg.source_addresses = static_cast<int>(std::min<int64_t>((total + per - 1) / per, 250));
  }
  const bool loopback = address.family() == AF_INET &&
                        (ntohl(reinterpret_cast<const sockaddr_in*>(address.get())->sin_addr.s_addr) >> 24) == 127;
  if (cfg.source_addresses > 1 && !loopback) {
    return bad("--source-addresses > 1 needs a loopback --host (the sources are 127.0.0.2 and up)");
  }
  const int64_t per_address = (total + cfg.source_addresses - 1) / cfg.source_addresses;
  if (per_address > ports) {
    return bad(std::to_string(total) + " connections from " + std::to_string(cfg.source_addresses) +
               " source address(es) need more than the " + std::to_string(ports) +
               " ephemeral ports of one address: raise --source-addresses");
  }
  if (cfg.server_pid > 0 && loadgen::process_cpu_seconds(cfg.server_pid) < 0) {
    return bad("--server-pid " + std::to_string(cfg.server_pid) + ": no such process (cannot read /proc)");
  }

  // ---- Is anybody there? ----
  if (std::string why = probe(address, 5000); !why.empty()) {
    std::cerr << "loadgen: cannot connect to " << address.to_string() << ": " << why << "\n";
    return 1;
  }

  cfg.run_id = static_cast<uint64_t>(::getpid());
  cfg.progress = ::isatty(STDERR_FILENO) == 1;
  reactor::set_log_level(reactor::LogLevel::kWarn);
  if (recover) {
    try {
      return loadgen::run_recover(cfg);
    } catch (const std::exception& e) {
      std::cerr << "loadgen: " << e.what() << "\n";
      return 1;
    }
  }
  try {
    loadgen::Coordinator coordinator(cfg, std::move(shares));
    return coordinator.run();
  } catch (const std::exception& e) {
    std::cerr << "loadgen: " << e.what() << "\n";
    return 1;
  }
}
