// A program's flags from a TOML file (--config FILE), for the programs in apps/ that take one.
//
// Every long flag is a key: its name without the dashes, at the top level or inside a table whose
// name prefixes it ([irc] port = 6697 is --irc-port 6697; dotted keys work the same). A flag
// without a value (--verbose) takes true or false; a repeatable one (--allowed-origin) an array.
// Flags on the command line win over the file. An unknown key, a value of the wrong kind, a value
// its flag refuses, or a file that is not TOML: one line naming the file, the line and the key.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace app {

// The project's version (CMake's project VERSION), for --version.
const char* version();

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Sets every option of `cli` that the command line left unset from the TOML file `path`. Throws
// ConfigError ("FILE:LINE: ...").
void apply_config_file(CLI::App& cli, const std::string& path);

// app::parse (app/cli.h) for a program with --config FILE and --version: parses the command line,
// then the file. Returns an exit status to return now (2 for a mistake, said in one line), or
// nullopt to go on.
std::optional<int> parse_with_config(CLI::App& cli, int argc, char** argv);

// Adds --config FILE (to `path`) and --version to `cli`.
void add_config_flags(CLI::App& cli, std::string& path);

}  // namespace app
