"""The history section of bench/run.py (issue 11): what keeping history costs, acknowledged publishes
against Redis XADD, and a restart with every member reconnecting at once.

  cost        chat-server --store sqlite (the default) against --store off, fresh servers, ABBA order,
              at 1,000 members x 100 msg/s and 10,000 x 10 msg/s (the chat section's shapes), every
              message published with an id in both (loadgen --ids: the acks are counted and timed): server
              CPU per delivery sqlite/off (target <= 1.10x) and p99 sqlite/off (target: the same), the
              median of the per-round ratios of adjacent runs.
  throughput  acknowledged messages per second into one room: loadgen --window (4 publishers, each
              keeping 64 messages unacknowledged, one member checking the deliveries) against
              chat-server --store sqlite, and redis-benchmark with the same pipelining (-c 4 -P 64)
              appending to one stream (XADD MAXLEN ~ 10000, the trimming a room's history has) on a
              redis-server with appendonly yes / appendfsync everysec; --store off as a third, to show
              the store's share. Target sqlite/Redis >= 1.0x; publish-to-ack p50/p99 of each.
  storm       a restart with 1,000 members reconnecting at once (loadgen --mode recover): they join
              and leave, 100 messages are published and acked, the server is stopped (SIGTERM) and
              started again on the same data directory, and all 1,000 reconnect at once with since/epoch
              while a publisher goes on at 100 msg/s: every member recovered (recovered:true, exactly the
              100 missed, in order, then the live ones with no gap and no duplicate), the time to the
              last recovery, and the live messages' p99 during it. With 2 reactors (the default) and 1.
Quick mode: 200 members x 100 msg/s once each, a short throughput run each, a storm of 100 members
missing 20; the smoke checks.
"""
import datetime
import statistics
import subprocess
import tempfile
import time

import benchlib as bl
from chat_suite import chat_line, chat_record
from context import Skip, paired, run_order
from systems import System, label, system

CPU_TARGET = 1.10
THROUGHPUT_TARGET = 1.0
PUBLISHERS, WINDOW = 4, 64
PAYLOAD = 64  # loadgen's default text size; the XADD field has as many bytes


def median(v):
    return statistics.median(v) if v else None


# ---- cost: sqlite against off ------------------------------------------------------------------------
def with_acks(r, res):
    """chat_record plus what --ids adds (acks, publish-to-ack latency)."""
    if "failed" in r:
        return r
    ack = res.get("ack_latency_us") or {}
    r.update({"acks_missing": res.get("acks_missing"), "not_stored": res.get("not_stored"),
              "acks_per_s": res.get("acks_per_s"), "ack_p50": ack.get("p50"), "ack_p99": ack.get("p99")})
    if r.get("acks_missing"):
        r["ok"] = False
        r["problems"].append(f"{r['acks_missing']} message(s) never acked")
    return r


def run_chat(ctx, s, members, rate, duration, warmup, drain, extra=()):
    """One loadgen chat run with ids against a fresh server of system `s` (stopped after it)."""
    ctx.wait_quiet()
    server = ctx.start(s)
    try:
        res = ctx.loadgen_run(["--mode", "chat", "--port", server.port, "--connections", members, "--rate", f"{rate:g}",
                               "--duration", duration, "--warmup", warmup, "--drain", drain, "--ids",
                               "--connect-timeout", ctx.args.connect_timeout,
                               "--barrier-timeout", 20 if members > 2000 else 10, "--server-pid", server.pid, *extra],
                              timeout=ctx.args.connect_timeout + 30 + duration + warmup + drain + 60)
        r = with_acks(chat_record(res, rate), res)
        if not server.alive():
            r["server_note"] = ctx.stop(server)
        return r
    finally:
        ctx.stop(server)


def cost_point(ctx, members, rate, rounds, extra=()):
    a = ctx.args
    keys = ["chat-sqlite", "chat-off"]
    point = ctx.abba_point({k: system(k) for k in keys}, rounds, f"[history] {members:,} x {rate}",
                           members=members, rate=rate)
    if "skipped" in point:
        return point
    order = point["order"]
    bl.log(f"\n[history] cost: {members:,} members x {rate} msg/s with ids, sqlite against off: {len(order)} runs, ABBA")
    # One attempt each, even when others disturbed it (the table counts those): a second would
    # double the section's time on a busy machine, and the ABBA order spreads a drift evenly.
    return run_order(point, 1,
                     lambda key: run_chat(ctx, system(key), members, rate, a.target_duration, a.target_warmup,
                                          a.chat_drain, extra),
                     lambda key, r: chat_line(key, members, r) + ack_note(r))


