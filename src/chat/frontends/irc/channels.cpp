// Channels and messages: JOIN, PART, PRIVMSG and NOTICE (to channels and nicks), TOPIC, KICK,
// INVITE, the owner's refusals, and which room events are this member's.
#include "chat/frontends/irc/irc.h"

#include <algorithm>

#include "chat/core/event.h"
#include "chat/frontends/irc/lines.h"
#include "chat/frontends/irc/modes.h"
#include "chat/session/session.h"

namespace chat {

// ---- Channels -----------------------------------------------------------------------------------

bool IrcCodec::pending(const std::string& room) const {
  return std::find(pending_.begin(), pending_.end(), room) != pending_.end();
}

void IrcCodec::join(Session& session, const irc::Message& m) {
  if (m.params[0] == "0") {  // leave every channel
    std::vector<std::string> rooms = session.rooms();
    for (const std::string& room : rooms) {
      if (session.leave(room) == HubError::kNone) send_line(session, self_source(session) + " PART #" + room + "\r\n");
    }
    pending_.clear();
    return;
  }
  std::string_view list = m.params[0];
  std::string_view keys = m.params.size() > 1 ? std::string_view(m.params[1]) : std::string_view();
  std::string room;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view chan = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    size_t key_comma = keys.find(',');
    std::string key(keys.substr(0, key_comma));  // the keys go with the channels, in order
    keys = key_comma == std::string_view::npos ? std::string_view() : keys.substr(key_comma + 1);
    if (chan.empty()) continue;
    if (!room_of(chan, room)) {
      ++session.stats().errors_request;
      numeric(session, "403", echoed(chan, 65) + " :No such channel");
      continue;
    }
    if (session.in_room(room)) continue;
    if (session.rooms().size() >= session.limits().max_rooms) {
      ++session.stats().errors_request;
      numeric(session, "405", channel(room) + " :You have joined too many channels");
      continue;
    }
    // The owner answers through joined(): JOIN, then the names (at once, inside join(), when this
    // shard owns the room: pending before the call).
    pending_.push_back(room);
    // A client that shows when a message was said is given the room's last messages first (one
    // that asks for history itself is not).
    bool playback = options_.playback > 0 && (caps_ & (kServerTime | kMessageTags)) && !(caps_ & kChathistory);
    // Once: the store keeps, per nick and channel, the last number this nick was sent (Store's read
    // marks), and only what is newer is played back.
    HubError e = playback ? session.join_recent(room, options_.playback, key, ShardTable::fold_name(session.name()))
                          : session.join(room, true, key);
    if (e != HubError::kNone) std::erase(pending_, room);
  }
}

reactor::SharedBytes IrcCodec::joined(Session& session, const std::string& room, const JoinReply& reply,
                                      std::optional<bool>) {
  std::erase(pending_, room);
  std::string out;
  if (tags_ != IrcTags::kNone) out = "@time=" + iso_time(now_ms()) + " ";
  out += self_source(session) + " JOIN " + channel(room) + "\r\n";
  if (reply.topic && !reply.topic->empty()) topic_reply(session, room, *reply.topic, *reply.topic_by, reply.topic_at, out);
  // The room's named members if it is small enough to list them; else the member alone.
  std::vector<std::string> names;
  if (reply.names) {
    names.reserve(reply.names->size());
    for (size_t i = 0; i < reply.names->size(); ++i) {
      MemberModes modes = reply.modes && i < reply.modes->size() ? (*reply.modes)[i] : MemberModes{};
      names.push_back(names_entry(session, modes, (*reply.names)[i]));
    }
  } else {
    names.push_back(names_entry(session, {}, session.name()));
  }
  names_reply(session, room, names, reply.names != nullptr, reply.count, out);
  return std::make_shared<const std::string>(std::move(out));
}

void IrcCodec::topic_reply(Session& session, const std::string& room, const std::string& topic, const std::string& by,
                           int64_t at, std::string& out) const {
  out += numeric_line(session, "332", channel(room) + " :" + topic);
  out += numeric_line(session, "333", channel(room) + " " + irc_display_nick(by) + " " + std::to_string(at / 1000));
}

