// The IRC front end without sockets or processes: its pure pieces (masks, mode letters, mode
// strings and their parsing, prefixes), and the codec itself in a Session over a fake transport
// (the command table's 451, 461 and 462, and a channel's modes as its members see them).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "chat/core/hub.h"
#include "chat/frontends/irc/irc.h"
#include "chat/frontends/irc/modes.h"
#include "chat/ops/limits.h"
#include "chat/ops/stats.h"
#include "chat/session/session.h"
#include "irc/mask.h"
#include "reactor/reactor.h"

namespace irc_codec_test {

using chat::ModeChange;
using chat::RoomMode;

// ---- Masks ----------------------------------------------------------------------------------------

TEST(IrcMask, WhatIsLeftOutIsAnything) {
  EXPECT_EQ(irc::to_string(irc::parse_mask("bob")), "bob!*@*");
  EXPECT_EQ(irc::to_string(irc::parse_mask("bob!u")), "bob!u@*");
  EXPECT_EQ(irc::to_string(irc::parse_mask("bob@web")), "bob!*@web");
  EXPECT_EQ(irc::to_string(irc::parse_mask("@web")), "!*@web");
  EXPECT_EQ(irc::to_string(irc::parse_mask("")), "!*@*");
  irc::Mask m = irc::parse_mask("b*!~u?@irc");
  EXPECT_EQ(m.nick, "b*");
  EXPECT_EQ(m.user, "~u?");
  EXPECT_EQ(m.host, "irc");
}

TEST(IrcMask, AWholeMaskComesBackAsItWasGiven) {
  for (const char* whole : {"a!b@c", "*!*@*", "a!b!c@d", "a!@*", "a!b@", "a!*@b@c", "x?y!*@w*b"}) {
    EXPECT_EQ(irc::to_string(irc::parse_mask(whole)), whole);
  }
}

TEST(IrcMask, ABanMatchesANameItsUserAndItsFrontEnd) {
  chat::RoomPolicy p;
  p.bans.push_back(chat::irc_ban("b*"));
  p.bans.push_back(chat::irc_ban("*!*@web"));
  EXPECT_TRUE(p.banned("bob", "irc"));
  EXPECT_TRUE(p.banned("BOB", "native")) << "ASCII case aside";
  EXPECT_TRUE(p.banned("amy", "web"));
  EXPECT_FALSE(p.banned("amy", "irc"));
  p.bans = {chat::irc_ban("a?y!amy@i*")};
  EXPECT_TRUE(p.banned("amy", "irc"));
  EXPECT_FALSE(p.banned("amy", "native"));
  EXPECT_TRUE(chat::irc_ban("Bob!X@Irc").same(chat::irc_ban("bob!x@irc")));
  EXPECT_FALSE(chat::irc_ban("bob").same(chat::irc_ban("bob!x")));
}

// ---- Modes ----------------------------------------------------------------------------------------

TEST(IrcModes, EveryRoomModeHasItsOwnLetter) {
  std::string letters;
  for (auto mode : {RoomMode::kInviteOnly, RoomMode::kKey, RoomMode::kLimit, RoomMode::kModerated,
                    RoomMode::kNoExternal, RoomMode::kSecret, RoomMode::kTopicLocked, RoomMode::kBan,
                    RoomMode::kOperator, RoomMode::kVoice}) {
    char c = chat::irc_mode_letter(mode);
    ASSERT_NE(c, 0);
    EXPECT_EQ(letters.find(c), std::string::npos) << c;
    letters += c;
    EXPECT_EQ(chat::irc_room_mode(c), mode) << c;
  }
  EXPECT_EQ(letters, "iklmnstbov");
  EXPECT_EQ(chat::irc_mode_letter(RoomMode::kUnknown), 0);
  EXPECT_EQ(chat::irc_room_mode('z'), RoomMode::kUnknown);
  EXPECT_EQ(chat::irc_room_mode('O'), RoomMode::kUnknown);
}

TEST(IrcModes, AChannelsModesAreItsFlagsThenTheirParameters) {
  chat::RoomPolicy p;
  EXPECT_EQ(chat::irc_channel_modes(p, true), "+nt");
  p.invite_only = p.moderated = p.secret = true;
  p.no_external = p.topic_locked = false;
  p.key = "k";
  p.limit = 10;
  EXPECT_EQ(chat::irc_channel_modes(p, true), "+iklms k 10");
  EXPECT_EQ(chat::irc_channel_modes(p, false), "+iklms * 10") << "the key to members only";
}

TEST(IrcModes, ChangesAreWrittenWithOneSignPerRun) {
  std::vector<ModeChange> changes{{RoomMode::kOperator, true, "bob", {}},
                                  {RoomMode::kVoice, false, "kim", {}},
                                  {RoomMode::kModerated, false, {}, {}},
                                  {RoomMode::kKey, false, {}, {}},
                                  {RoomMode::kLimit, true, "5", {}},
                                  {RoomMode::kLimit, false, {}, {}},
                                  {RoomMode::kBan, true, {}, chat::irc_ban("x@web")}};
  EXPECT_EQ(chat::irc_mode_changes(changes), "+o-vmk+l-l+b bob kim * 5 x!*@web");
  EXPECT_EQ(chat::irc_mode_changes({}), "");
}

TEST(IrcModes, PrefixesAreTheHighestUnlessMultiPrefix) {
  EXPECT_EQ(chat::irc_prefix({.op = true, .voice = true}, false), "@");
  EXPECT_EQ(chat::irc_prefix({.op = true, .voice = true}, true), "@+");
  EXPECT_EQ(chat::irc_prefix({.op = false, .voice = true}, false), "+");
  EXPECT_EQ(chat::irc_prefix({}, true), "");
}

TEST(IrcModes, EachLetterTakesItsParameterInTurn) {
  auto p = chat::irc_parse_mode_changes({"#r", "+o-v+kb-kz", "bob", "kim", "secret", "x", "old"}, "#r", 6);
  EXPECT_TRUE(p.errors.empty());
  ASSERT_EQ(p.changes.size(), 6u);
  EXPECT_EQ(p.changes[0].mode, RoomMode::kOperator);
  EXPECT_EQ(p.changes[0].param, "bob");
  EXPECT_EQ(p.changes[1].mode, RoomMode::kVoice);
  EXPECT_FALSE(p.changes[1].add);
  EXPECT_EQ(p.changes[1].param, "kim");
  EXPECT_EQ(p.changes[2].mode, RoomMode::kKey);
  EXPECT_EQ(p.changes[2].param, "secret");
  EXPECT_EQ(p.changes[3].mode, RoomMode::kBan);
  EXPECT_EQ(chat::irc_ban_mask(p.changes[3].ban), "x!*@*");
  EXPECT_EQ(p.changes[4].mode, RoomMode::kKey);
  EXPECT_FALSE(p.changes[4].add);
  EXPECT_EQ(p.changes[4].param, "") << "-k may name the key; it is not kept";
  EXPECT_EQ(p.changes[5].mode, RoomMode::kUnknown);
  EXPECT_EQ(p.changes[5].param, "z");
}

TEST(IrcModes, WhatCannotBeReadIsAnsweredInOrder) {
  auto p = chat::irc_parse_mode_changes({"#r", "+ol-vkbl", "bob", "0"}, "#r", 6);
  ASSERT_EQ(p.errors.size(), 2u);
  EXPECT_EQ(p.errors[0].first, "696");
  EXPECT_EQ(p.errors[0].second, "#r l 0 :Invalid limit (a positive number)");
  EXPECT_EQ(p.errors[1].first, "461");
  EXPECT_EQ(p.errors[1].second, "MODE :Not enough parameters (-v)");
  // +o bob, -k (no key needed), -b without a mask (a list query: nothing), -l.
  ASSERT_EQ(p.changes.size(), 3u);
  EXPECT_EQ(p.changes[1].mode, RoomMode::kKey);
  EXPECT_EQ(p.changes[2].mode, RoomMode::kLimit);
  p = chat::irc_parse_mode_changes({"#r", "+k", "a,b"}, "#r", 6);
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].first, "525");
  EXPECT_TRUE(p.changes.empty());
  p = chat::irc_parse_mode_changes({"#r", "+imnstz"}, "#r", 3);
  EXPECT_EQ(p.changes.size(), 3u) << "at most MODES changes";
}