def ack_note(r):
    if "failed" in r or r.get("ack_p99") is None:
        return ""
    return f"  ack p50 {r['ack_p50'] / 1000:,.1f} p99 {r['ack_p99'] / 1000:,.1f} ms"


# ---- throughput: acknowledged publishes, pipelined --------------------------------------------------
def chat_throughput(ctx, s, duration, warmup):
    ctx.wait_quiet()
    server = ctx.start(s)
    try:
        res = ctx.loadgen_run(["--mode", "chat", "--port", server.port, "--connections", 1, "--publishers", PUBLISHERS,
                               "--window", WINDOW, "--duration", duration, "--warmup", warmup, "--drain", 10,
                               "--server-pid", server.pid], timeout=duration + warmup + 90)
        if "failed" in res:
            return {"failed": res["failed"]}
        ack = res.get("ack_latency_us") or {}
        d = res["duration_s"] or 1
        cpu = (res.get("server") or {}).get("cpu_s")
        r = {"acks_per_s": res.get("acks_per_s"), "p50_ms": (ack.get("p50") or 0) / 1000,
             "p99_ms": (ack.get("p99") or 0) / 1000, "errors": res["errors"], "loss": res["loss"],
             "acks_missing": res.get("acks_missing"), "server_cpu_use": (cpu or 0) / d,
             "cpu_per_ack_us": cpu * 1e6 / (res["acks_per_s"] * d) if cpu and res.get("acks_per_s") else None,
             "client_cpu_use": res.get("client_cpu_s", 0) / d, **bl.window_notes(res)}
        problems = []
        if r["errors"] or r["loss"] or r["acks_missing"]:
            problems.append(f"errors {r['errors']}, loss {r['loss']}, acks missing {r['acks_missing']}")
        r["ok"], r["problems"] = not problems, problems
        return r
    finally:
        ctx.stop(server)


def redis_throughput(ctx, s, requests):
    ctx.wait_quiet()
    server = ctx.start(s)
    try:
        cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-c", str(PUBLISHERS), "-P", str(WINDOW),
               "-n", str(requests), "--csv", "XADD", "bench", "MAXLEN", "~", "10000", "*", "text", "x" * PAYLOAD]
        cpu0, t0 = bl.cpu_seconds(server.pid), time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return {"failed": "redis-benchmark did not finish in 120 s"}
        wall, cpu = time.monotonic() - t0, bl.cpu_seconds(server.pid) - cpu0
        rows = [l for l in p.stdout.splitlines() if l.startswith('"XADD')]
        if p.returncode != 0 or not rows:
            return {"failed": f"redis-benchmark exit status {p.returncode}: {(p.stderr or p.stdout).strip()[-200:]}"}
        f = [x.strip('"') for x in rows[-1].split('","')]
        rps, p50, p99 = float(f[1]), float(f[4]), float(f[6])
        return {"acks_per_s": rps, "p50_ms": p50, "p99_ms": p99, "errors": 0, "loss": 0, "acks_missing": 0,
                "server_cpu_use": cpu / wall if wall else None,
                "cpu_per_ack_us": cpu * 1e6 / requests if cpu > 0 else None, "client_cpu_use": None,
                "contended": False, "others": None, "ok": rps > 0, "problems": [] if rps > 0 else ["no requests"]}
    finally:
        ctx.stop(server)


