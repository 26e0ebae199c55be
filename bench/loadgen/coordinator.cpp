#include "loadgen/coordinator.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "loadgen/proc_stats.h"
#include "loadgen/worker.h"
#include "reactor/handle.h"
#include "reactor/log.h"

namespace loadgen {

namespace {

std::chrono::nanoseconds secs(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

double since(uint64_t from, uint64_t to) { return from && to >= from ? static_cast<double>(to - from) / 1e9 : 0; }

uint64_t u64(const json& j, const char* key) { return j.is_object() ? j.value(key, uint64_t{0}) : 0; }
double f64(const json& j, const char* key) { return j.is_object() ? j.value(key, 0.0) : 0; }

// A number for the JSON report, or null when it could not be measured.
json maybe(double v, bool ok) { return ok ? json(v) : json(nullptr); }

// Rounded to `unit` (a power of ten), so that the JSON shows 0.0062, not 0.006200000000000001.
double round_to(double v, double unit) {
  double scale = std::round(1.0 / unit);
  return std::round(v * scale) / scale;
}

}  // namespace

// ---- Forking --------------------------------------------------------------------------------------

bool Coordinator::fork_workers() {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  std::vector<int> parent_fds;
  for (size_t k = 0; k < shares_.size(); ++k) {
    int cmd[2], ev[2];
    if (::pipe2(cmd, O_CLOEXEC) < 0) return false;
    if (::pipe2(ev, O_CLOEXEC) < 0) {
      ::close(cmd[0]);
      ::close(cmd[1]);
      return false;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      for (int fd : {cmd[0], cmd[1], ev[0], ev[1]}) ::close(fd);
      return false;
    }
    if (pid == 0) {
      // The worker: only its own two pipe ends; dies with the parent.
      for (int fd : parent_fds) ::close(fd);
      ::close(cmd[1]);
      ::close(ev[0]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::signal(SIGINT, SIG_IGN);  // a terminal's ^C is the parent's to handle
      int status = 1;
      try {
        auto worker = make_worker(cfg_, shares_[k], cmd[0], ev[1]);
        status = worker->run();
      } catch (const std::exception& e) {
        write_message(ev[1], {{"ev", "fatal"}, {"message", e.what()}});
      }
      std::fflush(stderr);
      ::_exit(status);
    }
    ::close(cmd[0]);
    ::close(ev[1]);
    Child c;
    c.pid = pid;
    c.cmd_fd = cmd[1];
    c.event_fd = ev[0];
    parent_fds.push_back(cmd[1]);
    parent_fds.push_back(ev[0]);
    children_.push_back(std::move(c));
  }
  return true;
}

int Coordinator::run() {
  ::signal(SIGPIPE, SIG_IGN);  // a dead worker's pipe is EPIPE, not death
  t_begin_ = monotonic_ns();
  if (cfg_.server_pid > 0) rss_before_ = process_rss_kib(cfg_.server_pid);
  if (!fork_workers()) {
    std::cerr << "loadgen: cannot start the worker processes: " << std::strerror(errno) << "\n";
    abort_run("");
    reap();
    return 1;
  }
  loop_ = std::make_unique<reactor::Reactor>("epoll");
  auto interrupt = [this](int signo) {
    interrupted_ = true;
    abort_run(signo == SIGINT ? "interrupted (SIGINT)" : "stopped (SIGTERM)");
  };
  loop_->on_signal(SIGINT, interrupt);
  loop_->on_signal(SIGTERM, interrupt);
  for (size_t k = 0; k < children_.size(); ++k) {
    reactor::set_nonblocking(children_[k].event_fd);
    loop_->add(children_[k].event_fd, reactor::Interest::kRead, [this, k](reactor::Events) { on_event_readable(k); });
  }
  // The watchdog: past every phase's own deadline.
  double budget = cfg_.connect_timeout + 15 + cfg_.barrier_timeout + cfg_.warmup + cfg_.duration + 10 + cfg_.drain + 30 + 30;
  loop_->run_after(secs(budget), [this] { abort_run("watchdog: the run did not finish in time"); });
  deadline(cfg_.connect_timeout + 15, "connecting took too long");
  if (cfg_.progress) loop_->run_every(std::chrono::seconds(1), [this] { print_progress(); });
  loop_->run();
  if (progress_printed_) std::fputs("\n", stderr);
  reap();
  if (failed_) return interrupted_ ? 130 : 1;
  return report();
}

void Coordinator::reap() {
  // Workers exit by themselves after their report; give them a moment, then kill what is left.
  uint64_t give_up = monotonic_ns() + (failed_ ? 0 : 5'000'000'000ull);
  for (Child& c : children_) {
    if (c.pid <= 0) continue;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(c.pid, &status, WNOHANG);
      if (r == c.pid || (r < 0 && errno != EINTR)) break;
      if (monotonic_ns() >= give_up) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, &status, 0);
        break;
      }
      ::usleep(10'000);
    }
    c.pid = -1;
    if (c.cmd_fd >= 0) ::close(c.cmd_fd);
    if (c.event_fd >= 0) {
      if (loop_) loop_->remove(c.event_fd);
      ::close(c.event_fd);
    }
    c.cmd_fd = c.event_fd = -1;
  }
}

void Coordinator::abort_run(const std::string& why) {
  if (failed_ && why.empty()) return;
  if (!failed_ && !why.empty()) {
    if (progress_printed_) {
      std::fputs("\n", stderr);
      progress_printed_ = false;
    }
    std::cerr << "loadgen: " << why << "\n";
  }
  failed_ = true;
  for (Child& c : children_) {
    if (c.pid > 0) ::kill(c.pid, SIGKILL);
  }
  if (loop_) loop_->stop();
}

// ---- Events ---------------------------------------------------------------------------------------

void Coordinator::on_event_readable(size_t k) {
  Child& c = children_[k];
  ssize_t n = c.reader.read_from(c.event_fd);
  if (n < 0) return;
  std::string line;
  while (!failed_ && c.reader.next(line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) on_event(k, j);
  }
  if (n == 0 && !c.eof) {
    c.eof = true;
    loop_->remove(c.event_fd);
    if (!c.has_result && !failed_) abort_run("worker " + std::to_string(k) + " exited unexpectedly");
  }
}

void Coordinator::broadcast(const json& j) {
  for (size_t k = 0; k < children_.size(); ++k) {
    if (!write_message(children_[k].cmd_fd, j)) {
      abort_run("worker " + std::to_string(k) + " is gone");
      return;
    }
  }
}

void Coordinator::deadline(double seconds, std::string what) {
  if (deadline_timer_) loop_->cancel(deadline_timer_);
  deadline_timer_ = loop_->run_after(secs(seconds), [this, what = std::move(what)] {
    deadline_timer_ = 0;
    abort_run(what);
  });
}

void Coordinator::on_event(size_t k, const json& j) {
  Child& c = children_[k];
  std::string ev = j.value("ev", "");
  auto all = [this](bool Child::*flag) {
    for (const Child& x : children_) {
      if (!(x.*flag)) return false;
    }
    return true;
  };
  if (ev == "progress") {
    uint64_t t0 = u64(c.progress, "t"), ops0 = u64(c.progress, "ops");
    uint64_t t1 = u64(j, "t"), ops1 = u64(j, "ops");
    c.rate = t0 && t1 > t0 && ops1 >= ops0 ? static_cast<double>(ops1 - ops0) / since(t0, t1) : 0;
    c.progress = j;
  } else if (ev == "fatal") {
    abort_run("worker " + std::to_string(k) + ": " + j.value("message", "failed"));
  } else if (ev == "ready" && phase_ == Phase::kConnect) {
    c.ready = true;
    c.ready_info = j;
    if (all(&Child::ready)) all_ready();
  } else if (ev == "warmed" && phase_ == Phase::kBarrier) {
    c.warmed = true;
    c.warmed_members = j.value("members", uint64_t{0});
    if (all(&Child::warmed)) all_warmed();
  } else if (ev == "sent" && phase_ == Phase::kSent) {
    expect(j.value("messages", uint64_t{0}));
  } else if (ev == "drained") {
    c.drained = true;
    if (phase_ == Phase::kDrain && all(&Child::drained)) {
      drained_all_ = true;
      request_report();
    }
  } else if (ev == "result" && phase_ == Phase::kReport) {
    c.has_result = true;
    c.result = j;
    if (all(&Child::has_result)) all_results();
  }
}

// ---- Phases ---------------------------------------------------------------------------------------

void Coordinator::all_ready() {
  t_ready_ = monotonic_ns();
  if (cfg_.server_pid > 0) rss_connected_ = process_rss_kib(cfg_.server_pid);
  uint64_t usable = 0;
  std::string first_error;
  for (const Child& c : children_) {
    usable += u64(c.ready_info, "connected") - std::min(u64(c.ready_info, "connected"), u64(c.ready_info, "closed_errors"));
    if (first_error.empty()) first_error = c.ready_info.value("first_error", "");
  }
  if (usable == 0) {
    abort_run("no connection could be made and greeted" + (first_error.empty() ? "" : ": " + first_error));
    return;
  }
  if (cfg_.mode == Mode::kChat) {
    phase_ = Phase::kBarrier;
    t_barrier_ = monotonic_ns();
    if (deadline_timer_) loop_->cancel(deadline_timer_);
    deadline_timer_ = loop_->run_after(secs(cfg_.barrier_timeout), [this] {
      deadline_timer_ = 0;
      uint64_t warmed = 0, ready = 0;
      for (const Child& c : children_) {
        warmed += u64(c.progress, "warmed");
        ready += u64(c.progress, "members_ready");
      }
      char what[256];
      std::snprintf(what, sizeof what,
                    "readiness barrier: after %g s only %" PRIu64 " of %" PRIu64 " subscribed members had received "
                    "a warm-up message (is every member really in room '%s'?)",
                    cfg_.barrier_timeout, warmed, ready, cfg_.room.c_str());
      abort_run(what);
    });
    broadcast({{"cmd", "barrier"}});
  } else {
    go();
  }
}

void Coordinator::all_warmed() {
  t_warmed_ = monotonic_ns();
  uint64_t members = 0;
  for (const Child& c : children_) members += c.warmed_members;
  if (members == 0) {
    abort_run("no member is subscribed: nothing to measure");
    return;
  }
  go();
}

void Coordinator::go() {
  phase_ = Phase::kWarmup;
  if (deadline_timer_) loop_->cancel(deadline_timer_);
  deadline_timer_ = 0;
  broadcast({{"cmd", "go"}});
  loop_->run_after(secs(cfg_.warmup), [this] { start_window(); });
}

void Coordinator::start_window() {
  if (failed_) return;
  phase_ = Phase::kMeasure;
  SystemCpu sys = system_cpu();
  sys_busy_start_ = sys.busy;
  sys_steal_start_ = sys.steal;
  if (cfg_.server_pid > 0) {
    cpu_start_ = process_cpu_seconds(cfg_.server_pid);
    rss_start_ = process_rss_kib(cfg_.server_pid);
  }
  t_start_ = monotonic_ns();
  broadcast({{"cmd", "start"}});
  loop_->run_after(secs(cfg_.duration), [this] { stop_window(); });
}

void Coordinator::stop_window() {
  if (failed_) return;
  broadcast({{"cmd", "stop"}});
  t_stop_ = monotonic_ns();
  if (cfg_.server_pid > 0) {
    cpu_end_ = process_cpu_seconds(cfg_.server_pid);
    rss_end_ = process_rss_kib(cfg_.server_pid);
  }
  SystemCpu sys = system_cpu();
  sys_busy_end_ = sys.busy;
  sys_steal_end_ = sys.steal;
  if (cfg_.mode == Mode::kChat) {
    phase_ = Phase::kSent;
    deadline(10, "the publishers' process did not say how much it sent");
  } else {
    request_report();
  }
}

void Coordinator::expect(uint64_t messages) {
  measured_sent_ = messages;
  phase_ = Phase::kDrain;
  t_expect_ = monotonic_ns();
  if (deadline_timer_) loop_->cancel(deadline_timer_);
  // The drain ends at --drain seconds, or earlier when every worker has every message.
  deadline_timer_ = loop_->run_after(secs(cfg_.drain), [this] {
    deadline_timer_ = 0;
    request_report();
  });
  broadcast({{"cmd", "expect"}, {"messages", messages}});
}

void Coordinator::request_report() {
  if (phase_ == Phase::kReport || failed_) return;
  if (phase_ == Phase::kDrain) t_drained_ = monotonic_ns();
  phase_ = Phase::kReport;
  deadline(30, "the workers did not send their results");
  broadcast({{"cmd", "report"}});
}

void Coordinator::all_results() {
  phase_ = Phase::kDone;
  if (deadline_timer_) loop_->cancel(deadline_timer_);
  deadline_timer_ = 0;
  loop_->stop();
}

const char* Coordinator::phase_name() const {
  switch (phase_) {
    case Phase::kConnect: return "connecting";
    case Phase::kBarrier: return "barrier";
    case Phase::kWarmup: return "warm-up";
    case Phase::kMeasure: return "measuring";
    case Phase::kSent:
    case Phase::kDrain: return "draining";
    case Phase::kReport:
    case Phase::kDone: return "reporting";
  }
  return "?";
}

void Coordinator::print_progress() {
  uint64_t connected = 0, errors = 0, warmed = 0;
  double rate = 0;
  for (const Child& c : children_) {
    connected += u64(c.progress, "connected");
    errors += u64(c.progress, "errors");
    warmed += u64(c.progress, "warmed");
    rate += c.rate;
  }
  uint64_t now = monotonic_ns();
  char line[256];
  std::snprintf(line, sizeof line, "\rloadgen: %-10s %6.1f s  connections %" PRIu64 "%s  %s/s %.0f  errors %" PRIu64 "\033[K",
                phase_name(), since(t_begin_, now), connected,
                cfg_.mode == Mode::kChat ? (" warmed " + std::to_string(warmed)).c_str() : "",
                cfg_.mode == Mode::kChat ? "deliveries" : "round trips", rate, errors);
  std::fputs(line, stderr);
  std::fflush(stderr);
  progress_printed_ = true;
}

// ---- The report -----------------------------------------------------------------------------------

int Coordinator::report() {
  const bool chat = cfg_.mode == Mode::kChat;
  Histogram latency, ack_latency;
  uint64_t acks = 0, acks_in_window = 0, measured_answered = 0, not_stored = 0, foreign_acks = 0;
  uint64_t connected = 0, connect_errors = 0, closed_errors = 0, mismatch_errors = 0, protocol_errors = 0,
           server_errors = 0, window_ops = 0, received = 0, duplicates = 0, out_of_order = 0,
           foreign = 0, sent = 0, sent_warmup = 0, stalls = 0, barrier_messages = 0, members_warmed = 0;
  bool order_exact = true;
  double client_cpu = 0, connect_s = 0;
  std::string first_error;
  for (const Child& c : children_) {
    const json& r = c.result;
    connected += u64(r, "connected");
    connect_errors += u64(r, "connect_errors");
    closed_errors += u64(r, "closed_errors");
    mismatch_errors += u64(r, "mismatch_errors");
    protocol_errors += u64(r, "protocol_errors");
    server_errors += u64(r, "server_errors");
    window_ops += u64(r, "window_ops");
    received += u64(r, "received");
    duplicates += u64(r, "duplicates");
    out_of_order += u64(r, "out_of_order");
    foreign += u64(r, "foreign");
    sent += u64(r, "sent");
    sent_warmup += u64(r, "sent_warmup");
    stalls += u64(r, "publisher_stalls");
    barrier_messages += u64(r, "barrier_messages");
    members_warmed += c.warmed_members;
    if (r.is_object() && !r.value("order_exact", true)) order_exact = false;
    client_cpu += f64(r, "client_cpu_s");
    connect_s = std::max(connect_s, f64(c.ready_info, "connect_s"));
    if (first_error.empty() && r.is_object()) first_error = r.value("first_error", "");
    if (r.is_object() && r.contains("latency")) merge_histogram_json(latency, r["latency"]);
    acks += u64(r, "acks");
    acks_in_window += u64(r, "acks_in_window");
    measured_answered += u64(r, "measured_answered");
    not_stored += u64(r, "not_stored");
    foreign_acks += u64(r, "foreign_acks");
    if (r.is_object() && r.contains("ack_latency")) merge_histogram_json(ack_latency, r["ack_latency"]);
  }
  // --ids: a measured message neither acked nor refused by the end of the drain.
  const uint64_t acks_missing = cfg_.ids && sent > measured_answered ? sent - measured_answered : 0;
  const double window = since(t_start_, t_stop_);
  const double throughput = window > 0 ? static_cast<double>(window_ops) / window : 0;
  const uint64_t expected = chat ? measured_sent_ * members_warmed : 0;
  const int64_t loss = chat ? static_cast<int64_t>(expected) - static_cast<int64_t>(received) : 0;
  const uint64_t errors =
      connect_errors + closed_errors + mismatch_errors + protocol_errors + server_errors + not_stored + foreign_acks;
  const bool have_server = cfg_.server_pid > 0 && cpu_start_ >= 0 && cpu_end_ >= 0;
  const double server_cpu = have_server ? cpu_end_ - cpu_start_ : 0;
  const bool have_rss = cfg_.server_pid > 0 && rss_before_ >= 0 && rss_connected_ >= 0 && connected > 0;
  const double rss_per_conn = have_rss ? static_cast<double>(rss_connected_ - rss_before_) * 1024.0 / static_cast<double>(connected) : 0;
  auto us = [](double ns) { return round_to(ns / 1000.0, 0.01); };

  json out;
  out["mode"] = mode_name(cfg_.mode);
  if (chat) out["dialect"] = dialect_name(cfg_.dialect);
  out["host"] = cfg_.host;
  out["port"] = cfg_.port;
  out["connections"] = cfg_.connections;
  if (chat) {
    out["publishers"] = cfg_.publishers;
    out["room"] = cfg_.room;
    out["rate"] = cfg_.rate;
    out["ids"] = cfg_.ids;
    out["window"] = cfg_.window;
  } else {
    out["active"] = cfg_.active;
    out["depth"] = cfg_.depth;
  }
  out["payload"] = cfg_.payload;
  out["processes"] = static_cast<int>(children_.size());
  out["source_addresses"] = std::max(cfg_.source_addresses, 1);
  out["warmup_s"] = cfg_.warmup;
  out["duration_s"] = round_to(window, 1e-4);
  out["connected"] = connected;
  out["connect_s"] = round_to(connect_s, 1e-4);
  if (chat) {
    out["barrier_s"] = round_to(since(t_barrier_, t_warmed_), 1e-4);
    out["members_subscribed"] = members_warmed;
    out["messages_sent"] = sent;
    out["sent_per_s"] = round_to(window > 0 ? static_cast<double>(sent) / window : 0, 0.1);
    out["expected_deliveries"] = expected;
    out["received"] = received;
    out["loss"] = loss;
    out["loss_ratio"] = expected ? round_to(static_cast<double>(loss) / static_cast<double>(expected), 1e-6) : 0.0;
    out["duplicates"] = duplicates;
    out["out_of_order"] = out_of_order;
    if (!order_exact) out["order_exact"] = false;
    out["deliveries"] = window_ops;
    out["deliveries_per_s"] = round_to(throughput, 0.1);
    out["drain_s"] = round_to(since(t_expect_, t_drained_), 1e-4);
    out["drained"] = drained_all_;
    out["publisher_stalls"] = stalls;
    out["warmup_messages"] = sent_warmup;
    out["barrier_messages"] = barrier_messages;
    out["foreign_messages"] = foreign;
    if (cfg_.ids) {
      out["acks"] = acks;
      out["acks_missing"] = acks_missing;
      out["not_stored"] = not_stored;
      out["foreign_acks"] = foreign_acks;
      out["acks_per_s"] = round_to(window > 0 ? static_cast<double>(acks_in_window) / window : 0, 0.1);
      out["ack_latency_us"] = {{"p50", us(ack_latency.quantile(0.50))},  {"p90", us(ack_latency.quantile(0.90))},
                               {"p99", us(ack_latency.quantile(0.99))},  {"p999", us(ack_latency.quantile(0.999))},
                               {"max", us(static_cast<double>(ack_latency.max()))},
                               {"samples", ack_latency.total()}};
    }
  } else {
    out["round_trips"] = window_ops;
    out["rtt_per_s"] = round_to(throughput, 0.1);
  }
  out["latency_us"] = {{"p50", us(latency.quantile(0.50))},   {"p90", us(latency.quantile(0.90))},
                       {"p99", us(latency.quantile(0.99))},   {"p999", us(latency.quantile(0.999))},
                       {"max", us(static_cast<double>(latency.max()))}, {"mean", us(latency.mean())},
                       {"samples", latency.total()}};
  out["errors"] = errors;
  json detail = {{"connect", connect_errors}, {"closed", closed_errors}};
  if (chat) {
    detail["protocol"] = protocol_errors;
    detail["server"] = server_errors;
  } else {
    detail["mismatch"] = mismatch_errors;
  }
  out["error_detail"] = detail;
  if (!first_error.empty()) out["first_error"] = first_error;
  out["client_cpu_s"] = round_to(client_cpu, 1e-3);
  bool have_sys = sys_busy_start_ >= 0 && sys_busy_end_ >= 0;
  out["system"] = {{"busy_s", maybe(round_to(sys_busy_end_ - sys_busy_start_, 0.01), have_sys)},
                   {"steal_s", maybe(round_to(sys_steal_end_ - sys_steal_start_, 0.01), have_sys)}};
  out["server_cpu_us_per_op"] = maybe(round_to(window_ops ? server_cpu * 1e6 / static_cast<double>(window_ops) : 0, 1e-4),
                                      have_server && window_ops > 0);
  out["rss_bytes_per_connection"] = maybe(round_to(rss_per_conn, 0.1), have_rss);
  if (cfg_.server_pid > 0) {
    out["server"] = {{"pid", cfg_.server_pid},
                     {"cpu_s", maybe(round_to(server_cpu, 1e-3), have_server)},
                     {"rss_kib_before", rss_before_},
                     {"rss_kib_connected", rss_connected_},
                     {"rss_kib_start", rss_start_},
                     {"rss_kib_end", rss_end_}};
  } else {
    out["server"] = nullptr;
  }

  if (cfg_.json) {
    std::cout << out.dump() << std::endl;
  } else {
    auto pct = [&](double q) { return latency.quantile(q) / 1000.0; };
    if (chat) {
      std::string pace = cfg_.window > 0 ? "each keeping " + std::to_string(cfg_.window) + " unacknowledged"
                                         : "at " + std::to_string(std::lround(cfg_.rate)) + " msg/s";
      std::printf("chat (%s) on %s:%d: %d members in room '%s', %d publisher(s) %s%s, %d-byte texts, "
                  "%zu process(es)\n",
                  dialect_name(cfg_.dialect), cfg_.host.c_str(), cfg_.port, cfg_.connections, cfg_.room.c_str(),
                  cfg_.publishers, pace.c_str(), cfg_.ids && cfg_.window == 0 ? " with ids" : "", cfg_.payload,
                  children_.size());
      std::printf("connected %" PRIu64 " in %.3f s; barrier %.3f s (%" PRIu64 " members subscribed)\n", connected,
                  connect_s, since(t_barrier_, t_warmed_), members_warmed);
      std::printf("sent %" PRIu64 " in %.3f s (%.0f/s); deliveries %" PRIu64 " in the window: %.0f/s\n", sent, window,
                  window > 0 ? static_cast<double>(sent) / window : 0, window_ops, throughput);
      std::printf("expected %" PRIu64 ", received %" PRIu64 ", loss %" PRId64 ", duplicates %" PRIu64
                  ", out of order %" PRIu64 " (drain %.3f s%s)\n",
                  expected, received, loss, duplicates, out_of_order, since(t_expect_, t_drained_),
                  drained_all_ ? "" : ", not complete");
    } else {
      std::printf("echo on %s:%d: %d connections (%d active, depth %d), %d-byte payload, %zu process(es)\n",
                  cfg_.host.c_str(), cfg_.port, cfg_.connections, cfg_.active, cfg_.depth, cfg_.payload,
                  children_.size());
      std::printf("connected %" PRIu64 " in %.3f s\n", connected, connect_s);
      std::printf("round trips %" PRIu64 " in %.3f s: %.0f/s\n", window_ops, window, throughput);
    }
    std::printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%" PRIu64 " samples)\n", pct(0.5),
                pct(0.9), pct(0.99), pct(0.999), static_cast<double>(latency.max()) / 1000.0, latency.total());
    if (chat && cfg_.ids) {
      std::printf("acks %" PRIu64 " (%.0f/s in the window), missing %" PRIu64 ", not stored %" PRIu64
                  "; publish to ack us: p50 %.1f  p99 %.1f  max %.1f\n",
                  acks, window > 0 ? static_cast<double>(acks_in_window) / window : 0, acks_missing, not_stored,
                  ack_latency.quantile(0.5) / 1000.0, ack_latency.quantile(0.99) / 1000.0,
                  static_cast<double>(ack_latency.max()) / 1000.0);
    }
    if (have_server) {
      std::printf("server cpu %.3f s: %.3f us per %s\n", server_cpu,
                  window_ops ? server_cpu * 1e6 / static_cast<double>(window_ops) : 0.0, chat ? "delivery" : "round trip");
    }
    if (have_rss) {
      std::printf("server rss %ld KiB before, %ld KiB connected: %.0f bytes per connection\n", rss_before_,
                  rss_connected_, rss_per_conn);
    }
    std::printf("client cpu %.3f s; errors %" PRIu64 "%s%s\n", client_cpu, errors,
                first_error.empty() ? "" : " (first: ", first_error.empty() ? "" : (first_error + ")").c_str());
  }
  std::fflush(stdout);
  if (chat && measured_sent_ == 0) return 1;
  return errors == 0 && acks_missing == 0 ? 0 : 1;
}

}  // namespace loadgen
