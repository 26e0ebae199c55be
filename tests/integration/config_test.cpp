// chat-server --config FILE (TOML), --check-config and --version; the sample configuration
// (conf/chat-server.toml) against the flags the program really has.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../temp_file.h"
#include "chat_helpers.h"
#include "process.h"

using namespace std::chrono_literals;
using testproc::Process;
using testproc::Server;
using namespace chattest;
using testfiles::TempFile;

namespace {

struct Outcome {
  int status = -1;  // exit status, or -1 if it did not exit by itself
  std::string out, err;
};

Outcome run(std::vector<std::string> args) {
  args.insert(args.begin(), CHAT_SERVER_BIN);
  Process p(args);
  Outcome r;
  auto status = p.wait(20s);
  if (status && WIFEXITED(*status)) r.status = WEXITSTATUS(*status);
  r.out = p.out();
  r.err = p.err();
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Config, TheFileSetsFlagsThroughTablesAndTheCommandLineWins) {
  // An address that cannot be bound: the command line's --host must win. A frame limit of 100
  // bytes, from the file, must hold; HTTP on a free port from the [http] table; no IRC (a flag).
  TempFile file(
      "host = \"192.0.2.1\"  # not this machine's\n"
      "port = 0\n"
      "threads = 1\n"
      "store = \"off\"\n"
      "max-frame = 100\n"
      "no-irc = true\n"
      "allowed-origin = [\"https://a.example\", \"https://b.example\"]\n"
      "[http]\n"
      "port = 0\n");
  Server s({CHAT_SERVER_BIN, "--config", file.path, "--host", "127.0.0.1"});
  ASSERT_GT(s.port, 0) << s.process.err();
  ASSERT_TRUE(s.process.wait_for_line("http listening on", 10s)) << s.process.out();
  EXPECT_EQ(s.process.out().find("irc listening"), std::string::npos) << s.process.out();
  Native alice(s.port, "alice");
  ASSERT_EQ(alice.welcome.value("type", ""), "welcome") << alice.welcome;
  alice.send(json{{"type", "message"}, {"room", "lobby"}, {"text", std::string(120, 'x')}}.dump() + "\n");
  json error = expect_type(alice, "error");
  EXPECT_EQ(error.value("code", ""), "too_long") << error;
}

TEST(Config, EachMistakeIsOneLineNamingTheFileTheLineAndTheKey) {
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {"port = 0\nprot = 1\n", ":2: unknown key 'prot'"},
      {"irc_port = 1\n", ":1: unknown key 'irc_port' (did you mean 'irc-port'?)"},
      {"[irc]\nflood = 1\n", ":2: unknown key 'irc-flood'"},
      {"config = \"other.toml\"\n", ":1: unknown key 'config'"},
      {"port = \"twelve\"\n", ":1: 'port': "},
      {"threads = 99\n", ":1: 'threads': --threads: Value 99 not in range"},
      {"store = \"disk\"\n", ":1: 'store': "},
      {"verbose = 1\n", ":1: 'verbose' is true or false"},
      {"port = true\n", ":1: 'port' takes a value, not true or false"},
      {"port = [1, 2]\n", ":1: 'port' takes one value, not a list"},
      {"irc-port = 1\n\n[irc]\nport = 2\n", ":4: 'irc-port' is already set on line 1"},
      {"history-age-s = 1979-05-27\n", ":1: 'history-age-s': a string, a number or a boolean is expected"},
      {"port = \n", ":1:8: "},
      {"check-config = true\n", ":1: 'check-config' is for the command line only"},
      {"mint-token = \"bob\"\n", ":1: 'mint-token' is for the command line only"},
  };
  for (const Case& c : cases) {
    TempFile file(c.text);
    Outcome r = run({"--config", file.path, "--check-config"});
    EXPECT_EQ(r.status, 2) << c.text << r.err;
    EXPECT_TRUE(r.err.starts_with("chat-server: --config " + file.path + c.expected)) << "for:\n" << c.text << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "") << r.out;
  }
  Outcome missing = run({"--config", "/nonexistent/chat.toml"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_TRUE(missing.err.starts_with("chat-server: --config /nonexistent/chat.toml: ")) << missing.err;
}

TEST(Config, CheckConfigChecksWhatTheServerWouldAndStartsNothing) {
  TempFile good("port = 1\n[irc]\nport = 2\n[http]\nport = 3\n");
  Outcome ok = run({"--config", good.path, "--check-config"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.out, "chat-server: configuration OK (" + good.path + ")\n");
  // What main() checks past the flags themselves: the files they name, the combinations.
  TempFile motd("[irc]\nmotd = \"/nonexistent/motd.txt\"\n");
  Outcome bad_motd = run({"--config", motd.path, "--check-config"});
  EXPECT_EQ(bad_motd.status, 2);
  EXPECT_NE(bad_motd.err.find("--irc-motd /nonexistent/motd.txt: cannot be read"), std::string::npos) << bad_motd.err;
  // --auth-secret's file: there, and long enough.
  TempFile missing_secret("[auth]\nsecret = \"/nonexistent/secret\"\n");
  Outcome no_secret = run({"--config", missing_secret.path, "--check-config"});
  EXPECT_EQ(no_secret.status, 2);
  EXPECT_EQ(no_secret.err, "chat-server: --auth-secret /nonexistent/secret: cannot be opened: No such file or directory\n");
  TempFile short_secret("too short\n");
  Outcome short_one = run({"--auth-secret", short_secret.path, "--check-config"});
  EXPECT_EQ(short_one.status, 2);
  EXPECT_NE(short_one.err.find("the secret is 9 bytes; at least 32 are needed"), std::string::npos) << short_one.err;
  TempFile secret(std::string(64, 'f') + "\n");
  Outcome with_password = run({"--auth-secret", secret.path, "--irc-password-file", secret.path, "--check-config"});
  EXPECT_EQ(with_password.status, 2);
  EXPECT_NE(with_password.err.find("--irc-password-file cannot be used with --auth-secret"), std::string::npos)
      << with_password.err;
  EXPECT_EQ(run({"--auth-secret", secret.path, "--check-config"}).status, 0);
  TempFile redis_store("store = \"redis\"\n");
  Outcome bad_store = run({"--config", redis_store.path, "--check-config"});
  EXPECT_EQ(bad_store.status, 2);
  EXPECT_NE(bad_store.err.find("--store redis needs --redis"), std::string::npos) << bad_store.err;
  // The command line wins here too: the file's mistake is not reached when the flag is given.
  Outcome overridden = run({"--config", motd.path, "--irc-motd", good.path, "--check-config"});
  EXPECT_EQ(overridden.status, 0) << overridden.err;
}

TEST(Config, VersionSaysTheProgramAndItsVersion) {
  Outcome r = run({"--version"});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(std::regex_match(r.out, std::regex("chat-server [0-9]+\\.[0-9]+\\.[0-9]+\n"))) << r.out;
}

// The sample configuration shows every flag of chat-server --help under the right table (a key a
// table turns into a flag that does not exist would be an error for whoever uncomments it), and as
// shipped it checks.
TEST(Config, TheSampleConfigurationHasEveryFlagAndChecks) {
  const std::string sample = std::string(SOURCE_DIR) + "/conf/chat-server.toml";
  Outcome check = run({"--config", sample, "--check-config"});
  EXPECT_EQ(check.status, 0) << check.err;

  Outcome help = run({"--help"});
  ASSERT_EQ(help.status, 0);
  std::set<std::string> flags;
  std::regex flag_re("^  (?:-\\w,)?--([a-z0-9-]+)");  // a flag's line (a description's go on further in)
  std::istringstream help_lines(help.out);
  for (std::string line; std::getline(help_lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, flag_re)) flags.insert(m[1]);
  }
  // Actions of the command line, not settings (the file refuses them).
  for (const char* not_a_key : {"help", "config", "check-config", "version", "mint-token", "token-ttl"}) {
    ASSERT_EQ(flags.erase(not_a_key), 1u) << not_a_key;
  }
  ASSERT_GT(flags.size(), 40u);

  std::set<std::string> keys;
  std::string table;
  std::istringstream sample_lines(read_file(sample));
  std::regex table_re("^\\[([a-z0-9-]+)\\]"), key_re("^#? ?([a-z0-9-]+) = ");
  for (std::string line; std::getline(sample_lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, table_re)) {
      table = m[1];
    } else if (std::regex_search(line, m, key_re)) {
      std::string key = table.empty() ? std::string(m[1]) : table + "-" + std::string(m[1]);
      EXPECT_TRUE(flags.contains(key)) << "the sample's '" << line << "' is --" << key << ", which is no flag";
      EXPECT_TRUE(keys.insert(key).second) << key << " twice";
    }
  }
  for (const std::string& flag : flags) EXPECT_TRUE(keys.contains(flag)) << "--" << flag << " is not in the sample";
}

