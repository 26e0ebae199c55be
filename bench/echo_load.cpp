// echo-load: the load client of every echo benchmark, built on our own Reactor (one thread).
//
// It opens N connections (at most --connect-batch connects in flight, so 10,000 connects never
// overflow the server's backlog), then:
//   * A of them are "active": each keeps D payloads in flight; every payload that comes back whole
//     and byte-exact is one round trip, timed from the send() that queued it to the read that
//     completed it, and answered at once by the next payload;
//   * the other N - A are idle: each makes one round trip (so the server has really served it),
//     then stays silent until the end.
// Warm-up starts when every connection is up; the measurement window starts after the warm-up
// (and once every idle connection's round trip is back) and lasts --duration seconds. Round
// trips, latencies and, with --server-pid, the server's CPU time (utime+stime from
// /proc/PID/stat) and RSS are sampled exactly at the window's two edges, on the loop's thread.
// The window's edges are also announced on stderr ("echo-load: measuring", "echo-load: done").
//
// Each payload differs (a sliding window over a random pattern, by connection and sequence), so
// a byte lost, duplicated or reordered by the server counts as an error and closes the connection.
// At the end every connection is closed with SO_LINGER 0 (a reset): ten thousand client sockets
// left in TIME_WAIT would hold ephemeral ports that the next run needs.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli.h"
#include "reactor/error.h"
#include "reactor/inet_address.h"
#include "reactor/log.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

namespace {

using reactor::Clock;
using Nanos = std::chrono::nanoseconds;

// ---- Latency histogram ------------------------------------------------------------------------
// HDR-style log-linear buckets: exact below 64 ns, then 32 linear sub-buckets per power of two, so
// every bucket spans at most 1/32 (3.1%) of its values; a percentile is reported as the middle of
// its bucket (at most 1.6% off). Covers 1 ns .. 2^40 ns (18 minutes).
class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kSub = 1u << kSubBits;  // 32
  static constexpr int kMaxShift = 40 - kSubBits;

  Histogram() : counts_((kMaxShift + 2) * kSub, 0) {}

  void record(uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    sum_ += ns;
    max_ = std::max(max_, ns);
    min_ = std::min(min_, ns);
  }
  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = sum_ = max_ = 0;
    min_ = UINT64_MAX;
  }
  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  double mean() const { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0; }

  // The value at quantile q (0..1]: the smallest bucket holding at least ceil(q * total) values.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(middle(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

 private:
  static size_t index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);  // shift 0: exact
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;  // >= 1
    if (shift > kMaxShift) return (kMaxShift + 2) * kSub - 1;
    return static_cast<size_t>((shift + 1) * kSub + ((v >> shift) - kSub));
  }
  static double middle(size_t i) {
    if (i < 2 * kSub) return static_cast<double>(i);
    uint64_t shift = i / kSub - 1;
    uint64_t low = (i % kSub + kSub) << shift;
    return static_cast<double>(low) + static_cast<double>((uint64_t{1} << shift) - 1) / 2.0;
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

// ---- /proc sampling of the server -------------------------------------------------------------

// utime + stime of `pid` in seconds, or -1.
double process_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // After "(comm)": field 3 (state) is the first token; utime is field 14, stime field 15.
  for (int n = 3; n <= 15 && (fields >> field); ++n) {
    if (n == 14) utime = std::stoull(field);
    if (n == 15) stime = std::stoull(field);
  }
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

// VmRSS of `pid` in KiB, or -1.
long process_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Machine-wide CPU time from the first line of /proc/stat, in seconds summed over every CPU: busy
// (user, nice, system, irq, softirq) and steal (taken by the hypervisor). With tick accounting a
// task's utime+stime includes the softirq work done while it ran, so busy minus the server's and
// the client's CPU is what everything else on the machine used: the noise of a shared machine.
struct SystemCpu {
  double busy = -1;
  double steal = -1;
};

SystemCpu system_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};
  SystemCpu out;
  if (!(in >> cpu) || cpu != "cpu") return out;
  for (auto& x : v) in >> x;  // user nice system idle iowait irq softirq steal
  if (!in) return out;
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  out.busy = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / ticks;
  out.steal = static_cast<double>(v[7]) / ticks;
  return out;
}

