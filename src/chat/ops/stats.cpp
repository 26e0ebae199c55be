#include "chat/ops/stats.h"

#include <cstdio>

namespace chat {

uint64_t Stats::connections_accepted() const {
  uint64_t n = 0;
  for (uint64_t a : accepted) n += a;
  return n;
}

Stats& Stats::operator+=(const Stats& o) {
  for (size_t l = 0; l < kListeners; ++l) accepted[l] += o.accepted[l];
  connections_open += o.connections_open;
  connections_refused += o.connections_refused;
  refused_per_address += o.refused_per_address;
  refused_connect_rate += o.refused_connect_rate;
  for (size_t f = 0; f < kMaxFormats; ++f) sessions[f] += o.sessions[f];
  messages_in += o.messages_in;
  deliveries += o.deliveries;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  errors_json += o.errors_json;
  errors_utf8 += o.errors_utf8;
  errors_too_long += o.errors_too_long;
  errors_request += o.errors_request;
  errors_garbage += o.errors_garbage;
  slow_consumer_closes += o.slow_consumer_closes;
  unsynced_closes += o.unsynced_closes;
  ws_protocol_closes += o.ws_protocol_closes;
  ping_flood_closes += o.ping_flood_closes;
  linger_resets += o.linger_resets;
  http_requests += o.http_requests;
  http_errors += o.http_errors;
  http_timeouts += o.http_timeouts;
  ws_upgrades += o.ws_upgrades;
  acks += o.acks;
  not_stored += o.not_stored;
  recoveries += o.recoveries;
  recoveries_failed += o.recoveries_failed;
  replayed += o.replayed;
  history_reads += o.history_reads;
  irc_flood_closes += o.irc_flood_closes;
  irc_timeouts += o.irc_timeouts;
  rate_limited += o.rate_limited;
  presence_coalesced += o.presence_coalesced;
  rate_limit_closes += o.rate_limit_closes;
  frame_timeouts += o.frame_timeouts;
  tls_failures += o.tls_failures;
  tls_timeouts += o.tls_timeouts;
  wrong_protocol += o.wrong_protocol;
  auth_accepted += o.auth_accepted;
  auth_refused += o.auth_refused;
  refused_room_members += o.refused_room_members;
  refused_server_rooms += o.refused_server_rooms;
  rooms += o.rooms;
  members += o.members;
  loop_lag += o.loop_lag;
  return *this;
}

std::string Stats::to_string() const {
  // Sessions per format, by the formats' names: "(article=3 native=5)".
  std::string formats;
  for (size_t f = 0; f < Format::count(); ++f) {
    formats += (f == 0 ? "" : " ") + Format::by_id(static_cast<FormatId>(f)).name() + "=" + std::to_string(sessions[f]);
  }
  char line[2048];
  std::snprintf(
      line, sizeof line,
      "connections open=%llu accepted=%llu refused=%llu (%s); messages in=%llu "
      "delivered=%llu; bytes in=%llu out=%llu; errors json=%llu utf8=%llu too_long=%llu request=%llu "
      "garbage=%llu; closed slow_consumer=%llu unsynced=%llu ws_protocol=%llu ping_flood=%llu linger_resets=%llu; "
      "http requests=%llu errors=%llu timeouts=%llu "
      "websocket=%llu; history acks=%llu not_stored=%llu recovered=%llu unrecovered=%llu replayed=%llu "
      "reads=%llu; irc flood=%llu timeouts=%llu; rooms count=%llu members=%llu presence_held=%llu; limits rate_limited=%llu "
      "rate_closes=%llu frame_timeouts=%llu refused_address=%llu refused_rate=%llu room_full=%llu "
      "server_rooms_full=%llu; tls failed=%llu timeouts=%llu wrong_protocol=%llu; auth accepted=%llu refused=%llu",
      (unsigned long long)connections_open, (unsigned long long)connections_accepted(),
      (unsigned long long)connections_refused, formats.c_str(), (unsigned long long)messages_in,
      (unsigned long long)deliveries, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
      (unsigned long long)errors_json, (unsigned long long)errors_utf8,
      (unsigned long long)errors_too_long, (unsigned long long)errors_request,
      (unsigned long long)errors_garbage, (unsigned long long)slow_consumer_closes,
      (unsigned long long)unsynced_closes, (unsigned long long)ws_protocol_closes,
      (unsigned long long)ping_flood_closes, (unsigned long long)linger_resets, (unsigned long long)http_requests, (unsigned long long)http_errors,
      (unsigned long long)http_timeouts, (unsigned long long)ws_upgrades, (unsigned long long)acks,
      (unsigned long long)not_stored, (unsigned long long)recoveries, (unsigned long long)recoveries_failed,
      (unsigned long long)replayed, (unsigned long long)history_reads, (unsigned long long)irc_flood_closes,
      (unsigned long long)irc_timeouts, (unsigned long long)rooms, (unsigned long long)members,
      (unsigned long long)presence_coalesced,
      (unsigned long long)rate_limited, (unsigned long long)rate_limit_closes, (unsigned long long)frame_timeouts,
      (unsigned long long)refused_per_address, (unsigned long long)refused_connect_rate,
      (unsigned long long)refused_room_members, (unsigned long long)refused_server_rooms,
      (unsigned long long)tls_failures, (unsigned long long)tls_timeouts, (unsigned long long)wrong_protocol,
      (unsigned long long)auth_accepted, (unsigned long long)auth_refused);
  return line;
}

}  // namespace chat
