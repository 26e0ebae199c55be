#!/usr/bin/env python3
"""The benchmark suite, every system side by side in one run: `./dev.sh bench [--quick]`.

Sections (all on this machine, client and server sharing its CPUs, loopback only):
  echo-targets  bench/echo_bench.py's scenarios: our reactor against the thinnest epoll loop, ABBA
                order, noise detection, the echo targets (rtt/s, CPU per round trip, RSS).
  echo          echo at 100 and 1,000 connections, all active, for every echo system: the reference,
                our reactor on epoll, poll and select, our thread-per-connection and busy-wait
                models, a Node.js `net` server, and the article's three Python servers.
  c10k          10,000 connections, 1% active, the same systems: each server's CPU while its 9,900
                connections are idle (sampled from /proc with no traffic), its memory per
                connection, then round trips and latency for the 100 active ones.
  chat-targets  chat-server against Redis, ABBA order: 1,000 members x 1,000 msg/s and 10,000
                members x 10 msg/s, fresh servers (RSS per member at 10,000).
  chat          chat fan-out at 1,000 and 10,000 members for chat-server (native and article
                dialects), Redis, NATS and the article's ReactorChatServer.py: the fixed rates, then
                each system's saturation point (the highest rate with zero loss and p99 under 1 s),
                found by stepping the rate up by 4x and bisecting (bounded, short runs). chat-server
                runs with 2 reactors (--threads 2) and with 1, so the two are compared with Redis.
  accept        --threads 2: one listener handing connections out against a SO_REUSEPORT listener
                per reactor (bench/scale_bench.py).
  scale         100,000 members in one room: chat-server --workers 6 joined through Redis, loadgen
                in several processes (bench/scale_bench.py).

Outputs: BENCHMARKS.md (only the generated blocks between <!-- bench:NAME --> markers are replaced;
the prose around them stays), PNG plots in bench/plots/, every raw result in bench/results/run.json.
--quick: a smoke run (under 2 minutes): every system once, small and short; checks each starts and
its numbers are sane (nonzero throughput, no errors, no loss for the lossless servers); writes
bench/results/quick.md only; exits 1 if a check fails. A system whose program is missing, or whose
fixed port is taken by another program, is skipped and reported, not failed.

Every process started here is stopped by pid in a finally (also on ^C, SIGTERM and the watchdog).
"""
import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import echo_bench  # noqa: E402
import scale_bench as sb  # noqa: E402

ROOT = bl.ROOT
SEED = ROOT.parent / "shared" / "seed"
P99_LIMIT_US = 1_000_000  # saturation: p99 under one second
RSS_TARGET = 1024       # bytes per connected member


class Skip(Exception):
    pass


class Watchdog(Exception):
    pass


# ---- the systems --------------------------------------------------------------------------------------
@dataclass
class System:
    key: str
    label: str
    cmd: object                 # callable(ctx, port) -> argv
    ready: str = "line"         # "line": prints "listening on H:P"; "listen": a LISTEN socket on the port
    fixed_port: int = 0         # the article's servers: cannot change port
    pick_port: bool = False     # Redis, NATS: we pick a free port and pass it
    needs: tuple = ()           # programs (names in PATH or paths) that must exist
    dialect: str = ""           # chat only
    lossy: bool = False         # chat: loses messages by design (the article's server)
    fresh: bool = False         # a new server for every run (the article's servers die on a reset)
    search: bool = True         # chat: look for the saturation point
    group: str = ""
    note: str = ""


def _bin(name):
    return lambda ctx, port: [str(ctx.bin / name)]


def echo_server(*flags):
    return lambda ctx, port: [str(ctx.bin / "echo-server"), *flags, "--host", "127.0.0.1", "--port", "0"]


def python_seed(script):
    return lambda ctx, port: [ctx.python, str(ctx.seed / script)]


ECHO_SYSTEMS = [
    System("ref", "epoll-echo-ref (reference)", lambda c, p: [str(c.bin / "epoll-echo-ref"), "0", "127.0.0.1"],
           needs=("bin:epoll-echo-ref",), group="reference"),
    System("epoll", "echo-server reactor, epoll", echo_server("--model", "reactor", "--backend", "epoll"),
           needs=("bin:echo-server",), group="ours"),
    System("poll", "echo-server reactor, poll", echo_server("--model", "reactor", "--backend", "poll"),
           needs=("bin:echo-server",), group="ours"),
    System("select", "echo-server reactor, select", echo_server("--model", "reactor", "--backend", "select"),
           needs=("bin:echo-server",), group="ours"),
    System("threads", "echo-server thread per connection", echo_server("--model", "threads"),
           needs=("bin:echo-server",), group="ours"),
    System("busy", "echo-server busy-wait", echo_server("--model", "busy-wait"),
           needs=("bin:echo-server",), group="ours"),
    System("node", "Node.js net (bench/node_echo.js)",
           lambda c, p: ["node", str(ROOT / "bench" / "node_echo.js"), "0", "127.0.0.1"],
           needs=("node",), group="other"),
    System("py-reactor", "article EchoServer.py (selectors)", python_seed("EchoServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:EchoServer.py"), fresh=True, group="article"),
    System("py-threads", "article BlockingEchoServer.py", python_seed("BlockingEchoServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:BlockingEchoServer.py"), fresh=True, group="article"),
    System("py-busy", "article BusyWaitNonBlockingEchoServer.py", python_seed("BusyWaitNonBlockingEchoServer.py"),
           ready="listen", fixed_port=2002, needs=("python3", "seed:BusyWaitNonBlockingEchoServer.py"), fresh=True,
           group="article"),
]

