"""Scale-out measurements for bench/run.py (sections "scale" and "accept").

scale   100,000 members in one room on this machine: chat-server --workers W (SO_REUSEPORT processes
        joined through a redis-server started here), loadgen in several processes and source
        addresses. Reports the servers' memory per connection (RSS of every worker, summed, at the
        peak minus before connecting) and how long one message takes to reach all 100,000 (the
        latency of its last delivery: the max over the run, with p50 and p99 of every delivery).
accept  chat-server --threads 2 with one listener handing connections out (handoff, the default)
        against a SO_REUSEPORT listener per reactor (reuseport), alternated: connect time for 10,000
        members, delivery latency at a fixed rate, and how evenly the two reactors were loaded.

Both need bench/run.py's context (context.Ctx: processes, loadgen, checks). accept_section and
scale_section are the sections as run.py runs them (sizes for the full run and the quick one, the
smoke checks); measure_accept and measure_scale take the sizes.
"""
import os
import re
import shutil
import signal
import threading
import time

import benchlib as bl


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _listeners(port):
    return sum(1 for p, s in bl._tcp_sockets() if p == port and s == bl.TCP_LISTEN)


def _wait_listeners(port, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listeners(port) >= count:
            return True
        time.sleep(0.1)
    return False


def _loadgen_sampled(ctx, args, timeout, sample, every=0.5):
    """Runs loadgen in a thread; calls sample() every `every` s until it ends; returns its report."""
    out = {}
    t = threading.Thread(target=lambda: out.update(res=ctx.loadgen_run(args, timeout)), daemon=True)
    t.start()
    while t.is_alive():
        sample()
        t.join(every)
    return out.get("res") or {"failed": "loadgen thread ended without a report"}


def _start_redis(ctx):
    port = bl.free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--maxclients", "10000"]
    return ctx.procs.start("redis", cmd, ready="listen", port=port, timeout=20)


def scale_section(ctx, data):
    """100,000 members over 6 workers (2,000 over 2 in quick mode)."""
    q = ctx.quick
    data["scale"] = measure_scale(ctx, members=2000 if q else 100_000, workers=2 if q else 6,
                                  rate=5 if q else 0.25, duration=1 if q else 16)
    if q:
        r = data["scale"]
        ctx.check("scale", "chat-server --workers 2 --redis",
                  "skipped" if "skipped" in r else ("ok" if r.get("ok") else "FAIL"),
                  r.get("skipped") or r.get("failed") or
                  f"{r['connected']:,} members, {r['deliveries']:,} deliveries, loss {r['loss']}")


def measure_scale(ctx, members, workers, rate, duration):
    """`members` members of one room over `workers` server processes joined through Redis."""
    if not shutil.which("redis-server"):
        return {"skipped": "`redis-server` is not installed"}
    chat = ctx.bin / "chat-server"
    if not chat.exists():
        return {"skipped": f"{chat} is missing"}
    bl.log(f"\n[scale] {members:,} members in one room: {workers} chat-server workers joined through Redis, "
           f"{rate:g} msg/s for {duration:g} s")
    ctx.wait_quiet()
    redis = server = None
    try:
        redis = _start_redis(ctx)
        cmd = [str(chat), *bl.CHAT_LIMITS_OFF, "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc", "--workers", str(workers), "--threads", "1",
               "--redis", f"redis://127.0.0.1:{redis.port}", "--presence-max-members", "100", "--store", "off"]
        server = ctx.procs.start("chat-workers", cmd, ready="line", timeout=30, cwd=ctx.procs.logdir)
        if not _wait_listeners(server.port, workers, 30):
            return {"failed": f"only {_listeners(server.port)} of {workers} workers listening"}
        pids = _children(server.pid)
        before = sum(max(0, bl.rss_kib(p)) for p in pids)
        redis_before = bl.rss_kib(redis.pid)
        peak = {"rss": before, "fds": 0, "redis": redis_before, "per_worker": [], "connected_rss": None}

        def sample():
            rss = sum(max(0, bl.rss_kib(p)) for p in pids)
            fds = [max(0, bl.fd_count(p)) for p in pids]
            if rss > peak["rss"]:
                peak["rss"] = rss
            if peak["connected_rss"] is None and sum(fds) >= members:
                peak["connected_rss"] = rss  # everyone connected, before the traffic
            if sum(fds) > peak["fds"]:
                peak["fds"], peak["per_worker"] = sum(fds), fds
            peak["redis"] = max(peak["redis"], bl.rss_kib(redis.pid))

        connect_timeout = max(60, members / 500)
        args = ["--mode", "chat", "--dialect", "native", "--port", server.port, "--connections", members,
                "--rate", f"{rate:g}", "--duration", duration, "--warmup", 2, "--drain", 5,
                "--connect-timeout", connect_timeout, "--barrier-timeout", 120]
        res = _loadgen_sampled(ctx, args, timeout=connect_timeout + duration + 300, sample=sample)
        if "failed" in res:
            return {"failed": res["failed"], "stderr": res.get("stderr", [])}
        lat = res["latency_us"]
        r = {
            "members": members, "workers": workers, "rate": rate, "duration": duration,
            "connected": res.get("members_subscribed"), "connect_s": res.get("connect_s"),
            "processes": res.get("processes"), "source_addresses": res.get("source_addresses"),
            "deliveries": res["deliveries"], "expected": res["expected_deliveries"], "loss": res["loss"],
            "errors": res["errors"], "duplicates": res.get("duplicates", 0),
            "p50": lat["p50"], "p99": lat["p99"], "p999": lat["p999"], "max": lat["max"],
            "rss_kib_before": before, "rss_kib_peak": peak["rss"], "rss_kib_connected": peak["connected_rss"],
            "rss_per_conn": ((peak["connected_rss"] or peak["rss"]) - before) * 1024 / members,
            "rss_peak_per_conn": (peak["rss"] - before) * 1024 / members,
            "fds_per_worker": peak["per_worker"], "redis_rss_kib": peak["redis"],
            "redis_rss_growth_kib": peak["redis"] - redis_before,
        }
        r["ok"] = r["loss"] == 0 and r["errors"] == 0 and (r["connected"] or 0) >= members
        bl.log(f"  connected {r['connected']:,} in {r['connect_s']:.1f} s over {workers} workers "
               f"({', '.join(f'{n:,}' for n in r['fds_per_worker'])} descriptors); deliveries {r['deliveries']:,} "
               f"loss {r['loss']:,}; p50 {r['p50'] / 1000:,.0f} ms p99 {r['p99'] / 1000:,.0f} ms "
               f"max {r['max'] / 1000:,.0f} ms; servers {bl.fmt_bytes(r['rss_per_conn'])}/connection")
        return r
    except (bl.StartError, OSError) as e:
        return {"failed": str(e)}
    finally:
        for s in (server, redis):
            if s is not None:
                ctx.stop(s)


PER_REACTOR = re.compile(r"per reactor open=([\d,]+)")


def _accept_once(ctx, mode, members, rate, duration):
    cmd = [str(ctx.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc", "--threads", "2",
           "--accept", mode, "--store", "off"]
    ctx.wait_quiet()
    # In the run's log directory: chat-server's default SQLite store makes its chat-data there.
    server = ctx.procs.start(f"chat-{mode}", cmd, ready="line", timeout=20, cwd=ctx.procs.logdir)
    try:
        asked = {"done": False}

        def sample():
            # Once everyone is connected, ask for the counters (they include each reactor's share).
            if not asked["done"] and bl.fd_count(server.pid) >= members:
                os.kill(server.pid, signal.SIGUSR1)
                asked["done"] = True

        res = _loadgen_sampled(ctx, ["--mode", "chat", "--port", server.port, "--connections", members,
                                     "--rate", f"{rate:g}", "--duration", duration, "--warmup", 1, "--drain", 2,
                                     "--connect-timeout", 60, "--barrier-timeout", 30, "--server-pid", server.pid],
                               timeout=200, sample=sample, every=0.2)
        if "failed" in res:
            return {"failed": res["failed"]}
        shares = []
        for line in server.log_tail(50, r"per reactor open="):
            m = PER_REACTOR.search(line)
            if m:
                shares = [int(x) for x in m.group(1).split(",")]
        lat = res["latency_us"]
        return {"mode": mode, "connect_s": res["connect_s"], "p50": lat["p50"], "p99": lat["p99"],
                "loss": res["loss"], "errors": res["errors"], "cpu_del": res.get("server_cpu_us_per_op"),
                "shares": shares,
                "imbalance": (max(shares) / (sum(shares) / len(shares)) - 1) if shares and sum(shares) else None}
    finally:
        ctx.stop(server)


def accept_section(ctx, data):
    """Handoff against reuseport at 10,000 members, 4 rounds (1,000 members, one round in quick mode)."""
    q = ctx.quick
    data["accept"] = measure_accept(ctx, members=1000 if q else 10000, rate=10, duration=1 if q else 3,
                                    rounds=1 if q else 4)
    if q:
        runs = [r for rs in data["accept"].get("runs", {}).values() for r in rs]
        bad = [r for r in runs if "failed" in r or r["loss"] or r["errors"]]
        ctx.check("accept", "chat-server --accept handoff / reuseport",
                  "skipped" if "skipped" in data["accept"] else ("FAIL" if bad or not runs else "ok"),
                  data["accept"].get("skipped") or (f"{bad[0]}" if bad else f"{len(runs)} runs, no loss"))


def measure_accept(ctx, members, rate, duration, rounds):
    chat = ctx.bin / "chat-server"
    if not chat.exists():
        return {"skipped": f"{chat} is missing"}
    bl.log(f"\n[accept] --threads 2, handoff against reuseport: {members:,} members, {rate:g} msg/s, "
           f"{rounds} round(s) ABBA")
    runs = {"handoff": [], "reuseport": []}
    for mode in bl.abba(["handoff", "reuseport"], rounds):
        try:
            r = _accept_once(ctx, mode, members, rate, duration)
        except bl.StartError as e:
            r = {"mode": mode, "failed": str(e)}
        runs[mode].append(r)
        if "failed" in r:
            bl.log(f"  {mode:9s} FAILED: {r['failed']}")
        else:
            bl.log(f"  {mode:9s} connect {r['connect_s']:.2f} s  p99 {r['p99'] / 1000:,.1f} ms  "
                   f"cpu {bl.fmt_f(r['cpu_del'], 3)} us/del  per reactor {r['shares']}  loss {r['loss']}")
    return {"members": members, "rate": rate, "duration": duration, "runs": runs}


def md_scale(r):
    if not r or "skipped" in r or "failed" in r:
        return "Not run: " + ((r or {}).get("skipped") or (r or {}).get("failed") or "no data")
    md = [f"{r['members']:,} members of one room, `chat-server --workers {r['workers']} --threads 1 --redis ...` "
          f"(each worker a process with one reactor, SO_REUSEPORT on one port, joined through one redis-server), "
          f"driven by `loadgen` in {r['processes']} processes over {r['source_addresses']} source addresses; "
          f"one publisher at {r['rate']:g} msg/s for {r['duration']:g} s. *Server RSS/conn*: the workers' resident "
          f"memory summed once every member is connected, minus before, over the members (*at peak*: the same at "
          f"the run's peak, with messages in flight). *Time to reach all*: a message's last delivery comes at "
          f"most *max* after it was sent; p50/p99 are over every delivery. The rate is low on purpose: each "
          f"message costs about 100,000 sends and 100,000 receives on two CPUs, so this measures one message's "
          f"spread, not a queue.", "",
          "| members | workers | descriptors per worker | connect s | deliveries | loss | p50 ms | p99 ms "
          "| max ms (time to reach all) | server RSS/conn | at peak | Redis RSS |",
          "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
          f"| {r['connected']:,} | {r['workers']} | {', '.join(f'{n:,}' for n in r['fds_per_worker'])} "
          f"| {r['connect_s']:.1f} | {r['deliveries']:,} | {r['loss']:,} | {r['p50'] / 1000:,.0f} "
          f"| {r['p99'] / 1000:,.0f} | {r['max'] / 1000:,.0f} | {bl.fmt_bytes(r['rss_per_conn'])} "
          f"| {bl.fmt_bytes(r.get('rss_peak_per_conn'))} | {bl.fmt_bytes(r['redis_rss_kib'] * 1024)} |"]
    return "\n".join(md) + "\n"


def md_accept(a):
    if not a or "skipped" in a:
        return "Not run: " + ((a or {}).get("skipped") or "no data")
    md = [f"`chat-server --threads 2`, {a['members']:,} members, {a['rate']:g} msg/s for {a['duration']:g} s, a fresh "
          f"server per run, runs alternated (ABBA); medians. *handoff*: shard 0 accepts and hands each socket to "
          f"the next reactor (one posted task per connection); *reuseport*: each reactor has its own SO_REUSEPORT "
          f"listener and the kernel picks one by a hash of the addresses. *imbalance*: the busier reactor's share "
          f"of the connections over an even share, minus 1.", "",
          "| accept | runs | connect s | p50 ms | p99 ms | CPU/delivery µs | imbalance | loss |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, runs in a["runs"].items():
        good = [r for r in runs if "failed" not in r]
        if not good:
            md.append(f"| {mode} | {len(runs)} | failed | | | | | |")
            continue
        imb = bl.median_of(good, "imbalance")
        md.append(f"| {mode} | {len(good)} | {bl.median_of(good, 'connect_s'):.2f} "
                  f"| {bl.median_of(good, 'p50') / 1000:,.1f} "
                  f"| {bl.median_of(good, 'p99') / 1000:,.1f} | {bl.fmt_f(bl.median_of(good, 'cpu_del'), 3)} "
                  f"| {'-' if imb is None else f'{100 * imb:.1f}%'} | {sum(r['loss'] for r in good):,} |")
    return "\n".join(md) + "\n"
