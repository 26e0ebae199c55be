// A redis-server of a test's own, for the tests of several chat-server processes.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "chat_helpers.h"
#include "process.h"

namespace redistest {

// A port free at the time of asking (redis-server cannot be told to pick one and say which).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// chat_args for a node joined through --redis: its history in Redis (chat_args keeps one process's
// in memory, which --redis does not take).
inline std::vector<std::string> node_args(std::vector<std::string> extra) {
  std::vector<std::string> args = chattest::chat_args(std::move(extra));
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--store") args[i + 1] = "redis";
  }
  return args;
}

// A throwaway redis-server: no persistence, loopback only.
struct RedisServer {
  RedisServer() : port(free_port()) { start(); }
  void start() {
    process = std::make_unique<testproc::Process>(std::vector<std::string>{
        "redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"});
    if (!process->wait_for_line("Ready to accept connections", std::chrono::seconds(20))) {
      throw std::runtime_error("redis-server did not start: " + process->out() + process->err());
    }
  }
  void kill() {
    process->signal_and_wait(SIGKILL, std::chrono::seconds(10));
    process.reset();
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port); }
  int port;
  std::unique_ptr<testproc::Process> process;
};

}  // namespace redistest
