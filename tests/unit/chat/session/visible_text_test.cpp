// chat::visible: what chat-client does to text from the network before printing it.
#include "chat/session/visible_text.h"

#include <gtest/gtest.h>

#include <string>

namespace {

TEST(VisibleText, PrintableTextIsKept) {
  EXPECT_EQ(chat::visible("hello, [kim] ~ {}"), "hello, [kim] ~ {}");
  EXPECT_EQ(chat::visible("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xC2\xA0"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xC2\xA0");
  EXPECT_EQ(chat::visible(""), "");
}

TEST(VisibleText, C0ControlsAndDelBecomeControlPictures) {
  EXPECT_EQ(chat::visible("a\nb"), "a\u240Ab");
  EXPECT_EQ(chat::visible("\x1b[2J"), "\u241B[2J");
  EXPECT_EQ(chat::visible(std::string("\0\x01\x1f\x7f", 4)), "\u2400\u2401\u241F\u2421");
  EXPECT_EQ(chat::visible("\r\t"), "\u240D\u2409");
}

TEST(VisibleText, C1ControlsAndInvalidUtf8BecomeReplacementCharacters) {
  EXPECT_EQ(chat::visible("\xC2\x9B" "2J"), "\uFFFD2J");     // U+009B, the 8-bit CSI
  EXPECT_EQ(chat::visible("\xC2\x80\xC2\x9F"), "\uFFFD\uFFFD");
  EXPECT_EQ(chat::visible("\x9B" "2J"), "\uFFFD2J");         // a lone 8-bit CSI byte
  EXPECT_EQ(chat::visible("\xC0\xAF"), "\uFFFD\uFFFD");      // overlong '/'
  EXPECT_EQ(chat::visible("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // a surrogate
  EXPECT_EQ(chat::visible("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");  // past U+10FFFF
  EXPECT_EQ(chat::visible("ab\xE2\x82"), "ab\uFFFD\uFFFD");  // cut short
}

TEST(VisibleText, OutputNeverHoldsAControlByte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  all += "\xC2\x85\xC2\x9B";
  std::string out = chat::visible(all);
  for (size_t i = 0; i < out.size(); ++i) {
    auto c = static_cast<unsigned char>(out[i]);
    EXPECT_FALSE(c < 0x20 || c == 0x7F) << "byte " << int(c) << " at " << i;
    if (c == 0xC2 && i + 1 < out.size()) {
      EXPECT_GE(static_cast<unsigned char>(out[i + 1]), 0xA0) << i;
    }
  }
}

}  // namespace
