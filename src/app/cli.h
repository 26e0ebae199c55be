// Shared by the binaries in apps/: flag parsing with CLI11 where a user's mistake is one clear line
// on stderr and exit status 2, and --help goes to stdout with status 0.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace app {

// A group of --help: its title and the flags in it (long names with their dashes), in the order
// they are listed.
struct HelpGroup {
  std::string title;
  std::vector<std::string> flags;
};

// The title under which --help lists the flags no HelpGroup names (a test checks there are none).
inline constexpr const char* kUngrouped = "Other";

// --help in groups by purpose, in the order of `groups`, each group's flags in the order given
// there (CLI11 alone lists groups and flags in the order the flags were added). Every flag of
// `cli` goes in the group that names it, or under kUngrouped, last.
inline void group_help(CLI::App& cli, const std::vector<HelpGroup>& groups) {
  class Grouped : public CLI::Formatter {
   public:
    explicit Grouped(std::vector<HelpGroup> groups) : groups_(std::move(groups)) {}
    std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
      if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
      std::stringstream out;
      out << make_description(app) << make_usage(app, std::move(name));
      std::vector<const CLI::Option*> all = app->get_options([](const CLI::Option* o) { return o->nonpositional(); });
      for (const HelpGroup& g : groups_) {
        std::vector<const CLI::Option*> opts;
        for (const std::string& flag : g.flags) {
          auto it = std::find_if(all.begin(), all.end(), [&](const CLI::Option* o) { return o->check_lname(flag.substr(2)); });
          if (it != all.end()) opts.push_back(*it);
        }
        if (!opts.empty()) out << make_group(g.title, false, opts);
      }
      std::vector<const CLI::Option*> rest;
      for (const CLI::Option* o : all) {
        if (o->get_group() == kUngrouped) rest.push_back(o);
      }
      if (!rest.empty()) out << make_group(kUngrouped, false, rest);
      out << "\n" << make_footer(app);
      return out.str();
    }

    // The description in lines of at most 64 characters (CLI11 indents each under the first).
    std::string make_option_desc(const CLI::Option* opt) const override {
      std::string out, line;
      std::istringstream words(opt->get_description());
      for (std::string word; words >> word;) {
        if (!line.empty() && line.size() + 1 + word.size() > 64) {
          out += line + "\n";
          line.clear();
        }
        line += (line.empty() ? "" : " ") + word;
      }
      return out + line;
    }

   private:
    std::vector<HelpGroup> groups_;
  };
  for (CLI::Option* o : cli.get_options({})) {
    std::string group = kUngrouped;
    for (const HelpGroup& g : groups) {
      for (const std::string& flag : g.flags) {
        if (o->check_lname(flag.substr(2))) group = g.title;
      }
    }
    o->group(group);
  }
  auto formatter = std::make_shared<Grouped>(groups);
  formatter->column_width(36);
  cli.formatter(formatter);
}

// Returns an exit status to return now, or nullopt to go on.
inline std::optional<int> parse(CLI::App& cli, int argc, char** argv) {
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);  // --help
    std::cerr << cli.get_name() << ": " << e.what() << " (see --help)\n";
    return 2;
  }
  return std::nullopt;
}

}  // namespace app
