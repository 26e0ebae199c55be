#include "chat/ops/stats.h"

namespace chat {

namespace {

constexpr CounterRow kRows[] = {
#define CHAT_COUNTER_ROW(field, group, key, family, label) {&Stats::field, group, key, MetricFamily::family, label},
#define CHAT_COUNTER_MORE(field, family, label) {&Stats::field, "", "", MetricFamily::family, label},
    CHAT_COUNTERS(CHAT_COUNTER_ROW, CHAT_COUNTER_MORE)
#undef CHAT_COUNTER_ROW
#undef CHAT_COUNTER_MORE
};

constexpr MetricFamilyInfo kFamilies[] = {
#define CHAT_FAMILY_INFO(id, name, type, key, help) {name, type, key, help},
    CHAT_METRIC_FAMILIES(CHAT_FAMILY_INFO)
#undef CHAT_FAMILY_INFO
};

}  // namespace

std::span<const CounterRow> counter_rows() { return kRows; }

const MetricFamilyInfo& metric_family(MetricFamily family) { return kFamilies[static_cast<size_t>(family)]; }

uint64_t Stats::connections_accepted() const {
  uint64_t n = 0;
  for (uint64_t a : accepted) n += a;
  return n;
}

Stats& Stats::operator+=(const Stats& o) {
  for (size_t l = 0; l < kMaxListeners; ++l) accepted[l] += o.accepted[l];
  for (size_t f = 0; f < kMaxFormats; ++f) sessions[f] += o.sessions[f];
#define CHAT_COUNTER_SUM(field, group, key, family, label) field += o.field;
#define CHAT_COUNTER_NONE(field, family, label)
  CHAT_COUNTERS(CHAT_COUNTER_SUM, CHAT_COUNTER_NONE)
#undef CHAT_COUNTER_SUM
#undef CHAT_COUNTER_NONE
  loop_lag += o.loop_lag;
  return *this;
}

std::string Stats::to_string() const {
  // The first group: the connections, with the sessions per format by the formats' names:
  // "connections open=9 accepted=12 refused=1 (article=3 native=5 ...)".
  std::string line = "connections open=" + std::to_string(connections_open) +
                     " accepted=" + std::to_string(connections_accepted()) +
                     " refused=" + std::to_string(connections_refused) + " (";
  for (size_t f = 0; f < Format::count(); ++f) {
    line += (f == 0 ? "" : " ") + Format::by_id(static_cast<FormatId>(f)).name() + "=" + std::to_string(sessions[f]);
  }
  line += ")";
  // Then every row of the table that is on the line: "; group key=N key=N".
  std::string_view group;
  for (const CounterRow& row : kRows) {
    if (row.group.empty()) continue;
    if (row.group != group) {
      group = row.group;
      line.append("; ").append(group);
    }
    line.append(" ").append(row.key).append("=").append(std::to_string(this->*row.field));
  }
  return line;
}

}  // namespace chat
