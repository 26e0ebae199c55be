// Child processes for integration tests: start a binary, wait for its readiness line (never a
// sleep), talk to it over real sockets, and always clean it up.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace testproc {

// The path of one of the programs under test: $TEST_PROGRAM_DIR/NAME when TEST_PROGRAM_DIR is set
// (these tests then drive another build tree's programs, e.g. the sanitizer builds'; a program
// missing there throws, naming the path: never a silent fallback to this build's), else `built`,
// the one built with the tests.
std::string program(const char* name, const char* built);
// True when the programs are another tree's (TEST_PROGRAM_DIR), which dev.sh uses only for the
// sanitizer builds: memory figures of such programs say nothing.
bool programs_under_sanitizer();
// The programs under test: the servers and chat-client.
#define ECHO_SERVER_BIN ::testproc::program("echo-server", ECHO_SERVER_PATH)
#define CHAT_SERVER_BIN ::testproc::program("chat-server", CHAT_SERVER_PATH)
#define CHAT_CLIENT_BIN ::testproc::program("chat-client", CHAT_CLIENT_PATH)
// The drivers, which only drive the server under test: always this build's, whatever
// TEST_PROGRAM_DIR says.
#define ECHO_CLIENT_BIN std::string(ECHO_CLIENT_PATH)
#define LOADGEN_BIN std::string(LOADGEN_PATH)

class Process {
 public:
  // Starts `argv[0]` with `argv`; stdin, stdout and stderr are pipes to this process.
  explicit Process(std::vector<std::string> argv);
  // If still running: SIGCONT (should a test have stopped it) then SIGTERM, then it must exit with
  // status 0 within 20 s (else SIGKILL and a test failure), unless may_die_by_signal() was called.
  // Whatever ended it, a sanitizer report in its stderr is a test failure: what a program does
  // after a test's last assertion (its shutdown, its close paths, its leaks) is checked too.
  ~Process();
  // For programs that run until killed, as the article's baseline models do.
  void may_die_by_signal() { must_exit_cleanly_ = false; }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stdout until a line containing `marker` arrives; returns that line (nullopt on timeout
  // or end of output).
  std::optional<std::string> wait_for_line(const std::string& marker, std::chrono::milliseconds timeout);
  // The same on stderr (where the servers log).
  std::optional<std::string> wait_for_err_line(const std::string& marker, std::chrono::milliseconds timeout);
  void write_stdin(const std::string& data);
  void close_stdin();
  // Sends `signo` and waits up to `timeout`; returns the wait status, or nullopt on timeout.
  std::optional<int> signal_and_wait(int signo, std::chrono::milliseconds timeout);
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Everything read from stdout/stderr so far (after wait(): everything).
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void pump(int timeout_ms);

  pid_t pid_ = -1;
  int in_ = -1, outfd_ = -1, errfd_ = -1;
  std::string out_, err_;
  size_t scanned_ = 0, scanned_err_ = 0;
  std::optional<int> status_;
  std::string name_;
  bool must_exit_cleanly_ = true;
};

// The first sanitizer report (ASan, LSan, UBSan, TSan) in `text`, or "".
std::string sanitizer_report(const std::string& text);

// Starts a server binary and waits for its "listening on HOST:PORT" line; returns the port.
struct Server {
  explicit Server(std::vector<std::string> argv);
  Process process;
  int port = -1;
};

// A blocking TCP connection to 127.0.0.1:port (or -1).
int connect_to(int port, int rcvbuf = 0, const std::string& source = {});

// Opens `connections` sockets to the server, sends each its own payload of `payload_size` bytes
// concurrently, and checks that every one gets exactly its own bytes back. Returns an empty string
// on success, else what went wrong.
std::string echo_many(int port, int connections, size_t payload_size, std::chrono::seconds timeout);

// A test's own client socket: send bytes, read lines with a deadline.
class LineClient {
 public:
  // `rcvbuf` > 0: set SO_RCVBUF before connecting (a small window: a reader that cannot keep up).
  explicit LineClient(int port, int rcvbuf = 0);
  // From the source address `source` (another of 127.0.0.0/8: another client address).
  LineClient(int port, const std::string& source);
  ~LineClient();
  LineClient(const LineClient&) = delete;
  LineClient& operator=(const LineClient&) = delete;
  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void send(const std::string& bytes);
  // The next line (without '\n'), or nullopt at the deadline or end of stream.
  std::optional<std::string> line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True once the server has closed the connection (reads until end of stream or the deadline).
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True once the stream has ended and line() has returned every whole line before the end.
  bool ended() const { return eof_ && buffer_.find('\n') == std::string::npos; }

 private:
  int fd_;
  std::string buffer_;
  bool eof_ = false;
};

// Resident memory of a process in KiB (VmRSS), or -1.
long rss_kib(pid_t pid);
// Its peak so far (VmHWM), or -1.
long peak_rss_kib(pid_t pid);

}  // namespace testproc
