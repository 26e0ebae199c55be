#include "chat/core/hub.h"

#include <algorithm>

namespace chat {

// ---- Hub: the owner's side of a room's policy (topic, modes and roles, kicks, invitations) --------

void Hub::owner_announce(const std::string& room, const OwnedRoom& r, RoomEvent event) {
  if (auto delivery = render(r, std::move(event))) owner_broadcast(room, r, delivery, 0);
}

PolicyAnswer Hub::owner_policy(const std::string& room, const std::string& name, uint64_t member_id,
                               const PolicyRequest& req) {
  PolicyAnswer answer;
  auto refuse = [&answer](Refusal why, std::string about = {}) {
    answer.refusals.push_back({why, std::move(about)});
    return answer;
  };
  auto it = owned_.find(room);
  if (it == owned_.end()) return refuse(Refusal::kNoSuchRoom, room);
  OwnedRoom& r = it->second;
  auto me = r.names.find(name);
  if (me == r.names.end() || me->second.id != member_id) return refuse(Refusal::kNotInRoom, room);
  bool op = me->second.modes.op;
  FormatId format = me->second.format;
  switch (req.kind) {
    case PolicyRequest::kTopic: {
      bool locked = !r.policy || r.policy->topic_locked;
      if (locked && !op) return refuse(Refusal::kNotOperator, room);
      RoomLog& log = logs_[room];
      log.topic = req.text;
      log.topic_by = name;
      log.topic_at = now_ms();
      owner_announce(room, r, member_event(EventKind::kTopic, room, name, req.text, format, member_id));
      return answer;
    }
    case PolicyRequest::kModes:
      owner_modes(room, r, name, format, req.modes, answer);
      return answer;
    case PolicyRequest::kKick: {
      if (!op) return refuse(Refusal::kNotOperator, room);
      auto* target = find_named(r, req.target);
      if (target == nullptr) return refuse(Refusal::kNoSuchMember, req.target);
      std::string target_name = target->first;
      NamedMember t = target->second;
      answer.target = target_name;
      // The member removed hears it too, then goes.
      RoomEvent kick = member_event(EventKind::kKick, room, name, req.text, format, member_id);
      kick.target = target_name;
      owner_announce(room, r, std::move(kick));
      r.names.erase(target_name);
      table_.run_on(t.shard, shard_, [&hub = table_.hub(t.shard), room, id = t.id] {
        if (Member* m = hub.drop_local(room, id)) m->removed(room);
      });
      owner_uncount(it, t.shard, t.format);
      return answer;
    }
    case PolicyRequest::kInvite: {
      bool invite_only = r.policy && r.policy->invite_only;
      if (invite_only && !op) return refuse(Refusal::kNotOperator, room);
      if (auto* target = find_named(r, req.target)) return refuse(Refusal::kAlreadyInRoom, target->first);
      if (!r.policy) r.policy = std::make_unique<RoomPolicy>();
      if (r.policy->invited.size() < RoomPolicy::kMaxBans) r.policy->invited.insert(ShardTable::fold_name(req.target));
      return answer;
    }
  }
  return answer;
}

void Hub::owner_modes(const std::string& room, OwnedRoom& r, const std::string& setter, FormatId format,
                      const std::vector<ModeChange>& changes, PolicyAnswer& answer) {
  if (!r.names.at(setter).modes.op) {
    answer.refusals.push_back({Refusal::kNotOperator, room});
    return;
  }
  if (!r.policy) r.policy = std::make_unique<RoomPolicy>();
  RoomPolicy& p = *r.policy;
  std::vector<ModeChange> applied;
  auto refuse = [&answer](Refusal why, const ModeChange& c) { answer.refusals.push_back({why, c.param, c.mode}); };
  // A flag of the room's, set or unset.
  auto flag = [&applied](bool& f, const ModeChange& c) {
    if (f == c.add) return;
    f = c.add;
    applied.push_back({c.mode, c.add, {}, {}});
  };
  for (const ModeChange& c : changes) {
    switch (c.mode) {
      case RoomMode::kOperator:
      case RoomMode::kVoice: {
        auto* target = find_named(r, c.param);
        if (target == nullptr) {
          answer.refusals.push_back({Refusal::kNoSuchMember, c.param});
          break;
        }
        bool& role = c.mode == RoomMode::kOperator ? target->second.modes.op : target->second.modes.voice;
        if (role == c.add) break;
        role = c.add;
        applied.push_back({c.mode, c.add, target->first, {}});
        break;
      }
      case RoomMode::kInviteOnly: flag(p.invite_only, c); break;
      case RoomMode::kModerated: flag(p.moderated, c); break;
      case RoomMode::kTopicLocked: flag(p.topic_locked, c); break;
      case RoomMode::kNoExternal: flag(p.no_external, c); break;
      case RoomMode::kSecret: flag(p.secret, c); break;
      case RoomMode::kKey:
        if (c.add && (c.param.empty() || c.param.find_first_of(" ,") != std::string::npos)) {
          refuse(c.param.empty() ? Refusal::kNeedsParameter : Refusal::kBadParameter, c);
        } else if (c.add) {
          p.key = c.param;
          applied.push_back({RoomMode::kKey, true, p.key, {}});
        } else if (!p.key.empty()) {
          p.key.clear();
          applied.push_back({RoomMode::kKey, false, {}, {}});
        }
        break;
      case RoomMode::kLimit:
        if (c.add) {
          size_t limit = 0;
          for (char ch : c.param) limit = (ch >= '0' && ch <= '9' && limit < 1000000) ? limit * 10 + (ch - '0') : 0;
          if (limit == 0) {
            refuse(c.param.empty() ? Refusal::kNeedsParameter : Refusal::kBadParameter, c);
            break;
          }
          p.limit = limit;
          applied.push_back({RoomMode::kLimit, true, std::to_string(limit), {}});
        } else if (p.limit != 0) {
          p.limit = 0;
          applied.push_back({RoomMode::kLimit, false, {}, {}});
        }
        break;
      case RoomMode::kBan: {
        auto found = std::find_if(p.bans.begin(), p.bans.end(), [&](const BanMask& b) { return b.same(c.ban); });
        if (c.add && found == p.bans.end()) {
          if (p.bans.size() >= RoomPolicy::kMaxBans) {
            answer.refusals.push_back({Refusal::kTooManyBans, room});
            break;
          }
          p.bans.push_back(c.ban);
          applied.push_back({RoomMode::kBan, true, {}, c.ban});
        } else if (!c.add && found != p.bans.end()) {
          applied.push_back({RoomMode::kBan, false, {}, *found});
          p.bans.erase(found);
        }
        break;
      }
      case RoomMode::kUnknown: refuse(Refusal::kUnknownMode, c); break;
    }
  }
  if (applied.empty()) return;
  RoomEvent event = member_event(EventKind::kMode, room, setter, {}, format, 0);
  event.modes = std::move(applied);
  owner_announce(room, r, std::move(event));
}

}  // namespace chat
