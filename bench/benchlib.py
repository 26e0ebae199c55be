"""Shared pieces of the benchmark scripts (python3 standard library only).

* Processes: every process a script starts goes through Processes.start() and is stopped by
  Processes.cleanup() (in a finally), by pid, never by name. Servers run in their own session so a
  terminal's ^C reaches only the script, which then stops them in order.
* Readiness: a server is ready when it prints "listening on HOST:PORT" (ours, the reference, the
  Node.js script) or, for programs that print nothing useful (the article's Python servers, Redis,
  NATS), when /proc/net/tcp shows a listening socket on its port.
* Fixed ports: the article's Python servers can only listen on 1234 or 2002 and do not set
  SO_REUSEADDR, so a TIME-WAIT socket left on the port by a previous run makes their bind() fail.
  free_fixed_port() checks that nobody listens there, then destroys leftover TIME-WAIT sockets of
  that local port (`ss -K`, root) and waits until a plain bind() succeeds.
* /proc sampling: a process's CPU time (utime+stime, all threads), RSS, open descriptors; the
  machine's busy CPU time.
* loadgen: run_loadgen() runs build/bin/loadgen --json with a hard timeout and returns its report,
  or a dict with "failed" and the reason; others_cores() and window_notes() say how much the rest of
  the machine disturbed its window (a run is *contended* when others used over NOISY CPUs).
* Runs: abba() orders alternating runs, median_of() takes medians over the runs that did not fail.
"""
import errno
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# chat-server's limits against one abusive client address (connections, connect rate, messages per
# connection): a load generator is one address sending as fast as it is asked. Off in the runs that
# compare chat-server with other systems (which have no such limits).
CHAT_LIMITS_OFF = ["--max-connections-per-address", "0", "--connect-rate", "0", "--message-rate", "0"]
READY_LINE = re.compile(r"listening on (\S+):(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY = 0.15  # a run is "contended" when the rest of the machine used more CPUs than this


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


# ---- /proc ------------------------------------------------------------------------------------------
def cpu_seconds(pid):
    """utime+stime of every thread of `pid`, in seconds; -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return -1.0
    fields = data[data.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_field(pid, name):
    """An integer field of /proc/PID/status (e.g. "VmRSS" in KiB, "Threads"), or -1."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_kib(pid):
    return status_field(pid, "VmRSS")


def thread_count(pid):
    return status_field(pid, "Threads")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def system_cpu():
    """(busy, steal) CPU seconds of the whole machine, all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
    return busy / CLK_TCK, v[7] / CLK_TCK


def other_load(seconds, pids=()):
    """CPUs used by everything but `pids` while we sleep for `seconds`."""
    b0, _ = system_cpu()
    c0 = sum(max(cpu_seconds(p), 0) for p in pids)
    time.sleep(seconds)
    b1, _ = system_cpu()
    c1 = sum(max(cpu_seconds(p), 0) for p in pids)
    return max(0.0, (b1 - b0) - (c1 - c0)) / seconds


def machine():
    model, mhz = "unknown", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("cpu MHz") and not mhz:
                    mhz = f"{float(line.split(':', 1)[1]):.0f} MHz"
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1048576:.1f} GiB RAM"
    except OSError:
        pass

    def sysctl(name):
        try:
            return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
        except OSError:
            return "?"

    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": os.cpu_count(), "cpu": model, "mhz": mhz, "mem": mem,
        "kernel": platform.release(), "nofile": nofile[0],
        "congestion": sysctl("net.ipv4.tcp_congestion_control"),
        "ports": sysctl("net.ipv4.ip_local_port_range").replace("\t", "-"),
        "python": platform.python_version(),
        "node": version_of(["node", "--version"]),
        "redis": version_of(["redis-server", "--version"], r"v=(\S+)"),
        "nats": version_of(["nats-server", "--version"], r"\bv(\d\S*)"),
    }


def version_of(cmd, pattern=None):
    if not shutil.which(cmd[0]):
        return "missing"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if pattern:
        m = re.search(pattern, out)
        return m.group(1) if m else out
    return out


# ---- ports -------------------------------------------------------------------------------------------
def _tcp_sockets():
    """(local_port, state) of every TCP socket (IPv4 and IPv6), from /proc/net/tcp*."""
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    out.append((int(parts[1].rsplit(":", 1)[1], 16), int(parts[3], 16)))
        except OSError:
            pass
    return out


TCP_LISTEN = 0x0A


def port_listening(port):
    return any(p == port and s == TCP_LISTEN for p, s in _tcp_sockets())


def free_port():
    """A port nobody uses now (the kernel's pick), for servers that cannot take --port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR, as the article's servers
            return True
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise


def free_fixed_port(port, timeout=15.0):
    """Makes a fixed port bindable without SO_REUSEADDR. Returns None, or why it cannot."""
    if port_listening(port):
        return f"port {port} is in use by another program (a listening socket)"
    deadline = time.monotonic() + timeout
    next_kill = 0.0
    while not _bindable(port):
        now = time.monotonic()
        if now > deadline:
            return f"port {port} stayed busy for {timeout:.0f} s (sockets of an earlier run)"
        if now >= next_kill and shutil.which("ss"):
            # Leftover TIME-WAIT (and closing) sockets of this local port from the previous run:
            # the article's servers die on a client's reset and so close their side first.
            for state in ("time-wait", "fin-wait-1", "fin-wait-2", "last-ack", "closing"):
                subprocess.run(["ss", "-K", "-tn", "state", state, f"( sport = :{port} )"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            next_kill = now + 2
            continue
        time.sleep(0.25)
    return None


# ---- processes ----------------------------------------------------------------------------------------
class Server:
    def __init__(self, name, proc, port, log_path):
        self.name, self.proc, self.port, self.log_path = name, proc, port, log_path

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=3, match=None):
        try:
            text = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return []
        if match:
            text = [l for l in text if re.search(match, l)]
        return text[-lines:]


class StartError(RuntimeError):
    pass


class Processes:
    """Every process started by a script; cleanup() stops whatever is left."""

    def __init__(self, prefix="bench-"):
        self.live = []
        self.logdir = tempfile.mkdtemp(prefix=prefix)

    def spawn(self, cmd, stdout=subprocess.DEVNULL, stderr=None, name="proc", **kw):
        log_path = os.path.join(self.logdir, f"{name}.{len(self.live)}.{int(time.time() * 1000) % 100000}.log")
        logf = open(log_path, "ab")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=stderr if stderr is not None else logf,
                                    start_new_session=True, **kw)
        finally:
            logf.close()
        self.live.append(proc)
        return proc, log_path

    def start(self, name, cmd, ready="line", port=None, timeout=15.0, cwd=None, env=None, ready_line=None):
        """Starts a server and waits until it is ready. ready: "line" (prints "listening on H:P", or
        the regex `ready_line` whose group 2 is the port) or "listen" (a listening socket on `port`
        shows in /proc/net/tcp)."""
        ready_re = re.compile(ready_line) if ready_line else READY_LINE
        if ready == "line":
            proc, log_path = self.spawn(cmd, stdout=subprocess.PIPE, name=name, cwd=cwd, env=env)
        else:
            # The article's servers print a line per connection or message: to /dev/null (a pipe
            # nobody reads would block them).
            proc, log_path = self.spawn(cmd, stdout=subprocess.DEVNULL, name=name, cwd=cwd, env=env)
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            if ready == "line":
                r, _, _ = select.select([proc.stdout], [], [], 0.05)
                if r:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if chunk:
                        seen += chunk
                        m = ready_re.search(seen.decode(errors="replace"))
                        if m:
                            return Server(name, proc, int(m.group(2)), log_path)
                        continue
            else:
                if port_listening(port):
                    return Server(name, proc, port, log_path)
                time.sleep(0.05)
            if proc.poll() is not None:
                break
        self.stop(proc)
        tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-3:]
        raise StartError(f"{name} did not become ready in {timeout:.0f} s "
                         f"(exit status {proc.returncode}; output {seen[-200:]!r}; log: {' | '.join(tail)})")

    def stop(self, proc, timeout=5.0, sig=signal.SIGTERM):
        if isinstance(proc, Server):
            proc = proc.proc
        try:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        _close_streams(proc)
        if proc in self.live:
            self.live.remove(proc)
        return proc.returncode

    def cleanup(self):
        for proc in list(self.live):
            try:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            _close_streams(proc)
        self.live.clear()


def _close_streams(proc):
    for stream in (proc.stdout, proc.stderr):
        if stream:
            try:
                stream.close()
            except OSError:
                pass


# ---- loadgen ------------------------------------------------------------------------------------------
def run_loadgen(procs, binary, args, timeout):
    """Runs loadgen --json; returns its report (plus "stderr": notes) or {"failed": why, ...}."""
    cmd = [str(binary)] + [str(a) for a in args] + ["--json"]
    proc, _ = procs.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, name="loadgen")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # loadgen kills its workers and exits
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        procs.live.remove(proc)
        return {"failed": f"loadgen did not finish in {timeout:.0f} s", "cmd": cmd,
                "stderr": err.decode(errors="replace").splitlines()[-5:]}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc in procs.live:
        procs.live.remove(proc)
    notes = [l for l in err.decode(errors="replace").splitlines() if l.strip()]
    lines = [l for l in out.decode(errors="replace").splitlines() if l.startswith("{")]
    if not lines:
        return {"failed": (notes[-1] if notes else f"loadgen exit status {proc.returncode}"),
                "cmd": cmd, "stderr": notes[-5:], "status": proc.returncode}
    res = json.loads(lines[-1])
    res["stderr"] = notes
    res["status"] = proc.returncode
    res["cmd"] = cmd
    return res


