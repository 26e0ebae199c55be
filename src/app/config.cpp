#include "app/config.h"

#include "app/cli.h"

#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <toml++/toml.h>
#include <vector>

#ifndef REACTOR_CHAT_VERSION
#error "REACTOR_CHAT_VERSION is defined by CMake (the project's VERSION)"
#endif

namespace app {

const char* version() { return REACTOR_CHAT_VERSION; }

namespace {

// One key of the file, flattened: "irc-port" for [irc] port, with where it was written.
struct Entry {
  std::string key;
  const toml::node* value;
  uint32_t line;
};

void flatten(const toml::table& table, const std::string& prefix, std::vector<Entry>& out) {
  for (const auto& [k, v] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "-" + std::string(k.str());
    if (const toml::table* inner = v.as_table()) {
      flatten(*inner, key, out);
    } else {
      out.push_back({key, &v, k.source().begin.line});
    }
  }
}

std::string shortest(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, ec == std::errc() ? end : buf);
}

// A scalar as the command line would have spelled it; nullopt for dates, times and tables.
std::optional<std::string> as_argument(const toml::node& v) {
  if (auto s = v.as_string()) return s->get();
  if (auto i = v.as_integer()) return std::to_string(i->get());
  if (auto d = v.as_floating_point()) return shortest(d->get());
  if (auto b = v.as_boolean()) return std::string(b->get() ? "true" : "false");
  return std::nullopt;
}

bool reserved(const std::string& key) {
  return key == "config" || key == "help" || key == "help-all" || key == "version";
}

}  // namespace

void apply_config_file(CLI::App& cli, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    if (at.line == 0) throw ConfigError(path + ": " + std::string(e.description()));  // could not be read
    throw ConfigError(path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                      std::string(e.description()));
  }
  std::vector<Entry> entries;
  flatten(root, "", entries);
  // toml++ keeps a table's keys sorted: back to the file's order, so that the first mistake is said.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.line < b.line; });
  std::map<std::string, uint32_t> seen;
  for (const Entry& e : entries) {
    auto where = [&] { return path + ":" + std::to_string(e.line) + ": "; };
    CLI::Option* op = reserved(e.key) ? nullptr : cli.get_option_no_throw("--" + e.key);
    if (op == nullptr) {
      std::string hint;
      std::string dashed = e.key;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      if (dashed != e.key && !reserved(dashed) && cli.get_option_no_throw("--" + dashed)) {
        hint = " (did you mean '" + dashed + "'?)";
      }
      throw ConfigError(where() + "unknown key '" + e.key + "'" + hint);
    }
    if (!op->get_configurable()) {  // an action (--check-config, --mint-token), not a setting
      throw ConfigError(where() + "'" + e.key + "' is for the command line only");
    }
    if (auto [it, fresh] = seen.emplace(e.key, e.line); !fresh) {
      throw ConfigError(where() + "'" + e.key + "' is already set on line " + std::to_string(it->second));
    }
    if (op->count() > 0) continue;  // given on the command line: that wins
    std::vector<std::string> inputs;
    if (const toml::array* list = e.value->as_array()) {
      if (op->get_items_expected_max() <= 1) throw ConfigError(where() + "'" + e.key + "' takes one value, not a list");
      for (const toml::node& item : *list) {
        auto arg = as_argument(item);
        if (!arg) throw ConfigError(where() + "'" + e.key + "': a list of strings or numbers is expected");
        inputs.push_back(*arg);
      }
    } else {
      auto arg = as_argument(*e.value);
      if (!arg) throw ConfigError(where() + "'" + e.key + "': a string, a number or a boolean is expected");
      inputs.push_back(*arg);
    }
    bool flag = op->get_expected_min() == 0;
    if (flag && !e.value->is_boolean()) throw ConfigError(where() + "'" + e.key + "' is true or false");
    if (!flag && e.value->is_boolean()) throw ConfigError(where() + "'" + e.key + "' takes a value, not true or false");
    try {
      op->add_result(inputs);
      op->run_callback();
    } catch (const CLI::Error& error) {
      throw ConfigError(where() + "'" + e.key + "': " + error.what());
    }
  }
}

void add_config_flags(CLI::App& cli, std::string& path) {
  cli.add_option("--config", path,
                 "Read flags from this TOML file (a key per flag, e.g. port = 1234 or [irc] port = 6667); "
                 "flags given here win")
      ->configurable(false);
  cli.set_version_flag("--version", std::string(cli.get_name()) + " " + version());
}

std::optional<int> parse_with_config(CLI::App& cli, int argc, char** argv) {
  if (auto status = parse(cli, argc, argv)) return status;
  CLI::Option* config = cli.get_option_no_throw("--config");
  if (config == nullptr || config->count() == 0) return std::nullopt;
  try {
    apply_config_file(cli, config->as<std::string>());
  } catch (const ConfigError& e) {
    std::cerr << cli.get_name() << ": --config " << e.what() << "\n";
    return 2;
  }
  return std::nullopt;
}

}  // namespace app
