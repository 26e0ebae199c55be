#include "process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <stdexcept>

#include <gtest/gtest.h>

namespace testproc {

std::string program(const char* name, const char* built) {
  const char* dir = std::getenv("TEST_PROGRAM_DIR");
  if (dir == nullptr || *dir == '\0') return built;
  // A program under test must be the other tree's: falling back to this build's would test the
  // release program and say the sanitized one passed.
  std::string there = std::string(dir) + "/" + name;
  if (::access(there.c_str(), X_OK) != 0) {
    int error = errno;
    throw std::runtime_error("TEST_PROGRAM_DIR is set but has no " + std::string(name) + ": " + there + " (" +
                             std::strerror(error) + "); build it in that tree");
  }
  return there;
}

bool programs_under_sanitizer() {
  const char* dir = std::getenv("TEST_PROGRAM_DIR");
  return dir && *dir;
}

using Clock = std::chrono::steady_clock;

Process::Process(std::vector<std::string> argv) : name_(argv.empty() ? "" : argv[0]) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) {
    throw std::runtime_error("pipe2 failed");
  }
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  in_ = in[1];
  outfd_ = out[0];
  errfd_ = err[0];
  ::fcntl(outfd_, F_SETFL, O_NONBLOCK);
  ::fcntl(errfd_, F_SETFL, O_NONBLOCK);
}

Process::~Process() {
  if (!status_) {
    // SIGCONT first (should a test have stopped it), then SIGTERM. Never SIGCONT after SIGTERM: a
    // sanitized program that is already exiting is being stopped by LeakSanitizer's checker
    // (ptrace: a SIGSTOP to each thread), and a SIGCONT then discards that pending stop, leaving
    // the checker waiting for good (an ASan chat-client or chat-server "did not stop within 20 s"
    // about one run in twenty beside stress-ng, both threads found there with gdb).
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGTERM);
    auto st = wait(std::chrono::seconds(20));
    if (!st) {
      ::kill(pid_, SIGKILL);
      wait(std::chrono::seconds(20));
      ADD_FAILURE() << name_ << " did not stop within 20 s of SIGTERM; stderr:\n" << err_.substr(0, 4000);
    } else if (must_exit_cleanly_ && !(WIFEXITED(*st) && WEXITSTATUS(*st) == 0)) {
      ADD_FAILURE() << name_ << " did not exit with status 0 on SIGTERM ("
                    << (WIFEXITED(*st) ? "status " + std::to_string(WEXITSTATUS(*st))
                                       : "signal " + std::to_string(WTERMSIG(*st)))
                    << "); stderr:\n" << err_.substr(0, 4000);
    }
  }
  if (std::string report = sanitizer_report(err_); !report.empty()) {
    ADD_FAILURE() << name_ << " reported:\n" << report;
  }
  for (int fd : {in_, outfd_, errfd_}) {
    if (fd >= 0) ::close(fd);
  }
}

std::string sanitizer_report(const std::string& text) {
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                             "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer"}) {
    size_t at = text.find(marker);
    if (at == std::string::npos) continue;
    size_t from = text.rfind('\n', at);
    from = from == std::string::npos ? 0 : from + 1;
    return text.substr(from, 6000);
  }
  return "";
}

void Process::pump(int timeout_ms) {
  pollfd fds[2] = {{outfd_, POLLIN, 0}, {errfd_, POLLIN, 0}};
  if (::poll(fds, 2, timeout_ms) <= 0) return;
  char buf[65536];
  for (auto& p : fds) {
    if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP))) continue;
    ssize_t n = ::read(p.fd, buf, sizeof buf);
    if (n > 0) {
      (p.fd == outfd_ ? out_ : err_).append(buf, static_cast<size_t>(n));
    } else if (n == 0) {  // end of output: stop watching
      ::close(p.fd);
      (p.fd == outfd_ ? outfd_ : errfd_) = -1;
    }
  }
}

namespace {

// The next line of `text` after `scanned` that contains `marker`.
std::optional<std::string> find_line(const std::string& text, size_t& scanned, const std::string& marker) {
  size_t nl;
  while ((nl = text.find('\n', scanned)) != std::string::npos) {
    std::string line = text.substr(scanned, nl - scanned);
    scanned = nl + 1;
    if (line.find(marker) != std::string::npos) return line;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> Process::wait_for_line(const std::string& marker, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto line = find_line(out_, scanned_, marker)) return line;
    if (Clock::now() >= deadline || outfd_ < 0) return std::nullopt;
    pump(10);
  }
}

std::optional<std::string> Process::wait_for_err_line(const std::string& marker,
                                                       std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto line = find_line(err_, scanned_err_, marker)) return line;
    if (Clock::now() >= deadline || errfd_ < 0) return std::nullopt;
    pump(10);
  }
}

void Process::write_stdin(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(in_, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("write to child stdin failed");
    }
    off += static_cast<size_t>(n);
  }
}

