#!/usr/bin/env python3
"""Before and after: two chat-server binaries side by side, in ABBA order, fresh servers.

    python3 bench/ab_chat.py --old OLD/chat-server [--new build/bin/chat-server] [--rounds 4]

At each point (1,000 members x 100 msg/s and 10,000 x 10 msg/s, native dialect or those of
--dialects: native, ws, irc; --threads 2) it
runs loadgen against a fresh server of each binary in turn and prints the server's CPU time per
delivery, p99 and resident memory per member, then the per-round ratios new/old and their median.
Adjacent runs share the machine's mood, so the ratios mean more than the absolute figures on a
shared, noisy machine. Keep a build of the old code aside (e.g. `git worktree add` at the old
commit and build it there) and point --old at its chat-server.
"""
import argparse
import json
import pathlib
import re
import statistics
import subprocess
import time

from benchlib import CHAT_LIMITS_OFF

ROOT = pathlib.Path(__file__).resolve().parent.parent
POINTS = [(1000, 100), (10000, 10)]


def run(binary, loadgen, members, rate, dialect="native"):
    # The limits against abuse off (the load comes from one address, faster than one client may
    # send), the other front ends on free ports, history in memory (no file left behind).
    server = subprocess.Popen([binary, *CHAT_LIMITS_OFF, "--threads", "2", "--host", "127.0.0.1", "--port", "0",
                               "--http-port", "0", "--irc-port", "0", "--irc-flood-rate", "0", "--store", "memory"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ports = {}
        for _ in range(3):  # the TCP, IRC and HTTP ports, in the server's first three lines
            line = server.stdout.readline()
            kind = "irc" if " irc listening" in line else "ws" if " http listening" in line else "native"
            ports[kind] = re.search(r":(\d+)", line.split(" on ", 1)[1]).group(1)
        port = ports[dialect]
        out = subprocess.run([loadgen, "--mode", "chat", "--dialect", dialect, "--port", port,
                              "--connections", str(members), "--rate", str(rate), "--duration", "3", "--warmup", "1",
                              "--drain", "2", "--connect-timeout", "30", "--barrier-timeout", "20",
                              "--server-pid", str(server.pid), "--json"],
                             capture_output=True, text=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
    r = json.loads(out.stdout)
    return {"cpu": r["server_cpu_us_per_op"], "loss": r["loss"], "p99": r["latency_us"]["p99"] / 1000,
            "rss": r.get("rss_bytes_per_connection") or 0}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the chat-server binary before the change")
    p.add_argument("--new", default=str(ROOT / "build/bin/chat-server"), help="the one after (default: build/bin)")
    p.add_argument("--loadgen", default=str(ROOT / "build/bin/loadgen"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--dialects", default="native", help="comma-separated: native, ws, irc (each point for each)")
    a = p.parse_args()
    for members, rate, dialect in [(m, r, d) for d in a.dialects.split(",") for m, r in POINTS]:
        got = {"old": [], "new": []}
        for rnd in range(a.rounds):
            for kind in (["old", "new"] if rnd % 2 == 0 else ["new", "old"]):
                time.sleep(1)  # the previous server's sockets go away
                r = run(getattr(a, kind), a.loadgen, members, rate, dialect)
                got[kind].append(r)
                print(f"{dialect} {members:>6,} x {rate:>3}/s round {rnd + 1} {kind}: {r['cpu']:.3f} us/delivery, loss {r['loss']}, "
                      f"p99 {r['p99']:.1f} ms, {r['rss']:.0f} B/member", flush=True)
        ratios = [n["cpu"] / o["cpu"] for o, n in zip(got["old"], got["new"])]
        med = {k: statistics.median(x["cpu"] for x in v) for k, v in got.items()}
        rss = {k: statistics.median(x["rss"] for x in v) for k, v in got.items()}
        print(f"{dialect} {members:,} x {rate}/s: CPU per delivery median old {med['old']:.3f}, new {med['new']:.3f} us; "
              f"new/old per round {', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}); "
              f"memory per member old {rss['old']:.0f} B, new {rss['new']:.0f} B", flush=True)


if __name__ == "__main__":
    main()
