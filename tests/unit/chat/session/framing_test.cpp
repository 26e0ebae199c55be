#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chat/session/framing.h"

using chat::FrameStatus;
using chat::LineFramer;
using chat::ObjectFramer;

namespace {

struct Outcome {
  std::vector<std::string> frames;
  int garbage = 0, too_long = 0, lost = 0;
};

// Feeds `chunks` one after another, as reads would, keeping unconsumed bytes like a Buffer.
template <typename Framer>
Outcome feed(Framer& framer, const std::vector<std::string>& chunks) {
  Outcome out;
  std::string buffer;
  for (const auto& chunk : chunks) {
    buffer += chunk;
    for (;;) {
      auto r = framer.next(buffer);
      if (r.status == FrameStatus::kFrame) out.frames.emplace_back(r.frame);
      if (r.status == FrameStatus::kGarbage) ++out.garbage;
      if (r.status == FrameStatus::kTooLong) ++out.too_long;
      if (r.status == FrameStatus::kLost) ++out.lost;
      buffer.erase(0, r.consumed);
      if ((r.status == FrameStatus::kNeedMore && r.consumed == 0) || buffer.empty()) break;
    }
  }
  return out;
}

}  // namespace

TEST(ObjectFramer, HundredObjectsInOneReadAreHundredFrames) {
  std::string all;
  for (int i = 0; i < 100; ++i) all += "{\"user\": \"u\", \"text\": \"" + std::to_string(i) + "\"}";
  ObjectFramer f(65536);
  auto out = feed(f, {all});
  ASSERT_EQ(out.frames.size(), 100u);
  EXPECT_EQ(out.frames[42], "{\"user\": \"u\", \"text\": \"42\"}");
}

TEST(ObjectFramer, OneObjectAByteAtATimeIsOneFrameScannedOnce) {
  std::string obj = R"({"user": "kim", "text": "a } inside \" a string { [ ]"})";
  ObjectFramer f(65536);
  std::vector<std::string> bytes;
  for (char c : obj) bytes.emplace_back(1, c);
  auto out = feed(f, bytes);
  ASSERT_EQ(out.frames.size(), 1u);
  EXPECT_EQ(out.frames[0], obj);
}

TEST(ObjectFramer, WhitespaceAndNewlinesBetweenObjects) {
  ObjectFramer f(65536);
  auto out = feed(f, {" \n{\"a\":1}\r\n\t {\"b\":{\"c\":[1,{}]}}\n", "  {\"d\":", "2}"});
  EXPECT_EQ(out.frames, (std::vector<std::string>{"{\"a\":1}", "{\"b\":{\"c\":[1,{}]}}", "{\"d\":2}"}));
}

TEST(ObjectFramer, GarbageBetweenObjectsIsSkippedToTheNextBrace) {
  ObjectFramer f(65536);
  auto out = feed(f, {"hello {\"a\":1} ]]] junk {\"b\":2}"});
  EXPECT_EQ(out.frames, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_EQ(out.garbage, 2);
}

TEST(ObjectFramer, OverlongObjectIsDiscardedAndTheNextOneFramed) {
  ObjectFramer f(100);
  std::string big = "{\"text\": \"" + std::string(1000, 'x') + "}{\"\"}\"}";
  auto out = feed(f, {big.substr(0, 50), big.substr(50, 500), big.substr(550), "{\"ok\":true}"});
  EXPECT_EQ(out.too_long, 1);
  EXPECT_EQ(out.frames, (std::vector<std::string>{"{\"ok\":true}"}));
}

TEST(ObjectFramer, AnObjectThatNeverEndsLosesTheStream) {
  ObjectFramer f(100);
  std::vector<std::string> chunks(40, std::string(100, '{'));
  auto out = feed(f, chunks);
  EXPECT_GE(out.lost, 1);
  EXPECT_TRUE(out.frames.empty());
}

TEST(LineFramer, LinesWithAndWithoutCarriageReturns) {
  LineFramer f(65536);
  auto out = feed(f, {"one\ntwo\r\nthr", "ee\n", "\n"});
  EXPECT_EQ(out.frames, (std::vector<std::string>{"one", "two", "three", ""}));
}

TEST(LineFramer, OverlongLineIsReportedOnceAndReadingResumes) {
  LineFramer f(64);
  auto out = feed(f, {std::string(50, 'a'), std::string(50, 'b'), std::string(50, 'c') + "\nnext\n"});
  EXPECT_EQ(out.too_long, 1);
  EXPECT_EQ(out.frames, (std::vector<std::string>{"next"}));
  LineFramer g(64);
  auto whole = feed(g, {std::string(100, 'z') + "\nafter\n"});
  EXPECT_EQ(whole.too_long, 1);
  EXPECT_EQ(whole.frames, (std::vector<std::string>{"after"}));
}

TEST(LineFramer, ALineThatNeverEndsLosesTheStream) {
  LineFramer f(64);
  auto out = feed(f, std::vector<std::string>(30, std::string(64, 'q')));
  EXPECT_GE(out.lost, 1);
}

TEST(Utf8, ValidAndInvalid) {
  EXPECT_TRUE(chat::valid_utf8("plain ascii"));
  EXPECT_TRUE(chat::valid_utf8("Kim \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_FALSE(chat::valid_utf8("\xC3"));                  // truncated
  EXPECT_FALSE(chat::valid_utf8("\xC0\xAF"));              // overlong
  EXPECT_FALSE(chat::valid_utf8("\xED\xA0\x80"));          // surrogate
  EXPECT_FALSE(chat::valid_utf8("\xF4\x90\x80\x80"));      // above U+10FFFF
  EXPECT_FALSE(chat::valid_utf8("\xFF"));
  EXPECT_FALSE(chat::valid_utf8("a\x80z"));                // stray continuation
}
