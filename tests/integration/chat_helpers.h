// Helpers shared by the chat server's integration tests.
#pragma once

#include <algorithm>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "process.h"

namespace chattest {

using json = nlohmann::json;
using namespace std::chrono_literals;
using testproc::LineClient;
using testproc::Process;

inline std::vector<std::string> chat_args(std::vector<std::string> extra = {}, std::string port = "0") {
  // HTTP on a free port too: the default (8080) would be shared by tests running side by side.
  std::vector<std::string> args{CHAT_SERVER_BIN, "--port", port, "--http-port", "0", "--irc-port", "0"};
  // The tests flood and open thousands of connections from one address on purpose (to test other
  // things): the limits against that are off here, and on in the tests of them (protection_test).
  for (const char* flag : {"--message-rate", "--max-connections-per-address", "--connect-rate", "--history-rate"}) {
    if (std::find(extra.begin(), extra.end(), flag) == extra.end()) args.insert(args.end(), {flag, "0"});
  }
  // A test's server stops at its end with SIGTERM: without the drain's window (drain_test.cpp and
  // the tests of what SIGTERM says set their own), the stop takes what the flush takes.
  if (std::find(extra.begin(), extra.end(), "--drain-ms") == extra.end()) args.insert(args.end(), {"--drain-ms", "0"});
  // History in memory: the default (a sqlite file in ./chat-data) would be shared by every test.
  // (With --redis, Redis keeps it.)
  bool chosen = std::find(extra.begin(), extra.end(), "--store") != extra.end() ||
                std::find(extra.begin(), extra.end(), "--redis") != extra.end();
  if (!chosen) args.insert(args.end(), {"--store", "memory"});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

inline json next_json(LineClient& c, std::chrono::milliseconds timeout = 10s) {
  auto l = c.line(timeout);
  if (!l) return json{{"type", "<nothing>"}};
  json j = json::parse(*l, nullptr, false);
  return j.is_discarded() ? json{{"type", "<not json>"}, {"line", *l}} : j;
}

// Reads until a JSON line of `type` arrives (others are returned in `skipped`).
inline json expect_type(LineClient& c, const std::string& type, std::vector<json>* skipped = nullptr,
                        std::chrono::milliseconds timeout = 10s) {
  for (int i = 0; i < 1000; ++i) {
    json j = next_json(c, timeout);
    if (j.value("type", "") == type) return j;
    if (j.value("type", "") == "<nothing>") return j;
    if (skipped) skipped->push_back(j);
  }
  return json{{"type", "<too many>"}};
}

// A native client that has said hello.
struct Native : LineClient {
  Native(int port, const std::string& user) : LineClient(port) {
    send(json{{"type", "hello"}, {"user", user}}.dump() + "\n");
    // Until its hello is read, a connection is the article's lobby member: skip such lines.
    for (int i = 0; i < 10000; ++i) {
      welcome = next_json(*this);
      if (welcome.value("type", "") != "<not json>") break;
    }
  }
  json request(const json& j) {
    send(j.dump() + "\n");
    return next_json(*this);
  }
  json welcome;
};

// Stats line printed on SIGUSR1: waits for the next one on stderr.
inline std::string stats_of(Process& p) {
  size_t before = p.err().size();
  ::kill(p.pid(), SIGUSR1);
  for (int i = 0; i < 500; ++i) {
    p.wait_for_line("\x01never", 10ms);  // pumps stdout and stderr
    size_t at = p.err().find("stats:", before);
    if (at != std::string::npos && p.err().find('\n', at) != std::string::npos) {
      return p.err().substr(at, p.err().find('\n', at) - at);
    }
  }
  return "";
}

// How many times `needle` occurs in `haystack` (lines of a log, say).
inline size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

inline long counter(const std::string& stats, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(stats, m, std::regex(name + "=(\\d+)"))) return -1;
  return std::stol(m[1]);
}

}  // namespace chattest