// ---- The codec over a fake transport --------------------------------------------------------------

class Transport final : public chat::Transport {
 public:
  bool open() const override { return !closed; }
  reactor::SendResult send(const reactor::SharedBytes& bytes) override {
    if (closed) return reactor::SendResult::kClosed;
    out += *bytes;
    return reactor::SendResult::kQueued;
  }
  chat::QueuedOutput queued() const override { return {}; }
  void pause_reading() override {}
  void resume_reading() override {}
  void redeliver_input() override {}
  void close_soon(reactor::CloseCode, std::string_view) override { closed = true; }
  void close_after_flush(reactor::CloseCode, std::string_view) override { closed = true; }

  std::string out;  // every byte sent
  bool closed = false;
};

struct Shard {
  Shard() {
    table.attach(0, loop, hub);
    options.flood_rate = 0;  // no flood control: every line is read at once
  }
  reactor::Reactor loop;
  chat::Limits limits;
  chat::ShardTable table{1, 100};
  chat::Stats stats;
  chat::Hub hub{table, 0};
  chat::SessionContext context{hub, stats, limits,
                               chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};
  chat::IrcOptions options;
};

uint64_t next_id() {
  static uint64_t id = 5000;
  return ++id;
}

struct Client {
  Client(Shard& shard) {
    session = std::make_shared<chat::Session>(shard.context, transport, next_id(),
                                              std::make_unique<chat::IrcCodec>(shard.options, reactor::Clock::now()));
    session->start();
  }
  ~Client() { session->closed(); }
  // Sends `line` (CRLF added) and returns what came back for it.
  std::string say(const std::string& line) {
    size_t before = transport.out.size();
    input.append(line + "\r\n");
    session->input(input);
    return transport.out.substr(before);
  }
  std::string registered(const std::string& nick) {
    say("NICK " + nick);
    return say("USER " + nick + " 0 * :" + nick);
  }

