"""What one abusive client can make the server do, measured against the targets of docs/PROTOCOL.md's
"Limits against abuse": chat-server with its default limits (a fresh one per scenario, --store
memory, two reactors), on loopback, each scenario bounded to --seconds (10).

- churn: 99 members in one room; one client pipelines join/leave of that room for the whole time
  on one connection. Reported: bytes of presence the 99 were sent, server CPU (utime + stime from
  /proc) over the time, how often the churner was told rate_limited. Targets: at most 30 MB to the
  others, at most 3 s of CPU.
- churn-reconnect (no target): the same, reconnecting each time it is told rate_limited (a fresh
  connection has a fresh budget of its own: the address's is what holds it, and --connect-rate the
  connections themselves).
- history: 100 messages of 60 KB in one room; one client asks for {"type":"history","limit":100}
  back to back for the whole time on one connection (history-reconnect, no target: reconnecting
  whenever it is refused), while a calm member of another room
  pings every 20 ms. Reported: server CPU, bytes answered, the calm member's round trip p50/p99.
  Targets: at most 2 s of CPU, p99 under 50 ms.

Usage: /usr/bin/python3 bench/abuse_bench.py PATH-TO-chat-server [--seconds 10] [--only SCENARIO]
Prints one line per scenario and "ok" or "OVER TARGET" per target (exit 1 if any is over).
"""
import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    def __init__(self, path, *flags):
        self.proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--irc-port", "0",
                                      "--store", "memory", "--threads", "2", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            m = re.match(r"^chat-server: listening on [\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            raise SystemExit("chat-server did not start")

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


async def member(port, name, room=None):
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    w.write((json.dumps({"type": "hello", "user": name}) + "\n").encode())
    if not await asyncio.wait_for(r.readline(), 5):
        raise ConnectionError("closed")
    if room:
        w.write((json.dumps({"type": "join", "room": room}) + "\n").encode())
        while True:
            line = await asyncio.wait_for(r.readline(), 5)
            if not line:
                raise ConnectionError("closed")
            kind = json.loads(line).get("type")
            if kind == "joined":
                break
            if kind == "error":
                w.close()
                raise ConnectionError("join refused")
    return r, w


async def churn(path, seconds, reconnect=False):
    server = Server(path)
    try:
        others = [await member(server.port, "m%d" % i, "busy") for i in range(99)]
        received = [0]

        async def drain(r):
            while True:
                chunk = await r.read(1 << 16)
                if not chunk:
                    return
                received[0] += len(chunk)

        readers = [asyncio.create_task(drain(r)) for r, _ in others]
        await asyncio.sleep(0.2)  # the 99's own joins are read
        received[0] = 0
        cpu0 = server.cpu()
        end = time.monotonic() + seconds
        limited = connects = 0
        pair = (json.dumps({"type": "join", "room": "busy"}) + "\n" + json.dumps({"type": "leave", "room": "busy"}) + "\n").encode()
        while time.monotonic() < end:
            try:
                r, w = await member(server.port, "churner%d" % connects)
            except (ConnectionError, json.JSONDecodeError, asyncio.TimeoutError):
                await asyncio.sleep(0.01)
                continue
            connects += 1

            async def write():
                try:
                    while time.monotonic() < end:
                        w.write(pair * 200)
                        await w.drain()
                except ConnectionError:
                    pass

            writer = asyncio.create_task(write())
            try:
                while time.monotonic() < end:
                    line = await asyncio.wait_for(r.readline(), max(0.01, end - time.monotonic()))
                    if not line:
                        break
                    if b'"rate_limited"' in line:
                        limited += 1
                        if reconnect:
                            break
            except (asyncio.TimeoutError, ConnectionError):
                pass
            writer.cancel()
            w.close()
        cpu = server.cpu() - cpu0
        await asyncio.sleep(0.2)
        for t in readers:
            t.cancel()
        out_mb = received[0] / 1e6
        print("churn%s: %d s of pipelined join/leave (%d connections): %.1f MB of presence to 99 others, "
              "server CPU %.2f s, rate_limited %d" % ("-reconnect" if reconnect else "", seconds, connects, out_mb, cpu, limited))
        if reconnect:
            return []
        return [("presence to the others <= 30 MB", out_mb <= 30), ("server CPU <= 3 s", cpu <= 3.0),
                ("the churner told rate_limited", limited > 0)]
    finally:
        server.stop()


async def history(path, seconds, reconnect=False):
    server = Server(path)
    try:
        r, w = await member(server.port, "writer", "hist")
        big = "x" * 60000
        for i in range(100):
            w.write((json.dumps({"type": "message", "room": "hist", "text": "%d%s" % (i, big), "id": "h%d" % i}) + "\n").encode())
        acks = 0
        while acks < 100:
            if json.loads(await r.readline()).get("type") == "ack":
                acks += 1
        w.close()
        calm_r, calm_w = await member(server.port, "calm", "quiet")
        cpu0 = server.cpu()
        end = time.monotonic() + seconds
        rtts = []

        async def calm():
            n = 0
            while time.monotonic() < end:
                n += 1
                t = time.monotonic()
                calm_w.write((json.dumps({"type": "ping", "id": n}) + "\n").encode())
                while json.loads(await calm_r.readline()).get("type") != "pong":
                    pass
                rtts.append(time.monotonic() - t)
                await asyncio.sleep(0.02)

        pinger = asyncio.create_task(calm())
        answered = refused = connects = 0
        got = 0
        ask = (json.dumps({"type": "history", "room": "hist", "limit": 100}) + "\n").encode()
        while time.monotonic() < end:
            try:
                r, w = await member(server.port, "asker%d" % connects, "hist")
            except (ConnectionError, json.JSONDecodeError, asyncio.TimeoutError):
                await asyncio.sleep(0.01)
                continue
            connects += 1
            try:
                while time.monotonic() < end:
                    w.write(ask)
                    line = await asyncio.wait_for(r.readline(), max(0.01, end - time.monotonic()))
                    if not line:
                        break
                    got += len(line)
                    kind = json.loads(line).get("type")
                    if kind == "history":
                        answered += 1
                    elif kind == "error":
                        refused += 1
                        if reconnect:
                            break
            except (asyncio.TimeoutError, ConnectionError, ValueError):
                pass
            w.close()
        cpu = server.cpu() - cpu0
        await pinger
        rtts.sort()
        p50 = rtts[len(rtts) // 2] * 1000
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1000
        print("history%s: %d s of back-to-back history over 100 x 60 KB (%d connections): %d answered (%.1f MB), %d refused, "
              "server CPU %.2f s; calm member's round trip p50 %.1f ms p99 %.1f ms (%d pings)"
              % ("-reconnect" if reconnect else "", seconds, connects, answered, got / 1e6, refused, cpu, p50, p99, len(rtts)))
        if reconnect:
            return []
        return [("server CPU <= 2 s", cpu <= 2.0), ("calm p99 < 50 ms", p99 < 50)]
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--only", choices=["churn", "churn-reconnect", "history", "history-reconnect"])
    args = ap.parse_args()
    results = []
    for name, scenario, reconnect in (("churn", churn, False), ("churn-reconnect", churn, True),
                                      ("history", history, False), ("history-reconnect", history, True)):
        if args.only in (None, name):
            results += asyncio.run(scenario(args.server, args.seconds, reconnect))
    for what, ok in results:
        print("  %-40s %s" % (what, "ok" if ok else "OVER TARGET"))
    sys.exit(0 if all(ok for _, ok in results) else 1)


if __name__ == "__main__":
    main()
