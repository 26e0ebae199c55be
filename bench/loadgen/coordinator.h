// The parent process: forks the workers, steps them through the run's phases over pipes, samples
// the server at the window's edges, merges the workers' counters and histograms, prints the report.
//
// Phases: connect (every worker "ready") -> [chat] barrier (every member got a warm-up message) ->
// go (load, unmeasured, --warmup s) -> start .. stop (the measured window, --duration s) ->
// [chat] drain (until every measured message arrived, at most --drain s) -> report.
// Every phase has a deadline, and the whole run a watchdog: a run always ends, and every worker is
// reaped (killed first if it does not end by itself).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "loadgen/config.h"
#include "loadgen/histogram.h"
#include "loadgen/ipc.h"
#include "reactor/reactor.h"

namespace loadgen {

class Coordinator {
 public:
  Coordinator(const Config& cfg, std::vector<Share> shares) : cfg_(cfg), shares_(std::move(shares)) {}
  // Returns the process's exit status.
  int run();

 private:
  struct Child {
    pid_t pid = -1;
    int cmd_fd = -1;    // parent writes commands
    int event_fd = -1;  // parent reads events
    LineReader reader;
    bool ready = false, warmed = false, drained = false, has_result = false, eof = false;
    json ready_info, progress, result;
    uint64_t warmed_members = 0;
    double rate = 0;  // ops per second between its last two progress reports
  };
  enum class Phase { kConnect, kBarrier, kWarmup, kMeasure, kSent, kDrain, kReport, kDone };

  bool fork_workers();
  void on_event_readable(size_t k);
  void on_event(size_t k, const json& j);
  void broadcast(const json& j);
  void deadline(double seconds, std::string what);
  void all_ready();
  void all_warmed();
  void go();
  void start_window();
  void stop_window();
  void expect(uint64_t messages);
  void request_report();
  void all_results();
  void abort_run(const std::string& why);
  void print_progress();
  void reap();
  int report();
  const char* phase_name() const;

  Config cfg_;
  std::vector<Share> shares_;
  std::vector<Child> children_;
  std::unique_ptr<reactor::Reactor> loop_;
  Phase phase_ = Phase::kConnect;
  reactor::TimerId deadline_timer_ = 0;
  bool failed_ = false;
  bool interrupted_ = false;
  bool progress_printed_ = false;

  // Times (CLOCK_MONOTONIC ns).
  uint64_t t_begin_ = 0, t_ready_ = 0, t_barrier_ = 0, t_warmed_ = 0, t_start_ = 0, t_stop_ = 0,
           t_expect_ = 0, t_drained_ = 0;
  // Server samples.
  long rss_before_ = -1, rss_connected_ = -1, rss_start_ = -1, rss_end_ = -1;
  double cpu_start_ = -1, cpu_end_ = -1;
  double sys_busy_start_ = -1, sys_busy_end_ = -1, sys_steal_start_ = -1, sys_steal_end_ = -1;
  uint64_t measured_sent_ = 0;
  bool drained_all_ = false;
};

}  // namespace loadgen