double self_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int ephemeral_port_count() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (in >> low >> high && high >= low) return high - low + 1;
  return 28232;  // Linux's default range, 32768..60999
}

// ---- The load ---------------------------------------------------------------------------------

struct Config {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  int active = -1;  // -1: all
  int depth = 1;
  int payload = 64;
  double duration = 5;
  double warmup = 1;
  int source_addresses = 0;  // 0: automatic
  int connect_batch = 500;
  double connect_timeout = 60;
  int server_pid = 0;
  bool json = false;
};

struct Client {
  reactor::TcpConnectionPtr conn;
  uint32_t index = 0;
  bool active = false;
  bool alive = false;
  uint64_t sent = 0;      // payloads queued
  uint64_t received = 0;  // payloads back whole
  size_t partial = 0;     // bytes of payload `received` already checked
  Clock::time_point* sent_at = nullptr;  // ring of `depth` send times
};

struct Snapshot {
  Clock::time_point when;
  uint64_t round_trips = 0;
  double server_cpu = -1;
  long server_rss = -1;
  double client_cpu = 0;
  SystemCpu system;
};

class Load {
 public:
  explicit Load(const Config& cfg)
      : cfg_(cfg),
        loop_("epoll"),
        address_(reactor::InetAddress::resolve(cfg.host, static_cast<uint16_t>(cfg.port))) {
    // The pattern every payload is cut from: payload for (connection c, sequence s) starts at
    // offset (c * 31 + s) % kWindow.
    pattern_.resize(static_cast<size_t>(cfg_.payload) + kWindow);
    std::mt19937 rng(12345);
    for (char& c : pattern_) c = static_cast<char>(rng());
    clients_.resize(static_cast<size_t>(cfg_.connections));
    send_times_.resize(static_cast<size_t>(cfg_.connections) * static_cast<size_t>(cfg_.depth));
    int a = cfg_.active;
    for (int i = 0; i < cfg_.connections; ++i) {
      Client& c = clients_[static_cast<size_t>(i)];
      c.index = static_cast<uint32_t>(i);
      // Exactly `a` active connections, spread evenly over the N.
      int64_t n = cfg_.connections;
      c.active = (static_cast<int64_t>(i + 1) * a) / n > (static_cast<int64_t>(i) * a) / n;
      c.sent_at = &send_times_[static_cast<size_t>(i) * static_cast<size_t>(cfg_.depth)];
    }
    if (cfg_.source_addresses > 1) {
      for (int k = 0; k < cfg_.source_addresses; ++k) {
        sources_.push_back(reactor::InetAddress::resolve("127.0.0." + std::to_string(2 + k), 0));
      }
    }
    callbacks_ = std::make_shared<reactor::ConnectionCallbacks>();
    callbacks_->on_message = [this](const reactor::TcpConnectionPtr& conn, reactor::Buffer& input) {
      on_message(*static_cast<Client*>(conn->context.get()), input);
    };
    callbacks_->on_close = [this](const reactor::TcpConnectionPtr& conn, std::string_view reason) {
      Client& c = *static_cast<Client*>(conn->context.get());
      if (c.alive && !finishing_) {
        c.alive = false;
        ++closed_errors_;
        if (closed_errors_ <= 3) std::cerr << "echo-load: connection " << c.index << " closed: " << reason << "\n";
        connection_lost();
      }
    };
  }

  int run() {
    loop_.stop_on_signals();
    if (cfg_.server_pid > 0) {
      rss_before_ = process_rss_kib(cfg_.server_pid);
      if (rss_before_ < 0) {
        std::cerr << "echo-load: cannot read /proc/" << cfg_.server_pid << " (--server-pid)\n";
        return 2;
      }
    }
    connect_start_ = Clock::now();
    connect_timer_ = loop_.run_after(seconds(cfg_.connect_timeout), [this] { connect_timed_out(); });
    // Whatever happens, the run ends: a watchdog well past the planned end.
    loop_.run_after(seconds(cfg_.connect_timeout + cfg_.warmup + cfg_.duration + 30), [this] {
      std::cerr << "echo-load: watchdog: the run did not finish in time\n";
      watchdog_fired_ = true;
      finish();
    });
    launch_connects();
    loop_.run();
    finish();  // after a signal: close everything still open
    return report();
  }

