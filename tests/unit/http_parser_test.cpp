// http::RequestParser: requests one at a time from a byte stream, with limits.
#include <gtest/gtest.h>

#include <string>

#include "http/request_parser.h"

namespace {

using http::ParseStatus;

// Feeds `bytes` as a connection would: what a call leaves unconsumed is offered again with more.
struct Feed {
  http::RequestParser parser;
  std::string pending;
  std::vector<http::Request> requests;
  http::ParseResult last;

  explicit Feed(http::ParserLimits limits = {}) : parser(limits) {}
  void add(std::string_view bytes) {
    pending.append(bytes);
    while (!pending.empty()) {
      last = parser.parse(pending);
      if (last.status == ParseStatus::kError) return;
      pending.erase(0, last.consumed);
      if (last.status == ParseStatus::kNeedMore) return;
      requests.push_back(parser.request());
      if (parser.request().upgrade) return;  // what follows is not HTTP
    }
  }
};

TEST(HttpParser, ARequestArrivingAByteAtATimeIsOneRequest) {
  std::string raw = "GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  two words \r\n\r\n";
  Feed f;
  for (char c : raw) f.add(std::string_view(&c, 1));
  ASSERT_EQ(f.requests.size(), 1u);
  const http::Request& r = f.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/index.html?x=1");
  ASSERT_NE(r.header("host"), nullptr);
  EXPECT_EQ(*r.header("host"), "a");
  ASSERT_NE(r.header("x-thing"), nullptr);
  EXPECT_EQ(*r.header("x-thing"), "two words");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_FALSE(r.upgrade);
  EXPECT_TRUE(f.pending.empty());
}

TEST(HttpParser, PipelinedRequestsComeOneAtATimeInOrder) {
  Feed f;
  f.add("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.0\r\n\r\n");
  ASSERT_EQ(f.requests.size(), 3u);
  EXPECT_EQ(f.requests[0].target, "/a");
  EXPECT_EQ(f.requests[1].method, "POST");
  EXPECT_EQ(f.requests[1].body, "hello");
  EXPECT_EQ(f.requests[2].target, "/c");
  EXPECT_FALSE(f.requests[2].keep_alive) << "HTTP/1.0 without keep-alive";
  EXPECT_TRUE(f.pending.empty());
}

TEST(HttpParser, AnUpgradeRequestLeavesWhatFollowsUnparsed) {
  Feed f;
  f.add("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85garbage");
  ASSERT_EQ(f.requests.size(), 1u);
  EXPECT_TRUE(f.requests[0].upgrade);
  EXPECT_EQ(f.pending, "\x81\x85garbage");
  // No HTTP after it, and never the same request again (llhttp stays paused there).
  EXPECT_EQ(f.parser.parse(f.pending).status, ParseStatus::kError);
  EXPECT_EQ(f.parser.parse("GET / HTTP/1.1\r\n\r\n").status, ParseStatus::kError);
}

TEST(HttpParser, ConnectIsTheLastRequestOfItsConnection) {
  Feed f;
  f.add("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\nX");
  ASSERT_EQ(f.requests.size(), 1u);
  EXPECT_EQ(f.requests[0].method, "CONNECT");
  EXPECT_TRUE(f.requests[0].upgrade);
  EXPECT_EQ(f.parser.parse(f.pending).status, ParseStatus::kError);
}

TEST(HttpParser, MalformedRequestsAre400) {
  for (const char* bad : {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost x\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                          "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    Feed f;
    f.add(bad);
    EXPECT_EQ(f.last.status, ParseStatus::kError) << bad;
    EXPECT_EQ(f.last.http_status, 400) << bad;
    // The parser stays failed.
    EXPECT_EQ(f.parser.parse("GET / HTTP/1.1\r\n\r\n").status, ParseStatus::kError);
  }
}

// RFC 9112 5.2: a header line that starts with a space or a tab (obsolete line folding) is
// refused with 400, however the bytes are split; a value's own spaces and tabs are not folding.
TEST(HttpParser, ObsoleteLineFoldingIs400HoweverTheBytesAreSplit) {
  for (const char* folded : {"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
                             "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n",
                             "GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\n two\r\n\r\n",
                             "GET / HTTP/1.1\r\nX-A: one\r\n  \t two\r\nHost: a\r\n\r\n"}) {
    std::string raw = folded;
    for (size_t split = 0; split <= raw.size(); ++split) {  // in two pieces, split anywhere
      Feed f;
      f.add(raw.substr(0, split));
      if (f.last.status != ParseStatus::kError) f.add(raw.substr(split));
      EXPECT_EQ(f.last.status, ParseStatus::kError) << raw << " split at " << split;
      EXPECT_EQ(f.last.http_status, 400) << raw << " split at " << split;
      EXPECT_TRUE(f.requests.empty());
    }
    Feed bytes;  // a byte at a time
    for (char c : raw) {
      if (bytes.last.status != ParseStatus::kError) bytes.add(std::string_view(&c, 1));
    }
    EXPECT_EQ(bytes.last.status, ParseStatus::kError) << raw;
  }
  // Not folding: spaces and tabs inside and around a value, a value that ends a read.
  std::string fine = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t one  two\t \r\nX-B:\r\n\r\n";
  for (size_t split = 0; split <= fine.size(); ++split) {
    Feed f;
    f.add(fine.substr(0, split));
    f.add(fine.substr(split));
    ASSERT_EQ(f.requests.size(), 1u) << "split at " << split << ": " << f.last.reason;
    EXPECT_EQ(*f.requests[0].header("x-a"), "one  two");
  }
}

TEST(HttpParser, LimitsHaveTheirOwnStatus) {
  http::ParserLimits limits{.max_header_bytes = 256, .max_headers = 4, .max_body = 16};
  {
    Feed f(limits);
    f.add("GET /" + std::string(300, 'a') + " HTTP/1.1\r\n\r\n");
    EXPECT_EQ(f.last.http_status, 414);
  }
  {
    Feed f(limits);
    f.add("GET / HTTP/1.1\r\nX-Big: " + std::string(300, 'b') + "\r\n\r\n");
    EXPECT_EQ(f.last.http_status, 431);
  }
  {
    Feed f(limits);
    f.add("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n");
    EXPECT_EQ(f.last.http_status, 431);
  }
  {
    Feed f(limits);
    f.add("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n");  // refused before the body arrives
    EXPECT_EQ(f.last.http_status, 413);
  }
  {
    Feed f(limits);
    f.add("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
    EXPECT_EQ(f.last.http_status, 413) << "chunked bodies count too";
  }
  {
    Feed f(limits);
    f.add("GET / HTTP/2.0\r\n\r\n");
    EXPECT_EQ(f.last.status, ParseStatus::kError);
  }
}

}  // namespace