def throughput(ctx, rounds):
    keys = ["chat-sqlite", "redis-xadd", "chat-off"]
    out = ctx.abba_point({k: system(k) for k in keys}, rounds, "[history] throughput", publishers=PUBLISHERS,
                         window=WINDOW)
    if "skipped" in out:
        return out
    order = out["order"]
    duration, warmup = (1.0, 0.3) if ctx.quick else (3.0, 1.0)
    requests = 100_000 if ctx.quick else 1_000_000
    out["redis_requests"] = requests
    bl.log(f"\n[history] throughput: acknowledged messages/s into one room, {PUBLISHERS} publishers x {WINDOW} "
           f"unacknowledged: {len(order)} runs, ABBA")
    for i, key in enumerate(order):
        try:
            r = (redis_throughput(ctx, system(key), requests) if key == "redis-xadd"
                 else chat_throughput(ctx, system(key), duration, warmup))
        except (Skip, bl.StartError) as e:
            r = {"failed": str(e)}
        r["seq"] = i + 1
        out["runs"][key].append(r)
        bl.log(f"  {key:12s} " + (f"FAILED: {r['failed']}" if "failed" in r else
                                  f"{r['acks_per_s']:>10,.0f} acks/s  p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms  "
                                  f"cpu {bl.fmt_f(r['cpu_per_ack_us'])} us/ack"
                                  + ("" if r["ok"] else "  NOT OK: " + ", ".join(r["problems"]))))
    return out