 private:
  static constexpr size_t kWindow = 251;

  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
  const char* expected(const Client& c, uint64_t seq) const {
    return pattern_.data() + (static_cast<uint64_t>(c.index) * 31 + seq) % kWindow;
  }

  // ---- Connecting ----
  void launch_connects() {
    while (in_flight_ < cfg_.connect_batch && next_connect_ < clients_.size() && !connect_over_) {
      size_t i = next_connect_++;
      ++in_flight_;
      std::optional<reactor::InetAddress> source;
      if (!sources_.empty()) source = sources_[i % sources_.size()];
      connectors_.push_back(reactor::TcpConnector::connect(
          loop_, address_, [this, i](reactor::Handle socket, int err) { on_connected(i, std::move(socket), err); },
          source));
    }
  }

  void on_connected(size_t i, reactor::Handle socket, int err) {
    --in_flight_;
    if (err != 0) {
      if (++connect_errors_ <= 3) {
        std::cerr << "echo-load: connect " << address_.to_string() << ": " << std::strerror(err) << "\n";
      }
    } else {
      Client& c = clients_[i];
      c.conn = reactor::TcpConnection::create(loop_, std::move(socket), callbacks_);
      // Non-owning: the context only points at the client record (no allocation).
      c.conn->context = std::shared_ptr<void>(std::shared_ptr<void>(), &c);
      try {
        c.conn->start();
        c.alive = true;
        ++connected_;
      } catch (const std::exception& e) {
        c.conn.reset();
        if (++connect_errors_ <= 3) std::cerr << "echo-load: " << e.what() << "\n";
      }
    }
    if (connected_ + connect_errors_ == clients_.size()) {
      all_connected();
    } else {
      launch_connects();
    }
  }

  void connect_timed_out() {
    connect_timer_ = 0;
    if (connect_over_) return;
    size_t missing = clients_.size() - connected_ - connect_errors_;
    std::cerr << "echo-load: " << missing << " connection(s) not up after " << cfg_.connect_timeout
              << " s; going on without them\n";
    for (auto& c : connectors_) {
      if (c) c->cancel();
    }
    connect_errors_ += missing;
    all_connected();
  }

  void all_connected() {
    if (connect_over_) return;
    connect_over_ = true;
    connect_seconds_ = std::chrono::duration<double>(Clock::now() - connect_start_).count();
    if (connect_timer_) loop_.cancel(connect_timer_);
    connect_timer_ = 0;
    // The connectors are done; the reactor may still hold a reference to some until its next
    // deferred phase, which is fine.
    connectors_.clear();
    connectors_.shrink_to_fit();
    if (connected_ == 0) {
      std::cerr << "echo-load: no connection could be made to " << address_.to_string() << "\n";
      finish();
      return;
    }
    running_ = true;
    auto now = Clock::now();
    for (Client& c : clients_) {
      if (!c.alive) continue;
      if (c.active) {
        for (int d = 0; d < cfg_.depth; ++d) send_one(c, now);
      } else {
        ++pings_pending_;
        send_one(c, now);
      }
    }
    loop_.run_after(seconds(cfg_.warmup), [this] {
      warmup_over_ = true;
      maybe_begin_measure();
    });
  }

  // ---- The echo ----
  void send_one(Client& c, Clock::time_point now) {
    c.sent_at[c.sent % static_cast<uint64_t>(cfg_.depth)] = now;
    c.conn->send(std::string_view(expected(c, c.sent), static_cast<size_t>(cfg_.payload)));
    ++c.sent;
  }

