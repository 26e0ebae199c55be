// /proc sampling (from the retired echo-load): a server's CPU time and RSS, this process's CPU time,
// the machine's busy and steal time, the ephemeral port range, CLOCK_MONOTONIC in nanoseconds.
#pragma once

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace loadgen {

// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine, so a time written by
// a publisher in one process compares with the arrival time read in another.
inline uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// utime + stime of `pid` in seconds, or -1.
inline double process_cpu_seconds(int pid) {
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
inline long process_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Machine-wide CPU time from the first line of /proc/stat, in seconds summed over every CPU: busy
// (user, nice, system, irq, softirq) and steal (taken by the hypervisor).
struct SystemCpu {
  double busy = -1;
  double steal = -1;
};

inline SystemCpu system_cpu() {
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

inline double self_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

inline int ephemeral_port_count() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (in >> low >> high && high >= low) return high - low + 1;
  return 28232;  // Linux's default range, 32768..60999
}

}  // namespace loadgen
