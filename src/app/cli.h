// Shared by the binaries in apps/: flag parsing with CLI11 where a user's mistake is one clear line
// on stderr and exit status 2, and --help goes to stdout with status 0.
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>

namespace app {

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
