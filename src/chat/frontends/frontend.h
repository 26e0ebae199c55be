// A front end as the server sees it: one record (FrontEnd) per front end, kept with the front end
// (frontends/<name>/registration.h), which the server loops over, the way nginx's mail module
// loops over its protocol records. A record says what the front end is called on each of its two
// listeners (plain and TLS), which wire formats it registers, how a connection of it gets its
// session, what it sweeps now and then, and what it tells its members when the server goes away.
// The server knows no front end by name: it opens the listeners the record names, hands each
// accepted connection to the front end's part on that shard (FrontEndPart), and counts, drains and
// stops connections the same way for all.
//
// Adding a front end: a folder under frontends/, its registration (a FrontEnd record and a
// FrontEndPart), the record in the server's list (server.cpp, front_ends()), its flags in
// apps/chat_server.cpp (ServedFrontEnd), and what docs/ARCHITECTURE.md's "Adding a front end" lists.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "chat/session/session.h"
#include "reactor/tcp_connection.h"

namespace chat {

// What a shard's server lends each front end it serves.
struct FrontEndShard {
  reactor::Reactor& reactor;
  size_t shard;
  SessionContext& sessions;
  // The server is stopping or draining: no new members (HTTP's /healthz says 503, /ws is refused).
  const bool& draining;
  // A connection that was not a member (FrontEndPart::connect said so) has become one (HTTP's
  // upgrade to WebSocket): from now on it is drained, stopped and swept as a member.
  std::function<void(uint64_t connection_id)> became_member;
  // GET /metrics: asks for the text, which comes back on this shard (null: --no-metrics).
  std::function<void(std::function<void(std::string)> done)> metrics;
};

// One front end on one shard: made by FrontEnd::make for each shard that serves it, destroyed
// with the shard's server (after its connections' sessions).
class FrontEndPart {
 public:
  virtual ~FrontEndPart() = default;

  // A connection accepted on one of the front end's listeners (or handed over by the shard that
  // accepted it): gives it its handler and starts it. True if it is a member (a Session) from the
  // start; false for one that serves requests first (HTTP), which may become a member later
  // (FrontEndShard::became_member). A connection that is not a member is neither drained nor swept
  // for frame timeouts; on a stop it goes on until the last member of its shard has gone.
  virtual bool connect(reactor::TcpConnection& conn) = 0;

  // How often sweep() is called on each connection of the front end (zero: never): keep-alives
  // and timeouts, one timer per shard rather than one per connection.
  virtual reactor::Clock::duration sweep_every() const { return {}; }
  virtual void sweep(reactor::ConnectionHandler& /*handler*/, reactor::Clock::time_point /*now*/) {}

  // The server goes away (`restart`: a drain, the member is told to come back; else a stop): a
  // member's last words (Session::going_away), then its connection closes once they have left.
  virtual void farewell(reactor::TcpConnection& conn, bool restart) {
    if (auto* session = dynamic_cast<Session*>(conn.handler())) session->going_away(restart);
    conn.close_after_flush(farewell_code(restart), farewell_reason(restart));
  }

  static reactor::CloseCode farewell_code(bool restart) {
    return restart ? reactor::CloseCode::kRestart : reactor::CloseCode::kShutdown;
  }
  static const char* farewell_reason(bool restart) { return restart ? "server draining" : "server shutting down"; }
};

struct FrontEnd {
  // Its listeners' names: the plain one's and its TLS twin's ("tcp" and "tls"): the stats'
  // listener label, and what ChatService::address is asked for.
  std::string_view name;
  std::string_view tls_name;
  // Constructs its wire formats, in a fixed order. The server calls every front end's, in the
  // order of its list, whether it serves it or not: the formats' ids order the stats line.
  void (*register_formats)();
  // Its listeners stay open through a drain and a stop, and its connections that are not members
  // go on, until the members are gone (HTTP: /healthz says 503 meanwhile).
  bool outlives_members = false;
  // It serves GET /metrics: each shard that serves it then probes its reactor's loop lag.
  bool serves_metrics = false;
  // Once per service, before the shards are built: what its shards share, made from its options
  // (ServedFrontEnd::options). Null: the options themselves.
  std::shared_ptr<const void> (*prepare)(const std::shared_ptr<const void>& options) = nullptr;
  // Its part on one shard; `shared` is what prepare made.
  std::unique_ptr<FrontEndPart> (*make)(const FrontEndShard& shard, const void* shared) = nullptr;
};

// A front end a service serves (ServiceOptions::fronts): where, and with what options, as its
// registration's serve_* function makes them from the flags.
struct ServedFrontEnd {
  const FrontEnd* front = nullptr;
  uint16_t port = 0;      // its plain listener's (0: any free port)
  uint16_t tls_port = 0;  // its TLS twin's, with a certificate (ServiceOptions::tls)
  std::shared_ptr<const void> options;  // the front end's own type (see its registration)
};

}  // namespace chat