void Process::close_stdin() {
  if (in_ >= 0) ::close(in_);
  in_ = -1;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!status_) {
    int st;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      break;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    pump(10);
  }
  while (outfd_ >= 0 || errfd_ >= 0) pump(100);  // the rest of the output
  return status_;
}

std::optional<int> Process::signal_and_wait(int signo, std::chrono::milliseconds timeout) {
  if (!status_) ::kill(pid_, signo);
  return wait(timeout);
}

Server::Server(std::vector<std::string> argv) : process(std::move(argv)) {
  auto line = process.wait_for_line("listening on", std::chrono::seconds(20));
  if (!line) throw std::runtime_error("server did not report readiness; stderr: " + process.err());
  std::smatch m;
  if (!std::regex_search(*line, m, std::regex(R"(:(\d+) )"))) throw std::runtime_error("no port in: " + *line);
  port = std::stoi(m[1]);
}

int connect_to(int port, int rcvbuf, const std::string& source) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source.c_str(), &from.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) < 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::string echo_many(int port, int connections, size_t payload_size, std::chrono::seconds timeout) {
  struct Conn {
    int fd;
    std::string payload, got;
    size_t sent = 0;
  };
  std::vector<Conn> conns;
  auto cleanup = [&] {
    for (auto& c : conns) ::close(c.fd);
  };
  for (int i = 0; i < connections; ++i) {
    int fd = connect_to(port);
    if (fd < 0) {
      cleanup();
      return "connect " + std::to_string(i) + ": " + std::strerror(errno);
    }
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    std::string payload;
    std::string tag = "<" + std::to_string(i) + ">";
    for (size_t k = 0; payload.size() < payload_size; ++k) payload += tag + static_cast<char>('a' + (k + i) % 26);
    payload.resize(payload_size);
    conns.push_back({fd, std::move(payload), {}, 0});
  }
  auto deadline = Clock::now() + timeout;
  std::vector<pollfd> fds(conns.size());
  size_t done = 0;
  std::vector<char> buf(1 << 16);
  while (done < conns.size()) {
    if (Clock::now() > deadline) {
      cleanup();
      return std::to_string(conns.size() - done) + " connection(s) did not get their bytes back in time";
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      bool finished = c.got.size() >= c.payload.size();
      fds[i] = {finished ? -1 : c.fd, static_cast<short>(POLLIN | (c.sent < c.payload.size() ? POLLOUT : 0)), 0};
    }
    if (::poll(fds.data(), fds.size(), 100) < 0) continue;
    for (size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      if (fds[i].fd < 0) continue;
      if ((fds[i].revents & POLLOUT) && c.sent < c.payload.size()) {
        ssize_t n = ::send(c.fd, c.payload.data() + c.sent, c.payload.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<size_t>(n);
      }
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          cleanup();
          return "connection " + std::to_string(i) + " closed after " + std::to_string(c.got.size()) + " bytes";
        }
        if (n > 0) {
          c.got.append(buf.data(), static_cast<size_t>(n));
          if (c.got.size() > c.payload.size() || c.got != std::string_view(c.payload).substr(0, c.got.size())) {
            cleanup();
            return "connection " + std::to_string(i) + " got bytes that are not its own";
          }
          if (c.got.size() == c.payload.size()) ++done;
        }
      }
    }
  }
  cleanup();
  return "";
}

LineClient::LineClient(int port, int rcvbuf) : fd_(connect_to(port, rcvbuf)) {}
LineClient::LineClient(int port, const std::string& source) : fd_(connect_to(port, 0, source)) {}
LineClient::~LineClient() {
  if (fd_ >= 0) ::close(fd_);
}

void LineClient::send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
}

std::optional<std::string> LineClient::line(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string l = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return l;
    }
    if (eof_) return std::nullopt;
    // Rounded up, and polled at least once: line(1ms) must still take what has already arrived
    // (truncated to 0 ms it returned at once without reading).
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0))) <= 0) {
      if (left <= 0) return std::nullopt;
      continue;
    }
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      eof_ = true;
      continue;
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

bool LineClient::closed_by_peer(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!eof_) {
    // Polled at least once, so closed_by_peer(0ms) sees a close that has already happened.
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::clamp<long long>(left, 0, 50))) <= 0) {
      if (left <= 0) break;
      continue;
    }
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0 && !(n < 0 && errno == EINTR)) eof_ = true;
  }
  return eof_;
}

namespace {
// A "NAME: N kB" field of /proc/PID/status, or -1.
long status_kib(pid_t pid, const char* field) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (!f) return -1;
  std::string format = std::string(field) + ": %ld kB";
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, format.c_str(), &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}
}  // namespace

long rss_kib(pid_t pid) { return status_kib(pid, "VmRSS"); }
long peak_rss_kib(pid_t pid) { return status_kib(pid, "VmHWM"); }

}  // namespace testproc