namespace {
// The numeric and the rest of its line for a refusal about `about` (a nick, a mode's parameter or
// unknown letter; `mode`: the mode refused) in channel `chan`.
std::pair<const char*, std::string> refusal_line(Refusal why, const std::string& about, RoomMode mode,
                                                 const std::string& chan) {
  switch (why) {
    case Refusal::kNotInRoom: return {"442", chan + " :You're not on that channel"};
    case Refusal::kNotOperator: return {"482", chan + " :You're not channel operator"};
    case Refusal::kNoSuchMember: return {"441", echoed(about, 32) + " " + chan + " :They aren't on that channel"};
    case Refusal::kAlreadyInRoom: return {"443", irc_display_nick(about) + " " + chan + " :is already on channel"};
    case Refusal::kInviteOnly: return {"473", chan + " :Cannot join channel (+i)"};
    case Refusal::kBadKey: return {"475", chan + " :Cannot join channel (+k)"};
    case Refusal::kFull: return {"471", chan + " :Cannot join channel (+l)"};
    case Refusal::kBanned: return {"474", chan + " :Cannot join channel (+b)"};
    case Refusal::kModerated: return {"404", chan + " :Cannot send to channel (+m)"};
    case Refusal::kUnknownMode: return {"472", about + " :is unknown mode char to me"};
    case Refusal::kNeedsParameter: return {"461", std::string("MODE :Not enough parameters (+") + irc_mode_letter(mode) + ")"};
    case Refusal::kTooManyBans: return {"478", chan + " :Channel ban list is full"};
    case Refusal::kRoomLimit: return {"471", chan + " :Cannot join channel (channel is full)"};
    case Refusal::kServerRooms: return {"405", chan + " :Cannot join channel (the server has too many channels)"};
    case Refusal::kIdReused: return {"404", chan + " :Cannot send to channel (a message id used for another message)"};
    case Refusal::kNoSuchRoom: return {"403", chan + " :No such channel"};
    case Refusal::kNoExternal: return {"404", chan + " :Cannot send to channel"};
    case Refusal::kBadParameter:
      if (mode == RoomMode::kKey) return {"525", chan + " :Key is not well-formed"};
      return {"696", chan + " " + std::string(1, irc_mode_letter(mode)) + " " + echoed(about, 32) + " :Invalid mode parameter"};
    case Refusal::kNone: break;
  }
  return {"400", chan + " :" + describe(why)};
}
}  // namespace

std::string IrcCodec::refusal(Session& session, const PolicyAnswer::Refused& r, const std::string& room) const {
  // Nobody in the room by that name: 401 if nobody holds the name at all.
  if (r.why == Refusal::kNoSuchMember && !session.find_name(r.about)) {
    return numeric_line(session, "401", echoed(r.about, 32) + " :No such nick/channel");
  }
  auto [code, rest] = refusal_line(r.why, r.about, r.mode, channel(room));
  return numeric_line(session, code, rest);
}

reactor::SharedBytes IrcCodec::join_refused(Session& session, const std::string& room, Refusal why) {
  std::erase(pending_, room);
  return std::make_shared<const std::string>(refusal(session, {why, room}, room));
}

reactor::SharedBytes IrcCodec::publish_refused(Session& session, const std::string& room, Refusal why,
                                              const std::string&) {
  return std::make_shared<const std::string>(refusal(session, {why, room}, room));
}

void IrcCodec::removed(Session&, const std::string& room) { std::erase(pending_, room); }

void IrcCodec::part(Session& session, const irc::Message& m) {
  std::string reason = m.params.size() > 1 ? m.params[1].substr(0, 300) : std::string();
  std::string_view list = m.params[0];
  std::string room;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view chan = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (chan.empty()) continue;
    if (!room_of(chan, room)) {
      numeric(session, "403", echoed(chan, 65) + " :No such channel");
      continue;
    }
    if (session.leave(room, reason) != HubError::kNone) {
      numeric(session, "442", channel(room) + " :You're not on that channel");
      continue;
    }
    std::erase(pending_, room);
    send_line(session, self_source(session) + " PART " + channel(room) + (reason.empty() ? "" : " :" + reason) + "\r\n");
  }
}