  Transport transport;
  std::shared_ptr<chat::Session> session;
  reactor::Buffer input;
};

// A command's name and as many parameters as `n` (each "x").
std::string with_params(std::string_view name, size_t n) {
  std::string line(name);
  for (size_t i = 0; i < n; ++i) line += " x";
  return line;
}

TEST(IrcCodecTable, EveryCommandWithTooFewParametersIs461) {
  Shard shard;
  Client c(shard);
  ASSERT_NE(c.registered("amy").find(" 001 amy "), std::string::npos);
  size_t checked = 0;
  for (const auto& cmd : chat::IrcCodec::commands()) {
    if (cmd.min_params == 0 || cmd.when == chat::IrcCodec::Command::kOnce) continue;
    if (cmd.flags & chat::IrcCodec::Command::kNeedsAuthority) continue;  // unknown without --auth-secret
    std::string got = c.say(with_params(cmd.name, cmd.min_params - 1));
    EXPECT_EQ(got, ":reactor.chat 461 amy " + std::string(cmd.name) + " :Not enough parameters\r\n") << cmd.name;
    ++checked;
  }
  EXPECT_GE(checked, 12u);
  // An empty text or real name is none.
  EXPECT_EQ(c.say("WALLOPS :"), ":reactor.chat 461 amy WALLOPS :Not enough parameters\r\n");
  EXPECT_FALSE(c.transport.closed);
}

