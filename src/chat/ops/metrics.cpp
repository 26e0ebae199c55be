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

void write_metrics(Exposition& out, const Stats& s, const std::vector<Stats>& shards) {
  using E = Exposition;
  // Connections open by front end: the sessions by the front end of their wire format, and the
  // HTTP connections that are not (yet) WebSocket members.
  out.family("chat_connections_open", "gauge", "Connections open, by front end (http: not a member)");
  std::vector<std::pair<std::string, uint64_t>> fronts;
  uint64_t members_open = 0;
  for (size_t f = 0; f < Format::count(); ++f) {
    const std::string& front = Format::by_id(static_cast<FormatId>(f)).front();
    auto it = std::find_if(fronts.begin(), fronts.end(), [&](const auto& p) { return p.first == front; });
    if (it == fronts.end()) it = fronts.insert(fronts.end(), {front, 0});
    it->second += s.sessions[f];
    members_open += s.sessions[f];
  }
  for (const auto& [front, n] : fronts) out.sample("chat_connections_open", n, E::label("front", front));
  out.sample("chat_connections_open", s.connections_open - std::min(s.connections_open, members_open),
             E::label("front", "http"));
  out.family("chat_connections_accepted_total", "counter",
             "Connections accepted, by the listener they came in by (refused ones included)");
  for (size_t l = 0; l < kListeners; ++l) {
    out.sample("chat_connections_accepted_total", s.accepted[l], E::label("listener", kListenerNames[l]));
  }
  out.labelled("chat_connections_refused_total", "counter",
               "Connections closed at once, by the limit they met (other: --max-connections, or not registrable)",
               "reason",
               {{"per_address", s.refused_per_address},
                {"connect_rate", s.refused_connect_rate},
                {"other", s.connections_refused - s.refused_per_address - s.refused_connect_rate}});

  out.counter("chat_messages_in_total", "Chat messages accepted for broadcast", s.messages_in);
  out.counter("chat_deliveries_total", "Copies of messages and room events queued to members", s.deliveries);
  out.counter("chat_bytes_in_total", "Bytes read from members", s.bytes_in);
  out.counter("chat_bytes_out_total", "Bytes queued to members", s.bytes_out);

  out.labelled("chat_errors_total", "counter", "Bad input answered with an error or dropped, by kind", "code",
               {{"json", s.errors_json},
                {"utf8", s.errors_utf8},
                {"too_long", s.errors_too_long},
                {"request", s.errors_request},
                {"garbage", s.errors_garbage}});
  out.labelled("chat_closes_total", "counter", "Connections the server closed, by reason", "reason",
               {{"slow_consumer", s.slow_consumer_closes},
                {"unsynced", s.unsynced_closes},
                {"ws_protocol", s.ws_protocol_closes},
                {"ping_flood", s.ping_flood_closes},
                {"http_timeout", s.http_timeouts},
                {"irc_flood", s.irc_flood_closes},
                {"irc_timeout", s.irc_timeouts},
                {"rate_limit", s.rate_limit_closes},
                {"frame_timeout", s.frame_timeouts},
                {"unauthorized", s.auth_refused}});

  out.counter("chat_linger_resets_total",
              "Closes (for any reason) ended by a reset: the peer went on sending past the lingering close's budget",
              s.linger_resets);

  out.labelled("chat_tls_handshake_failures_total", "counter",
               "TLS connections closed before their handshake was over, by why", "reason",
               {{"timeout", s.tls_timeouts}, {"other", s.tls_failures}});
  out.counter("chat_wrong_protocol_total",
              "Connections closed for speaking plain text to a TLS port or TLS to a plain one", s.wrong_protocol);
  out.labelled("chat_auth_total", "counter",
               "With --auth-secret: members admitted with a token, and connections closed for a missing or bad one", "result",
               {{"accepted", s.auth_accepted}, {"refused", s.auth_refused}});
  out.counter("chat_rate_limited_total", "Requests refused over --message-rate (messages, joins, leaves, history ...)",
              s.rate_limited);
  out.counter("chat_presence_held_total", "Joins and leaves a room did not hear at once: one member's churn, coalesced",
              s.presence_coalesced);
  out.labelled("chat_joins_refused_total", "counter", "Joins refused by a server limit, by limit", "limit",
               {{"room_members", s.refused_room_members}, {"server_rooms", s.refused_server_rooms}});
  out.counter("chat_http_requests_total", "HTTP requests answered", s.http_requests);
  out.counter("chat_http_errors_total", "HTTP requests answered 4xx or 5xx, unparsable ones included", s.http_errors);
  out.counter("chat_websocket_upgrades_total", "WebSocket handshakes accepted", s.ws_upgrades);

  out.counter("chat_acks_total", "Publishes with an id acknowledged (stored, or seen before)", s.acks);
  out.counter("chat_not_stored_total", "Publishes with an id the store could not keep", s.not_stored);
  out.labelled("chat_recoveries_total", "counter", "Joins with since, by outcome", "result",
               {{"recovered", s.recoveries}, {"unrecovered", s.recoveries_failed}});
  out.counter("chat_replayed_total", "Messages sent by recoveries", s.replayed);
  out.counter("chat_history_reads_total", "History requests answered", s.history_reads);

  out.gauge("chat_rooms", "Rooms with members", s.rooms);
  out.gauge("chat_members", "Memberships (a member in three rooms counts three)", s.members);

  out.family("chat_loop_lag_seconds", "histogram",
             "How late each reactor ran a probe timer due every 100 ms (its busy time and the wait's rounding)");
  for (size_t k = 0; k < shards.size(); ++k) {
    out.histogram("chat_loop_lag_seconds", shards[k].loop_lag, E::label("reactor", std::to_string(k)));
  }
}

}  // namespace chat
