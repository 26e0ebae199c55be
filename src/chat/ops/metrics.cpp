#include "chat/ops/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace chat {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);  // 0.0005, not 5e-04
  return std::string(buf, ec == std::errc() ? end : buf);
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Exposition::sample(std::string_view name, double value, std::string_view labels) {
  out_.append(name);
  if (!labels.empty()) out_.append("{").append(labels).append("}");
  out_.append(" ").append(number(value)).append("\n");
}

void Exposition::sample(std::string_view name, uint64_t value, std::string_view labels) {
  out_.append(name);
  if (!labels.empty()) out_.append("{").append(labels).append("}");
  out_.append(" ").append(std::to_string(value)).append("\n");
}

void Exposition::counter(std::string_view name, std::string_view help, uint64_t value) {
  family(name, "counter", help);
  sample(name, value);
}

void Exposition::gauge(std::string_view name, std::string_view help, uint64_t value) {
  family(name, "gauge", help);
  sample(name, value);
}

void Exposition::labelled(std::string_view name, std::string_view type, std::string_view help, std::string_view key,
                          std::initializer_list<std::pair<std::string_view, uint64_t>> samples) {
  family(name, type, help);
  for (const auto& [value, n] : samples) sample(name, n, label(key, value));
}

void Exposition::histogram(std::string_view name, const reactor::LatencyHistogram& h, std::string_view labels) {
  std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    double le = i < h.kBounds.size() ? h.kBounds[i] : INFINITY;
    sample(bucket, cumulative, prefix + label("le", number(le)));
  }
  sample(std::string(name) + "_sum", h.sum_seconds, labels);
  sample(std::string(name) + "_count", h.count, labels);
}

std::string Exposition::label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

void write_metrics(Exposition& out, const Stats& s, const std::vector<Stats>& shards,
                   std::span<const std::string_view> listeners) {
  using E = Exposition;
  auto rows = counter_rows();
  for (size_t f = 0; f < static_cast<size_t>(MetricFamily::none); ++f) {
    auto family = static_cast<MetricFamily>(f);
    const MetricFamilyInfo& info = metric_family(family);
    out.family(info.name, info.type, info.help);
    switch (family) {
      case MetricFamily::connections_open: {
        // The sessions by the front end of their wire format, and the HTTP connections that are
        // not (yet) WebSocket members.
        std::vector<std::pair<std::string, uint64_t>> fronts;
        uint64_t members_open = 0;
        for (size_t k = 0; k < Format::count(); ++k) {
          const std::string& front = Format::by_id(static_cast<FormatId>(k)).front();
          auto it = std::find_if(fronts.begin(), fronts.end(), [&](const auto& p) { return p.first == front; });
          if (it == fronts.end()) it = fronts.insert(fronts.end(), {front, 0});
          it->second += s.sessions[k];
          members_open += s.sessions[k];
        }
        for (const auto& [front, n] : fronts) out.sample(info.name, n, E::label(info.label_key, front));
        out.sample(info.name, s.connections_open - std::min(s.connections_open, members_open),
                   E::label(info.label_key, "http"));
        continue;
      }
      case MetricFamily::accepted:
        for (size_t l = 0; l < listeners.size() && l < kMaxListeners; ++l) {
          out.sample(info.name, s.accepted[l], E::label(info.label_key, listeners[l]));
        }
        continue;
      case MetricFamily::loop_lag:
        for (size_t k = 0; k < shards.size(); ++k) {
          out.histogram(info.name, shards[k].loop_lag, E::label("reactor", std::to_string(k)));
        }
        continue;
      default: break;
    }
    for (const CounterRow& row : rows) {
      if (row.family != family) continue;
      out.sample(info.name, s.*row.field, row.label.empty() ? std::string() : E::label(info.label_key, row.label));
    }
    if (family == MetricFamily::refused) {  // the refusals no per-address limit made
      out.sample(info.name, s.connections_refused - s.refused_per_address - s.refused_connect_rate,
                 E::label(info.label_key, "other"));
    }
  }
}

}  // namespace chat
