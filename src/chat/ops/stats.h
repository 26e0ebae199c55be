// The chat server's counters: one set per shard, summed for SIGUSR1 and at exit, and exposed by
// GET /metrics. Every counter is declared once, in CHAT_COUNTERS below: its field, its place on the
// SIGUSR1 line and its sample in /metrics all come from that row.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "chat/core/format.h"
#include "reactor/loop_lag.h"

namespace chat {

// Listeners a server may have: each front end's plain one and its TLS twin (chat/frontends/
// frontend.h). Stats::accepted is by listener, in the order the server gives their names.
inline constexpr size_t kMaxListeners = 16;

// The /metrics families of the counters, in the order /metrics shows them:
//   F(id, name, type, label key ("": one sample), help)
// Four have samples of their own besides the rows of CHAT_COUNTERS: connections_open (by front end,
// from Stats::sessions), accepted (by listener), refused's "other" sample, and loop_lag (a
// histogram per reactor); write_metrics writes those.
#define CHAT_METRIC_FAMILIES(F)                                                                                       \
  F(connections_open, "chat_connections_open", "gauge", "front", "Connections open, by front end (http: not a member)") \
  F(accepted, "chat_connections_accepted_total", "counter", "listener",                                               \
    "Connections accepted, by the listener they came in by (refused ones included)")                                 \
  F(refused, "chat_connections_refused_total", "counter", "reason",                                                   \
    "Connections closed at once, by the limit they met (other: --max-connections, or not registrable)")              \
  F(messages_in, "chat_messages_in_total", "counter", "", "Chat messages accepted for broadcast")                     \
  F(deliveries, "chat_deliveries_total", "counter", "", "Copies of messages and room events queued to members")       \
  F(bytes_in, "chat_bytes_in_total", "counter", "", "Bytes read from members")                                        \
  F(bytes_out, "chat_bytes_out_total", "counter", "", "Bytes queued to members")                                      \
  F(errors, "chat_errors_total", "counter", "code", "Bad input answered with an error or dropped, by kind")            \
  F(closes, "chat_closes_total", "counter", "reason", "Connections the server closed, by reason")                     \
  F(linger_resets, "chat_linger_resets_total", "counter", "",                                                         \
    "Closes (for any reason) ended by a reset: the peer went on sending past the lingering close's budget")          \
  F(tls_failures, "chat_tls_handshake_failures_total", "counter", "reason",                                          \
    "TLS connections closed before their handshake was over, by why")                                                \
  F(wrong_protocol, "chat_wrong_protocol_total", "counter", "",                                                       \
    "Connections closed for speaking plain text to a TLS port or TLS to a plain one")                                \
  F(auth, "chat_auth_total", "counter", "result",                                                                     \
    "With --auth-secret: members admitted with a token, and connections closed for a missing or bad one")            \
  F(rate_limited, "chat_rate_limited_total", "counter", "",                                                           \
    "Requests refused over --message-rate (messages, joins, leaves, history ...)")                                   \
  F(presence_held, "chat_presence_held_total", "counter", "",                                                         \
    "Joins and leaves a room did not hear at once: one member's churn, coalesced")                                   \
  F(joins_refused, "chat_joins_refused_total", "counter", "limit", "Joins refused by a server limit, by limit")       \
  F(http_requests, "chat_http_requests_total", "counter", "", "HTTP requests answered")                               \
  F(http_errors, "chat_http_errors_total", "counter", "", "HTTP requests answered 4xx or 5xx, unparsable ones included") \
  F(ws_upgrades, "chat_websocket_upgrades_total", "counter", "", "WebSocket handshakes accepted")                     \
  F(acks, "chat_acks_total", "counter", "", "Publishes with an id acknowledged (stored, or seen before)")             \
  F(not_stored, "chat_not_stored_total", "counter", "", "Publishes with an id the store could not keep")             \
  F(recoveries, "chat_recoveries_total", "counter", "result", "Joins with since, by outcome")                         \
  F(replayed, "chat_replayed_total", "counter", "", "Messages sent by recoveries")                                    \
  F(history_reads, "chat_history_reads_total", "counter", "", "History requests answered")                            \
  F(rooms, "chat_rooms", "gauge", "", "Rooms with members")                                                           \
  F(members, "chat_members", "gauge", "", "Memberships (a member in three rooms counts three)")                       \
  F(loop_lag, "chat_loop_lag_seconds", "histogram", "",                                                               \
    "How late each reactor ran a probe timer due every 100 ms (its busy time and the wait's rounding)")

// Every counter, in the order of the SIGUSR1 line:
//   C(field, group, key, family, label): a uint64_t field of Stats (summed over the shards), shown
//     as "key=N" in `group` of the line ("" : not shown by this table; a row whose group is not the
//     previous row's starts "; group"), and as a sample of /metrics family `family` with `label`
//     as the value of the family's label ("" for a family of one sample; family none: no sample).
//   M(field, family, label): one more /metrics sample of a field above, placed here among its
//     family's samples (a family's samples come in the order of the rows).
// Adding a counter: a row here (and, for a family of its own, a row of CHAT_METRIC_FAMILIES), and
// its line in docs/OPERATIONS.md's metrics table. The line's first group (connections) is written
// by Stats::to_string itself: it shows sums and Stats::sessions.
#define CHAT_COUNTERS(C, M)                                                                                             \
  C(connections_open, "", "", none, "")                   /* connections open now */                                    \
  C(connections_refused, "", "", none, "")                /* over a limit (any of them), or not registrable */          \
  C(messages_in, "messages", "in", messages_in, "")       /* chat messages accepted for broadcast */                    \
  C(deliveries, "messages", "delivered", deliveries, "")  /* message copies queued to members (by reference) */         \
  C(bytes_in, "bytes", "in", bytes_in, "")                                                                              \
  C(bytes_out, "bytes", "out", bytes_out, "")             /* bytes queued to members */                                 \
  C(errors_json, "errors", "json", errors, "json")        /* malformed JSON */                                          \
  C(errors_utf8, "errors", "utf8", errors, "utf8")        /* invalid UTF-8 */                                           \
  C(errors_too_long, "errors", "too_long", errors, "too_long")  /* frames over max_frame */                             \
  C(errors_request, "errors", "request", errors, "request")     /* missing/mistyped fields, unknown types, bad names */ \
  C(errors_garbage, "errors", "garbage", errors, "garbage")     /* bytes outside any object (article dialect) */        \
  C(slow_consumer_closes, "closed", "slow_consumer", closes, "slow_consumer")                                           \
  C(unsynced_closes, "closed", "unsynced", closes, "unsynced")  /* streams that could not be resynchronised */          \
  /* WebSocket members closed for breaking the protocol (1002, 1003, 1007, 1009) */                                     \
  C(ws_protocol_closes, "closed", "ws_protocol", closes, "ws_protocol")                                                 \
  /* WebSocket members closed for pinging on while their pongs went unread */                                          \
  C(ping_flood_closes, "closed", "ping_flood", closes, "ping_flood")                                                    \
  /* closes (any reason) reset for going on sending past the lingering close's budget */                                \
  C(linger_resets, "closed", "linger_resets", linger_resets, "")                                                        \
  C(http_requests, "http", "requests", http_requests, "")  /* HTTP requests answered (--http-port) */                   \
  C(http_errors, "http", "errors", http_errors, "")        /* of those, and unparsable ones: answered 4xx/5xx */        \
  C(http_timeouts, "http", "timeouts", closes, "http_timeout")  /* closed for a request not complete in time */         \
  C(ws_upgrades, "http", "websocket", ws_upgrades, "")     /* WebSocket handshakes accepted */                          \
  C(acks, "history", "acks", acks, "")                     /* publishes with an id acknowledged (stored, or seen) */    \
  C(not_stored, "history", "not_stored", not_stored, "")   /* publishes with an id the store could not take */          \
  C(recoveries, "history", "recovered", recoveries, "recovered")  /* joins with since: everything missed replayed */    \
  C(recoveries_failed, "history", "unrecovered", recoveries, "unrecovered")  /* joins with since not recovered */       \
  C(replayed, "history", "replayed", replayed, "")         /* messages sent by recoveries */                            \
  C(history_reads, "history", "reads", history_reads, "")  /* history requests answered */                              \
  C(irc_flood_closes, "irc", "flood", closes, "irc_flood")      /* IRC connections closed for excess flood */           \
  /* IRC connections closed unregistered or silent past their ping */                                                   \
  C(irc_timeouts, "irc", "timeouts", closes, "irc_timeout")                                                             \
  /* gauges filled in when the figures are collected (ChatServer::stats): rooms with members (counted at */             \
  /* their owners), memberships (a member in three rooms counts three) */                                               \
  C(rooms, "rooms", "count", rooms, "")                                                                                 \
  C(members, "rooms", "members", members, "")                                                                           \
  /* joins and leaves a room did not hear at once (one member's churn) */                                               \
  C(presence_coalesced, "rooms", "presence_held", presence_held, "")                                                    \
  C(rate_limited, "limits", "rate_limited", rate_limited, "")  /* requests refused over --message-rate */               \
  /* connections closed for going on past it (--message-burst refusals in a row) */                                     \
  C(rate_limit_closes, "limits", "rate_closes", closes, "rate_limit")                                                   \
  /* connections closed for a frame begun and not ended in --frame-timeout-ms */                                        \
  C(frame_timeouts, "limits", "frame_timeouts", closes, "frame_timeout")                                                \
  /* of the refused: over --max-connections-per-address, over --connect-rate from one address */                        \
  C(refused_per_address, "limits", "refused_address", refused, "per_address")                                          \
  C(refused_connect_rate, "limits", "refused_rate", refused, "connect_rate")                                            \
  /* joins refused: the room had --max-room-members; the process had --max-server-rooms rooms */                        \
  C(refused_room_members, "limits", "room_full", joins_refused, "room_members")                                         \
  C(refused_server_rooms, "limits", "server_rooms_full", joins_refused, "server_rooms")                                 \
  /* TLS connections closed before their handshake was over (refused, broken, the peer left) */                         \
  C(tls_failures, "tls", "failed", none, "")                                                                            \
  /* TLS connections closed for a handshake not over in --tls-handshake-timeout-ms */                                   \
  C(tls_timeouts, "tls", "timeouts", tls_failures, "timeout")                                                           \
  M(tls_failures, tls_failures, "other")                                                                                \
  /* plain text to a TLS port, or a TLS handshake to a plain one: closed */                                             \
  C(wrong_protocol, "tls", "wrong_protocol", wrong_protocol, "")                                                        \
  /* --auth-secret: members admitted with a token (welcomed, registered); connections closed */                         \
  /* unauthenticated (no token, or a bad one) */                                                                        \
  C(auth_accepted, "auth", "accepted", auth, "accepted")                                                                \
  C(auth_refused, "auth", "refused", closes, "unauthorized")                                                            \
  M(auth_refused, auth, "refused")

enum class MetricFamily : uint8_t {
#define CHAT_FAMILY_ID(id, name, type, key, help) id,
  CHAT_METRIC_FAMILIES(CHAT_FAMILY_ID)
#undef CHAT_FAMILY_ID
  none
};

struct Stats {
  std::array<uint64_t, kMaxListeners> accepted{};  // connections accepted, by listener (refused ones too)
  // Connections by the wire format they spoke (Format::id), each counted once, in its last format.
  std::array<uint64_t, kMaxFormats> sessions{};
#define CHAT_COUNTER_FIELD(field, group, key, family, label) uint64_t field = 0;
#define CHAT_COUNTER_NONE(field, family, label)
  CHAT_COUNTERS(CHAT_COUNTER_FIELD, CHAT_COUNTER_NONE)
#undef CHAT_COUNTER_FIELD
#undef CHAT_COUNTER_NONE
  reactor::LatencyHistogram loop_lag;    // how late the shard's reactor ran its timers (--no-metrics: empty)

  uint64_t connections_accepted() const;

  std::string to_string() const;
  Stats& operator+=(const Stats& o);
};

// One row of CHAT_COUNTERS, for what renders them (the stats line, /metrics).
struct CounterRow {
  uint64_t Stats::* field;
  std::string_view group;  // "": not on the stats line (an M row, or the line's first group)
  std::string_view key;
  MetricFamily family;
  std::string_view label;
};
std::span<const CounterRow> counter_rows();

struct MetricFamilyInfo {
  std::string_view name, type, label_key, help;
};
const MetricFamilyInfo& metric_family(MetricFamily family);

}  // namespace chat