void IrcCodec::message(Session& session, const irc::Message& m, bool notice) {
  const char* cmd = notice ? "NOTICE" : "PRIVMSG";
  if (m.params.empty() || m.params[0].empty()) {
    if (!notice) numeric(session, "411", std::string(":No recipient given (") + cmd + ")");
    return;
  }
  if (m.params.size() < 2 || m.params[1].empty()) {
    if (!notice) numeric(session, "412", ":No text to send");
    return;
  }
  const std::string& text = m.params[1];
  std::string_view list = m.params[0];
  std::string room;
  size_t targets = 0;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view target = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (target.empty()) continue;
    if (++targets > kMaxTargets) {
      if (!notice) numeric(session, "407", echoed(target, 65) + " :Too many targets");
      return;
    }
    if (target[0] == '#') {
      if (!room_of(target, room)) {
        if (!notice) numeric(session, "403", echoed(target, 65) + " :No such channel");
        continue;
      }
      // From outside the channel too: its owner sends it if the channel allows it (-n), else
      // refuses (404, or 403 if there is no such channel: IrcCodec::publish_refused).
      HubError e = session.publish(room, session.name(), text, {}, /*external=*/true, notice);
      if (e == HubError::kRateLimited) {
        if (!notice) numeric(session, "404", channel(room) + " :Cannot send to channel (too many messages)");
      } else if (e != HubError::kNone && !notice) {
        ++session.stats().errors_request;
        numeric(session, "404", channel(room) + " :Cannot send to channel");
      }
      continue;
    }
    send_direct(session, std::string(target), text, notice);
  }
}

