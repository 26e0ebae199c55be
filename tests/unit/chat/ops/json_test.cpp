#include <string>

#include <gtest/gtest.h>

#include "chat/ops/json.h"

using chat::Json;
using chat::JsonStatus;

namespace {
std::string nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}
}  // namespace

TEST(Json, NestingUpToTheLimitParses) {
  Json j;
  EXPECT_EQ(chat::parse_json(nested(chat::kMaxJsonDepth), j), JsonStatus::kOk);
  EXPECT_EQ(chat::parse_json(R"({"a":{"b":[1,2,{"c":"d"}]}})", j), JsonStatus::kOk);
  EXPECT_EQ(j["a"]["b"][2]["c"], "d");
}

TEST(Json, OneLevelPastTheLimitIsRefusedBeforeParsing) {
  Json j;
  EXPECT_EQ(chat::parse_json(nested(chat::kMaxJsonDepth + 1), j), JsonStatus::kTooDeep);
  // What crashed the server: 50,000 levels inside a ping's id.
  std::string line = R"({"type":"ping","id":)" + nested(50000) + "}";
  EXPECT_EQ(chat::parse_json(line, j), JsonStatus::kTooDeep);
  // Objects count as well as arrays, and unbalanced input is measured too.
  EXPECT_EQ(chat::parse_json(std::string(100, '{'), j), JsonStatus::kTooDeep);
}

TEST(Json, BracketsInsideStringsDoNotCount) {
  Json j;
  std::string text = R"({"t":")" + std::string(1000, '[') + R"(\"[[[[", "u":"\\"})";
  ASSERT_EQ(chat::parse_json(text, j), JsonStatus::kOk);
  EXPECT_EQ(j["t"].get<std::string>().size(), 1000u + 5u);
  EXPECT_FALSE(chat::json_nests_deeper_than(text, 1));
  EXPECT_TRUE(chat::json_nests_deeper_than(R"({"a":[{"b":[]}]})", 3));
  EXPECT_FALSE(chat::json_nests_deeper_than(R"({"a":[{"b":[]}]})", 4));
}

TEST(Json, SyntaxErrorsAreReportedNotThrown) {
  Json j;
  EXPECT_EQ(chat::parse_json("{\"a\":", j), JsonStatus::kSyntax);
  EXPECT_EQ(chat::parse_json("", j), JsonStatus::kSyntax);
  EXPECT_EQ(chat::parse_json("]]]]", j), JsonStatus::kSyntax);
}

TEST(Json, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  Json j = {{"t", std::string("a\xff" "b")}};
  EXPECT_EQ(chat::dump_json(j), "{\"t\":\"a\xEF\xBF\xBD" "b\"}");
}
