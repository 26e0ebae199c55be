// The chat server's counters: one set per shard, summed for SIGUSR1 and at exit.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "chat/core/format.h"
#include "reactor/loop_lag.h"

namespace chat {

// The listening sockets a connection may come in by: the three front ends' plain ports, then the
// same three over TLS (--tls-port, --https-port, --ircs-port), in the same order.
enum class Listener : uint8_t { kTcp, kHttp, kIrc, kTls, kHttps, kIrcs };
inline constexpr size_t kListeners = 6;
inline constexpr const char* kListenerNames[kListeners] = {"tcp", "http", "irc", "tls", "https", "ircs"};
// The plain listener of the same front end (kTls: kTcp), and whether a listener is TLS.
constexpr Listener plain_twin(Listener l) { return static_cast<Listener>(static_cast<uint8_t>(l) % 3); }
constexpr bool is_tls(Listener l) { return static_cast<uint8_t>(l) >= 3; }

struct Stats {
  std::array<uint64_t, kListeners> accepted{};  // connections accepted, by listener (refused ones too)
  uint64_t connections_open = 0;
  uint64_t connections_refused = 0;  // over a limit (any of them), or not registrable
  uint64_t refused_per_address = 0;  // of those: over --max-connections-per-address
  uint64_t refused_connect_rate = 0; // of those: over --connect-rate from one address
  // Connections by the wire format they spoke (Format::id), each counted once, in its last format.
  std::array<uint64_t, kMaxFormats> sessions{};
  uint64_t messages_in = 0;          // chat messages accepted for broadcast
  uint64_t deliveries = 0;           // message copies queued to members (by reference)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;            // bytes queued to members
  uint64_t errors_json = 0;          // malformed JSON
  uint64_t errors_utf8 = 0;          // invalid UTF-8
  uint64_t errors_too_long = 0;      // frames over max_frame
  uint64_t errors_request = 0;       // missing/mistyped fields, unknown types, bad names
  uint64_t errors_garbage = 0;       // bytes outside any object (article dialect)
  uint64_t slow_consumer_closes = 0;
  uint64_t unsynced_closes = 0;      // streams that could not be resynchronised
  uint64_t ws_protocol_closes = 0;   // WebSocket members closed for breaking the protocol (1002, 1003, 1007, 1009)
  uint64_t ping_flood_closes = 0;    // WebSocket members closed for pinging on while their pongs went unread
  uint64_t linger_resets = 0;        // closes (any reason) reset for going on sending past the lingering close's budget
  uint64_t http_requests = 0;        // HTTP requests answered (--http-port)
  uint64_t http_errors = 0;          // of those, and unparsable ones: answered 4xx/5xx
  uint64_t http_timeouts = 0;        // connections closed for a request not complete in time
  uint64_t ws_upgrades = 0;          // WebSocket handshakes accepted
  uint64_t acks = 0;                 // publishes with an id acknowledged (stored, or seen before)
  uint64_t not_stored = 0;           // publishes with an id the store could not take
  uint64_t recoveries = 0;           // joins with since: everything missed replayed
  uint64_t recoveries_failed = 0;    // joins with since that could not be recovered
  uint64_t replayed = 0;             // messages sent by recoveries
  uint64_t history_reads = 0;        // history requests answered
  uint64_t irc_flood_closes = 0;     // IRC connections closed for excess flood
  uint64_t irc_timeouts = 0;         // IRC connections closed unregistered or silent past their ping
  uint64_t rate_limited = 0;         // requests refused over --message-rate
  uint64_t presence_coalesced = 0;   // joins and leaves a room did not hear at once (one member's churn)
  uint64_t rate_limit_closes = 0;    // connections closed for going on past it (--message-burst refusals in a row)
  uint64_t refused_room_members = 0; // joins refused: the room had --max-room-members
  uint64_t refused_server_rooms = 0; // joins refused: the process had --max-server-rooms rooms
  uint64_t frame_timeouts = 0;       // connections closed for a frame begun and not ended in --frame-timeout-ms
  uint64_t tls_failures = 0;         // TLS connections closed before their handshake was over (refused, broken, the peer left)
  uint64_t tls_timeouts = 0;         // TLS connections closed for a handshake not over in --tls-handshake-timeout-ms
  uint64_t wrong_protocol = 0;       // plain text to a TLS port, or a TLS handshake to a plain one: closed
  uint64_t auth_accepted = 0;        // --auth-secret: members admitted with a token (welcomed, registered)
  uint64_t auth_refused = 0;         // connections closed unauthenticated (no token, or a bad one)
  // Gauges filled in when the figures are collected (ChatServer::stats).
  uint64_t rooms = 0;                // rooms with members (counted at their owners)
  uint64_t members = 0;              // memberships: a member in three rooms counts three
  reactor::LatencyHistogram loop_lag;    // how late the shard's reactor ran its timers (--no-metrics: empty)

  uint64_t connections_accepted() const;

  std::string to_string() const;
  Stats& operator+=(const Stats& o);
};

}  // namespace chat
