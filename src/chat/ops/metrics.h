// GET /metrics: the Prometheus text exposition format (version 0.0.4), written by hand.
//
// Why not a library: the figures already live in plain per-reactor structs (Stats, one per shard,
// written by its reactor's thread only: no atomics or locks on the hot path) and are summed on a
// scrape the way SIGUSR1 sums them. prometheus-cpp's registry wants counters it owns (atomic
// ones, updated where they happen) or a Collectable that builds its MetricFamily objects for every
// scrape only to serialise them at once; the text format is a few lines per family. So a writer of
// that format, checked by a real parser in the tests (python3-prometheus-client).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chat/ops/stats.h"
#include "reactor/loop_lag.h"

namespace chat {

class Exposition {
 public:
  // Starts a family: its HELP and TYPE lines ("counter", "gauge", "histogram", "summary").
  void family(std::string_view name, std::string_view type, std::string_view help);
  // One sample of the current family (or of its _sum/_count/_bucket series); `labels` is the text
  // inside the braces, e.g. front="irc" (values are escaped by label()).
  void sample(std::string_view name, double value, std::string_view labels = {});
  void sample(std::string_view name, uint64_t value, std::string_view labels = {});
  // A family of one unlabelled sample.
  void counter(std::string_view name, std::string_view help, uint64_t value);
  void gauge(std::string_view name, std::string_view help, uint64_t value);
  // A family of one sample per value of the label `key`: {value of the label, sample}.
  void labelled(std::string_view name, std::string_view type, std::string_view help, std::string_view key,
                std::initializer_list<std::pair<std::string_view, uint64_t>> samples);
  // A whole histogram sample set (_bucket with cumulative counts and le, _sum, _count).
  void histogram(std::string_view name, const reactor::LatencyHistogram& h, std::string_view labels = {});
  // key="value", the value escaped as the format wants (\\, \", \n).
  static std::string label(std::string_view key, std::string_view value);

  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// Every figure of the chat service: `sum` of the shards' counters (the families and rows of
// stats.h, in their order), `shards` for what is per reactor (the loop lag), `listeners` the names
// of Stats::accepted's listeners. The router's and the store's figures are added by them
// (Router::metrics, Store::metrics).
void write_metrics(Exposition& out, const Stats& sum, const std::vector<Stats>& shards,
                   std::span<const std::string_view> listeners);

}  // namespace chat