CHAT_SYSTEMS = [
    System("chat", "chat-server --threads 2, native JSON lines",
           lambda c, p: [str(c.bin / "chat-server"), "--threads", "2", "--host", "127.0.0.1", "--port", "0"],
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("chat-article", "chat-server, article dialect",
           lambda c, p: [str(c.bin / "chat-server"), "--host", "127.0.0.1", "--port", "0"],
           needs=("bin:chat-server",), dialect="article", group="ours"),
    System("chat-1t", "chat-server --threads 1, native",
           lambda c, p: [str(c.bin / "chat-server"), "--threads", "1", "--host", "127.0.0.1", "--port", "0"],
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("redis", "redis-server (pub/sub)",
           lambda c, p: ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--maxclients", "19000"],
           ready="listen", pick_port=True, needs=("redis-server",), dialect="redis", group="reference"),
    System("nats", "nats-server (core pub/sub)", lambda c, p: ["nats-server", "-a", "127.0.0.1", "-p", str(p)],
           ready="listen", pick_port=True, needs=("nats-server",), dialect="nats", group="other"),
    System("py-chat", "article ReactorChatServer.py", python_seed("ReactorChatServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:ReactorChatServer.py"), dialect="article", lossy=True,
           fresh=True, group="article"),
]


# ---- the run's context -----------------------------------------------------------------------------------
class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.bin = Path(args.build_dir).resolve() / "bin"
        self.seed = Path(args.seed_dir).resolve()
        self.python = shutil.which("python3") or sys.executable
        self.procs = bl.Processes(prefix="bench-run-")
        self.loadgen = self.bin / "loadgen"
        self.wait_budget = 0.0 if self.quick else args.quiet_budget
        self.checks = []   # (section, system label, "ok" | "FAIL" | "skipped", detail)
        self.skip = set(args.skip or [])
        self.started = time.monotonic()

    # -- availability and servers --
    def unavailable(self, system):
        if system.key in self.skip:
            return "skipped with --skip"
        for need in system.needs:
            if need.startswith("bin:"):
                path = self.bin / need[4:]
                if not path.exists():
                    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing (build it)"
            elif need.startswith("seed:"):
                if not (self.seed / need[5:]).exists():
                    return f"{self.seed / need[5:]} is missing"
            elif not shutil.which(need):
                return f"`{need}` is not installed"
        return None

    def start(self, system):
        port = 0
        if system.fixed_port:
            why = bl.free_fixed_port(system.fixed_port, timeout=5 if self.quick else 20)
            if why:
                raise Skip(why)
            port = system.fixed_port
        elif system.pick_port:
            port = bl.free_port()
        cmd = system.cmd(self, port)
        return self.procs.start(system.key, cmd, ready=system.ready, port=port,
                                timeout=10 if self.quick else 20, cwd=self.procs.logdir)

    def stop(self, server):
        """Stops a server; returns a note when it had died by itself (and why, from its log)."""
        note = None
        if not server.alive():
            rc = server.proc.returncode
            why = server.log_tail(1, r"Error|error|Exception")
            note = f"exited by itself (status {rc}{': ' + why[0].strip() if why else ''})"
        self.procs.stop(server)
        return note

    def wait_quiet(self):
        """Waits (within the run's budget) until the rest of the machine is quiet."""
        if self.wait_budget <= 0:
            return
        t0 = time.monotonic()
        while True:
            load = bl.other_load(0.5)
            if load <= bl.NOISY:
                break
            if time.monotonic() - t0 > 15 or self.wait_budget - (time.monotonic() - t0) <= 0:
                bl.log(f"    machine busy ({load:.2f} CPUs used by others); going on")
                break
        self.wait_budget -= time.monotonic() - t0

    def loadgen_run(self, args, timeout):
        return bl.run_loadgen(self.procs, self.loadgen, args, timeout)

    def check(self, section, label, status, detail=""):
        self.checks.append((section, label, status, detail))


# ---- records ----------------------------------------------------------------------------------------------
def echo_record(res):
    """What the tables need from one loadgen echo report."""
    if "failed" in res:
        return {"failed": res["failed"], "stderr": res.get("stderr", [])}
    lat = res["latency_us"]
    srv = res.get("server") or {}
    d = res["duration_s"] or 1
    return {
        "rtt": res["rtt_per_s"], "p50": lat["p50"], "p90": lat["p90"], "p99": lat["p99"], "p999": lat["p999"],
        "max": lat["max"], "samples": lat["samples"], "cpu_rt": res.get("server_cpu_us_per_op"),
        "cpu_use": (srv.get("cpu_s") or 0) / d, "client_use": res.get("client_cpu_s", 0) / d,
        "rss_kib": srv.get("rss_kib_end"), "rss_per_conn": res.get("rss_bytes_per_connection"),
        "connected": res["connected"], "connect_s": res["connect_s"], "errors": res["errors"],
        **bl.window_notes(res),
    }


def chat_record(res, rate, lossy=False):
    if "failed" in res:
        return {"failed": res["failed"], "stderr": res.get("stderr", []), "rate": rate, "ok": False}
    lat = res["latency_us"]
    srv = res.get("server") or {}
    d = res["duration_s"] or 1
    r = {
        "rate": rate, "dps": res["deliveries_per_s"], "sent_per_s": res["sent_per_s"], "loss": res["loss"],
        "loss_ratio": res["loss_ratio"], "duplicates": res.get("duplicates", 0),
        "out_of_order": res.get("out_of_order", 0), "p50": lat["p50"], "p99": lat["p99"], "max": lat["max"],
        "cpu_del": res.get("server_cpu_us_per_op"), "cpu_use": (srv.get("cpu_s") or 0) / d,
        "client_use": res.get("client_cpu_s", 0) / d, "rss_per_member": res.get("rss_bytes_per_connection"),
        "rss_kib_connected": srv.get("rss_kib_connected"), "members": res.get("members_subscribed"),
        "connect_s": res.get("connect_s"), "drained": res.get("drained"), "errors": res["errors"],
        "client_bound": res.get("client_cpu_s", 0) / d >= 0.95,
        **bl.window_notes(res),
    }
    problems = []
    if r["errors"]:
        problems.append(f"{r['errors']} error(s)")
    if r["loss"]:
        problems.append(f"loss {r['loss']:,} ({100 * r['loss_ratio']:.2g}%)")
    if r["duplicates"] or r["out_of_order"]:
        problems.append("duplicates/out of order")
    if r["p99"] >= P99_LIMIT_US:
        problems.append(f"p99 {r['p99'] / 1e6:.2f} s")
    if r["sent_per_s"] < 0.9 * rate:
        problems.append(f"publisher reached only {r['sent_per_s']:.0f} msg/s")
    r["ok"] = not problems
    r["problems"] = problems
    return r


# ---- echo --------------------------------------------------------------------------------------------------
def echo_once(ctx, system, n, active):
    rec = {"system": system.key, "connections": n, "active": active}
    why = ctx.unavailable(system)
    if why:
        rec["skipped"] = why
        return rec
    a = ctx.args
    best = None
    for attempt in range(1 if ctx.quick else 2):
        ctx.wait_quiet()
        try:
            server = ctx.start(system)
        except Skip as e:
            rec["skipped"] = str(e)
            return rec
        except bl.StartError as e:
            rec["failed"] = str(e)
            return rec
        try:
            res = ctx.loadgen_run(["--mode", "echo", "--port", server.port, "--connections", n, "--active", active,
                                   "--duration", a.echo_duration, "--warmup", a.echo_warmup, "--processes", 1,
                                   "--connect-timeout", a.connect_timeout, "--server-pid", server.pid],
                                  timeout=a.connect_timeout + a.echo_duration + a.echo_warmup + 60)
        finally:
            note = ctx.stop(server)
        r = echo_record(res)
        r["server_note"] = note
        r["attempts"] = attempt + 1
        if best is None or ("failed" not in r and r.get("others", 9) < best.get("others", 9)):
            best = r
        if "failed" in r or not r["contended"]:
            break
    rec.update(best)
    return rec


def c10k_once(ctx, system, total, active):
    """9,900 idle connections (one round trip each, held by a background loadgen), the server's CPU
    sampled from /proc while nothing moves, then 100 active connections measured by a second loadgen."""
    a = ctx.args
    idle_n = total - active
    rec = {"system": system.key, "connections": total, "active": active}
    why = ctx.unavailable(system)
    if why:
        rec["skipped"] = why
        return rec
    ctx.wait_quiet()
    try:
        server = ctx.start(system)
    except Skip as e:
        rec["skipped"] = str(e)
        return rec
    except bl.StartError as e:
        rec["failed"] = str(e)
        return rec
    holder = None
    try:
        pid = server.pid
        base_fds, rss0 = bl.fd_count(pid), bl.rss_kib(pid)
        holder, _ = ctx.procs.spawn([str(ctx.loadgen), "--mode", "echo", "--port", str(server.port),
                                     "--connections", str(idle_n), "--active", "0", "--warmup", "0",
                                     "--duration", "3600", "--processes", "1",
                                     "--connect-timeout", str(a.c10k_connect + 120), "--json"], name="holder")
        t0 = time.monotonic()
        last, last_growth = 0, t0
        while True:
            now = time.monotonic()
            held = bl.fd_count(pid) - base_fds
            if held >= idle_n:
                time.sleep(0.3 if ctx.quick else 1.0)  # the first round trips of the last ones
                break
            if held > last:
                last, last_growth = held, now
            if holder.poll() is not None or not server.alive():
                break
            if now - t0 > a.c10k_connect or (now - last_growth > 5 and held > 0):
                break
            time.sleep(0.1)
        rec["connect_s"] = time.monotonic() - t0
        rec["held"] = max(0, bl.fd_count(pid) - base_fds)
        rec["holder_alive"] = holder.poll() is None
        rss1 = bl.rss_kib(pid)
        rec["rss0_kib"], rec["rss1_kib"] = rss0, rss1
        rec["threads"] = bl.thread_count(pid)
        rec["rss_per_conn"] = (rss1 - rss0) * 1024 / rec["held"] if rec["held"] > 0 and rss1 > 0 else None
        # Idle: no traffic at all for a few seconds.
        c0, (b0, s0), t_0 = bl.cpu_seconds(pid), bl.system_cpu(), time.monotonic()
        time.sleep(a.idle_seconds)
        c1, (b1, s1), t_1 = bl.cpu_seconds(pid), bl.system_cpu(), time.monotonic()
        span = t_1 - t_0
        if c0 >= 0 and c1 >= 0:
            rec["idle_cpu"] = (c1 - c0) / span
            rec["idle_others"] = max(0.0, (b1 - b0) - (c1 - c0)) / span
        else:
            rec["idle_cpu"] = None
        # The active few, while the idle ones stay connected.
        if server.alive():
            res = ctx.loadgen_run(["--mode", "echo", "--port", server.port, "--connections", active,
                                   "--active", active, "--duration", a.echo_duration, "--warmup", a.echo_warmup,
                                   "--processes", 1, "--connect-timeout", 20, "--server-pid", pid],
                                  timeout=20 + a.echo_duration + a.echo_warmup + 60)
            rec["active_run"] = echo_record(res)
        else:
            rec["active_run"] = {"failed": "the server was gone before the active connections started"}
    finally:
        if holder is not None and holder.poll() is None:
            holder.send_signal(signal.SIGTERM)
            try:
                holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait(timeout=10)
        if holder is not None:
            ctx.procs.stop(holder)
        rec["server_note"] = ctx.stop(server)
    return rec


def echo_section(ctx):
    sizes = [(200, 200)] if ctx.quick else [(100, 100), (1000, 1000)]
    out = {"sizes": [], "runs": {}}
    for n, act in sizes:
        key = f"{n}"
        out["sizes"].append(key)
        out["runs"][key] = {}
        bl.log(f"\n[echo] {n:,} connections, all active")
        for s in ECHO_SYSTEMS:
            r = echo_once(ctx, s, n, act)
            out["runs"][key][s.key] = r
            bl.log("  " + echo_line(s, r))
            echo_check(ctx, f"echo {n}", s, r)
    return out


def c10k_section(ctx):
    total, act = (300, 10) if ctx.quick else (10000, 100)
    out = {"total": total, "active": act, "idle_seconds": ctx.args.idle_seconds, "runs": {}}
    bl.log(f"\n[c10k] {total:,} connections, {act} active: idle CPU, memory, latency of the active few")
    for s in ECHO_SYSTEMS:
        r = c10k_once(ctx, s, total, act)
        out["runs"][s.key] = r
        if "skipped" in r or "failed" in r:
            bl.log(f"  {s.key:11s} {r.get('skipped') or r.get('failed')}")
        else:
            ar = r["active_run"]
            bl.log(f"  {s.key:11s} held {r['held']:,} in {r['connect_s']:.1f} s; idle CPU "
                   f"{100 * (r['idle_cpu'] or 0):.1f}%; RSS {bl.fmt_bytes(r['rss_per_conn'])}/conn; active: "
                   + (ar["failed"] if "failed" in ar else
                      f"{ar['rtt']:,.0f} rt/s p50 {ar['p50']:,.0f} p99 {ar['p99']:,.0f} us, errors {ar['errors']}")
                   + (f"  [{r['server_note']}]" if r.get("server_note") else ""))
        if ctx.quick:
            c10k_check(ctx, s, r)
    return out


def echo_line(s, r):
    if "skipped" in r:
        return f"{s.key:11s} skipped: {r['skipped']}"
    if "failed" in r:
        return f"{s.key:11s} FAILED: {r['failed']}"
    return (f"{s.key:11s} {r['rtt']:9,.0f} rt/s  p50 {r['p50']:8,.0f}  p99 {r['p99']:9,.0f} us  "
            f"cpu {bl.fmt_f(r['cpu_rt'])} us/rt ({100 * r['cpu_use']:.0f}%)  errors {r['errors']}"
            + ("  CONTENDED" if r["contended"] else "") + (f"  [{r['server_note']}]" if r.get("server_note") else ""))


def echo_check(ctx, section, s, r):
    if "skipped" in r:
        ctx.check(section, s.label, "skipped", r["skipped"])
    elif "failed" in r:
        ctx.check(section, s.label, "FAIL", r["failed"])
    elif r["rtt"] <= 0 or r["errors"]:
        ctx.check(section, s.label, "FAIL", f"{r['rtt']:.0f} rt/s, {r['errors']} error(s) {r.get('first_error') or ''}")
    else:
        ctx.check(section, s.label, "ok", f"{r['rtt']:,.0f} rt/s")


def c10k_check(ctx, s, r):
    if "skipped" in r or "failed" in r:
        echo_check(ctx, "c10k", s, r)
        return
    want = r["connections"] - r["active"]
    ar = r["active_run"]
    if r["held"] < want:
        ctx.check("c10k", s.label, "FAIL", f"held {r['held']} of {want} idle connections")
    elif "failed" in ar or ar["rtt"] <= 0 or ar["errors"]:
        ctx.check("c10k", s.label, "FAIL", ar.get("failed") or f"{ar['rtt']:.0f} rt/s, {ar['errors']} error(s)")
    else:
        ctx.check("c10k", s.label, "ok", f"idle CPU {100 * r['idle_cpu']:.1f}%, {ar['rtt']:,.0f} rt/s")


# ---- chat --------------------------------------------------------------------------------------------------
class ChatRunner:
    """Runs chat loads against one system, keeping its server between runs unless it must be fresh."""

    def __init__(self, ctx, system):
        self.ctx, self.system, self.server, self.notes = ctx, system, None, []

    def close(self):
        if self.server is not None:
            note = self.ctx.stop(self.server)
            if note:
                self.notes.append(note)
            self.server = None

    def run(self, members, rate, duration, warmup, drain, fresh=False):
        ctx, s = self.ctx, self.system
        if self.server is not None and (fresh or s.fresh or not self.server.alive()):
            self.close()
        fresh_server = self.server is None
        if fresh_server:
            ctx.wait_quiet()
            self.server = ctx.start(s)  # Skip / StartError go to the caller
        else:
            wait_server_idle(self.server.pid)
        res = ctx.loadgen_run(["--mode", "chat", "--dialect", s.dialect, "--port", self.server.port,
                               "--connections", members, "--rate", f"{rate:g}", "--duration", duration,
                               "--warmup", warmup, "--drain", drain, "--connect-timeout", ctx.args.connect_timeout,
                               "--barrier-timeout", 20 if members > 2000 else 10, "--server-pid", self.server.pid],
                              timeout=ctx.args.connect_timeout + 30 + duration + warmup + drain + 60)
        r = chat_record(res, rate, s.lossy)
        r["fresh_server"] = fresh_server
        if not fresh_server:
            r["rss_per_member"] = None  # only meaningful on a server that has just started
        if not self.server.alive() or s.fresh:
            self.close()
            if self.notes:
                r["server_note"] = self.notes[-1]
        return r


def wait_server_idle(pid, limit=5.0):
    """Before the next step: until the server stops working off the last one (at most `limit` s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = bl.cpu_seconds(pid)
        time.sleep(0.2)
        c1 = bl.cpu_seconds(pid)
        if c0 < 0 or c1 < 0 or (c1 - c0) / 0.2 < 0.1:
            return


def nice_rate(r):
    if r >= 100:
        return float(round(r / 50) * 50) if r < 2000 else float(round(r / 250) * 250)
    if r >= 10:
        return float(round(r))
    return round(r, 1)


def chat_line(key, members, r):
    if "skipped" in r:
        return f"  {key:12s} {members:,} members: skipped: {r['skipped']}"
    if "failed" in r:
        return f"  {key:12s} {members:,} x {r['rate']:g}/s: FAILED: {r['failed']}"
    return (f"  {key:12s} {members:,} x {r['rate']:g}/s: {r['dps']:>11,.0f} deliveries/s  loss {r['loss']:,}  "
            f"p50 {r['p50'] / 1000:,.1f} p99 {r['p99'] / 1000:,.1f} ms  cpu {bl.fmt_f(r['cpu_del'], 3)} us/del "
            f"({100 * r['cpu_use']:.0f}%)  rss {bl.fmt_bytes(r['rss_per_member'])}/member  "
            + ("ok" if r["ok"] else "NOT OK: " + ", ".join(r["problems"]))
            + ("  CONTENDED" if r["contended"] else "") + (f"  [{r['server_note']}]" if r.get("server_note") else ""))


def search(ctx, runner, members, start, factor, min_rate, max_rate, max_steps, known=None):
    """The highest rate with zero loss and p99 < 1 s: up (or down) by `factor` from `start` until the
    verdict changes, then geometric bisection while the bracket is wider than 1.5x; at most max_steps runs."""
    a = ctx.args
    steps = []
    ok_rate, bad_rate = None, None
    rate = start

    def step(r):
        if known and r in known:
            rec = known[r]
        else:
            rec = runner.run(members, r, a.chat_duration, a.chat_warmup, a.chat_drain)
            bl.log(chat_line(runner.system.key, members, rec))
        steps.append(rec)
        return rec["ok"]

    while len(steps) < max_steps:
        if step(rate):
            ok_rate = max(ok_rate or 0, rate)
            if bad_rate is not None:
                break
            if rate * factor > max_rate:
                break
            rate = nice_rate(rate * factor)
        else:
            bad_rate = min(bad_rate or math.inf, rate)
            if ok_rate is not None:
                break
            if rate / factor < min_rate:
                break
            rate = nice_rate(rate / factor)
    while len(steps) < max_steps and ok_rate and bad_rate and bad_rate / ok_rate > 1.5:
        mid = nice_rate(math.sqrt(ok_rate * bad_rate))
        if mid <= ok_rate or mid >= bad_rate:
            break
        if step(mid):
            ok_rate = mid
        else:
            bad_rate = mid
    return {"saturation": ok_rate, "first_fail": bad_rate, "steps": sorted(steps, key=lambda r: r["rate"])}


def chat_targets_section(ctx):
    """chat-server against Redis in ABBA order, fresh servers, at the two target points."""
    a = ctx.args
    chat = next(s for s in CHAT_SYSTEMS if s.key == "chat")
    redis = next(s for s in CHAT_SYSTEMS if s.key == "redis")
    out = {"points": []}
    # The two target points, and one below both servers' saturation (no target: it shows the cost of a
    # delivery when neither server has to batch).
    for members, rate, kind in [(1000, 1000, "target"), (10000, 10, "target"), (1000, 100, "diagnostic")]:
        point = {"members": members, "rate": rate, "kind": kind, "runs": {"chat": [], "redis": []}, "order": []}
        out["points"].append(point)
        missing = [f"{s.label}: {ctx.unavailable(s)}" for s in (chat, redis) if ctx.unavailable(s)]
        if missing:
            point["skipped"] = "; ".join(missing)
            bl.log(f"\n[chat-targets] {members:,} x {rate}: skipped ({point['skipped']})")
            continue
        order = bl.abba(["chat", "redis"], a.target_rounds)
        point["order"] = order
        bl.log(f"\n[chat-targets] {members:,} members x {rate} msg/s: {len(order)} runs, ABBA, fresh servers")
        for i, key in enumerate(order):
            system = chat if key == "chat" else redis
            best = None
            for attempt in range(1 if ctx.quick else 2):
                runner = ChatRunner(ctx, system)
                try:
                    r = runner.run(members, rate, a.target_duration, a.target_warmup, a.chat_drain, fresh=True)
                except (Skip, bl.StartError) as e:
                    r = {"failed": str(e), "rate": rate, "ok": False}
                finally:
                    runner.close()
                r["seq"], r["attempts"] = i + 1, attempt + 1
                bl.log(chat_line(key, members, r))
                if best is None or ("failed" not in r and r.get("others", 9) < best.get("others", 9)):
                    best = r
                if "failed" in r or not r["contended"]:
                    break
            point["runs"][key].append(best)
    return out


def target_summary(point):
    """Medians per system (over every run of the point) and the per-round ratios chat/redis."""
    summary = {}
    for key, runs in point["runs"].items():
        good = [r for r in runs if "failed" not in r]
        summary[key] = {
            "n": len(runs), "failed": len(runs) - len(good),
            "loss": sum(r["loss"] for r in good), "errors": sum(r["errors"] for r in good),
            "contended": sum(1 for r in good if r["contended"]),
            **{k: bl.median_of(good, k) for k in ("dps", "p50", "p99", "cpu_del", "cpu_use", "rss_per_member",
                                             "client_use", "sent_per_s")},
        }
    pairs = list(zip(point["runs"].get("chat", []), point["runs"].get("redis", [])))
    summary["paired_cpu"] = [c["cpu_del"] / r["cpu_del"] for c, r in pairs
                             if "failed" not in c and "failed" not in r and c["cpu_del"] and r["cpu_del"]]
    summary["paired_p99"] = [c["p99"] / r["p99"] for c, r in pairs
                             if "failed" not in c and "failed" not in r and r["p99"]]
    return summary


def chat_section(ctx, targets=None):
    """Each system at 1,000 and 10,000 members: the fixed rate first, then the saturation search."""
    a = ctx.args
    out = {"points": [], "results": {}}
    plan = ([(200, 100, 100, 4, 100, 100, 1)] if ctx.quick else
            [(1000, 1000, 1000, 4, 10, 64000, a.max_steps), (10000, 10, 10, 4, 0.5, 20000, a.max_steps)])
    # The target runs already measured chat-server and Redis at the fixed rates: reuse their medians.
    known = {}
    if targets:
        for p in targets["points"]:
            if p.get("skipped"):
                continue
            summ = target_summary(p)
            for key in ("chat", "redis"):
                runs = [r for r in p["runs"][key] if "failed" not in r]
                if runs:
                    rec = dict(runs[0])
                    rec.update({k: summ[key][k] for k in ("dps", "p50", "p99", "cpu_del", "cpu_use", "rss_per_member",
                                                          "client_use", "sent_per_s")})
                    rec["loss"] = max(r["loss"] for r in runs)
                    rec["errors"] = sum(r["errors"] for r in runs)
                    rec["ok"] = all(r["ok"] for r in p["runs"][key])
                    rec["problems"] = sorted({x for r in p["runs"][key] for x in r.get("problems", [])})
                    rec["median_of"] = len(runs)
                    known.setdefault((key, p["members"]), {})[float(p["rate"])] = rec
    for members, fixed, start, factor, min_rate, max_rate, max_steps in plan:
        out["points"].append({"members": members, "fixed": fixed})
        bl.log(f"\n[chat] {members:,} members: {fixed:g} msg/s, then the saturation point")
        for s in CHAT_SYSTEMS:
            key = (s.key, members)
            why = ctx.unavailable(s)
            if why:
                out["results"][f"{s.key}@{members}"] = {"skipped": why}
                bl.log(chat_line(s.key, members, {"skipped": why}))
                if ctx.quick:
                    ctx.check("chat", s.label, "skipped", why)
                continue
            runner = ChatRunner(ctx, s)
            try:
                if ctx.quick or not s.search:
                    r = known.get(key, {}).get(float(fixed)) or runner.run(members, fixed, a.chat_duration,
                                                                           a.chat_warmup, a.chat_drain)
                    if "median_of" not in r:
                        bl.log(chat_line(s.key, members, r))
                    result = {"saturation": None, "first_fail": None, "steps": [r], "searched": False}
                else:
                    result = search(ctx, runner, members, float(start), factor, min_rate, max_rate, max_steps,
                                    known=known.get(key))
                    result["searched"] = True
            except Skip as e:
                result = {"skipped": str(e)}
                bl.log(chat_line(s.key, members, result))
            except bl.StartError as e:
                result = {"failed": str(e)}
                bl.log(f"  {s.key}: FAILED: {e}")
            finally:
                runner.close()
            out["results"][f"{s.key}@{members}"] = result
            if ctx.quick:
                chat_check(ctx, s, result)
            elif result.get("searched"):
                bl.log(f"  {s.key:12s} saturation at {members:,} members: "
                       + (f"{result['saturation']:g} msg/s" if result["saturation"] else "none found")
                       + (f" (first failing rate {result['first_fail']:g})" if result["first_fail"] else ""))
    return out


def chat_check(ctx, s, result):
    if "skipped" in result:
        ctx.check("chat", s.label, "skipped", result["skipped"])
        return
    if "failed" in result:
        ctx.check("chat", s.label, "FAIL", result["failed"])
        return
    r = result["steps"][0]
    if "failed" in r:
        ctx.check("chat", s.label, "FAIL", r["failed"])
    elif r["dps"] <= 0 or r["errors"]:
        ctx.check("chat", s.label, "FAIL", f"{r['dps']:.0f} deliveries/s, {r['errors']} error(s) {r.get('first_error') or ''}")
    elif not s.lossy and (r["loss"] or r["duplicates"] or r["out_of_order"]):
        ctx.check("chat", s.label, "FAIL", f"loss {r['loss']}, duplicates {r['duplicates']}, "
                                           f"out of order {r['out_of_order']}")
    else:
        ctx.check("chat", s.label, "ok", f"{r['dps']:,.0f} deliveries/s, loss {r['loss']}"
                  + (" (lossy by design)" if s.lossy and r["loss"] else ""))


# ---- markdown ----------------------------------------------------------------------------------------------
def label(key):
    for s in ECHO_SYSTEMS + CHAT_SYSTEMS:
        if s.key == key:
            return s.label
    return key


def ratio(a, b):
    return a / b if a is not None and b else None


def echo_cell_failure(r):
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "failed" in r:
        return f"failed: {r['failed']}"
    return None


def md_echo(echo):
    md = []
    for size in echo["sizes"]:
        runs = echo["runs"][size]
        ref = runs.get("ref", {})
        ref_ok = ref and "rtt" in ref
        md.append(f"#### {int(size):,} connections, all active (depth 1, 64-byte payload)")
        md.append("")
        md.append("| server | rtt/s | x ref | p50 µs | p99 µs | p99.9 µs | server CPU µs/rt | x ref | server CPU use "
                  "| server RSS KiB | errors | notes |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in ECHO_SYSTEMS:
            r = runs.get(s.key)
            if r is None:
                continue
            fail = echo_cell_failure(r)
            if fail:
                md.append(f"| {s.label} | - | - | - | - | - | - | - | - | - | - | {fail} |")
                continue
            notes = []
            if r["contended"]:
                notes.append(f"contended ({100 * r['others']:.0f}% of a CPU used by others)")
            if r.get("server_note"):
                notes.append(r["server_note"])
            if r["connect_s"] > 2:
                notes.append(f"connecting took {r['connect_s']:.1f} s")
            if r["errors"]:
                notes.append(f"first error: {r.get('first_error')}")
            md.append(f"| {s.label} | {r['rtt']:,.0f} | {bl.fmt_ratio(ratio(r['rtt'], ref.get('rtt')) if ref_ok else None)} "
                      f"| {r['p50']:,.0f} | {r['p99']:,.0f} | {r['p999']:,.0f} | {bl.fmt_f(r['cpu_rt'])} "
                      f"| {bl.fmt_ratio(ratio(r['cpu_rt'], ref.get('cpu_rt')) if ref_ok else None)} "
                      f"| {100 * r['cpu_use']:.0f}% | {bl.fmt_int(r['rss_kib'])} | {r['errors']} | {'; '.join(notes)} |")
        md.append("")
    return "\n".join(md)


def md_c10k(c10k):
    total, act = c10k["total"], c10k["active"]
    runs = c10k["runs"]
    ref = runs.get("ref", {}).get("active_run", {})
    md = [f"{total - act:,} idle connections (each made one round trip, then nothing), held by one loadgen, plus "
          f"{act} active ones driven by a second. *idle CPU*: the server's CPU time (all threads, /proc/PID/stat) "
          f"over {c10k.get('idle_seconds', 3):g} s with no traffic at all, in % of one CPU. *RSS/conn*: the server's "
          "RSS growth from start to all idle connections held, divided by them (user-space memory only; the "
          "kernel's socket buffers are not in it). Then the active ones, with the idle ones still connected: "
          "round trips, latency, server CPU per round trip; *x ref* against the reference's figures of this "
          "table.", ""]
    md.append("| server | idle held | connect s | idle CPU | RSS/conn | threads | active rtt/s | x ref | p50 µs "
              "| p99 µs | server CPU µs/rt | x ref | errors | notes |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in ECHO_SYSTEMS:
        r = runs.get(s.key)
        if r is None:
            continue
        fail = echo_cell_failure(r)
        if fail:
            md.append(f"| {s.label} | - | - | - | - | - | - | - | - | - | - | - | - | {fail} |")
            continue
        notes = []
        want = total - act
        if r["held"] < want:
            if s.key == "select":
                notes.append(f"select() cannot watch descriptors >= FD_SETSIZE (1024): the server refused "
                             f"the other {want - r['held']:,}")
            else:
                notes.append(f"held only {r['held']:,} of {want:,} after {r['connect_s']:.0f} s")
        if r.get("idle_others", 0) > bl.NOISY:
            notes.append(f"others used {100 * r['idle_others']:.0f}% of a CPU during the idle sample")
        ar = r.get("active_run", {})
        if r.get("server_note"):
            notes.append(r["server_note"])
        if "failed" in ar:
            notes.append(f"active run failed: {ar['failed']}")
            md.append(f"| {s.label} | {r['held']:,} | {r['connect_s']:.1f} | {100 * (r['idle_cpu'] or 0):.1f}% "
                      f"| {bl.fmt_bytes(r['rss_per_conn'])} | {r['threads']:,} | - | - | - | - | - | - | - "
                      f"| {'; '.join(notes)} |")
            continue
        if ar.get("contended"):
            notes.append(f"active run contended ({100 * ar['others']:.0f}% of a CPU used by others)")
        if ar["errors"]:
            notes.append(f"{ar['errors']:,} client errors ({ar.get('first_error')})")
        ref_ok = "rtt" in ref
        md.append(f"| {s.label} | {r['held']:,} | {r['connect_s']:.1f} | {100 * (r['idle_cpu'] or 0):.1f}% "
                  f"| {bl.fmt_bytes(r['rss_per_conn'])} | {r['threads']:,} | {ar['rtt']:,.0f} "
                  f"| {bl.fmt_ratio(ratio(ar['rtt'], ref.get('rtt')) if ref_ok else None)} | {ar['p50']:,.0f} "
                  f"| {ar['p99']:,.0f} | {bl.fmt_f(ar['cpu_rt'])} "
                  f"| {bl.fmt_ratio(ratio(ar['cpu_rt'], ref.get('cpu_rt')) if ref_ok else None)} | {ar['errors']:,} "
                  f"| {'; '.join(notes)} |")
    md.append("")
    return "\n".join(md)


def chat_row_cells(r, ref):
    return (f"{r['dps']:,.0f} | {r['sent_per_s']:,.0f} | {r['loss']:,} ({100 * r['loss_ratio']:.3g}%) "
            f"| {r['p50'] / 1000:,.1f} | {r['p99'] / 1000:,.1f} | {bl.fmt_f(r['cpu_del'], 3)} "
            f"| {bl.fmt_ratio(ratio(r['cpu_del'], ref.get('cpu_del')) if ref else None)} | {100 * r['cpu_use']:.0f}% "
            f"| {100 * r['client_use']:.0f}% | {bl.fmt_bytes(r['rss_per_member'])} | {r['errors']}")


def md_chat_fixed(chat):
    md = []
    for p in chat["points"]:
        members, fixed = p["members"], p["fixed"]
        md.append(f"#### {members:,} members x {fixed:g} msg/s ({members * fixed:,.0f} deliveries/s offered)")
        md.append("")
        md.append("| server | deliveries/s | sent msg/s | loss | p50 ms | p99 ms | server CPU µs/delivery | x Redis "
                  "| server CPU use | client CPU use | RSS/member | errors | notes |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        redis_r = chat["results"].get(f"redis@{members}", {})
        ref = next((r for r in redis_r.get("steps", []) if r["rate"] == fixed and "failed" not in r), None)
        for s in CHAT_SYSTEMS:
            res = chat["results"].get(f"{s.key}@{members}")
            if res is None:
                continue
            if "skipped" in res or "failed" in res:
                md.append(f"| {s.label} | - | - | - | - | - | - | - | - | - | - | - | "
                          f"{'skipped: ' + res['skipped'] if 'skipped' in res else 'failed: ' + res['failed']} |")
                continue
            r = next((x for x in res["steps"] if x["rate"] == fixed), None)
            if r is None:
                continue
            if "failed" in r:
                md.append(f"| {s.label} | - | - | - | - | - | - | - | - | - | - | - | failed: {r['failed']} |")
                continue
            notes = []
            if r.get("median_of"):
                notes.append(f"median of {r['median_of']} runs (targets below)")
            if s.lossy:
                notes.append("lossy by design")
            if not r["ok"]:
                notes.append("not OK: " + ", ".join(r["problems"]))
            if r.get("contended"):
                notes.append(f"contended ({100 * r['others']:.0f}% of a CPU used by others)")
            if r.get("server_note"):
                notes.append(r["server_note"])
            md.append(f"| {s.label} | {chat_row_cells(r, ref)} | {'; '.join(notes)} |")
        md.append("")
    return "\n".join(md)


def md_chat_saturation(chat):
    md = ["| server | members | saturation msg/s | deliveries/s there | p99 there ms | server CPU use there "
          "| client CPU use there | first failing rate | why it failed | rates tried (✗ failed) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in chat["points"]:
        members = p["members"]
        for s in CHAT_SYSTEMS:
            res = chat["results"].get(f"{s.key}@{members}")
            if res is None or "steps" not in res or not res.get("searched"):
                continue
            steps = res["steps"]
            sat = next((r for r in steps if r["rate"] == res["saturation"]), None)
            bad = next((r for r in steps if r["rate"] == res["first_fail"]), None)
            if bad is None:
                why = "none failed up to the search's bound"
            elif "failed" in bad:
                why = bad["failed"]
            else:
                why = "; ".join(bad["problems"]) + (" (client at >= 95% of a CPU)" if bad.get("client_bound") else "")
            tried = ", ".join(f"{r['rate']:g}{'' if r['ok'] else '✗'}" for r in steps)
            first_fail = f"{res['first_fail']:,g}" if res["first_fail"] else "-"
            if sat:
                md.append(f"| {s.label} | {members:,} | **{sat['rate']:,g}** | {sat['dps']:,.0f} "
                          f"| {sat['p99'] / 1000:,.0f} | {100 * sat['cpu_use']:.0f}% | {100 * sat['client_use']:.0f}% "
                          f"| {first_fail} | {why} | {tried} |")
            else:
                md.append(f"| {s.label} | {members:,} | none >= {min(r['rate'] for r in steps):g} | - | - | - | - "
                          f"| {first_fail} | {why} | {tried} |")
    md.append("")
    md.append("<details><summary>Every step of the searches</summary>")
    md.append("")
    md.append("| server | members | msg/s | deliveries/s | sent msg/s | loss | p50 ms | p99 ms | server CPU µs/delivery "
              "| server CPU use | client CPU use | verdict |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in chat["points"]:
        for s in CHAT_SYSTEMS:
            res = chat["results"].get(f"{s.key}@{p['members']}")
            if res is None or "steps" not in res:
                continue
            for r in res["steps"]:
                if "failed" in r:
                    md.append(f"| {s.label} | {p['members']:,} | {r['rate']:g} | - | - | - | - | - | - | - | - "
                              f"| failed: {r['failed']} |")
                    continue
                md.append(f"| {s.label} | {p['members']:,} | {r['rate']:g} | {r['dps']:,.0f} | {r['sent_per_s']:,.0f} "
                          f"| {r['loss']:,} | {r['p50'] / 1000:,.1f} | {r['p99'] / 1000:,.1f} | {bl.fmt_f(r['cpu_del'], 3)} "
                          f"| {100 * r['cpu_use']:.0f}% | {100 * r['client_use']:.0f}% "
                          f"| {'ok' if r['ok'] else ', '.join(r['problems'])}"
                          f"{' (median of %d)' % r['median_of'] if r.get('median_of') else ''}"
                          f"{' (contended)' if r.get('contended') else ''} |")
    md.append("")
    md.append("</details>")
    md.append("")
    return "\n".join(md)


def chat_target_rows(targets):
    """[(what, measured, ok or None)] for the chat targets."""
    rows = []
    if not targets:
        return rows
    for p in targets["points"]:
        m, rate = p["members"], p["rate"]
        where = f"{m:,} members x {rate:,} msg/s"
        if p.get("kind") == "diagnostic":
            if not p.get("skipped"):
                s = target_summary(p)
                c, r = s["chat"], s["redis"]
                rows.append((f"(no target) chat-server CPU per delivery against Redis's below saturation ({where}, "
                             f"medians)", f"{bl.fmt_f(c['cpu_del'], 3)} vs {bl.fmt_f(r['cpu_del'], 3)} µs "
                             f"({bl.fmt_ratio(ratio(c['cpu_del'], r['cpu_del']))}x)", None))
            continue
        if p.get("skipped"):
            rows.append((f"chat-server targets at {where}", "not measured: " + p["skipped"], None))
            continue
        s = target_summary(p)
        c, r = s["chat"], s["redis"]
        lossless = c["failed"] == 0 and c["loss"] == 0 and c["errors"] == 0
        rows.append((f"chat-server zero loss ({where}, {c['n']} runs)",
                     f"loss {c['loss']:,}, errors {c['errors']}, failed runs {c['failed']}", lossless))
        if m == 1000:
            both_full = (c["cpu_use"] or 0) >= 0.97 and (r["cpu_use"] or 0) >= 0.97
            rows.append((f"chat-server CPU per delivery <= Redis's ({where}, medians)",
                         f"{bl.fmt_f(c['cpu_del'], 3)} vs {bl.fmt_f(r['cpu_del'], 3)} µs "
                         f"({bl.fmt_ratio(ratio(c['cpu_del'], r['cpu_del']))}x)"
                         + ("; both servers used one whole CPU, so CPU per delivery is 1/rate for both: a tie "
                            "within the 10 ms tick resolution" if both_full else ""),
                         c["cpu_del"] is not None and r["cpu_del"] is not None and c["cpu_del"] <= r["cpu_del"]))
        else:
            rows.append((f"chat-server p99 <= Redis's ({where}, medians)",
                         f"{bl.fmt_f((c['p99'] or 0) / 1000, 1)} vs {bl.fmt_f((r['p99'] or 0) / 1000, 1)} ms "
                         f"({bl.fmt_ratio(ratio(c['p99'], r['p99']))}x)",
                         c["p99"] is not None and r["p99"] is not None and c["p99"] <= r["p99"]))
            rss = c["rss_per_member"]
            rows.append((f"chat-server RSS per connected member <= 1 KiB (fresh server, {m:,} members, median)",
                         f"{bl.fmt_bytes(rss)} (Redis {bl.fmt_bytes(r['rss_per_member'])})",
                         rss is not None and rss <= RSS_TARGET))
    return rows


def md_chat_targets(targets):
    md = []
    for p in targets["points"]:
        m, rate = p["members"], p["rate"]
        md.append(f"#### {m:,} members x {rate:,} msg/s: chat-server (native) and Redis, ABBA order, fresh servers"
                  + (" (no target: below both servers' saturation)" if p.get("kind") == "diagnostic" else ""))
        md.append("")
        if p.get("skipped"):
            md.append(f"Skipped: {p['skipped']}.")
            md.append("")
            continue
        s = target_summary(p)
        md.append("| server | runs (contended) | deliveries/s | loss (all runs) | p50 ms | p99 ms | server CPU µs/delivery "
                  "| server CPU use | RSS/member | client CPU use | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in ("chat", "redis"):
            x = s[key]
            md.append(f"| {label(key)} | {x['n']} ({x['contended']}) | {bl.fmt_int(x['dps'])} | {x['loss']:,} "
                      f"| {bl.fmt_f((x['p50'] or 0) / 1000, 1)} | {bl.fmt_f((x['p99'] or 0) / 1000, 1)} "
                      f"| {bl.fmt_f(x['cpu_del'], 3)} | {100 * (x['cpu_use'] or 0):.0f}% | {bl.fmt_bytes(x['rss_per_member'])} "
                      f"| {100 * (x['client_use'] or 0):.0f}% | {x['errors']} |")
        md.append("")
        md.append(f"chat-server/Redis per round (adjacent runs): CPU per delivery "
                  f"{', '.join(f'{v:.2f}' for v in s['paired_cpu']) or '-'}; p99 "
                  f"{', '.join(f'{v:.2f}' for v in s['paired_p99']) or '-'}")
        md.append("")
    return "\n".join(md)


def md_targets(echo_targets, chat_rows):
    md = ["| target | measured | result |", "|---|---|---|"]
    for what, measured, ok in list(echo_targets) + list(chat_rows):
        md.append(f"| {what} | {measured} | {'PASS' if ok else ('-' if ok is None else 'FAIL')} |")
    md.append("")
    return "\n".join(md)


def git_describe():
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def md_run(data, mach, command, elapsed):
    when = data.get("when") or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    commit = data.get("commit") or git_describe()
    return "\n".join([
        f"Run of {when}: `{command}` ({elapsed / 60:.1f} minutes), code at `{commit}`.",
        "",
        f"Machine: {mach['nproc']} CPUs, {mach['cpu']} {mach['mhz']}, {mach['mem']}, Linux {mach['kernel']}, "
        f"loopback only, {mach['nofile']:,} open files per process, TCP congestion control {mach['congestion']}, "
        f"ephemeral ports {mach['ports']}. Client (loadgen) and server share the CPUs. Python {mach['python']}, "
        f"Node.js {mach['node']}, Redis {mach['redis']}, NATS {mach['nats']}.",
        "",
    ])


def write_markdown(path, blocks, template):
    """Replaces each <!-- bench:NAME --> ... <!-- /bench:NAME --> block of `path`; writes `template`
    (with the blocks filled in) when the file has none of them."""
    text = Path(path).read_text() if Path(path).exists() else ""
    if "<!-- bench:" not in text:
        text = template
    for name, body in blocks.items():
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            text += f"\n{begin}\n{body.rstrip()}\n{end}\n"
            continue
        text = text[:i + len(begin)] + "\n" + body.rstrip() + "\n" + text[j:]
    Path(path).write_text(text)


TEMPLATE = """# Benchmarks

<!-- bench:run -->
<!-- /bench:run -->

## Targets

<!-- bench:targets -->
<!-- /bench:targets -->

## Echo: the reactor against the thinnest epoll loop

<!-- bench:echo-targets -->
<!-- /bench:echo-targets -->

## Echo side by side

<!-- bench:echo -->
<!-- /bench:echo -->

## C10K

<!-- bench:c10k -->
<!-- /bench:c10k -->

## Chat fan-out

<!-- bench:chat-targets -->
<!-- /bench:chat-targets -->

<!-- bench:chat-fixed -->
<!-- /bench:chat-fixed -->

<!-- bench:chat-saturation -->
<!-- /bench:chat-saturation -->

## Scale out

### New connections over two reactors: hand-off or a listener each

<!-- bench:accept -->
<!-- /bench:accept -->

### 100,000 members on this machine

<!-- bench:scale -->
<!-- /bench:scale -->

<!-- bench:plots -->
<!-- /bench:plots -->
"""


# ---- plots ---------------------------------------------------------------------------------------------------
def gnuplot(script, workdir):
    if not shutil.which("gnuplot"):
        return "gnuplot is not installed (apt-get install gnuplot-nox)"
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, cwd=workdir, timeout=60)
    if p.returncode != 0:
        return p.stderr.strip()[-300:]
    return None


PLOT_HEAD = """set terminal pngcairo size {w},{h} font "DejaVu Sans,9"
set output "{out}"
set datafile separator "\\t"
set datafile missing "-"
set grid ytics lc rgb "#dddddd"
set key top left
"""


def make_plots(ctx, data, plotdir):
    plotdir = Path(plotdir)
    plotdir.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-plots-", dir=ctx.procs.logdir)
    made, problems = [], []

    def emit(name, script):
        err = gnuplot(script, work)
        if err:
            problems.append(f"{name}: {err}")
        else:
            made.append(name)

    def short(key):
        return {"ref": "reference", "epoll": "ours epoll", "poll": "ours poll", "select": "ours select",
                "threads": "ours threads", "busy": "ours busy-wait", "node": "Node.js", "py-reactor": "py selectors",
                "py-threads": "py threads", "py-busy": "py busy-wait"}.get(key, key)

    echo, c10k, chat = data.get("echo"), data.get("c10k"), data.get("chat")
    if echo and c10k:
        rows = []
        for s in ECHO_SYSTEMS:
            vals = []
            for size in echo["sizes"]:
                r = echo["runs"][size].get(s.key, {})
                vals.append(f"{r['rtt']:.0f}" if "rtt" in r and not r.get("errors") else "-")
            ar = c10k["runs"].get(s.key, {}).get("active_run", {})
            ok10k = "rtt" in ar and c10k["runs"][s.key]["held"] >= c10k["total"] - c10k["active"]
            vals.append(f"{ar['rtt']:.0f}" if ok10k else "-")
            rows.append("\t".join([short(s.key)] + vals))
        top = max([float(v) for row in rows for v in row.split("\t")[1:] if v != "-"] or [1.0])
        Path(work, "echo.tsv").write_text("\n".join(rows) + "\n")
        rows = []
        for s in ECHO_SYSTEMS:
            vals = []
            for size in echo["sizes"]:
                r = echo["runs"][size].get(s.key, {})
                vals.append(f"{r['cpu_rt']:.2f}" if r.get("cpu_rt") and not r.get("errors") else "-")
            ar = c10k["runs"].get(s.key, {}).get("active_run", {})
            ok10k = ar.get("cpu_rt") and c10k["runs"][s.key]["held"] >= c10k["total"] - c10k["active"]
            vals.append(f"{ar['cpu_rt']:.2f}" if ok10k else "-")
            rows.append("\t".join([short(s.key)] + vals))
        Path(work, "echo_cpu.tsv").write_text("\n".join(rows) + "\n")
        titles = [f"{int(x):,} conns" for x in echo["sizes"]] + [f"{c10k['total']:,} conns, {c10k['active']} active"]
        cols = " , ".join(f"'echo.tsv' using {i + 2}:xtic(1) title '{t}'" for i, t in enumerate(titles))
        cpu_cols = " , ".join(f"'echo_cpu.tsv' using {i + 2}:xtic(1) notitle" for i, t in enumerate(titles))
        emit("echo_throughput.png", PLOT_HEAD.format(w=900, h=640, out=str(plotdir / "echo_throughput.png")) + f"""
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by 30 right scale 0
set title "Echo round trips per second (64 B, depth 1; no bar = could not run; the client is saturated too)"
set yrange [0:{1.3 * top:.0f}]
set format y "%.0s%c"
set key top right horizontal
plot {cols}
set title "Server CPU per round trip, microseconds (log scale; lower is better)"
set logscale y
set yrange [1:*]
set format y "%g"
plot {cpu_cols}
unset multiplot
""")
        rows = []
        for s in ECHO_SYSTEMS:
            r = c10k["runs"].get(s.key, {})
            if "held" not in r:
                rows.append(f"{short(s.key)}\t-\t-\t-")
                continue
            ar = r.get("active_run", {})
            rows.append("\t".join([short(s.key), f"{100 * (r['idle_cpu'] or 0):.2f}",
                                   f"{r['rss_per_conn']:.0f}" if r.get("rss_per_conn") and r["rss_per_conn"] > 0 else "-",
                                   f"{ar['p99'] / 1000:.3f}" if "p99" in ar and ar["p99"] > 0 else "-"]))
        Path(work, "c10k.tsv").write_text("\n".join(rows) + "\n")
        emit("c10k.png", PLOT_HEAD.format(w=1000, h=360, out=str(plotdir / "c10k.png")) + f"""
set multiplot layout 1,3 title "{c10k['total'] - c10k['active']:,} idle + {c10k['active']} active connections"
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.8
set xtics rotate by 45 right scale 0 font ",8"
set key off
set title "server CPU while idle (% of one CPU)"
set yrange [0:*]
plot 'c10k.tsv' using 2:xtic(1) lc rgb "#c0504d"
set title "RSS per idle connection (bytes, log)"
set logscale y
set yrange [10:*]
plot 'c10k.tsv' using 3:xtic(1) lc rgb "#4f81bd"
set title "p99 latency of the active ones (ms, log)"
set yrange [*:*]
plot 'c10k.tsv' using 4:xtic(1) lc rgb "#9bbb59"
unset multiplot
""")
    if chat:
        for p in chat["points"]:
            members = p["members"]
            series = []
            for s in CHAT_SYSTEMS:
                res = chat["results"].get(f"{s.key}@{members}", {})
                steps = [r for r in res.get("steps", []) if "failed" not in r and r["p99"] > 0]
                if len(steps) < 2:
                    continue
                fname = f"chat_{s.key}_{members}.tsv"
                Path(work, fname).write_text("\n".join(f"{r['rate']:g}\t{r['p99'] / 1000:.3f}\t{1 if r['loss'] else 0}"
                                                        for r in steps) + "\n")
                series.append((fname, s.label))
            if not series:
                continue
            plots = ", ".join(f"'{f}' using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 title '{t}'" for f, t in series)
            plots += ", ".join([""] + [f"'{f}' using 1:($3 > 0 ? $2 : 1/0) with points pt 6 ps 2 lc rgb 'black' notitle"
                                       for f, _ in series])
            out = plotdir / f"chat_saturation_{members}.png"
            emit(out.name, PLOT_HEAD.format(w=900, h=420, out=str(out)) + f"""
set title "Chat fan-out to {members:,} members: p99 latency against the offered rate (circled: messages lost)"
set logscale xy
set xlabel "messages per second published (each goes to {members:,} members)"
set ylabel "p99 latency, ms"
set key top left
set arrow from graph 0, first 1000 to graph 1, first 1000 nohead dt 2 lc rgb "#888888"
set label "1 s" at graph 0.01, first 1150 tc rgb "#888888"
plot {plots}
""")
    return made, problems


# ---- main ---------------------------------------------------------------------------------------------------
def main():
    p = argparse.ArgumentParser(description="The benchmark suite (echo, C10K, chat), every system side by side.")
    p.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes; exit 1 if a check fails")
    p.add_argument("--only", action="append",
                   choices=["echo-targets", "echo", "c10k", "chat-targets", "chat", "accept", "scale"],
                   help="run only these sections (then BENCHMARKS.md is not written unless --out is given)")
    p.add_argument("--skip", action="append", metavar="SYSTEM",
                   help="leave a system out (" + ", ".join(s.key for s in ECHO_SYSTEMS + CHAT_SYSTEMS) + ")")
    p.add_argument("--out", help="markdown to write (default: BENCHMARKS.md; quick: bench/results/quick.md)")
    p.add_argument("--plots", help="directory for the PNG plots (default: bench/plots; none in quick mode)")
    p.add_argument("--json-out", help="raw results (default: bench/results/run.json or quick.json)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails (full run)")
    p.add_argument("--build-dir", default=str(ROOT / "build"))
    p.add_argument("--seed-dir", default=str(SEED), help="the article's programs (default: ../shared/seed)")
    p.add_argument("--max-steps", type=int, default=6, help="most runs per saturation search (default 6)")
    p.add_argument("--target-rounds", type=int, help="ABBA rounds for the chat targets (default 4, quick 1)")
    p.add_argument("--echo-rounds", type=int, help="ABBA rounds for the echo targets (default 5, quick 1)")
    p.add_argument("--watchdog", type=float, help="give up after this many seconds (default 2400, quick 170)")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs even when all went well")
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: write the markdown and plots again from a saved run's raw results")
    args = p.parse_args()
    q = args.quick
    args.echo_duration, args.echo_warmup = (0.5, 0.2) if q else (2.0, 0.5)
    args.chat_duration, args.chat_warmup, args.chat_drain = (1.0, 0.3, 1.5) if q else (2.0, 0.5, 2.0)
    args.target_duration, args.target_warmup = (1.0, 0.3) if q else (3.0, 1.0)
    args.target_rounds = args.target_rounds or (1 if q else 4)
    args.connect_timeout = 15 if q else 30
    args.c10k_connect = 8 if q else 25
    args.idle_seconds = 0.7 if q else 3.0
    args.quiet_budget = 90.0
    args.watchdog = args.watchdog or (170 if q else 2400)
    sections = set(args.only or ["echo-targets", "echo", "c10k", "chat-targets", "chat", "accept", "scale"])
    partial = bool(args.only)
    results_dir = ROOT / "bench" / "results"
    out_md = args.out or (str(results_dir / "quick.md") if q else (None if partial else str(ROOT / "BENCHMARKS.md")))
    if partial and not args.out:
        out_md = str(results_dir / "partial.md")
    plotdir = args.plots or (None if q or partial else str(ROOT / "bench" / "plots"))
    json_out = args.json_out or str(results_dir / ("quick.json" if q else "run.json"))

    ctx = Ctx(args)
    if not ctx.loadgen.exists():
        bl.log(f"run.py: {ctx.loadgen} is missing: nothing can be measured (build first: ./dev.sh build)")
        return 2
    command = "python3 bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])

    def on_signal(signo, frame):
        raise KeyboardInterrupt(f"signal {signo}")

    def on_alarm(signo, frame):
        raise Watchdog(f"watchdog: the run took longer than {args.watchdog:.0f} s")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.watchdog))
    data = {"command": command, "quick": q, "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "commit": git_describe()}
    status = 0
    echo_res = None
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        command = data.get("command", command)
        q = data.get("quick", False)
        ctx.checks = [tuple(c) for c in data.get("checks", [])]
        et = data.get("echo_targets") or {}
        if "md" in et:
            echo_res = {"md": et["md"], "targets": [tuple(t) for t in et["targets"]]}
        elif "scenarios" in et:
            eargs = argparse.Namespace(rounds=max(len(r) for r in et["scenarios"][0]["runs"].values()) if et["scenarios"] else 1,
                                       duration=2.5, warmup=1.0, retries=1)
            md, targets = echo_bench.render(eargs, command + "  (its echo_bench.py part)", bl.machine(),
                                            et["scenarios"], et.get("memory") or {}, 0)
            echo_res = {"md": md, "targets": targets}
        sections = set()
        json_out = None
    else:
        bl.log(f"run.py: {'quick smoke run' if q else 'full run'}; logs of the servers in {ctx.procs.logdir}")
    try:
        if "echo-targets" in sections:
            missing = echo_bench.missing_binaries(argparse.Namespace(build_dir=args.build_dir))
            if missing:
                data["echo_targets"] = {"skipped": f"{missing[0]} is missing"}
                ctx.check("echo-targets", "echo_bench.py", "skipped", data["echo_targets"]["skipped"])
            else:
                eargs = echo_bench.make_parser().parse_args(
                    ["--build-dir", args.build_dir]
                    + (["--quick", "--budget", "5", "--max-wait", "2", "--retries", "0"] if q else
                       ["--rounds", str(args.echo_rounds or 5), "--duration", "2.5", "--warmup", "1",
                        "--budget", "60", "--max-wait", "10", "--retries", "1"]))
                echo_bench.finish_args(eargs)
                bl.log(f"\n[echo-targets] bench/echo_bench.py scenarios a, b, c ({eargs.rounds} round(s) of "
                       f"{eargs.duration:g} s)")
                try:
                    echo_res = echo_bench.run_suite(eargs, command + "  (its echo_bench.py part)")
                    data["echo_targets"] = {"scenarios": echo_res["scenarios"], "memory": echo_res["memory"],
                                            "md": echo_res["md"], "targets": echo_res["targets"]}
                    errors = sum(r["errors"] for scn in echo_res["scenarios"] for rs in scn["runs"].values() for r in rs)
                    rates = [r["rtt_per_s"] for scn in echo_res["scenarios"] for rs in scn["runs"].values() for r in rs]
                    ok = errors == 0 and all(x > 0 for x in rates)
                    ctx.check("echo-targets", "echo_bench.py (reference, reactor)", "ok" if ok else "FAIL",
                              f"{errors} error(s), rtt/s {min(rates, default=0):,.0f}..{max(rates, default=0):,.0f}")
                except RuntimeError as e:
                    data["echo_targets"] = {"failed": str(e)}
                    ctx.check("echo-targets", "echo_bench.py", "FAIL", str(e))
                    bl.log(f"  FAILED: {e}")
        if "echo" in sections:
            data["echo"] = echo_section(ctx)
        if "c10k" in sections:
            data["c10k"] = c10k_section(ctx)
        if "chat-targets" in sections and not q:
            data["chat_targets"] = chat_targets_section(ctx)
        if "chat" in sections:
            data["chat"] = chat_section(ctx, data.get("chat_targets"))
        if "accept" in sections:
            data["accept"] = sb.accept_section(ctx, members=1000 if q else 10000, rate=10, duration=1 if q else 3,
                                               rounds=1 if q else 4)
            if q:
                runs = [r for rs in data["accept"].get("runs", {}).values() for r in rs]
                bad = [r for r in runs if "failed" in r or r["loss"] or r["errors"]]
                ctx.check("accept", "chat-server --accept handoff / reuseport",
                          "skipped" if "skipped" in data["accept"] else ("FAIL" if bad or not runs else "ok"),
                          data["accept"].get("skipped") or (f"{bad[0]}" if bad else f"{len(runs)} runs, no loss"))
        if "scale" in sections:
            data["scale"] = sb.scale_section(ctx, members=2000 if q else 100_000, workers=2 if q else 6,
                                             rate=5 if q else 0.25, duration=1 if q else 16)
            if q:
                r = data["scale"]
                ctx.check("scale", "chat-server --workers 2 --redis",
                          "skipped" if "skipped" in r else ("ok" if r.get("ok") else "FAIL"),
                          r.get("skipped") or r.get("failed") or
                          f"{r['connected']:,} members, {r['deliveries']:,} deliveries, loss {r['loss']}")
    except KeyboardInterrupt as e:
        bl.log(f"run.py: interrupted ({e})")
        status = 130
    except Watchdog as e:
        bl.log(f"run.py: {e}")
        ctx.check("run", "watchdog", "FAIL", str(e))
        status = 1
    finally:
        signal.alarm(0)
        ctx.procs.cleanup()
    elapsed = data.get("elapsed_s", 0) if args.from_json else time.monotonic() - ctx.started
    if status == 130:
        return status

    # ---- report ----
    mach = data.get("machine") or bl.machine()
    data["machine"] = mach
    data["elapsed_s"] = elapsed
    blocks = {"run": md_run(data, mach, command, elapsed)}
    chat_rows = chat_target_rows(data.get("chat_targets"))
    echo_targets = echo_res["targets"] if echo_res else []
    blocks["targets"] = md_targets(echo_targets, chat_rows)
    if echo_res:
        blocks["echo-targets"] = echo_res["md"]
    elif "echo_targets" in data:
        blocks["echo-targets"] = "Not run: " + (data["echo_targets"].get("skipped") or data["echo_targets"].get("failed", ""))
    if "echo" in data:
        blocks["echo"] = md_echo(data["echo"])
    if "c10k" in data:
        blocks["c10k"] = md_c10k(data["c10k"])
    if data.get("chat_targets"):
        blocks["chat-targets"] = md_chat_targets(data["chat_targets"])
    if "chat" in data:
        blocks["chat-fixed"] = md_chat_fixed(data["chat"])
        if not q:
            blocks["chat-saturation"] = md_chat_saturation(data["chat"])
    if "accept" in data:
        blocks["accept"] = sb.md_accept(data["accept"])
    if "scale" in data:
        blocks["scale"] = sb.md_scale(data["scale"])
    if plotdir:
        made, problems = make_plots(ctx, data, plotdir)
        rel = os.path.relpath(plotdir, ROOT)
        blocks["plots"] = "\n\n".join([f"![{m}]({rel}/{m})" for m in made] + [f"Plot not made: {x}" for x in problems])
        bl.log(f"plots: {', '.join(made) or 'none'}" + (f"; problems: {problems}" if problems else ""))
    if q or ctx.checks:
        lines = ["| section | system | check | detail |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ctx.checks]
        blocks["checks"] = "\n".join(lines) + "\n"
    if out_md:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        write_markdown(out_md, blocks, TEMPLATE + ("\n## Smoke checks\n\n<!-- bench:checks -->\n<!-- /bench:checks -->\n"
                                                   if q else ""))
        bl.log(f"written: {out_md}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        data["checks"] = ctx.checks
        Path(json_out).write_text(json.dumps(data, indent=1, default=str))

    bl.log("")
    if q:
        bl.log("Targets from one short round (quick mode): not a verdict, only the smoke checks below count.")
    bl.log(blocks["targets"])
    failed_any = status != 0 or any(c[2] == "FAIL" for c in ctx.checks)
    if failed_any or args.keep_logs:
        bl.log(f"the servers' logs: {ctx.procs.logdir}")
    else:
        shutil.rmtree(ctx.procs.logdir, ignore_errors=True)
    if q:
        fails = [c for c in ctx.checks if c[2] == "FAIL"]
        skipped = [c for c in ctx.checks if c[2] == "skipped"]
        for sec, lab, st, detail in ctx.checks:
            bl.log(f"  {st:7s} {sec:13s} {lab}: {detail}")
        ran = [c for c in ctx.checks if c[2] == "ok"]
        bl.log(f"quick: took {elapsed:.0f} s")
        bl.log(f"quick: {len(ran)} passed, {len(fails)} failed, {len(skipped)} skipped")
        if fails or not ran:
            return 1
    if status:
        return status
    if args.check and any(ok is False for _, _, ok in echo_targets + chat_rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
