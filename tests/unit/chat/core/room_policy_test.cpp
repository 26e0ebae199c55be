// A room's policy as its owner keeps it, in structured values and no wire format: RoomPolicy and
// BanMask directly, and the owner's answers to mode changes (Hub::policy) over plain members.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "chat/core/event.h"
#include "chat/core/hub.h"
#include "chat/frontends/irc/irc.h"
#include "reactor/reactor.h"

namespace room_policy_test {

using chat::ModeChange;
using chat::PolicyAnswer;
using chat::Refusal;
using chat::RoomMode;

TEST(RoomPolicy, GlobsMatchRunsAndSingleCharactersCaseAside) {
  EXPECT_TRUE(chat::glob_match("*", ""));
  EXPECT_TRUE(chat::glob_match("a*c", "abbbc"));
  EXPECT_TRUE(chat::glob_match("A?C", "abc"));
  EXPECT_FALSE(chat::glob_match("a?c", "ac"));
  EXPECT_FALSE(chat::glob_match("a*d", "abc"));
  EXPECT_TRUE(chat::glob_match("*a*a*a*a*a*b", std::string(200, 'a') + "b"));
}

TEST(RoomPolicy, ABanMatchesEachPartAsAGlob) {
  chat::RoomPolicy p;
  EXPECT_FALSE(p.banned("bob", "irc"));
  p.bans.push_back({"b*", "*", "*"});
  EXPECT_TRUE(p.banned("Bob", "web"));
  EXPECT_FALSE(p.banned("amy", "web"));
  p.bans = {{"*", "*", "native"}};
  EXPECT_TRUE(p.banned("amy", "native"));
  EXPECT_FALSE(p.banned("amy", "irc"));
  p.bans = {{"amy", "amx", "*"}};
  EXPECT_FALSE(p.banned("amy", "irc")) << "a member's user name is its name";
  EXPECT_TRUE(chat::BanMask({"A", "b", "C"}).same({"a", "B", "c"}));
  EXPECT_FALSE(chat::BanMask({"a", "b", "c"}).same({"a", "b", "d"}));
}

// A member that keeps what the hub gives it.
class Member final : public chat::Member {
 public:
  Member(std::string name, uint64_t id) : name_(std::move(name)), id_(id) {}
  uint64_t id() const override { return id_; }
  // A format that carries mode events (the room renders each event only for formats present in
  // it); what is checked here is the event itself. Not a format of the test's own: the process has
  // kMaxFormats, most taken by the front ends.
  chat::FormatId format() const override { return chat::irc_format(chat::IrcTags::kNone).id(); }
  const std::string& name() const override { return name_; }
  void deliver(const chat::Delivery& d) override { events.push_back(d.event); }
  void joined(const std::string&, const chat::JoinReply&) override {}
  void join_refused(const std::string&, Refusal why) override { refused.push_back(why); }

  std::vector<chat::RoomEvent> events;
  std::vector<Refusal> refused;

