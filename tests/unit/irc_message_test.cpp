#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "chat/session/framing.h"  // chat::valid_utf8: an independent check of what irc produces
#include "irc/message.h"

using irc::LineResult;
using irc::LineState;
using irc::Message;
using irc::ParseError;

namespace {

Message parsed(std::string_view line) {
  Message m;
  ParseError e = irc::parse(line, m);
  EXPECT_EQ(e, ParseError::kNone) << line << ": " << irc::to_string(e);
  return m;
}

ParseError error_of(std::string_view line) {
  Message m;
  return irc::parse(line, m);
}

using Tags = std::vector<std::pair<std::string, std::string>>;
using Params = std::vector<std::string>;

// The examples of the Modern IRC Client Protocol document's message section.
TEST(IrcParse, ModernIrcExamples) {
  Message m = parsed("@id=234AB :dan!d@localhost PRIVMSG #chan :Hey what's up!");
  EXPECT_EQ(m.tags, (Tags{{"id", "234AB"}}));
  EXPECT_EQ(m.source, "dan!d@localhost");
  EXPECT_EQ(m.command, "PRIVMSG");
  EXPECT_EQ(m.params, (Params{"#chan", "Hey what's up!"}));

  m = parsed("CAP REQ :sasl");
  EXPECT_TRUE(m.tags.empty());
  EXPECT_EQ(m.source, "");
  EXPECT_EQ(m.command, "CAP");
  EXPECT_EQ(m.params, (Params{"REQ", "sasl"}));

  m = parsed(":irc.example.com CAP LS * :multi-prefix extended-join sasl");
  EXPECT_EQ(m.source, "irc.example.com");
  EXPECT_EQ(m.params, (Params{"LS", "*", "multi-prefix extended-join sasl"}));

  m = parsed(":irc.example.com CAP * LIST :");
  EXPECT_EQ(m.params, (Params{"*", "LIST", ""}));

  m = parsed("CAP * LS :multi-prefix sasl");
  EXPECT_EQ(m.params, (Params{"*", "LS", "multi-prefix sasl"}));

  m = parsed("CAP REQ :sasl message-tags foo");
  EXPECT_EQ(m.params, (Params{"REQ", "sasl message-tags foo"}));

  // The same message with and without the trailing colon; a trailing that starts with ':'.
  EXPECT_EQ(parsed(":dan!d@localhost PRIVMSG #chan :Hey!").params, (Params{"#chan", "Hey!"}));
  EXPECT_EQ(parsed(":dan!d@localhost PRIVMSG #chan Hey!").params, (Params{"#chan", "Hey!"}));
  EXPECT_EQ(parsed(":dan!d@localhost PRIVMSG #chan ::-)").params, (Params{"#chan", ":-)"}));

  m = parsed("@url=;netsplit=tur,ty :dan!d@localhost PRIVMSG #chan :Hey what's up!");
  EXPECT_EQ(m.tags, (Tags{{"url", ""}, {"netsplit", "tur,ty"}}));

  m = parsed("@aaa=bbb;ccc;example.com/ddd=eee :nick!ident@host.com PRIVMSG me :Hello");
  EXPECT_EQ(m.tags, (Tags{{"aaa", "bbb"}, {"ccc", ""}, {"example.com/ddd", "eee"}}));
  EXPECT_EQ(m.params, (Params{"me", "Hello"}));
}

TEST(IrcParse, CommandsAndSpaces) {
  EXPECT_EQ(parsed("privmsg #a b").command, "PRIVMSG");
  EXPECT_EQ(parsed("PiNg x").command, "PING");
  EXPECT_EQ(parsed(":srv 001 nick :Welcome").command, "001");
  EXPECT_EQ(parsed("QUIT").params, Params{});
  // Several spaces between parts, leading and trailing spaces.
  Message m = parsed("  @a=b   :src   PRIVMSG    #chan    x   :with  two  spaces ");
  EXPECT_EQ(m.tags, (Tags{{"a", "b"}}));
  EXPECT_EQ(m.source, "src");
  EXPECT_EQ(m.params, (Params{"#chan", "x", "with  two  spaces "}));
  EXPECT_EQ(parsed("JOIN #a   ").params, Params{"#a"});
  // A colon inside a middle parameter is part of it.
  EXPECT_EQ(parsed("MODE #a +k a:b").params, (Params{"#a", "+k", "a:b"}));
}

TEST(IrcParse, Errors) {
  EXPECT_EQ(error_of(""), ParseError::kEmpty);
  EXPECT_EQ(error_of("   "), ParseError::kEmpty);
  EXPECT_EQ(error_of("@a=b"), ParseError::kNoCommand);
  EXPECT_EQ(error_of("@a=b :src"), ParseError::kNoCommand);
  EXPECT_EQ(error_of(":src   "), ParseError::kNoCommand);
  EXPECT_EQ(error_of(": PRIVMSG #a b"), ParseError::kBadSource);
  EXPECT_EQ(error_of("@ PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@=v PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@a;;b PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@a;b; PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@a*b=1 PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@/x=1 PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("@vendor/=1 PRIVMSG #a b"), ParseError::kBadTags);
  EXPECT_EQ(error_of("PRIV1MSG #a b"), ParseError::kBadCommand);
  EXPECT_EQ(error_of("01 x"), ParseError::kBadCommand);
  EXPECT_EQ(error_of("0001 x"), ParseError::kBadCommand);
  EXPECT_EQ(error_of(":src :PRIVMSG"), ParseError::kBadCommand);
}

TEST(IrcParse, NulAnywhereIsRefused) {
  using namespace std::string_literals;
  for (std::string line : {"\0PRIVMSG #a b"s, "PRIVMSG #a b\0"s, "PRIVMSG #a :x\0y"s, "@a=\0 PING x"s,
                           ":s\0rc PING x"s, "\0"s}) {
    EXPECT_EQ(error_of(line), ParseError::kNul) << line.size();
  }
}

TEST(IrcParse, LoneCrAndLfAreRefused) {
  EXPECT_EQ(error_of("PRIVMSG #a :x\ry"), ParseError::kLineBreak);
  EXPECT_EQ(error_of("PRIVMSG #a :x\r"), ParseError::kLineBreak);
  EXPECT_EQ(error_of("PRIVMSG #a :x\ny"), ParseError::kLineBreak);
  // Escaped in a tag value, CR and LF are fine.
  EXPECT_EQ(parsed("@a=x\\ry\\n PING x").tags, (Tags{{"a", "x\ry\n"}}));
}

TEST(IrcParse, FifteenParams) {
  std::string line = "CMD";
  for (int i = 1; i <= 14; ++i) line += " p" + std::to_string(i);
  EXPECT_EQ(parsed(line + " p15").params.size(), 15u);
  EXPECT_EQ(parsed(line + " :p15 with spaces").params.back(), "p15 with spaces");
  EXPECT_EQ(error_of(line + " p15 p16"), ParseError::kTooManyParams);
  EXPECT_EQ(error_of(line + " p15 :p16"), ParseError::kTooManyParams);
  EXPECT_EQ(parsed(line + " p15   ").params.size(), 15u);  // trailing spaces are not a parameter
}

TEST(IrcTags, Unescaping) {
  EXPECT_EQ(parsed("@a=\\:\\s\\\\\\r\\n PING x").tags, (Tags{{"a", "; \\\r\n"}}));
  EXPECT_EQ(parsed("@a=end\\ PING x").tags, (Tags{{"a", "end"}}));  // a trailing lone '\' is dropped
  EXPECT_EQ(parsed("@a=\\x\\b PING x").tags, (Tags{{"a", "xb"}}));  // unknown escapes: the character
  EXPECT_EQ(parsed("@a=b=c PING x").tags, (Tags{{"a", "b=c"}}));
  EXPECT_EQ(parsed("@a=1;b=2;a=3 PING x").tags, (Tags{{"a", "3"}, {"b", "2"}}));  // the last value wins
  EXPECT_EQ(parsed("@+draft/reply=1;+x PING x").tags, (Tags{{"+draft/reply", "1"}, {"+x", ""}}));
}

TEST(IrcTags, EscapingRoundTrip) {
  const std::string values[] = {"", "plain", "; \\\r\n", "a;b c\\d", "\\s literally", "trailing\\", "é ünïcode"};
  for (const auto& value : values) {
    Message m;
    m.tags = {{"k", value}, {"example.com/z", value + value}};
    m.command = "TAGMSG";
    m.params = {"#chan"};
    std::string line = irc::serialize(m);
    ASSERT_EQ(line.substr(line.size() - 2), "\r\n");
    std::string body = line.substr(0, line.size() - 2);
    // Escaped: no CR or LF in the line, and the only ';' in the tags is the one between the two.
    EXPECT_EQ(body.find_first_of("\r\n"), std::string::npos) << body;
    std::string tags = body.substr(0, body.find(' '));
    EXPECT_EQ(std::count(tags.begin(), tags.end(), ';'), 1) << body;
    EXPECT_EQ(parsed(body), m) << body;
  }
  Message m;
  m.tags = {{"a", "x y;z\\"}};
  m.command = "PING";
  EXPECT_EQ(irc::serialize(m), "@a=x\\sy\\:z\\\\ PING\r\n");
}

TEST(IrcSerialize, ColonOnTheLastParamOnlyWhenNeeded) {
  Message m;
  m.command = "PRIVMSG";
  m.params = {"#chan", "hi"};
  EXPECT_EQ(irc::serialize(m), "PRIVMSG #chan hi\r\n");
  m.params = {"#chan", "hi there"};
  EXPECT_EQ(irc::serialize(m), "PRIVMSG #chan :hi there\r\n");
  m.params = {"#chan", ":-)"};
  EXPECT_EQ(irc::serialize(m), "PRIVMSG #chan ::-)\r\n");
  m.params = {"#chan", ""};
  EXPECT_EQ(irc::serialize(m), "PRIVMSG #chan :\r\n");
  m.source = "nick!user@host";
  m.params = {"#chan", "x"};
  EXPECT_EQ(irc::serialize(m), ":nick!user@host PRIVMSG #chan x\r\n");
}

TEST(IrcSerialize, RefusesWhatCannotBeALine) {
  auto message = [](std::string command, Params params) {
    Message m;
    m.command = std::move(command);
    m.params = std::move(params);
    return m;
  };
  EXPECT_EQ(irc::serialize(message("PRIVMSG", {"#a b", "x"})), "");  // a middle param with a space
  EXPECT_EQ(irc::serialize(message("PRIVMSG", {"", "x"})), "");      // an empty middle param
  EXPECT_EQ(irc::serialize(message("PRIVMSG", {":a", "x"})), "");    // a middle param starting with ':'
  EXPECT_EQ(irc::serialize(message("PRIVMSG", {"#a", "x\r\nQUIT"})), "");  // line injection
  EXPECT_EQ(irc::serialize(message("PRIVMSG", {"#a", std::string("x\0y", 3)})), "");
  EXPECT_EQ(irc::serialize(message("", {"x"})), "");
  EXPECT_EQ(irc::serialize(message("PRIV MSG", {"x"})), "");
  EXPECT_EQ(irc::serialize(message("12", {"x"})), "");
  EXPECT_EQ(irc::serialize(message("CMD", Params(16, "p"))), "");
  EXPECT_NE(irc::serialize(message("CMD", Params(15, "p"))), "");
  Message m = message("PING", {"x"});
  m.source = "a b";
  EXPECT_EQ(irc::serialize(m), "");
  m.source = "";
  m.tags = {{"bad key", "v"}};
  EXPECT_EQ(irc::serialize(m), "");
}

// serialize(parse(x)) is the canonical form of x.
TEST(IrcSerialize, CanonicalRoundTrip) {
  const std::pair<std::string, std::string> table[] = {
      {"PING x", "PING x"},
      {"ping :x", "PING x"},
      {"QUIT", "QUIT"},
      {"QUIT :", "QUIT :"},
      {":dan!d@localhost PRIVMSG #chan :Hey what's up!", ":dan!d@localhost PRIVMSG #chan :Hey what's up!"},
      {":dan!d@localhost PRIVMSG #chan :Hey!", ":dan!d@localhost PRIVMSG #chan Hey!"},
      {":dan!d@localhost PRIVMSG #chan ::-)", ":dan!d@localhost PRIVMSG #chan ::-)"},
      {"@id=234AB :dan!d@localhost PRIVMSG #chan :Hey what's up!", "@id=234AB :dan!d@localhost PRIVMSG #chan :Hey what's up!"},
      {"@url=;netsplit=tur,ty PING x", "@url;netsplit=tur,ty PING x"},
      {"@a=\\x PING x", "@a=x PING x"},
      {"@a=end\\ PING x", "@a=end PING x"},
      {"@a=1;b;a=2 PING x", "@a=2;b PING x"},
      {"  :src   CAP   *   LIST   :  ", ":src CAP * LIST :  "},
      {":irc.example.com 001 nick :Welcome to the network", ":irc.example.com 001 nick :Welcome to the network"},
      {"MODE #a +k a:b", "MODE #a +k a:b"},
  };
  for (const auto& [input, canonical] : table) {
    Message m = parsed(input);
    std::string line = irc::serialize(m);
    EXPECT_EQ(line, canonical + "\r\n") << input;
    EXPECT_EQ(parsed(canonical), m) << input;
  }
}

struct Fed {
  std::vector<std::string> lines;
  int too_long = 0;
  size_t held_max = 0;  // the most bytes the caller had to keep
};

Fed feed(const std::vector<std::string>& chunks, size_t max_body = irc::kMaxBody, size_t max_tags = 0) {
  Fed out;
  LineState state;
  std::string buffer;
  for (const auto& chunk : chunks) {
    buffer += chunk;
    for (int guard = 0;; ++guard) {
      if (guard > 100000) ADD_FAILURE() << "no progress";
      LineResult r = irc::next_line(buffer, max_body, max_tags, state);
      EXPECT_LE(r.consumed, buffer.size());
      if (r.status == LineResult::kLine) out.lines.emplace_back(r.line);
      if (r.status == LineResult::kTooLong) ++out.too_long;
      buffer.erase(0, r.consumed);
      if (r.status == LineResult::kNeedMore || buffer.empty()) break;
    }
    out.held_max = std::max(out.held_max, buffer.size());
  }
  return out;
}

TEST(IrcLines, CrLfLfAndLoneCr) {
  Fed f = feed({"PING a\r\nPING b\nPING c\rd\r\n\r\n\nPING e"});
  EXPECT_EQ(f.lines, (std::vector<std::string>{"PING a", "PING b", "PING c\rd", "", ""}));
  EXPECT_EQ(f.too_long, 0);
  // The lone CR stays in the line, where the parser refuses it.
  EXPECT_EQ(error_of(f.lines[2]), ParseError::kLineBreak);
  // A CR at the end of a read may be half of a CRLF: the line is not taken without it.
  f = feed({"PING a\r", "\nPING b\r", "x\n"});
  EXPECT_EQ(f.lines, (std::vector<std::string>{"PING a", "PING b\rx"}));
}

TEST(IrcLines, LimitWithoutTags) {
  const std::string at(510, 'a');  // 510 bytes + CRLF = 512
  EXPECT_EQ(feed({at + "\r\n"}).lines, std::vector<std::string>{at});
  EXPECT_EQ(feed({at + "\n"}).lines, std::vector<std::string>{at});  // measured as if ended by CRLF
  Fed over = feed({at + "b\r\nPING ok\r\n"});
  EXPECT_EQ(over.too_long, 1);
  EXPECT_EQ(over.lines, std::vector<std::string>{"PING ok"});
  EXPECT_EQ(feed({at + "b\nPING ok\n"}).too_long, 1);
  // Without message-tags, tags count against the 512.
  const std::string tagged = "@a=" + std::string(500, 'x') + " PING y";
  EXPECT_EQ(tagged.size(), 510u);
  EXPECT_EQ(feed({tagged + "\r\n"}).lines.size(), 1u);
  EXPECT_EQ(feed({tagged + "y\r\n"}).too_long, 1);
}

TEST(IrcLines, LimitWithTags) {
  const size_t max_tags = irc::kMaxClientTags;
  const std::string tags_at = "@a=" + std::string(max_tags - 4, 'x') + " ";  // '@' to ' ': max_tags bytes
  ASSERT_EQ(tags_at.size(), max_tags);
  const std::string body_at = "PRIVMSG #a :" + std::string(510 - 12, 'm');
  ASSERT_EQ(body_at.size(), 510u);
  Fed f = feed({tags_at + body_at + "\r\n"}, irc::kMaxBody, max_tags);
  ASSERT_EQ(f.lines.size(), 1u);
  EXPECT_EQ(f.too_long, 0);
  Message m = parsed(f.lines[0]);
  EXPECT_EQ(m.tags[0].second.size(), max_tags - 4);
  // One byte more in the tags, or in the rest.
  const std::string tags_over = "@a=" + std::string(max_tags - 3, 'x') + " ";
  EXPECT_EQ(feed({tags_over + "PING x\r\nPING ok\r\n"}, irc::kMaxBody, max_tags).too_long, 1);
  EXPECT_EQ(feed({tags_at + body_at + "m\r\nPING ok\r\n"}, irc::kMaxBody, max_tags).lines,
            std::vector<std::string>{"PING ok"});
  // Tags with no command after them, at and past the limit.
  EXPECT_EQ(feed({tags_at.substr(0, max_tags - 1) + "x\r\n"}, irc::kMaxBody, max_tags).lines.size(), 1u);
  EXPECT_EQ(feed({tags_at.substr(0, max_tags - 1) + "xx\r\n"}, irc::kMaxBody, max_tags).too_long, 1);
  // Without message-tags the same line is far too long.
  EXPECT_EQ(feed({tags_at + "PING x\r\n"}).too_long, 1);
}

TEST(IrcLines, LongLineSplitAcrossInputs) {
  // A valid line arriving a few bytes at a time is returned whole, once.
  const std::string line = "PRIVMSG #a :" + std::string(498, 'z');
  std::vector<std::string> chunks;
  const std::string stream = line + "\r\nPING b\r\n";
  for (size_t i = 0; i < stream.size(); i += 7) chunks.push_back(stream.substr(i, 7));
  EXPECT_EQ(feed(chunks).lines, (std::vector<std::string>{line, "PING b"}));

  // An overlong line going on for megabytes in 4 KiB reads: reported once, nothing held for it,
  // and none of it is read as a line: its end, after megabytes, is not a command of its own.
  chunks = {"PING a\r\n"};
  for (int i = 0; i < 1024; ++i) chunks.emplace_back(4096, 'q');
  chunks.emplace_back("QUIT :smuggled\r\nPING b\r\n");
  Fed f = feed(chunks);
  EXPECT_EQ(f.too_long, 1);
  EXPECT_EQ(f.lines, (std::vector<std::string>{"PING a", "PING b"}));
  EXPECT_LE(f.held_max, irc::kMaxBody);
}

TEST(IrcLines, EmptyInputNeedsMore) {
  LineState state;
  LineResult r = irc::next_line("", irc::kMaxBody, 0, state);
  EXPECT_EQ(r.status, LineResult::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  r = irc::next_line("PING", irc::kMaxBody, 0, state);
  EXPECT_EQ(r.status, LineResult::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(IrcText, Latin1BecomesUtf8) {
  EXPECT_EQ(irc::utf8_or_latin1("plain ascii"), "plain ascii");
  EXPECT_EQ(irc::utf8_or_latin1("d\xC3\xA9j\xC3\xA0 vu"), "d\xC3\xA9j\xC3\xA0 vu");  // UTF-8: unchanged
  EXPECT_EQ(irc::utf8_or_latin1("d\xE9j\xE0 vu"), "d\xC3\xA9j\xC3\xA0 vu");  // Latin-1 "déjà vu"
  EXPECT_EQ(irc::utf8_or_latin1("\xFF\x80"), "\xC3\xBF\xC2\x80");
  // Mixed: not valid UTF-8, so every byte >= 0x80 is Latin-1.
  EXPECT_EQ(irc::utf8_or_latin1("\xC3\xA9\xE9"), "\xC3\x83\xC2\xA9\xC3\xA9");
  // Overlongs, surrogates and truncated sequences are not UTF-8.
  for (std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\xF4\x90\x80\x80"}) {
    EXPECT_FALSE(irc::valid_utf8(bad));
    std::string out = irc::utf8_or_latin1(bad);
    EXPECT_TRUE(chat::valid_utf8(out));
    EXPECT_EQ(out.size(), bad.size() * 2);
  }
  EXPECT_TRUE(irc::valid_utf8("\xF0\x9F\x98\x80"));
}

}  // namespace