  void on_message(Client& c, reactor::Buffer& input) {
    const char* p = input.data();
    size_t n = input.size();
    Clock::time_point now = Clock::now();
    const size_t payload = static_cast<size_t>(cfg_.payload);
    while (n > 0 && c.alive) {
      if (c.received == c.sent) {
        fail(c, "bytes arrived that were never sent");
        break;
      }
      size_t take = std::min(payload - c.partial, n);
      if (std::memcmp(p, expected(c, c.received) + c.partial, take) != 0) {
        fail(c, "echoed bytes differ from the bytes sent");
        break;
      }
      p += take;
      n -= take;
      c.partial += take;
      if (c.partial < payload) break;
      c.partial = 0;
      Clock::time_point sent_at = c.sent_at[c.received % static_cast<uint64_t>(cfg_.depth)];
      ++c.received;
      if (!c.active) {
        if (--pings_pending_ == 0) maybe_begin_measure();
        continue;
      }
      ++round_trips_;
      if (measuring_) histogram_.record(static_cast<uint64_t>(std::chrono::duration_cast<Nanos>(now - sent_at).count()));
      if (running_) send_one(c, now);
    }
    input.clear();
  }

  void fail(Client& c, const char* what) {
    if (++mismatch_errors_ <= 3) std::cerr << "echo-load: connection " << c.index << ": " << what << "\n";
    c.alive = false;
    c.conn->close(what);
    connection_lost();
  }

  // Every connection lost (the server died): nothing more can be measured.
  void connection_lost() {
    if (connect_over_ && closed_errors_ + mismatch_errors_ >= connected_ && !finished_) {
      std::cerr << "echo-load: every connection is gone; stopping\n";
      finish();
    }
  }

  // ---- The window ----
  Snapshot snapshot() {
    Snapshot s;
    s.when = Clock::now();
    s.round_trips = round_trips_;
    if (cfg_.server_pid > 0) {
      s.server_cpu = process_cpu_seconds(cfg_.server_pid);
      s.server_rss = process_rss_kib(cfg_.server_pid);
    }
    s.client_cpu = self_cpu_seconds();
    s.system = system_cpu();
    return s;
  }