def others_cores(res):
    """CPUs used by the rest of the machine during a loadgen window (busy minus server minus client)."""
    d = res.get("duration_s") or 1
    sysc = res.get("system") or {}
    server_cpu = ((res.get("server") or {}).get("cpu_s")) or 0
    busy = sysc.get("busy_s") or 0
    steal = sysc.get("steal_s") or 0
    return max(0.0, (busy - server_cpu - res.get("client_cpu_s", 0)) / d), max(0.0, steal / d)


def window_notes(res):
    """What a loadgen report says besides its numbers: the first error, the CPUs the rest of the
    machine used in the window, whether that made the run contended, and loadgen's first notes."""
    others, steal = others_cores(res)
    return {"first_error": res.get("first_error"), "others": others,
            "contended": others > NOISY or steal > NOISY, "stderr": res.get("stderr", [])[:5]}


# ---- runs ---------------------------------------------------------------------------------------------
def abba(names, rounds):
    """`rounds` rounds of `names`, every other round reversed (A B, B A, A B, ...): a linear drift of
    the shared machine's speed then hits each alike."""
    order = []
    for r in range(rounds):
        order += names if r % 2 == 0 else names[::-1]
    return order


def median_of(runs, key):
    """The median of `key` over the runs that did not fail and have it; None when none has."""
    vals = [r[key] for r in runs if "failed" not in r and r.get(key) is not None]
    return statistics.median(vals) if vals else None


# ---- formatting ---------------------------------------------------------------------------------------
def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "-"
    if v >= 100_000:
        return f"{v / 1000:,.0f} ms"
    return f"{v:,.0f}"


def fmt_f(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}"


def fmt_bytes(b):
    if b is None:
        return "-"
    if abs(b) >= 10 * 1024:
        return f"{b / 1024:,.1f} KiB"
    return f"{b:,.0f} B"
