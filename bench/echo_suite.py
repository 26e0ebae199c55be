"""The echo sections of bench/run.py: echo-targets, echo and c10k.

echo-targets  bench/echo_bench.py's scenarios (our reactor against the thinnest epoll loop, ABBA).
echo          every echo system (systems.ECHO_SYSTEMS) at 100 and 1,000 connections, all active.
c10k          10,000 connections, 1% active: idle CPU and memory per connection, then the active few.

Each section is a function (ctx, data) that measures and files its raw results in `data`; report.py
turns them into tables. In quick mode each result is also judged (ctx.check) for the smoke run.
"""
import argparse
import signal
import subprocess
import time

import benchlib as bl
import echo_bench
from context import Skip, least_disturbed
from systems import ECHO_SYSTEMS


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


# ---- echo-targets -------------------------------------------------------------------------------------
def echo_targets_section(ctx, data):
    """bench/echo_bench.py's scenarios a, b, c, run by its own code."""
    args, quick = ctx.args, ctx.quick
    missing = echo_bench.missing_binaries(argparse.Namespace(build_dir=args.build_dir))
    if missing:
        data["echo_targets"] = {"skipped": f"{missing[0]} is missing"}
        ctx.check("echo-targets", "echo_bench.py", "skipped", data["echo_targets"]["skipped"])
        return
    eargs = echo_bench.make_parser().parse_args(
        ["--build-dir", args.build_dir]
        + (["--quick", "--budget", "5", "--max-wait", "2", "--retries", "0"] if quick else
           ["--rounds", str(args.echo_rounds or 5), "--duration", "2.5", "--warmup", "1",
            "--budget", "60", "--max-wait", "10", "--retries", "1"]))
    echo_bench.finish_args(eargs)
    bl.log(f"\n[echo-targets] bench/echo_bench.py scenarios a, b, c ({eargs.rounds} round(s) of "
           f"{eargs.duration:g} s)")
    try:
        res = echo_bench.run_suite(eargs, data["command"] + "  (its echo_bench.py part)")
        data["echo_targets"] = {"scenarios": res["scenarios"], "memory": res["memory"],
                                "md": res["md"], "targets": res["targets"]}
        errors = sum(r["errors"] for scn in res["scenarios"] for rs in scn["runs"].values() for r in rs)
        rates = [r["rtt_per_s"] for scn in res["scenarios"] for rs in scn["runs"].values() for r in rs]
        ok = errors == 0 and all(x > 0 for x in rates)
        ctx.check("echo-targets", "echo_bench.py (reference, reactor)", "ok" if ok else "FAIL",
                  f"{errors} error(s), rtt/s {min(rates, default=0):,.0f}..{max(rates, default=0):,.0f}")
    except RuntimeError as e:
        data["echo_targets"] = {"failed": str(e)}
        ctx.check("echo-targets", "echo_bench.py", "FAIL", str(e))
        bl.log(f"  FAILED: {e}")


def saved_echo_targets(data):
    """{"md", "targets"} of the echo-targets section from a run's raw results (rendered again when
    an older run kept only the scenarios), or None when it did not run or failed."""
    et = data.get("echo_targets") or {}
    if "md" in et:
        return {"md": et["md"], "targets": [tuple(t) for t in et["targets"]]}
    if "scenarios" in et:
        eargs = argparse.Namespace(rounds=max(len(r) for r in et["scenarios"][0]["runs"].values()) if et["scenarios"] else 1,
                                   duration=2.5, warmup=1.0, retries=1)
        md, targets = echo_bench.render(eargs, data["command"] + "  (its echo_bench.py part)", bl.machine(),
                                        et["scenarios"], et.get("memory") or {}, 0)
        return {"md": md, "targets": targets}
    return None


# ---- echo -------------------------------------------------------------------------------------------
def echo_once(ctx, system, n, active):
    rec = {"system": system.key, "connections": n, "active": active}
    why = ctx.unavailable(system)
    if why:
        rec["skipped"] = why
        return rec
    a = ctx.args

    def attempt(i):
        ctx.wait_quiet()
        server = ctx.start(system)
        try:
            res = ctx.loadgen_run(["--mode", "echo", "--port", server.port, "--connections", n, "--active", active,
                                   "--duration", a.echo_duration, "--warmup", a.echo_warmup, "--processes", 1,
                                   "--connect-timeout", a.connect_timeout, "--server-pid", server.pid],
                                  timeout=a.connect_timeout + a.echo_duration + a.echo_warmup + 60)
        finally:
            note = ctx.stop(server)
        r = echo_record(res)
        r["server_note"] = note
        r["attempts"] = i + 1
        return r

    try:
        rec.update(least_disturbed(1 if ctx.quick else 2, attempt))
    except Skip as e:
        rec["skipped"] = str(e)
    except bl.StartError as e:
        rec["failed"] = str(e)
    return rec


def echo_section(ctx, data):
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
    data["echo"] = out


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


# ---- c10k -------------------------------------------------------------------------------------------
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


def c10k_section(ctx, data):
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
    data["c10k"] = out


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
