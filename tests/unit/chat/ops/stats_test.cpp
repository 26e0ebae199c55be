// The counters' one declaration (CHAT_COUNTERS in chat/ops/stats.h): every row is summed, shown on
// the stats line and exposed by /metrics; and both renderings are exactly what they were when
// each was written by hand (a stats line and a scrape with every counter distinct).
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "chat/frontends/irc/irc.h"
#include "chat/frontends/tcp/article.h"
#include "chat/frontends/tcp/native.h"
#include "chat/ops/metrics.h"
#include "chat/ops/stats.h"

namespace stats_test {

// The six formats in the server's order (the stats line names them in the order of their ids).
bool register_formats() {
  chat::article_format();
  chat::native_format();
  chat::native_ws_format();
  chat::irc_format(chat::IrcTags::kNone);
  chat::irc_format(chat::IrcTags::kTime);
  chat::irc_format(chat::IrcTags::kAll);
  return true;
}
// Formats take their ids in the order they are first made, once per process: made here before any
// test runs (as the server makes them at its start), whichever test of this program runs first.
const bool kFormatsInTheServersOrder = register_formats();

TEST(Counters, EveryRowIsSummedShownAndExposed) {
  chat::Stats s;
  uint64_t v = 100;
  for (const chat::CounterRow& row : chat::counter_rows()) {
    if (s.*row.field == 0) s.*row.field = v++;  // a field with two rows keeps its first value
  }
  chat::Stats sum = s;
  sum += s;
  std::string line = sum.to_string();
  chat::Exposition out;
  chat::write_metrics(out, sum, {s}, std::vector<std::string_view>{"tcp"});
  for (const chat::CounterRow& row : chat::counter_rows()) {
    uint64_t n = sum.*row.field;
    EXPECT_EQ(n, 2 * (s.*row.field));
    if (!row.group.empty()) {
      std::string shown = " " + std::string(row.key) + "=" + std::to_string(n);
      EXPECT_NE(line.find(shown), std::string::npos) << shown << " in " << line;
    }
    if (row.family != chat::MetricFamily::none) {
      const chat::MetricFamilyInfo& family = chat::metric_family(row.family);
      std::string sample = std::string(family.name);
      if (!row.label.empty()) sample += "{" + chat::Exposition::label(family.label_key, row.label) + "}";
      sample += " " + std::to_string(n) + "\n";
      EXPECT_NE(out.text().find(sample), std::string::npos) << sample;
    }
  }
}

TEST(Counters, TheLineAndTheScrapeAreAsTheyWereWrittenByHand) {
  ASSERT_TRUE(kFormatsInTheServersOrder);
  chat::Stats s;
  s.acks = 1000;
  s.auth_accepted = 1007;
  s.auth_refused = 1014;
  s.bytes_in = 1021;
  s.bytes_out = 1028;
  s.connections_open = 1035;
  s.connections_refused = 1042;
  s.deliveries = 1049;
  s.errors_garbage = 1056;
  s.errors_json = 1063;
  s.errors_request = 1070;
  s.errors_too_long = 1077;
  s.errors_utf8 = 1084;
  s.frame_timeouts = 1091;
  s.history_reads = 1098;
  s.http_errors = 1105;
  s.http_requests = 1112;
  s.http_timeouts = 1119;
  s.irc_flood_closes = 1126;
  s.irc_timeouts = 1133;
  s.linger_resets = 1140;
  s.members = 1147;
  s.messages_in = 1154;
  s.not_stored = 1161;
  s.ping_flood_closes = 1168;
  s.presence_coalesced = 1175;
  s.rate_limit_closes = 1182;
  s.rate_limited = 1189;
  s.recoveries = 1196;
  s.recoveries_failed = 1203;
  s.refused_connect_rate = 1210;
  s.refused_per_address = 1217;
  s.refused_room_members = 1224;
  s.refused_server_rooms = 1231;
  s.replayed = 1238;
  s.rooms = 1245;
  s.slow_consumer_closes = 1252;
  s.tls_failures = 1259;
  s.tls_timeouts = 1266;
  s.unsynced_closes = 1273;
  s.wrong_protocol = 1280;
  s.ws_protocol_closes = 1287;
  s.ws_upgrades = 1294;
  s.connections_refused = 500000;
  s.connections_open = 600000;
  for (size_t i = 0; i < 6; ++i) s.accepted[i] = 10 + i;
  for (size_t i = 0; i < 6; ++i) s.sessions[i] = 20 + i;
  s.loop_lag.record(std::chrono::microseconds(300));
  chat::Stats sum = s;
  sum += s;
  // The same for the line: an extra format shows as "NAME=0" after the server's six.
  std::string line = sum.to_string();
  for (size_t id = 6; id < chat::Format::count(); ++id) {
    std::string shown = " " + std::string(chat::Format::by_id(static_cast<chat::FormatId>(id)).name()) + "=0";
    if (size_t at = line.find(shown); at != std::string::npos) line.erase(at, shown.size());
  }
  EXPECT_EQ(line,
            "connections open=1200000 accepted=150 refused=1000000 (article=40 native=42 websocket=44 irc=46 irc-time=48 irc-tags=50); messages in=2308 delivered=2098; bytes in=2042 out=2056; errors json=2126 utf8=2168 too_long=2154 request=2140 garbage=2112; closed slow_consumer=2504 unsynced=2546 ws_protocol=2574 ping_flood=2336 linger_resets=2280; http requests=2224 errors=2210 timeouts=2238 websocket=2588; history acks=2000 not_stored=2322 recovered=2392 unrecovered=2406 replayed=2476 reads=2196; irc flood=2252 timeouts=2266; rooms count=2490 members=2294 presence_held=2350; limits rate_limited=2378 rate_closes=2364 frame_timeouts=2182 refused_address=2434 refused_rate=2420 room_full=2448 server_rooms_full=2462; tls failed=2518 timeouts=2532 wrong_protocol=2560; auth accepted=2014 refused=2028");
  chat::Exposition out;
  chat::write_metrics(out, sum, {s, s}, std::vector<std::string_view>{"tcp", "http", "irc", "tls", "https", "ircs"});
  // A format a test of this program made besides the server's six (the hub's tests make one) shows
  // as a front end with no connections: not the server's, so not compared.
  std::string text = out.text();
  for (size_t id = 6; id < chat::Format::count(); ++id) {
    std::string line = "chat_connections_open{front=\"" +
                       std::string(chat::Format::by_id(static_cast<chat::FormatId>(id)).front()) + "\"} 0\n";
    if (size_t at = text.find(line); at != std::string::npos) text.erase(at, line.size());
  }
  EXPECT_EQ(text, R"(# HELP chat_connections_open Connections open, by front end (http: not a member)
# TYPE chat_connections_open gauge
chat_connections_open{front="article"} 40
chat_connections_open{front="native"} 42
chat_connections_open{front="web"} 44
chat_connections_open{front="irc"} 144
chat_connections_open{front="http"} 1199730
# HELP chat_connections_accepted_total Connections accepted, by the listener they came in by (refused ones included)
# TYPE chat_connections_accepted_total counter
chat_connections_accepted_total{listener="tcp"} 20
chat_connections_accepted_total{listener="http"} 22
chat_connections_accepted_total{listener="irc"} 24
chat_connections_accepted_total{listener="tls"} 26
chat_connections_accepted_total{listener="https"} 28
chat_connections_accepted_total{listener="ircs"} 30
# HELP chat_connections_refused_total Connections closed at once, by the limit they met (other: --max-connections, or not registrable)
# TYPE chat_connections_refused_total counter
chat_connections_refused_total{reason="per_address"} 2434
chat_connections_refused_total{reason="connect_rate"} 2420
chat_connections_refused_total{reason="other"} 995146
# HELP chat_messages_in_total Chat messages accepted for broadcast
# TYPE chat_messages_in_total counter
chat_messages_in_total 2308
# HELP chat_deliveries_total Copies of messages and room events queued to members
# TYPE chat_deliveries_total counter
chat_deliveries_total 2098
# HELP chat_bytes_in_total Bytes read from members
# TYPE chat_bytes_in_total counter
chat_bytes_in_total 2042
# HELP chat_bytes_out_total Bytes queued to members
# TYPE chat_bytes_out_total counter
chat_bytes_out_total 2056
# HELP chat_errors_total Bad input answered with an error or dropped, by kind
# TYPE chat_errors_total counter
chat_errors_total{code="json"} 2126
chat_errors_total{code="utf8"} 2168
chat_errors_total{code="too_long"} 2154
chat_errors_total{code="request"} 2140
chat_errors_total{code="garbage"} 2112
# HELP chat_closes_total Connections the server closed, by reason
# TYPE chat_closes_total counter
chat_closes_total{reason="slow_consumer"} 2504
chat_closes_total{reason="unsynced"} 2546
chat_closes_total{reason="ws_protocol"} 2574
chat_closes_total{reason="ping_flood"} 2336
chat_closes_total{reason="http_timeout"} 2238
chat_closes_total{reason="irc_flood"} 2252
chat_closes_total{reason="irc_timeout"} 2266
chat_closes_total{reason="rate_limit"} 2364
chat_closes_total{reason="frame_timeout"} 2182
chat_closes_total{reason="unauthorized"} 2028
# HELP chat_linger_resets_total Closes (for any reason) ended by a reset: the peer went on sending past the lingering close's budget
# TYPE chat_linger_resets_total counter
chat_linger_resets_total 2280
# HELP chat_tls_handshake_failures_total TLS connections closed before their handshake was over, by why
# TYPE chat_tls_handshake_failures_total counter
chat_tls_handshake_failures_total{reason="timeout"} 2532
chat_tls_handshake_failures_total{reason="other"} 2518
# HELP chat_wrong_protocol_total Connections closed for speaking plain text to a TLS port or TLS to a plain one
# TYPE chat_wrong_protocol_total counter
chat_wrong_protocol_total 2560
# HELP chat_auth_total With --auth-secret: members admitted with a token, and connections closed for a missing or bad one
# TYPE chat_auth_total counter
chat_auth_total{result="accepted"} 2014
chat_auth_total{result="refused"} 2028
# HELP chat_rate_limited_total Requests refused over --message-rate (messages, joins, leaves, history ...)
# TYPE chat_rate_limited_total counter
chat_rate_limited_total 2378
# HELP chat_presence_held_total Joins and leaves a room did not hear at once: one member's churn, coalesced
# TYPE chat_presence_held_total counter
chat_presence_held_total 2350
# HELP chat_joins_refused_total Joins refused by a server limit, by limit
# TYPE chat_joins_refused_total counter
chat_joins_refused_total{limit="room_members"} 2448
chat_joins_refused_total{limit="server_rooms"} 2462
# HELP chat_http_requests_total HTTP requests answered
# TYPE chat_http_requests_total counter
chat_http_requests_total 2224
# HELP chat_http_errors_total HTTP requests answered 4xx or 5xx, unparsable ones included
# TYPE chat_http_errors_total counter
chat_http_errors_total 2210
# HELP chat_websocket_upgrades_total WebSocket handshakes accepted
# TYPE chat_websocket_upgrades_total counter
chat_websocket_upgrades_total 2588
# HELP chat_acks_total Publishes with an id acknowledged (stored, or seen before)
# TYPE chat_acks_total counter
chat_acks_total 2000
# HELP chat_not_stored_total Publishes with an id the store could not keep
# TYPE chat_not_stored_total counter
chat_not_stored_total 2322
# HELP chat_recoveries_total Joins with since, by outcome
# TYPE chat_recoveries_total counter
chat_recoveries_total{result="recovered"} 2392
chat_recoveries_total{result="unrecovered"} 2406
# HELP chat_replayed_total Messages sent by recoveries
# TYPE chat_replayed_total counter
chat_replayed_total 2476
# HELP chat_history_reads_total History requests answered
# TYPE chat_history_reads_total counter
chat_history_reads_total 2196
# HELP chat_rooms Rooms with members
# TYPE chat_rooms gauge
chat_rooms 2490
# HELP chat_members Memberships (a member in three rooms counts three)
# TYPE chat_members gauge
chat_members 2294
# HELP chat_loop_lag_seconds How late each reactor ran a probe timer due every 100 ms (its busy time and the wait's rounding)
# TYPE chat_loop_lag_seconds histogram
chat_loop_lag_seconds_bucket{reactor="0",le="0.0005"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.001"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.0025"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.005"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.01"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.025"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.05"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.1"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.25"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="0.5"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="1"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="2.5"} 1
chat_loop_lag_seconds_bucket{reactor="0",le="+Inf"} 1
chat_loop_lag_seconds_sum{reactor="0"} 0.0003
chat_loop_lag_seconds_count{reactor="0"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.0005"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.001"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.0025"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.005"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.01"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.025"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.05"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.1"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.25"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="0.5"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="1"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="2.5"} 1
chat_loop_lag_seconds_bucket{reactor="1",le="+Inf"} 1
chat_loop_lag_seconds_sum{reactor="1"} 0.0003
chat_loop_lag_seconds_count{reactor="1"} 1
)");
}

}  // namespace stats_test
