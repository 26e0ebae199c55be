// Queries: NAMES, WHO, WHOIS, WHOWAS, LIST, ISON, USERHOST, LUSERS, MOTD, and AWAY.
#include "chat/frontends/irc/irc.h"

#include <algorithm>

#include "chat/frontends/irc/lines.h"
#include "chat/frontends/irc/modes.h"
#include "chat/session/session.h"

namespace chat {

void IrcCodec::whois(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "431", ":No nickname given");
  std::string target = m.params.back();  // WHOIS [server] nick
  session.ask_member(target, [this, target](Session& s, const std::optional<MemberInfo>& info) {
    std::string out;
    std::string nick = irc_display_nick(info ? info->name : target.substr(0, 32));
    if (!info) {
      out = numeric_line(s, "401", nick + " :No such nick/channel");
    } else {
      Shown who = shown(s, info->name);
      out = numeric_line(s, "311", nick + " " + who.user + " " + host_of(info->front) + " * :" + who.realname);
      std::string rest = numeric_line(s, "312", nick + " " + options_.server_name + " :" + host_of(info->front) + " front end");
      if (who.oper) rest += numeric_line(s, "313", nick + " :is an IRC operator");
      if (!info->away.empty()) rest += numeric_line(s, "301", nick + " :" + info->away);
      rest += numeric_line(s, "318", nick + " :End of /WHOIS list.");
      // The channels with the member's prefix in each (@#chan), from their owners.
      std::vector<std::string> rooms = info->rooms;
      s.ask_member_modes(info->name, rooms, [this, nick, rooms, out, rest](Session& later,
                                                                          const std::vector<MemberModes>& modes) mutable {
        std::string chans;
        for (size_t i = 0; i < rooms.size(); ++i) {
          std::string c = irc_prefix(modes[i], caps_ & kMultiPrefix) + channel(rooms[i]);
          if (!chans.empty() && numeric_line(later, "319", nick + " :" + chans + " " + c).size() > kMaxLine) {
            out += numeric_line(later, "319", nick + " :" + chans);
            chans.clear();
          }
          chans += (chans.empty() ? "" : " ") + c;
        }
        if (!chans.empty()) out += numeric_line(later, "319", nick + " :" + chans);
        later.reply(std::make_shared<const std::string>(out + rest));
      });
      return;
    }
    out += numeric_line(s, "318", nick + " :End of /WHOIS list.");
    s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

void IrcCodec::away(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) {
    if (rare_) rare_->away.clear();
    trim_rare();
    publish_flags(session);
    return numeric(session, "305", ":You are no longer marked as being away");
  }
  rare().away = utf8_prefix(m.params[0], kAwayLength);
  publish_flags(session);
  numeric(session, "306", ":You have been marked as being away");
}

void IrcCodec::whowas(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) return numeric(session, "431", ":No nickname given");
  std::string nick = echoed(m.params[0], 32);
  // A count of zero, a negative one or none: every entry kept.
  size_t max = ShardTable::kPastNames;
  if (m.params.size() > 1) {
    long count = std::strtol(m.params[1].c_str(), nullptr, 10);
    if (count > 0) max = std::min<size_t>(static_cast<size_t>(count), ShardTable::kPastNames);
  }
  std::string out;
  std::vector<ShardTable::PastName> past = session.past_names(m.params[0], max);
  for (const ShardTable::PastName& p : past) {
    std::string n = irc_display_nick(p.name);
    std::string user = p.user.empty() ? n : p.user;
    std::string realname = p.realname.empty() ? n : p.realname;
    out += numeric_line(session, "314", n + " " + user + " " + host_of(p.front) + " * :" + realname);
    time_t secs = static_cast<time_t>(p.gone_ms / 1000);
    struct tm t;
    gmtime_r(&secs, &t);
    char when[64];
    std::strftime(when, sizeof when, "%a %b %d %H:%M:%S %Y UTC", &t);
    out += numeric_line(session, "312", n + " " + options_.server_name + " :" + when);
  }
  if (past.empty()) out += numeric_line(session, "406", nick + " :There was no such nickname");
  out += numeric_line(session, "369", nick + " :End of WHOWAS");
  send_line(session, std::move(out));
}

void IrcCodec::ison(Session& session, const irc::Message& m) {
  std::string online;
  for (const std::string& p : m.params) {
    size_t pos = 0;
    while (pos < p.size()) {  // "ISON a b" or "ISON :a b"
      size_t end = p.find(' ', pos);
      std::string nick = p.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? p.size() : end + 1;
      if (nick.empty() || !valid_irc_nick(nick)) continue;
      if (auto h = session.find_name(nick)) online += (online.empty() ? "" : " ") + nick;
    }
  }
  numeric(session, "303", ":" + online);
}

void IrcCodec::userhost(Session& session, const irc::Message& m) {
  std::string reply;
  for (size_t i = 0; i < m.params.size() && i < 5; ++i) {
    const std::string& nick = m.params[i];
    if (!valid_irc_nick(nick)) continue;
    if (auto h = session.find_name(nick)) {
      std::string user = h->user.empty() ? nick : h->user;
      reply += (reply.empty() ? "" : " ") + nick + (h->oper ? "*" : "") + "=" + (h->away ? "-" : "+") + user + "@" +
               host_of(h->front);
    }
  }
  numeric(session, "302", ":" + reply);
}

std::string IrcCodec::names_entry(Session& session, const MemberModes& modes, const std::string& name) const {
  std::string entry = irc_prefix(modes, caps_ & kMultiPrefix) + irc_display_nick(name);
  if (caps_ & kUserhostInNames) {
    Shown who = shown(session, name);
    entry += "!" + who.user + "@" + host_of(who.front);
  }
  return entry;
}

void IrcCodec::names_reply(Session& session, const std::string& room, const std::vector<std::string>& names,
                           bool listed, size_t count, std::string& out) const {
  std::string head = "= " + channel(room) + " :";
  std::string line;
  auto flush = [&] {
    if (!line.empty()) out += numeric_line(session, "353", head + line);
    line.clear();
  };
  size_t room_for_names = kMaxLine - 2 - numeric_line(session, "353", head).size();
  for (const std::string& nick : names) {
    if (!line.empty() && line.size() + 1 + nick.size() > room_for_names) flush();
    if (!line.empty()) line += ' ';
    line += nick;
  }
  flush();
  out += numeric_line(session, "366", channel(room) + " :End of /NAMES list.");
  if (!listed) {
    out += ":" + options_.server_name + " NOTICE " + session.name() + " :" + channel(room) + " has " +
           std::to_string(count) + " members: too many to list or to follow their comings and goings\r\n";
  }
}

void IrcCodec::names(Session& session, const irc::Message& m) {
  std::string room;
  if (m.params.empty() || !room_of(m.params[0], room)) {
    std::string chan = m.params.empty() ? "*" : echoed(m.params[0], 65);
    return numeric(session, "366", chan + " :End of /NAMES list.");
  }
  session.ask_room(room, [room, this](Session& s, const RoomSnapshot& snap) {
    std::vector<std::string> names;
    for (const RoomMemberInfo& mi : snap.members) names.push_back(names_entry(s, mi.modes, mi.name));
    std::string out;
    names_reply(s, room, names, snap.listed || snap.count == 0, snap.count, out);
    s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

std::string IrcCodec::who_line(Session& session, const std::string& chan, const std::string& name,
                               const std::string& front, const std::string& prefixes) const {
  Shown who = shown(session, name);
  return numeric_line(session, "352", chan + " " + who.user + " " + host_of(front) + " " + options_.server_name + " " +
                                          irc_display_nick(name) + (who.away ? " G" : " H") + (who.oper ? "*" : "") +
                                          prefixes + " :0 " + who.realname);
}

void IrcCodec::who(Session& session, const irc::Message& m) {
  std::string mask = m.params.empty() ? "*" : m.params[0];
  std::string room;
  if (!room_of(mask, room) && mask.find_first_of("*?") != std::string::npos) {
    // WHO mask: the members whose nicks match it, from every reactor.
    session.ask_members(mask, kMaxWho, [mask, this](Session& s, std::vector<MemberInfo> found) {
      std::sort(found.begin(), found.end(), [](const MemberInfo& a, const MemberInfo& b) { return a.name < b.name; });
      std::string out;
      for (const MemberInfo& info : found) out += who_line(s, "*", info.name, info.front, "");
      out += numeric_line(s, "315", echoed(mask, 65) + " :End of /WHO list.");
      s.reply(std::make_shared<const std::string>(std::move(out)));
    });
    return;
  }
  if (!room_of(mask, room)) {
    // WHO nick: that member, if a name.
    session.ask_member(mask, [this, mask](Session& s, const std::optional<MemberInfo>& info) {
      std::string out;
      if (info) out = who_line(s, "*", info->name, info->front, "");
      out += numeric_line(s, "315", irc_display_nick(info ? info->name : mask.substr(0, 65)) + " :End of /WHO list.");
      s.reply(std::make_shared<const std::string>(std::move(out)));
    });
    return;
  }
  session.ask_room(room, [room, this](Session& s, const RoomSnapshot& snap) {
    std::string out;
    for (const RoomMemberInfo& mi : snap.members) out += who_line(s, channel(room), mi.name, mi.front, irc_prefix(mi.modes, caps_ & kMultiPrefix));
    out += numeric_line(s, "315", channel(room) + " :End of /WHO list.");
    s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

void IrcCodec::list(Session& session, const irc::Message& m) {
  std::vector<std::string> only;
  if (!m.params.empty()) {
    std::string_view l = m.params[0];
    std::string room;
    while (!l.empty()) {
      size_t comma = l.find(',');
      if (room_of(l.substr(0, comma), room)) only.push_back(room);
      l = comma == std::string_view::npos ? std::string_view() : l.substr(comma + 1);
    }
  }
  session.ask_rooms(kMaxListed, [only, this](Session& s, std::vector<RoomCount> rooms) {
    // A secret channel (+s) is listed to its members only.
    std::erase_if(rooms, [&](const RoomCount& r) { return r.secret && !s.in_room(r.room); });
    std::sort(rooms.begin(), rooms.end(), [](const RoomCount& a, const RoomCount& b) { return a.room < b.room; });
    std::string out = numeric_line(s, "321", "Channel :Users  Name");
    for (const RoomCount& r : rooms) {
      if (!only.empty() && std::find(only.begin(), only.end(), r.room) == only.end()) continue;
      out += numeric_line(s, "322", channel(r.room) + " " + std::to_string(r.count) + " :");
    }
    out += numeric_line(s, "323", ":End of /LIST");
    s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

void IrcCodec::lusers(Session& session) {
  size_t users = session.names_held();
  std::string peak = std::to_string(std::max(users, session.names_peak()));
  std::string now = std::to_string(users);
  numeric(session, "251", ":There are " + now + " users and 0 invisible on 1 servers");
  numeric(session, "255", ":I have " + now + " clients and 0 servers");
  numeric(session, "265", now + " " + peak + " :Current local users " + now + ", max " + peak);
  numeric(session, "266", now + " " + peak + " :Current global users " + now + ", max " + peak);
}

void IrcCodec::motd(Session& session) {
  if (options_.motd.empty()) return numeric(session, "422", ":MOTD File is missing");
  numeric(session, "375", ":- " + options_.server_name + " Message of the day - ");
  for (const std::string& line : options_.motd) numeric(session, "372", ":- " + line);
  numeric(session, "376", ":End of /MOTD command.");
}

}  // namespace chat