  void maybe_begin_measure() {
    if (!warmup_over_ || pings_pending_ > 0 || measuring_ || finished_) return;
    histogram_.reset();
    measuring_ = true;
    start_ = snapshot();
    std::cerr << "echo-load: measuring\n" << std::flush;
    loop_.run_after(seconds(cfg_.duration), [this] {
      end_ = snapshot();
      measuring_ = false;
      measured_ = true;
      std::cerr << "echo-load: done\n" << std::flush;
      finish();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    running_ = false;
    finishing_ = true;
    for (auto& c : connectors_) {
      if (c) c->cancel();
    }
    connectors_.clear();
    linger linger_now{1, 0};
    for (Client& c : clients_) {
      if (!c.conn) continue;
      if (c.conn->fd() >= 0) ::setsockopt(c.conn->fd(), SOL_SOCKET, SO_LINGER, &linger_now, sizeof linger_now);
      c.conn->close("benchmark over");
      c.conn.reset();
    }
    loop_.stop();
  }

  // ---- The report ----
  int report() {
    uint64_t errors = connect_errors_ + mismatch_errors_ + closed_errors_;
    double seconds_measured = measured_ ? std::chrono::duration<double>(end_.when - start_.when).count() : 0;
    uint64_t rts = measured_ ? end_.round_trips - start_.round_trips : 0;
    double rate = seconds_measured > 0 ? static_cast<double>(rts) / seconds_measured : 0;
    double server_cpu = (measured_ && start_.server_cpu >= 0) ? end_.server_cpu - start_.server_cpu : -1;
    double client_cpu = measured_ ? end_.client_cpu - start_.client_cpu : -1;
    bool have_system = measured_ && start_.system.busy >= 0 && end_.system.busy >= 0;
    double system_busy = have_system ? end_.system.busy - start_.system.busy : -1;
    double system_steal = have_system ? end_.system.steal - start_.system.steal : -1;
    auto us = [](double ns) { return ns / 1000.0; };
    char buf[4096];
    if (cfg_.json) {
      std::string server = "null";
      if (cfg_.server_pid > 0) {
        std::snprintf(buf, sizeof buf,
                      "{\"pid\": %d, \"cpu_s\": %.3f, \"cpu_us_per_rt\": %.4f, \"rss_kib_before\": %ld, "
                      "\"rss_kib_connected\": %ld, \"rss_kib_end\": %ld}",
                      cfg_.server_pid, server_cpu, rts && server_cpu >= 0 ? server_cpu * 1e6 / static_cast<double>(rts) : -1.0,
                      rss_before_, start_.server_rss, end_.server_rss);
        server = buf;
      }
      std::snprintf(
          buf, sizeof buf,
          "{\"host\": \"%s\", \"port\": %d, \"connections\": %d, \"active\": %d, \"depth\": %d, "
          "\"payload\": %d, \"warmup_s\": %.3f, \"duration_s\": %.4f, \"source_addresses\": %d, "
          "\"connected\": %zu, \"connect_s\": %.4f, \"round_trips\": %" PRIu64 ", \"rtt_per_s\": %.1f, "
          "\"latency_us\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f, "
          "\"mean\": %.2f, \"min\": %.2f}, "
          "\"errors\": %" PRIu64 ", \"connect_errors\": %zu, \"mismatch_errors\": %" PRIu64 ", "
          "\"closed_errors\": %" PRIu64 ", \"measured\": %s, \"client_cpu_s\": %.3f, "
          "\"system\": {\"busy_s\": %.2f, \"steal_s\": %.2f}, \"server\": %s}\n",
          cfg_.host.c_str(), cfg_.port, cfg_.connections, cfg_.active, cfg_.depth, cfg_.payload, cfg_.warmup,
          seconds_measured, std::max(cfg_.source_addresses, 1), connected_, connect_seconds_, rts, rate,
          us(histogram_.quantile(0.50)), us(histogram_.quantile(0.90)), us(histogram_.quantile(0.99)),
          us(histogram_.quantile(0.999)), us(static_cast<double>(histogram_.max())), us(histogram_.mean()),
          us(static_cast<double>(histogram_.min())), errors, connect_errors_, mismatch_errors_, closed_errors_,
          measured_ ? "true" : "false", client_cpu, system_busy, system_steal, server.c_str());
      std::fputs(buf, stdout);
    } else {
      std::printf("connections %d (%d active, depth %d, %d-byte payload), connected %zu in %.3f s\n",
                  cfg_.connections, cfg_.active, cfg_.depth, cfg_.payload, connected_, connect_seconds_);
      std::printf("round trips %" PRIu64 " in %.3f s: %.0f/s\n", rts, seconds_measured, rate);
      std::printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", us(histogram_.quantile(0.50)),
                  us(histogram_.quantile(0.90)), us(histogram_.quantile(0.99)), us(histogram_.quantile(0.999)),
                  us(static_cast<double>(histogram_.max())));
      if (cfg_.server_pid > 0 && server_cpu >= 0) {
        std::printf("server cpu %.3f s (%.3f us per round trip), rss %ld -> %ld KiB\n", server_cpu,
                    rts ? server_cpu * 1e6 / static_cast<double>(rts) : 0.0, rss_before_, start_.server_rss);
      }
      std::printf("client cpu %.3f s; errors %" PRIu64 " (connect %zu, mismatch %" PRIu64 ", closed %" PRIu64 ")\n",
                  client_cpu, errors, connect_errors_, mismatch_errors_, closed_errors_);
    }
    std::fflush(stdout);
    if (!measured_ || watchdog_fired_) return 1;
    return errors == 0 ? 0 : 1;
  }

  Config cfg_;
  reactor::Reactor loop_;
  reactor::InetAddress address_;
  std::vector<reactor::InetAddress> sources_;
  std::shared_ptr<reactor::ConnectionCallbacks> callbacks_;
  std::string pattern_;
  std::vector<Client> clients_;
  std::vector<Clock::time_point> send_times_;
  std::vector<std::shared_ptr<reactor::TcpConnector>> connectors_;

  size_t next_connect_ = 0;
  int in_flight_ = 0;
  size_t connected_ = 0;
  size_t connect_errors_ = 0;
  Clock::time_point connect_start_;
  double connect_seconds_ = 0;
  reactor::TimerId connect_timer_ = 0;
  bool connect_over_ = false;

  bool running_ = false;
  bool warmup_over_ = false;
  bool measuring_ = false;
  bool measured_ = false;
  bool finished_ = false;
  bool finishing_ = false;
  bool watchdog_fired_ = false;
  uint64_t pings_pending_ = 0;
  uint64_t round_trips_ = 0;
  uint64_t mismatch_errors_ = 0;
  uint64_t closed_errors_ = 0;
  Histogram histogram_;
  Snapshot start_, end_;
  long rss_before_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Echo load generator: N connections, A of them sending D payloads in flight each; "
               "reports round trips per second and latency percentiles.",
               "echo-load"};
  Config cfg;
  cli.add_option("--host", cfg.host, "Server address")->capture_default_str();
  cli.add_option("--port", cfg.port, "Server port")->required();
  cli.add_option("--connections,-c", cfg.connections, "Connections to open")->capture_default_str();
  cli.add_option("--active,-a", cfg.active, "How many of them send (default: all); the rest make one "
                                            "round trip and stay idle");
  cli.add_option("--depth,-d", cfg.depth, "Payloads in flight per active connection")->capture_default_str();
  cli.add_option("--payload,-p", cfg.payload, "Payload size in bytes")->capture_default_str();
  cli.add_option("--duration", cfg.duration, "Seconds measured (after connect and warm-up)")->capture_default_str();
  cli.add_option("--warmup", cfg.warmup, "Seconds of load before measuring")->capture_default_str();
  cli.add_option("--source-addresses", cfg.source_addresses,
                 "Bind client sockets to 127.0.0.2 .. 127.0.0.(K+1) before connecting (more ephemeral "
                 "ports); 1: no bind; default: 1, or enough addresses when the connections would "
                 "exceed 80% of the ephemeral port range");
  cli.add_option("--connect-batch", cfg.connect_batch, "Most connects in flight at once")->capture_default_str();
  cli.add_option("--connect-timeout", cfg.connect_timeout, "Seconds allowed for all connects")->capture_default_str();
  cli.add_option("--server-pid", cfg.server_pid,
                 "Sample this process's CPU time and RSS from /proc at the edges of the measured window");
  cli.add_flag("--json", cfg.json, "Print one JSON object on stdout");
  if (auto status = app::parse(cli, argc, argv)) return *status;

