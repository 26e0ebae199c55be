// A supervisor of worker processes (chat-server --workers N): it starts N copies of a program,
// passes signals on, starts again one that dies (with a backoff), gives up on a crash loop, and
// stops them all on SIGINT/SIGTERM, with SIGKILL for one that does not stop in time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace reactor {
class Reactor;
}

namespace app {

// How the supervisor paces itself. The defaults are chat-server's; tests pass short ones.
struct SupervisorTimings {
  // After the supervisor sends SIGTERM, how long a worker may take to stop before it gets SIGKILL
  // (chat-server's own grace for queued output is 2 s by default).
  std::chrono::milliseconds stop_grace{15'000};
  // A worker that exits with an error status this soon after it started (a bad flag, a port in
  // use) stops everything at once: every other start would fail the same way.
  std::chrono::milliseconds start_window{2'000};
  // A worker that dies otherwise is started again after a pause: first_backoff, doubling with
  // each crash up to max_backoff, and back to first_backoff once a worker has run for healthy_after.
  std::chrono::milliseconds first_backoff{100};
  std::chrono::milliseconds max_backoff{5'000};
  std::chrono::milliseconds healthy_after{30'000};
  // One worker crashing crash_limit times within crash_window is a crash loop: give up, stop all.
  size_t crash_limit = 5;
  std::chrono::milliseconds crash_window{60'000};
};

// What each worker runs.
struct WorkerCommand {
  std::string program;            // executed with execv
  std::vector<std::string> argv;  // argv[0] included
  // When not empty, each worker finds its index (0 .. N-1) in this environment variable.
  std::string index_variable;
  // The supervisor blocks SIGINT, SIGTERM, SIGUSR1 and SIGCHLD (it takes them through a signalfd),
  // and a blocked signal stays blocked across exec. A worker that takes its signals through a
  // signalfd of its own (chat-server) wants that: a signal sent before it watches them waits for it
  // instead of killing it. Any other program wants them unblocked.
  bool keep_signals_blocked = true;
};

// Runs `workers` copies of `command` until SIGINT or SIGTERM, on a reactor of its own in this
// thread; returns the exit status for this process:
// - SIGINT/SIGTERM: SIGTERM to every worker (SIGKILL to one still there stop_grace later); once
//   all have stopped, 0 (or the error status a worker stopped with). SIGUSR1 is passed on.
// - A worker stopped by itself with status 0 after start_window (someone sent it SIGTERM: a
//   rolling restart) is replaced at once.
// - A worker that exits with an error status within start_window stops everything: its status.
// - Any other death (a signal, an error status later, status 0 at once) is a crash: the worker is
//   started again after the backoff; crash_limit crashes of one worker within crash_window stop
//   everything, with one line saying so: 1.
// `started`, if given, is called once the first workers are running, on the supervisor's reactor.
int supervise(size_t workers, const WorkerCommand& command, const SupervisorTimings& timings = {},
              const std::function<void(reactor::Reactor&)>& started = nullptr);

// chat-server's command line for one worker: `argv` without --workers and --port, then
// --port `port` --reuse-port.
std::vector<std::string> worker_args(int argc, char** argv, uint16_t port);

// chat-server --workers N: binds host:port (port 0: a free port, chosen here) with SO_REUSEPORT,
// bound but not listening (it takes no connections), and holds it while the workers start, each
// this program again with worker_args (/proc/self/exe); prints "chat-server: supervising N workers
// on HOST:PORT"; then supervise(). Throws std::system_error when the port cannot be bound.
int supervise_on_port(size_t workers, const std::string& host, uint16_t port, int argc, char** argv,
                      const SupervisorTimings& timings = {});

// The environment variable that tells a chat-server process it is worker N.
inline constexpr const char* kWorkerIndexVariable = "CHAT_SERVER_WORKER";
// In a worker (kWorkerIndexVariable set), tags every log line "[worker N, pid P]"; else nothing.
void tag_logs_if_worker();

}  // namespace app
