"""A chat-server process for the Python tests (tests/web/*.py, bench/ws_ping_flood.py): started on
free ports (--port 0 --http-port 0), its ports read from what it prints, its stderr kept, stopped
with SIGTERM, and checked for sanitizer reports. Every wait has a deadline; nothing sleeps. The Node
tests have the same in tests/harness/chatproc.cjs.

The server's path: $TEST_PROGRAM_DIR/chat-server when TEST_PROGRAM_DIR is set (dev.sh runs the
integration tests against the ASan and TSan programs that way), else the first argument the test was
given, else $CHAT_SERVER.
"""
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


def server_path(argv):
    """The chat-server to test; removes its argument from argv (the rest is for unittest)."""
    given = None
    if len(argv) > 1 and not argv[1].startswith("-"):
        given = argv.pop(1)
    if os.environ.get("TEST_PROGRAM_DIR"):
        return os.path.join(os.environ["TEST_PROGRAM_DIR"], "chat-server")
    path = given or os.environ.get("CHAT_SERVER")
    if not path:
        sys.exit("usage: %s PATH-TO-chat-server (or set CHAT_SERVER or TEST_PROGRAM_DIR)" % argv[0])
    return path


def sanitized():
    """True when the programs are a sanitizer build's: slower, so deadlines are longer."""
    return bool(os.environ.get("TEST_PROGRAM_DIR"))


class Lines:
    """The lines of a pipe, read by a thread, waited on with a deadline."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in iter(pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, pattern, timeout, start=0):
        """The first match of `pattern` in a line from index `start` on, waiting up to `timeout` s."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError("no line matching %r within %.1f s; got:\n%s"
                                         % (pattern, timeout, "\n".join(self.lines[-40:])))
                self.cond.wait(left)

    def text(self):
        with self.cond:
            return "\n".join(self.lines)


class ChatServer:
    def __init__(self, path, *flags, threads=2, store="memory"):
        self.terminated = False
        # History in memory unless the test says otherwise: never a shared ./chat-data (a test that
        # keeps it in sqlite gives its own --data-dir).
        self.args = [path, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--irc-port", "0", "--store", store,
                     "--threads", str(threads), *flags]
        # The tests flood and open many connections from one address on purpose (to test other
        # things): the limits against that are off unless a test sets them.
        # And SIGTERM without the drain's window unless the test sets one.
        for flag in ("--message-rate", "--max-connections-per-address", "--connect-rate", "--history-rate", "--drain-ms"):
            if flag not in flags:
                self.args += [flag, "0"]
        # With a certificate, the TLS listeners on free ports too.
        tls = "--tls-cert" in flags
        if tls:
            self.args += ["--tls-port", "0", "--https-port", "0", "--ircs-port", "0"]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        try:
            m = self.out.wait_for(r"^chat-server: listening on [\d.]+:(\d+)", 20)
            self.port = int(m.group(1))
            m = self.out.wait_for(r"^chat-server: irc listening on [\d.]+:(\d+)", 20)
            self.irc_port = int(m.group(1))
            m = self.out.wait_for(r"^chat-server: http listening on [\d.]+:(\d+)", 20)
            self.http_port = int(m.group(1))
            if tls:
                self.tls_port, self.https_port, self.ircs_port = (
                    int(self.out.wait_for(r"^chat-server: %s listening on [\d.]+:(\d+)" % name, 20).group(1))
                    for name in ("tls", "https", "ircs"))
        except AssertionError:
            self.kill()
            raise AssertionError("chat-server did not start: %s\nstderr:\n%s" % (self.args, self.err.text()))

    def connect_tcp(self, timeout=10):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def connect_http(self, timeout=10):
        return socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout)

    def signal(self, signo=signal.SIGTERM):
        self.proc.send_signal(signo)
        if signo == signal.SIGTERM:
            self.terminated = True

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.thread.join(5)
        self.err.thread.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self, timeout=20):
        """SIGTERM, then the exit status (0 expected) and no sanitizer report on stderr."""
        # Once only: a second SIGTERM may find the server past its loop, with the default action back.
        if self.proc.poll() is None and not self.terminated:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("chat-server did not stop within %d s of SIGTERM" % timeout)
        self.out.thread.join(5)
        self.err.thread.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        err = self.err.text()
        for mark in SANITIZER_MARKS:
            if mark in err:
                raise AssertionError("sanitizer report from chat-server:\n" + err)
        if code != 0:
            raise AssertionError("chat-server exited with %d; stderr:\n%s" % (code, err))
