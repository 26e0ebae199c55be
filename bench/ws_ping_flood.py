#!/usr/bin/python3
"""A WebSocket client that sends pings as fast as it can and never reads: what it costs the server.

Each scenario starts a fresh chat-server (two reactors, memory store), opens one WebSocket on /ws with
a small receive buffer, and sends masked 125-byte pings for --seconds (default 10) or until the
server closes or resets the connection; then it waits one more second and reads the server's CPU
time (utime + stime from /proc/PID/stat, from the start of the flood) and its close line.

  pings                 pings only
  after a bad frame     one unmasked frame first (a protocol error: close 1002, a lingering close),
                        then the pings
  reconnecting          pings only, reconnecting at once after each close (or refusal) for the whole
                        time, under --connect-rate 10 (--connect-burst 500): no target, and beside it
  reconnecting, one ping each   the same churn of connections with one ping each: what the
                        connections themselves cost (accepted and refused), without the flood

Run: /usr/bin/python3 bench/ws_ping_flood.py [build/bin/chat-server] [--seconds 10]
Target: each of the first two costs the server at most 1 s of CPU in all.
"""
import argparse
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "harness"))
import chatproc  # noqa: E402

PING = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125  # masked with a zero key
BAD = bytes([0x89, 0x00])  # unmasked: a protocol error


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the handshake's answer")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    return s


def flood(s, until):
    """Sends pings until `until` or an error; returns (bytes sent, how it ended)."""
    block = PING * 512
    sent = 0
    while time.monotonic() < until:
        try:
            sent += s.send(block)
        except socket.timeout:
            continue
        except OSError as e:
            return sent, e.__class__.__name__
    return sent, "time"


def scenario(server_path, name, seconds):
    reconnecting = name.startswith("reconnecting")
    flags = ("--connect-rate", "10", "--max-connections-per-address", "50") if reconnecting else ()
    server = chatproc.ChatServer(server_path, *flags)
    try:
        start_cpu, start = cpu_seconds(server.proc.pid), time.monotonic()
        until = start + seconds
        total, connections, refused, ended = 0, 0, 0, ""
        while time.monotonic() < until:
            try:
                s = connect(server.http_port)
            except (OSError, ConnectionError) as e:
                refused += 1
                if not reconnecting:
                    ended = "refused: %s" % e
                    break
                continue
            connections += 1
            if name == "after a bad frame":
                s.sendall(BAD)
            if name.endswith("one ping each"):
                sent, ended = s.send(PING), "one ping"
            else:
                sent, ended = flood(s, until)
            total += sent
            s.close()
            if not reconnecting:
                break
        flood_s = time.monotonic() - start
        time.sleep(1)  # what the server still does after the client stopped
        cpu = cpu_seconds(server.proc.pid) - start_cpu
        closes = [l.split(" closed: ", 1)[1] for l in server.err.lines if " closed: " in l]
        return {"scenario": name, "connections": "%d (%d refused)" % (connections, refused) if refused else connections, "sent_mb": total / 1e6, "flood_s": flood_s,
                "ended": ended, "cpu_s": cpu, "close": closes[0] if closes else "-", "closes": len(closes)}
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server", nargs="?", default="build/bin/chat-server")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    print("| scenario | connections | client sent | flood lasted | ended by | server CPU | first close (server's log) |")
    print("|---|---|---|---|---|---|---|")
    worst = 0
    for name in ("pings", "after a bad frame", "reconnecting", "reconnecting, one ping each"):
        r = scenario(args.server, name, args.seconds)
        if not name.startswith("reconnecting"):
            worst = max(worst, r["cpu_s"])
        print("| %s | %s | %.1f MB | %.2f s | %s | %.2f s | %s |" % (
            r["scenario"], r["connections"], r["sent_mb"], r["flood_s"], r["ended"], r["cpu_s"], r["close"]))
    print("target: at most 1 s of server CPU for each of the first two: %s (worst %.2f s)" % ("PASS" if worst <= 1 else "FAIL", worst))
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