// Every flag the program defines (add_option/add_flag in apps/chat_server.cpp, and those of
// src/app/config.cpp) is in --help, under one of its groups by purpose (none left under "Other"),
// and in the flag reference of docs/OPERATIONS.md; --help speaks plainly.
TEST(Config, EveryFlagIsInAGroupOfHelpAndInTheOperationsReference) {
  std::set<std::string> defined{"--help"};
  std::regex defined_re(R"((?:add_option|add_flag|set_version_flag)\(\s*"(--[a-z0-9-]+)\")");
  for (const char* file : {"/apps/chat_server.cpp", "/src/app/config.cpp"}) {
    std::string source = read_file(std::string(SOURCE_DIR) + file);
    for (std::sregex_iterator it(source.begin(), source.end(), defined_re), end; it != end; ++it) {
      defined.insert((*it)[1]);
    }
  }
  ASSERT_GT(defined.size(), 60u);

  Outcome help = run({"--help"});
  ASSERT_EQ(help.status, 0);
  std::map<std::string, std::string> group_of;  // flag -> the title of its group
  std::vector<std::string> titles;
  std::regex title_re("^([A-Z][^:]*):$"), flag_re("^  (?:-\\w,)?(--[a-z0-9-]+)");
  std::istringstream lines(help.out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, title_re)) {
      titles.push_back(m[1]);
    } else if (std::regex_search(line, m, flag_re)) {
      ASSERT_FALSE(titles.empty()) << line;
      group_of[m[1]] = titles.back();
    }
    EXPECT_EQ(line.find("lame duck"), std::string::npos) << line;
    EXPECT_EQ(line.find("slowloris"), std::string::npos) << line;
  }
  // The groups, in this order (each title may say more after these words).
  std::vector<std::string> want = {"Listeners", "History", "Limits", "Cluster", "TLS and authentication", "Stopping",
                                   "Configuration and diagnostics"};
  ASSERT_EQ(titles.size(), want.size()) << help.out;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(titles[i].rfind(want[i], 0), 0u) << titles[i];

  const std::string operations = read_file(std::string(SOURCE_DIR) + "/docs/OPERATIONS.md");
  size_t reference = operations.find("\n## Flags\n");
  ASSERT_NE(reference, std::string::npos) << "docs/OPERATIONS.md has no '## Flags'";
  std::string flags_section = operations.substr(reference, operations.find("\n## ", reference + 1) - reference);
  for (const std::string& flag : defined) {
    auto it = group_of.find(flag);
    ASSERT_NE(it, group_of.end()) << flag << " is not in --help";
    EXPECT_NE(it->second, "Other") << flag << " is in no group of --help (apps/chat_server.cpp, group_help)";
    // A row of the reference: "| `--flag" followed by its argument or the cell's end.
    EXPECT_TRUE(std::regex_search(flags_section, std::regex("\n\\| `" + flag + "[ `]")))
        << flag << " is not in the flag reference of docs/OPERATIONS.md";
  }
  for (const auto& [flag, group] : group_of) EXPECT_TRUE(defined.contains(flag)) << flag << " in --help, not found in the sources";
}

}  // namespace
