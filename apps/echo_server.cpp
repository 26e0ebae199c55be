// echo-server: the article's echo server, in the model of your choice.
#include <cstdio>
#include <iostream>

#include "app/cli.h"
#include "echo/echo.h"

int main(int argc, char** argv) {
  CLI::App cli{"Echo server: sends back every byte it receives.", "echo-server"};
  echo::Options options;
  std::string model = "reactor";
  cli.add_option("--host", options.host, "Address to listen on")->capture_default_str();
  cli.add_option("--port", options.port, "Port to listen on (0: any free port)")->capture_default_str();
  cli.add_option("--backend", options.backend,
                 "Event demultiplexer for --model reactor: epoll, poll or select (default: best available)")
      ->check(CLI::IsMember({"epoll", "poll", "select"}));
  cli.add_option("--model", model,
                 "reactor: the event loop; threads: a thread per connection; busy-wait: "
                 "non-blocking sockets polled in a loop")
      ->capture_default_str()
      ->check(CLI::IsMember({"reactor", "threads", "busy-wait"}));
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (!options.backend.empty() && model != "reactor") {
    std::cerr << "echo-server: --backend applies to --model reactor only\n";
    return 2;
  }

  auto ready = [&](const reactor::InetAddress& address, const char* engine) {
    // The readiness line scripts and tests wait for.
    std::printf("echo-server: listening on %s (model %s, %s)\n", address.to_string().c_str(),
                model.c_str(), engine);
    std::fflush(stdout);
  };
  try {
    if (model == "threads") echo::run_threads(options, ready);
    if (model == "busy-wait") echo::run_busy_wait(options, ready);
    echo::run_reactor(options, ready);
  } catch (const std::exception& e) {
    std::cerr << "echo-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