void IrcCodec::send_direct(Session& session, std::string target, const std::string& text, bool notice) {
  DirectMessage dm{.from = session.name(), .front = "irc", .to = target, .text = text, .automatic = notice, .ts_ms = now_ms()};
  session.ask_direct(std::move(dm), [this, target, text, notice, ts = now_ms()](Session& s, const DirectResult& r) {
    std::string out;
    switch (r.status) {
      case DirectResult::kNoSuchName:
        if (!notice) out = numeric_line(s, "401", echoed(target, 32) + " :No such nick/channel");
        break;
      case DirectResult::kNotTaken:
        if (!notice) {
          out = ":" + options_.server_name + " NOTICE " + s.name() + " :" + irc_display_nick(r.name) + " is a " +
                host_of(r.front) + " member: messages to one member reach IRC members only\r\n";
        }
        break;
      case DirectResult::kDelivered:
        if (caps_ & kEchoMessage) {
          out = message_lines(tags_, self_source(s), notice ? "NOTICE" : "PRIVMSG", irc_display_nick(r.name), text, ts,
                              {}, 0);
        }
        if (!notice && !r.away.empty()) out += numeric_line(s, "301", irc_display_nick(r.name) + " :" + r.away);
        break;
    }
    if (!out.empty()) s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

DirectResult IrcCodec::direct(Session& session, const DirectMessage& m) {
  std::string target = session.name();
  if (m.bulletin) {
    if (registered_ && (oper() || (caps_ & kWallops))) {
      std::string lines;
      std::string scratch;
      std::string source = source_of(m.from, m.front);
      for (std::string_view piece : pieces(m.text, kMaxLine - 2 - source.size() - 10, scratch)) {
        lines += source + " WALLOPS :" + std::string(piece) + "\r\n";
      }
      session.push(std::make_shared<const std::string>(std::move(lines)));
    }
    return {DirectResult::kDelivered, {}, {}, {}};
  }
  if (m.invite) {
    session.push(std::make_shared<const std::string>(tag_prefix(tags_, m.ts_ms, {}, 0, 0) + source_of(m.from, m.front) +
                                                     " INVITE " + target + " " + channel(m.text) + "\r\n"));
    return {DirectResult::kDelivered, {}, {}, away()};
  }
  session.push(std::make_shared<const std::string>(message_lines(
      tags_, source_of(m.from, m.front), m.automatic ? "NOTICE" : "PRIVMSG", target, m.text, m.ts_ms, {}, 0)));
  return {DirectResult::kDelivered, {}, {}, away()};
}

void IrcCodec::topic(Session& session, const irc::Message& m) {
  std::string room;
  if (!room_of(m.params[0], room)) {
    return numeric(session, "403", echoed(m.params[0], 65) + " :No such channel");
  }
  if (!session.in_room(room)) {
    // 403 if the channel does not exist, 442 if it does.
    session.ask_room(room, [room, this](Session& s, const RoomSnapshot& snap) {
      s.reply(std::make_shared<const std::string>(
          snap.count == 0 ? numeric_line(s, "403", channel(room) + " :No such channel")
                          : numeric_line(s, "442", channel(room) + " :You're not on that channel")));
    });
    return;
  }
  if (m.params.size() == 1) {
    session.ask_room(room, [room, this](Session& s, const RoomSnapshot& snap) {
      std::string out;
      if (snap.topic.empty()) {
        out = numeric_line(s, "331", channel(room) + " :No topic is set");
      } else {
        topic_reply(s, room, snap.topic, snap.topic_by, snap.topic_at, out);
      }
      s.reply(std::make_shared<const std::string>(std::move(out)));
    });
    return;
  }
  PolicyRequest req;
  req.kind = PolicyRequest::kTopic;
  req.text = m.params[1].substr(0, kTopicLength);
  ask_owner(session, room, std::move(req));
}

void IrcCodec::ask_owner(Session& session, const std::string& room, PolicyRequest req) {
  session.ask_policy(room, std::move(req), [room, this](Session& s, const PolicyAnswer& a) {
    if (a.refusals.empty()) return;
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(s, r, room);
    s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

void IrcCodec::kick(Session& session, const irc::Message& m) {
  std::string room;
  if (!room_of(m.params[0], room)) {
    return numeric(session, "403", echoed(m.params[0], 65) + " :No such channel");
  }
  std::string reason = m.params.size() > 2 ? m.params[2].substr(0, 300) : std::string();
  std::string_view targets = m.params[1];
  size_t n = 0;
  while (!targets.empty() && n++ < kMaxTargets) {
    size_t comma = targets.find(',');
    std::string target(targets.substr(0, comma));
    targets = comma == std::string_view::npos ? std::string_view() : targets.substr(comma + 1);
    if (target.empty()) continue;
    PolicyRequest req;
    req.kind = PolicyRequest::kKick;
    req.target = target;
    req.text = reason;
    ask_owner(session, room, std::move(req));
  }
}

void IrcCodec::invite(Session& session, const irc::Message& m) {
  std::string target = m.params[0];
  std::string room;
  if (!room_of(m.params[1], room)) {
    return numeric(session, "403", echoed(m.params[1], 65) + " :No such channel");
  }
  if (!session.find_name(target)) return numeric(session, "401", echoed(target, 32) + " :No such nick/channel");
  PolicyRequest req;
  req.kind = PolicyRequest::kInvite;
  req.target = target;
  session.ask_policy(room, std::move(req), [room, target, this](Session& s, const PolicyAnswer& a) {
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(s, r, room);
    if (!out.empty()) return s.reply(std::make_shared<const std::string>(std::move(out)));
    s.reply(std::make_shared<const std::string>(numeric_line(s, "341", irc_display_nick(target) + " " + channel(room))));
    // The invitation itself, to the member invited (if it is on IRC).
    DirectMessage dm{.from = s.name(), .front = "irc", .to = target, .text = room, .automatic = false, .invite = true,
                     .ts_ms = now_ms()};
    s.tell(std::move(dm));
  });
}

bool IrcCodec::accept(Session& session, const RoomEvent& e) {
  if (!pending_.empty() && pending(e.room)) return false;  // sent before this member was counted
  switch (e.kind) {
    case EventKind::kMessage:
      // The member's own message comes back only to clients that asked (echo-message).
      return (caps_ & kEchoMessage) || e.front != "irc" || e.user != session.name();
    case EventKind::kJoin:
    case EventKind::kTopic:
    case EventKind::kMode:
    case EventKind::kKick: return true;
    case EventKind::kLeave:
    case EventKind::kRename: {
      if (e.kind == EventKind::kLeave && !e.quit) return true;
      // One QUIT or NICK line per member, however many rooms it shares with this one.
      uint64_t key = e.member * 2 + (e.kind == EventKind::kRename ? 1 : 0);
      if (e.kind == EventKind::kRename) key ^= std::hash<std::string>{}(e.text) << 1;
      if (std::find(recent_.begin(), recent_.end(), key) != recent_.end()) return false;
      recent_[recent_next_++ % recent_.size()] = key;
      return true;
    }
  }
  return true;
}

}  // namespace chat