TEST(IrcCodecTable, BeforeRegistrationOnlyRegistrationCommandsAreAnswered) {
  Shard shard;
  Client c(shard);
  uint64_t refused = 0;
  for (const auto& cmd : chat::IrcCodec::commands()) {
    if (cmd.when != chat::IrcCodec::Command::kRegistered) continue;
    EXPECT_EQ(c.say(with_params(cmd.name, cmd.min_params)), ":reactor.chat 451 * :You have not registered\r\n")
        << cmd.name;
    ++refused;
  }
  EXPECT_EQ(c.say("FROBNICATE"), ":reactor.chat 451 * :You have not registered\r\n");
  // Those that may come before it check their parameters.
  EXPECT_EQ(c.say("USER a 0 *"), ":reactor.chat 461 * USER :Not enough parameters\r\n");
  EXPECT_EQ(c.say("USER :a 0 * x"), ":reactor.chat 461 * USER :Not enough parameters\r\n");
  EXPECT_EQ(c.say("PASS"), ":reactor.chat 461 * PASS :Not enough parameters\r\n");
  EXPECT_EQ(c.say("CAP"), ":reactor.chat 461 * CAP :Not enough parameters\r\n");
  EXPECT_EQ(c.say("PING"), ":reactor.chat 461 * PING :Not enough parameters\r\n");
  EXPECT_EQ(c.say("AUTHENTICATE PLAIN"), ":reactor.chat 421 * AUTHENTICATE :Unknown command\r\n")
      << "SASL is offered with --auth-secret only";
  EXPECT_EQ(shard.stats.errors_request, refused + 2) << "451 and 421 count as bad requests, 461 does not";
}

TEST(IrcCodecTable, AfterRegistrationPassAndUserAre462AndUnknownCommands421) {
  Shard shard;
  Client c(shard);
  c.registered("amy");
  EXPECT_EQ(c.say("USER a 0 * :b"), ":reactor.chat 462 amy :You may not reregister\r\n");
  EXPECT_EQ(c.say("PASS"), ":reactor.chat 462 amy :You may not reregister\r\n") << "462 before 461";
  EXPECT_EQ(c.say("FROBNICATE x"), ":reactor.chat 421 amy FROBNICATE :Unknown command\r\n");
  EXPECT_EQ(c.say("ping :x"), ":reactor.chat PONG reactor.chat :x\r\n") << "commands are case-blind";
}

TEST(IrcCodecModes, TheChannelSeesTheOwnersChangesAsAModeLine) {
  Shard shard;
  Client amy(shard), bob(shard);
  amy.registered("amy");
  bob.registered("bob");
  amy.say("JOIN #r");
  bob.say("JOIN #r");
  std::string seen_by_amy = amy.say("MODE #r +ov-t+bk bob bob z@web sesame");
  EXPECT_NE(seen_by_amy.find(":amy!amy@irc MODE #r +ov-t+bk bob bob z!*@web sesame\r\n"), std::string::npos)
      << seen_by_amy;
  EXPECT_NE(bob.transport.out.find(":amy!amy@irc MODE #r +ov-t+bk bob bob z!*@web sesame\r\n"), std::string::npos);
  EXPECT_EQ(amy.say("MODE #r"), ":reactor.chat 324 amy #r +kn sesame\r\n:reactor.chat 329 amy #r " +
                                    std::to_string(chat::now_ms() / 1000) + "\r\n");
  std::string q = amy.say("MODE #r b");
  EXPECT_NE(q.find(" 367 amy #r z!*@web\r\n"), std::string::npos) << q;
  // A member neither operator nor voiced cannot, and an unknown letter is refused in its turn.
  Client kim(shard);
  kim.registered("kim");
  EXPECT_EQ(kim.say("JOIN #r"), ":reactor.chat 475 kim #r :Cannot join channel (+k)\r\n");
  kim.say("JOIN #r sesame");
  EXPECT_EQ(kim.say("MODE #r +m"), ":reactor.chat 482 kim #r :You're not channel operator\r\n");
  EXPECT_EQ(amy.say("MODE #r +yo nobody"),
            ":reactor.chat 472 amy y :is unknown mode char to me\r\n:reactor.chat 401 amy nobody :No such nick/channel\r\n");
}

}  // namespace irc_codec_test