  auto bad = [](const std::string& what) {
    std::cerr << "echo-load: " << what << "\n";
    return 2;
  };
  if (cfg.port < 1 || cfg.port > 65535) return bad("--port must be 1..65535");
  if (cfg.connections < 1) return bad("--connections must be at least 1");
  if (cfg.active < 0) cfg.active = cfg.connections;
  if (cfg.active > cfg.connections) return bad("--active must be at most --connections");
  if (cfg.depth < 1 || cfg.depth > 4096) return bad("--depth must be 1..4096");
  if (cfg.payload < 1 || cfg.payload > (1 << 24)) return bad("--payload must be 1..16777216 bytes");
  if (!(cfg.duration > 0) || cfg.duration > 86400) return bad("--duration must be > 0 seconds");
  if (!(cfg.warmup >= 0) || cfg.warmup > 86400) return bad("--warmup must be >= 0 seconds");
  if (cfg.connect_batch < 1) return bad("--connect-batch must be at least 1");
  if (!(cfg.connect_timeout > 0)) return bad("--connect-timeout must be > 0 seconds");
  if (cfg.source_addresses < 0 || cfg.source_addresses > 250) return bad("--source-addresses must be 1..250");
  if (cfg.server_pid < 0) return bad("--server-pid must be a process id");

  // Descriptors: one per connection plus the loop's own few.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(cfg.connections) + 16 > rl.rlim_cur) {
    return bad("--connections " + std::to_string(cfg.connections) + " needs more descriptors than the limit (" +
               std::to_string(rl.rlim_cur) + ")");
  }
  if (cfg.source_addresses == 0) {
    int ports = ephemeral_port_count() * 8 / 10;
    cfg.source_addresses = cfg.connections <= ports ? 1 : (cfg.connections + ports - 1) / ports;
  }
  if (cfg.source_addresses > 1 && cfg.host.rfind("127.", 0) != 0 && cfg.host != "localhost") {
    return bad("--source-addresses > 1 needs a loopback --host (the sources are 127.0.0.x)");
  }

  reactor::set_log_level(reactor::LogLevel::kWarn);
  try {
    Load load(cfg);
    return load.run();
  } catch (const std::invalid_argument& e) {
    return bad(e.what());
  } catch (const std::exception& e) {
    std::cerr << "echo-load: " << e.what() << "\n";
    return 1;
  }
}