 private:
  std::string name_;
  uint64_t id_;
};

struct Room {
  Room() {
    table.attach(0, loop, hub);
    hub.add_member(&amy);
    hub.add_member(&bob);
    hub.join("r", &amy, false);
    hub.join("r", &bob, false);
  }
  ~Room() {
    hub.leave("r", &amy);
    hub.leave("r", &bob);
    hub.remove_member(&amy);
    hub.remove_member(&bob);
  }
  PolicyAnswer modes(chat::Member& who, std::vector<ModeChange> changes) {
    chat::PolicyRequest req;
    req.kind = chat::PolicyRequest::kModes;
    req.modes = std::move(changes);
    PolicyAnswer answer;
    hub.policy("r", &who, std::move(req), [&answer](const PolicyAnswer& a) { answer = a; });
    return answer;
  }
  chat::RoomSnapshot snapshot() {
    chat::RoomSnapshot snap;
    hub.inspect("r", [&snap](const chat::RoomSnapshot& s) { snap = s; });
    return snap;
  }
  reactor::Reactor loop;
  chat::ShardTable table{1, 100};
  chat::Hub hub{table, 0};
  Member amy{"amy", 1}, bob{"bob", 2};
};

TEST(OwnerModes, TheFirstMemberIsOperatorAndTheRoomHearsWhatWasApplied) {
  Room room;
  size_t before = room.bob.events.size();
  PolicyAnswer a = room.modes(room.amy, {{RoomMode::kVoice, true, "BOB", {}},
                                         {RoomMode::kModerated, true, {}, {}},
                                         {RoomMode::kModerated, true, {}, {}},  // already: not applied again
                                         {RoomMode::kKey, true, "k", {}},
                                         {RoomMode::kLimit, true, "7", {}},
                                         {RoomMode::kBan, true, {}, {"x*", "*", "*"}},
                                         {RoomMode::kBan, true, {}, {"X*", "*", "*"}}});  // the same ban
  EXPECT_TRUE(a.refusals.empty());
  ASSERT_EQ(room.bob.events.size(), before + 1);
  const chat::RoomEvent& e = room.bob.events.back();
  EXPECT_EQ(e.kind, chat::EventKind::kMode);
  EXPECT_EQ(e.user, "amy");
  ASSERT_EQ(e.modes.size(), 5u);
  EXPECT_EQ(e.modes[0].mode, RoomMode::kVoice);
  EXPECT_EQ(e.modes[0].param, "bob") << "the member's name in its own case";
  EXPECT_EQ(e.modes[1].mode, RoomMode::kModerated);
  EXPECT_EQ(e.modes[2].param, "k");
  EXPECT_EQ(e.modes[3].param, "7");
  EXPECT_EQ(e.modes[4].ban.name, "x*");
  chat::RoomSnapshot snap = room.snapshot();
  EXPECT_TRUE(snap.policy.moderated);
  EXPECT_EQ(snap.policy.key, "k");
  EXPECT_EQ(snap.policy.limit, 7u);
  ASSERT_EQ(snap.policy.bans.size(), 1u);
  ASSERT_EQ(snap.members.size(), 2u);
  EXPECT_TRUE(snap.members[0].modes.op);
  EXPECT_TRUE(snap.members[1].modes.voice);

  // Removals are applied once; the key is not repeated.
  a = room.modes(room.amy, {{RoomMode::kKey, false, {}, {}}, {RoomMode::kKey, false, {}, {}},
                            {RoomMode::kBan, false, {}, {"X*", "*", "*"}}});
  EXPECT_TRUE(a.refusals.empty());
  const chat::RoomEvent& removed = room.bob.events.back();
  ASSERT_EQ(removed.modes.size(), 2u);
  EXPECT_FALSE(removed.modes[0].add);
  EXPECT_EQ(removed.modes[0].param, "");
  EXPECT_EQ(removed.modes[1].ban.name, "x*") << "the ban as it was kept";
}

TEST(OwnerModes, RefusalsSayWhichModeAndWhatAbout) {
  Room room;
  PolicyAnswer a = room.modes(room.bob, {{RoomMode::kModerated, true, {}, {}}});
  ASSERT_EQ(a.refusals.size(), 1u);
  EXPECT_EQ(a.refusals[0].why, Refusal::kNotOperator);
  size_t before = room.amy.events.size();
  a = room.modes(room.amy, {{RoomMode::kUnknown, true, "z", {}},
                            {RoomMode::kOperator, true, "nobody", {}},
                            {RoomMode::kKey, true, "a b", {}},
                            {RoomMode::kLimit, true, "", {}}});
  ASSERT_EQ(a.refusals.size(), 4u);
  EXPECT_EQ(a.refusals[0].why, Refusal::kUnknownMode);
  EXPECT_EQ(a.refusals[0].about, "z");
  EXPECT_EQ(a.refusals[1].why, Refusal::kNoSuchMember);
  EXPECT_EQ(a.refusals[1].about, "nobody");
  EXPECT_EQ(a.refusals[2].why, Refusal::kBadParameter);
  EXPECT_EQ(a.refusals[2].mode, RoomMode::kKey);
  EXPECT_EQ(a.refusals[3].why, Refusal::kNeedsParameter);
  EXPECT_EQ(a.refusals[3].mode, RoomMode::kLimit);
  EXPECT_EQ(room.amy.events.size(), before) << "nothing applied: nothing announced";
}

TEST(OwnerModes, ABanKeepsOutWhoMatchesItUnlessInvited) {
  Room room;
  room.modes(room.amy, {{RoomMode::kBan, true, {}, {"k*", "*", "irc"}}});
  Member kim("kim", 3), ken("ken", 4);
  room.hub.add_member(&kim);
  room.hub.add_member(&ken);
  room.hub.join("r", &kim, false);
  EXPECT_EQ(kim.refused, std::vector<Refusal>{Refusal::kBanned});
  chat::PolicyRequest invite;
  invite.kind = chat::PolicyRequest::kInvite;
  invite.target = "ken";
  room.hub.policy("r", &room.amy, std::move(invite), [](const PolicyAnswer&) {});
  room.hub.join("r", &ken, false);
  EXPECT_TRUE(ken.refused.empty());
  room.hub.leave("r", &ken);
  room.hub.remove_member(&kim);
  room.hub.remove_member(&ken);
}

// A kicked member is uncounted as one who left is: the room closes with its last member, whichever
// way it goes, and no longer counts against --max-server-rooms.
TEST(OwnerModes, AKickUncountsTheMemberAndTheLastOneClosesTheRoom) {
  Room room;
  room.table.set_room_limits(0, 1);
  auto kick = [&](chat::Member& who, const std::string& target) {
    chat::PolicyRequest req;
    req.kind = chat::PolicyRequest::kKick;
    req.target = target;
    PolicyAnswer answer;
    room.hub.policy("r", &who, std::move(req), [&answer](const PolicyAnswer& a) { answer = a; });
    return answer;
  };
  EXPECT_TRUE(kick(room.amy, "bob").refusals.empty());
  EXPECT_EQ(room.snapshot().count, 1u);
  EXPECT_FALSE(room.hub.is_member("r", &room.bob));
  EXPECT_EQ(room.hub.owned_room_count(), 1u);
  EXPECT_TRUE(kick(room.amy, "amy").refusals.empty());
  EXPECT_EQ(room.hub.owned_room_count(), 0u);
  Member cy{"cy", 3};
  room.hub.add_member(&cy);
  room.hub.join("s", &cy, false);
  EXPECT_TRUE(cy.refused.empty()) << "the kicked room still counted";
  EXPECT_TRUE(room.hub.is_member("s", &cy));
  room.hub.leave("s", &cy);
  room.hub.remove_member(&cy);
}

}  // namespace room_policy_test
