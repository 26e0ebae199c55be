// Codec: one connection's wire protocol. It frames the bytes that arrive, turns each frame into
// requests on its Session (join, leave, publish, reply, ...), and renders the session's own answers.
// Room events are rendered by the codec's Format (chat/core/format.h), once per format, not per
// connection. A session is a codec over a transport; the codec never sees the transport.
//
// Adding a dialect is adding a Format and a Codec: neither the hub nor the session changes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/core/format.h"
#include "chat/core/hub.h"
#include "chat/core/store.h"
#include "chat/session/framing.h"

namespace chat {

class Session;

class Codec {
 public:
  virtual ~Codec() = default;

  // The format this connection's room events are rendered in.
  virtual const Format& format() const = 0;
  // The connection opened (the article's dialect joins the lobby here).
  virtual void start(Session& /*session*/) {}
  // The next frame in `input` (a view of the connection's unread bytes; a FrameResult as the
  // framers of chat/session/framing.h give it).
  virtual FrameResult next_frame(std::string_view input) = 0;
  // One complete frame. Returns the codec that handles the connection from the next frame on, if
  // this frame hands it over (the TCP port decides its dialect on the first object); else null.
  virtual std::unique_ptr<Codec> on_frame(Session& session, std::string_view frame) = 0;
  // The framer skipped bytes (`status` kGarbage, `skipped` the bytes), discarded an overlong frame
  // (kTooLong), or gave the stream up (kLost; the session then closes the connection).
  virtual void on_bad_frame(Session& session, const FrameResult& result, std::string_view skipped) = 0;
  // The answer to a join that asked for one (Session::join). `recovered`: set for a join that asked
  // to recover what it missed (Session::join_since). Null: this dialect has no such answer.
  virtual reactor::SharedBytes joined(Session& session, const std::string& room, const JoinReply& reply,
                                      std::optional<bool> recovered) = 0;
  // The answer to a publish with an id (Session::publish): stored as `seq`, or not stored.
  virtual reactor::SharedBytes acked(const std::string& /*room*/, const std::string& /*id*/, uint64_t /*seq*/,
                                     bool /*stored*/) {
    return nullptr;
  }
  // The answer to a history request (Session::history).
  virtual reactor::SharedBytes history(const std::string& /*room*/, const std::string& /*epoch*/,
                                       const ReadResult& /*result*/) {
    return nullptr;
  }
  // The connection closed.
  virtual void on_close(Session& /*session*/) {}
  // Why the member is going, if it said (IRC's QUIT): its rooms are told.
  virtual std::string quit_reason() const { return {}; }
  // A message to this member alone (Hub::direct): shown, or not taken by this dialect.
  virtual DirectResult direct(Session& /*session*/, const DirectMessage& /*message*/) {
    return {DirectResult::kNotTaken, {}, {}, {}};
  }
  // A server operator `by` closes this member's connection, saying `reason`: the codec's last words
  // (null: none); the session then departs and closes.
  virtual reactor::SharedBytes killed(Session& /*session*/, const std::string& /*by*/, const std::string& /*reason*/) {
    return nullptr;
  }
  // The messages replayed to the member when it joined `room` (Session::join_recent), rendered as
  // the codec shows history; null: each as if it came live.
  virtual reactor::SharedBytes replay(Session& /*session*/, const std::string& /*room*/,
                                      const std::vector<StoredMessage>& /*messages*/) {
    return nullptr;
  }
  // The member's away message ("" if not away).
  virtual std::string away() const { return {}; }
  // The room's owner refused a join of this member (it is not in the room), or a message of it
  // (Member::join_refused, publish_refused); an operator removed it from a room (Member::removed).
  virtual reactor::SharedBytes join_refused(Session& /*session*/, const std::string& /*room*/, Refusal /*why*/) {
    return nullptr;
  }
  virtual reactor::SharedBytes publish_refused(Session& /*session*/, const std::string& /*room*/, Refusal /*why*/,
                                               const std::string& /*id*/) {
    return nullptr;
  }
  virtual void removed(Session& /*session*/, const std::string& /*room*/) {}
  // The server is going away: stopping, or with `restart` draining (the member should connect
  // again, to another node or to this one restarted). This dialect's last words before the close
  // (a reconnect request, IRC's ERROR), or null.
  virtual reactor::SharedBytes going_away(Session& /*session*/, bool /*restart*/) { return nullptr; }

  // A codec that looks at its connection's deliveries, holds input back or keeps timeouts says so
  // here (asked when the session takes the codec): the others pay no call per delivery or frame.
  virtual bool has_hooks() const { return false; }
  // A room event for this connection: false drops it (IRC: a member's own message when it did not
  // ask for echoes; events of a channel whose JOIN has not been answered yet).
  virtual bool accept(Session& /*session*/, const RoomEvent& /*event*/) { return true; }
  // Before each frame (`buffered`: the bytes not yet handled): true holds the rest back for now (a
  // flood penalty; the codec asks Session::redeliver_after when to go on) or gives up (closing).
  virtual bool hold_input(Session& /*session*/, size_t /*buffered*/) { return false; }
  // The room's owner counted this member in `room` (its answer to a join arrived): the room's
  // events from now on are this member's, whether its joined() answer is sent now or after a replay.
  virtual void counted(Session& /*session*/, const std::string& /*room*/) {}
  // About once a second, from the server's sweep over the connections that asked for it.
  virtual void tick(Session& /*session*/, reactor::Clock::time_point /*now*/) {}
};

}  // namespace chat
