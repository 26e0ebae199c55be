// IRC clients for the integration tests: a chat-server with its IRC port, and a test's own IRC
// connection that registers, sends lines and waits for the line it expects (with a deadline).
#pragma once

#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"

namespace irctest {

using namespace std::chrono_literals;
using testproc::LineClient;
using testproc::Process;

// A chat-server with its chat port (`port`) and its IRC port (`irc`), on free ports.
struct IrcServer {
  explicit IrcServer(std::vector<std::string> extra = {}) : process(args(std::move(extra))) {
    auto line = process.wait_for_line("chat-server: listening on", 20s);
    if (!line) throw std::runtime_error("chat-server did not start: " + process.err());
    port = std::stoi(line->substr(line->rfind(':', line->find(" (")) + 1));
    auto irc_line = process.wait_for_line("irc listening on", 20s);
    if (!irc_line) throw std::runtime_error("no irc listener: " + process.err());
    irc = std::stoi(irc_line->substr(irc_line->rfind(':') + 1));
  }
  static std::vector<std::string> args(std::vector<std::string> extra) {
    std::vector<std::string> a = chattest::chat_args(std::move(extra));
    // chat_args gives --irc-port 0; a test may name its own IRC options after.
    return a;
  }
  Process process;
  int port = -1;
  int irc = -1;
};

class Irc : public LineClient {
 public:
  explicit Irc(int port) : LineClient(port) {}

  void say(const std::string& line) { send(line + "\r\n"); }
  // The next line without its CR, or nullopt at the deadline or the end of the stream.
  std::optional<std::string> next(std::chrono::milliseconds timeout = 10s) {
    auto l = line(timeout);
    if (!l) return l;
    if (!l->empty() && l->back() == '\r') l->pop_back();
    seen.push_back(*l);
    return l;
  }
  // Reads until a line matching `pattern` (a regex searched in the line) arrives; returns it, or ""
  // at the deadline (the lines read meanwhile are in `seen`).
  std::string expect(const std::string& pattern, std::chrono::milliseconds timeout = 10s) {
    std::regex re(pattern);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return "";
      auto l = next(left);
      if (!l) return "";
      if (std::regex_search(*l, re)) return *l;
    }
  }
  // Lines up to the answer to a PING sent now: everything the server sent before it.
  std::vector<std::string> until_pong(const std::string& token = "sync") {
    say("PING :" + token);
    std::vector<std::string> before;
    for (int i = 0; i < 10000; ++i) {
      auto l = next();
      if (!l) break;
      if (l->find(" PONG ") != std::string::npos && l->find(token) != std::string::npos) return before;
      before.push_back(*l);
    }
    ADD_FAILURE() << "no PONG for " << token;
    return before;
  }
  // NICK and USER (after CAP LS/REQ/END when `caps` is not empty); true once 001 arrived.
  bool registers(const std::string& nick, const std::string& caps = "") {
    if (!caps.empty()) {
      say("CAP LS 302");
      say("CAP REQ :" + caps);
    }
    say("NICK " + nick);
    say("USER " + nick + " 0 * :" + nick);
    if (!caps.empty()) {
      if (expect(" CAP \\S+ ACK ").empty()) return false;
      say("CAP END");
    }
    return !expect(" 001 " + nick + " ").empty() && !expect(" (376|422) ").empty();
  }
  // JOIN and wait for its end of names.
  bool joins(const std::string& channel) {
    say("JOIN " + channel);
    return !expect(" 366 \\S+ " + channel + " ").empty();
  }
  std::vector<std::string> seen;
};

inline bool contains(const std::vector<std::string>& lines, const std::string& pattern) {
  std::regex re(pattern);
  for (const auto& l : lines) {
    if (std::regex_search(l, re)) return true;
  }
  return false;
}

}  // namespace irctest