# ---- storm: a restart, everyone reconnecting at once -----------------------------------------------
def storm(ctx, threads, members, missed, rate):
    """Prepare on a fresh sqlite server, restart it on the same data directory, then the storm."""
    a = ctx.args
    data_dir = tempfile.mkdtemp(prefix="storm-", dir=ctx.procs.logdir)
    s = System(f"chat-storm-{threads}t", f"chat-server --threads {threads}, --store sqlite",
               lambda c, p: [str(c.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", str(threads), "--host", "127.0.0.1",
                             "--port", "0", "--no-http", "--no-irc", "--store", "sqlite", "--data-dir", data_dir],
               needs=("bin:chat-server",))
    out = {"threads": threads, "members": members, "missed": missed, "rate": rate}
    why = ctx.unavailable(s)
    if why:
        out["skipped"] = why
        return out
    bl.log(f"\n[history] storm: {members:,} members reconnecting at once after a restart, each missing {missed}, "
           f"live publishing at {rate} msg/s (--threads {threads})")
    ctx.wait_quiet()
    server = ctx.start(s)
    try:
        prep = ctx.loadgen_run(["--mode", "recover", "--phase", "prepare", "--port", server.port, "--connections",
                                members, "--missed", missed, "--connect-timeout", a.connect_timeout],
                               timeout=a.connect_timeout + 60)
        if "failed" in prep or not prep.get("ok"):
            out["failed"] = "prepare: " + (prep.get("failed") or prep.get("first_error") or "not ok")
            return out
        t0 = time.monotonic()
        ctx.stop(server)
        out["stop_s"] = time.monotonic() - t0
        # 0 after a graceful stop; -15 when SIGTERM's default action ended the process (as a crash).
        out["stop_status"] = server.proc.returncode
        t0 = time.monotonic()
        server = ctx.start(s)
        out["start_s"] = time.monotonic() - t0
        res = ctx.loadgen_run(["--mode", "recover", "--phase", "storm", "--port", server.port, "--connections", members,
                               "--missed", missed, "--since", prep["since"], "--epoch", prep["epoch"], "--rate", rate,
                               "--duration", 1, "--drain", 3, "--connect-timeout", a.connect_timeout,
                               "--server-pid", server.pid], timeout=a.connect_timeout + 60)
        if "failed" in res and "recovered" not in res:
            out["failed"] = "storm: " + res["failed"]
            return out
        out.update({k: res.get(k) for k in (
            "ok", "recovered", "failed_members", "recovered_false", "gaps", "duplicates", "wrong_text", "closed",
            "not_in_time", "first_failure", "replayed_messages", "first_recovery_s", "last_recovery_s", "recovery_s",
            "live_sent_storm", "live_sent_after", "live_latency_us_storm", "live_latency_us_after", "drained",
            "server_cpu_s_storm", "client_cpu_s_storm", "failed", "server_errors", "first_error")})
        out["since"], out["epoch"] = prep["since"], prep["epoch"]
        st = out["live_latency_us_storm"] or {}
        bl.log(f"  --threads {threads}: recovered {out['recovered']:,} of {members:,} (failed {out['failed_members']}: "
               f"recovered:false {out['recovered_false']}, gaps {out['gaps']}, duplicates {out['duplicates']}); "
               f"last recovery {out['last_recovery_s']:.3f} s after the first connect; live p99 during it "
               f"{(st.get('p99') or 0) / 1000:,.1f} ms ({st.get('samples', 0):,} deliveries); restart: stop "
               f"{out['stop_s']:.2f} s (exit status {out['stop_status']}), start {out['start_s']:.2f} s"
               + ("" if out["ok"] else "  NOT OK"))
        return out
    except (Skip, bl.StartError) as e:
        out["failed"] = str(e)
        return out
    finally:
        ctx.stop(server)


# ---- the section -----------------------------------------------------------------------------------
def history_section(ctx, data):
    a = ctx.args
    out = {"command": data.get("command"), "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "commit": data.get("commit"), "quick": ctx.quick, "cost": [], "throughput": None, "storms": []}
    data["history"] = out
    if ctx.quick:
        out["cost"].append(cost_point(ctx, 200, 100, 1))
        out["throughput"] = throughput(ctx, 1)
        out["storms"].append(storm(ctx, 2, 100, 20, 50))
        quick_checks(ctx, out)
        return
    rounds = a.target_rounds
    out["cost"].append(cost_point(ctx, 1000, 100, rounds))
    out["cost"].append(cost_point(ctx, 10000, 10, rounds, extra=("--processes", 2)))
    out["throughput"] = throughput(ctx, 2)
    for threads in (2, 1):
        out["storms"].append(storm(ctx, threads, 1000, 100, 100))


def quick_checks(ctx, out):
    for p in out["cost"]:
        for key, runs in p["runs"].items():
            if p.get("skipped") or not runs:
                ctx.check("history", label(key), "skipped", p.get("skipped", "not run"))
                continue
            r = runs[0]
            if "failed" in r:
                ctx.check("history", label(key), "FAIL", r["failed"])
            elif not r["ok"] or r["dps"] <= 0:
                ctx.check("history", label(key), "FAIL", ", ".join(r["problems"]) or "no deliveries")
            else:
                ctx.check("history", label(key), "ok", f"{r['dps']:,.0f} deliveries/s, loss 0, every message acked")
    t = out["throughput"]
    for key, runs in (t or {}).get("runs", {}).items():
        if not runs:
            ctx.check("history", f"{label(key)} (acks/s)", "skipped", t.get("skipped", "not run"))
            continue
        r = runs[0]
        if "failed" in r or not r["ok"]:
            ctx.check("history", f"{label(key)} (acks/s)", "FAIL", r.get("failed") or ", ".join(r["problems"]))
        else:
            ctx.check("history", f"{label(key)} (acks/s)", "ok", f"{r['acks_per_s']:,.0f} acknowledged/s")
    for st in out["storms"]:
        what = f"restart storm, --threads {st['threads']}"
        if "skipped" in st:
            ctx.check("history", what, "skipped", st["skipped"])
        elif not st.get("ok"):
            ctx.check("history", what, "FAIL", st.get("failed") or st.get("first_failure") or "not every member recovered")
        else:
            ctx.check("history", what, "ok", f"{st['recovered']} recovered in {st['last_recovery_s']:.2f} s")


# ---- the report ----------------------------------------------------------------------------------------
def stop_status(rc):
    if rc is None:
        return "-"
    return "0, graceful" if rc == 0 else (f"killed by signal {-rc}" if rc < 0 else f"status {rc}")


def cost_summary(p, key):
    good = [r for r in p["runs"].get(key, []) if "failed" not in r]
    return {"n": len(p["runs"].get(key, [])), "contended": sum(1 for r in good if r["contended"]),
            "loss": sum(r["loss"] for r in good), "errors": sum(r["errors"] for r in good),
            "acks_missing": sum(r.get("acks_missing") or 0 for r in good),
            **{k: bl.median_of(good, k) for k in ("dps", "p50", "p99", "cpu_del", "cpu_use", "client_use",
                                                  "ack_p50", "ack_p99")}}


def throughput_ratio(t, field="acks_per_s", other="redis-xadd"):
    return [x[field] / y[field] for x, y in zip(t["runs"].get("chat-sqlite", []), t["runs"].get(other, []))
            if "failed" not in x and "failed" not in y and x.get(field) and y.get(field)]


def target_rows(h):
    rows = []
    if not h:
        return rows
    for p in h.get("cost", []):
        if p.get("skipped") or p["members"] < 1000:
            continue
        at = f"{p['members']:,} x {p['rate']:,}/s"
        v = median(paired(p, "chat-sqlite", "chat-off", "cpu_del"))
        rows.append((f"History: server CPU per delivery, --store sqlite / off, {at} (<= {CPU_TARGET:.2f}x)",
                     "-" if v is None else f"{v:.2f}x", None if v is None else v <= CPU_TARGET))
        v = median(paired(p, "chat-sqlite", "chat-off", "p99"))
        # "The same p99": within this machine's noise between identical runs, taken as 10%.
        rows.append((f"History: p99, --store sqlite / off, {at} (the same: <= 1.10x)",
                     "-" if v is None else f"{v:.2f}x", None if v is None else v <= 1.10))
    t = h.get("throughput")
    if t and not t.get("skipped") and not h.get("quick"):
        v = median(throughput_ratio(t))
        s = [r for r in t["runs"]["chat-sqlite"] if "failed" not in r]
        rows.append((f"History: acknowledged messages/s into one room, sqlite / Redis XADD (AOF everysec), "
                     f"{PUBLISHERS} x {WINDOW} pipelined (>= {THROUGHPUT_TARGET:.1f}x)",
                     "-" if v is None else f"{v:.2f}x (sqlite publish-to-ack p50 {median([r['p50_ms'] for r in s]) or 0:.1f} "
                     f"ms, p99 {median([r['p99_ms'] for r in s]) or 0:.1f} ms)",
                     None if v is None else v >= THROUGHPUT_TARGET))
    for st in h.get("storms", []):
        if st.get("skipped") or st["members"] < 1000:
            continue
        lat = (st.get("live_latency_us_storm") or {}).get("p99")
        rows.append((f"History: restart, {st['members']:,} members reconnecting at once (--threads {st['threads']}), "
                     f"all recover the {st['missed']} missed",
                     (f"failed: {st['failed']}" if st.get("failed") and st.get("recovered") is None else
                      f"{st['recovered']:,} recovered, {st['failed_members']} failed; last at {st['last_recovery_s']:.2f} s; "
                      f"live p99 during it {(lat or 0) / 1000:,.0f} ms"), bool(st.get("ok"))))
    return rows


def md_history(h):
    md = [f"Measured by `{h.get('command')}` on {h.get('when')}, code at `{h.get('commit')}`; the machine as in the "
          "run described at the top (2 cores shared by server, client and other work: single runs are noisy, "
          "ratios are the median of per-round ratios between adjacent runs). Fresh servers for every run; sqlite "
          "in a fresh data directory.", ""]
    for p in h.get("cost", []):
        m, rate = p["members"], p["rate"]
        md += [f"#### History cost: {m:,} members x {rate:,} msg/s, every message with an id", ""]
        if p.get("skipped"):
            md += [f"Skipped: {p['skipped']}.", ""]
            continue
        md.append("| server | runs (contended) | deliveries/s | loss | p50 ms | p99 ms | server CPU µs/delivery "
                  "| server CPU use | publish-to-ack p50 ms | p99 ms | acks missing | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in p["runs"]:
            x = cost_summary(p, key)
            md.append(f"| {label(key)} | {x['n']} ({x['contended']}) | {bl.fmt_int(x['dps'])} | {x['loss']:,} "
                      f"| {bl.fmt_f((x['p50'] or 0) / 1000, 1)} | {bl.fmt_f((x['p99'] or 0) / 1000, 1)} "
                      f"| {bl.fmt_f(x['cpu_del'], 3)} | {100 * (x['cpu_use'] or 0):.0f}% "
                      f"| {bl.fmt_f((x['ack_p50'] or 0) / 1000, 1)} | {bl.fmt_f((x['ack_p99'] or 0) / 1000, 1)} "
                      f"| {x['acks_missing']:,} | {x['errors']} |")
        md.append("")
        cpu, p99 = paired(p, "chat-sqlite", "chat-off", "cpu_del"), paired(p, "chat-sqlite", "chat-off", "p99")
        md += ["Per round, sqlite/off: CPU per delivery " + (", ".join(f"{v:.2f}" for v in cpu) or "-")
               + (f" (median {median(cpu):.2f})" if cpu else "") + "; p99 " + (", ".join(f"{v:.2f}" for v in p99) or "-")
               + (f" (median {median(p99):.2f})" if p99 else "") + ".", ""]
        fails = [f"{r['seq']}. {k}: {r['failed'] if 'failed' in r else ', '.join(r['problems'])}"
                 for k, runs in p["runs"].items() for r in runs if "failed" in r or r.get("problems")]
        if fails:
            md += ["Runs with problems: " + "; ".join(fails) + ".", ""]
    t = h.get("throughput")
    if t:
        md += [f"#### Acknowledged messages per second into one room: {t['publishers']} publishers, each keeping "
               f"{t['window']} unacknowledged", ""]
        if t.get("skipped"):
            md += [f"Skipped: {t['skipped']}.", ""]
        else:
            md.append("| server | runs | acknowledged msg/s | publish-to-ack p50 ms | p99 ms | server CPU µs/ack "
                      "| server CPU use | errors |")
            md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for key, runs in t["runs"].items():
                good = [r for r in runs if "failed" not in r]
                md.append(f"| {label(key)} | {len(runs)} | {bl.fmt_int(bl.median_of(good, 'acks_per_s'))} "
                          f"| {bl.fmt_f(bl.median_of(good, 'p50_ms'))} | {bl.fmt_f(bl.median_of(good, 'p99_ms'))} "
                          f"| {bl.fmt_f(bl.median_of(good, 'cpu_per_ack_us'))} "
                          f"| {100 * (bl.median_of(good, 'server_cpu_use') or 0):.0f}% "
                          f"| {sum(r.get('errors') or 0 for r in good) + len(runs) - len(good)} |")
            md.append("")
            v, off = throughput_ratio(t), throughput_ratio(t, other="chat-off")
            md += ["Per round, acknowledged msg/s sqlite/Redis: " + (", ".join(f"{x:.2f}" for x in v) or "-")
                   + (f" (median {median(v):.2f})" if v else "") + "; sqlite/off: "
                   + (", ".join(f"{x:.2f}" for x in off) or "-") + (f" (median {median(off):.2f})" if off else "") + ".", ""]
            fails = [f"{r['seq']}. {k}: {r['failed'] if 'failed' in r else ', '.join(r['problems'])}"
                     for k, runs in t["runs"].items() for r in runs if "failed" in r or r.get("problems")]
            if fails:
                md += ["Runs with problems: " + "; ".join(fails) + ".", ""]
    if h.get("storms"):
        md += ["#### A restart with every member reconnecting at once", ""]
        md.append("| server | members x missed | recovered | failed (recovered:false / gap / duplicate) "
                  "| first / median / last recovery s | live msg/s | live p50 ms during | p99 ms during | p99 ms after "
                  "| server CPU s during | SIGTERM: stop s (exit status) | start s |")
        md.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for st in h["storms"]:
            name = f"chat-server --threads {st['threads']}, --store sqlite"
            if st.get("skipped") or (st.get("failed") and st.get("recovered") is None):
                md.append(f"| {name} | {st['members']:,} x {st['missed']} | - | {st.get('skipped') or st['failed']} "
                          "| - | - | - | - | - | - | - | - |")
                continue
            during, after = st.get("live_latency_us_storm") or {}, st.get("live_latency_us_after") or {}
            rec = st.get("recovery_s") or {}
            md.append(f"| {name} | {st['members']:,} x {st['missed']} | {st['recovered']:,} "
                      f"| {st['failed_members']} ({st['recovered_false']} / {st['gaps']} / {st['duplicates']}) "
                      f"| {st['first_recovery_s']:.3f} / {rec.get('p50', 0):.3f} / {st['last_recovery_s']:.3f} "
                      f"| {st['rate']} | {(during.get('p50') or 0) / 1000:,.1f} | {(during.get('p99') or 0) / 1000:,.1f} "
                      f"| {(after.get('p99') or 0) / 1000:,.1f} | {bl.fmt_f(st.get('server_cpu_s_storm'))} "
                      f"| {st['stop_s']:.2f} ({stop_status(st.get('stop_status'))}) | {st['start_s']:.2f} |")
        md.append("")
        bad = [f"--threads {st['threads']}: {st['first_failure']}" for st in h["storms"] if st.get("first_failure")]
        if bad:
            md += ["First failure: " + "; ".join(bad) + ".", ""]
    rows = target_rows(h)
    if rows:
        md += ["| target | measured | result |", "|---|---|---|"]
        md += [f"| {w} | {v} | {'PASS' if ok else ('-' if ok is None else 'FAIL')} |" for w, v, ok in rows]
        md.append("")
    return "\n".join(md)
