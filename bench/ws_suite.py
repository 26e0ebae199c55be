"""The websocket section of bench/run.py: chat-server's WebSocket members against its own native TCP
members and against a Node.js `ws` room (bench/node_ws_room.js), and against Redis at 10,000 members.

One run, fresh servers, ABBA order (every other round reversed, so a drift of the shared machine hits
each system alike); the ratios are taken per round between adjacent runs, then their median:
  1,000 members x 100 and x 1,000 msg/s  chat-ws, chat-tcp, node-ws: zero loss; server CPU per
                                         delivery ws/TCP (target <= 1.3) and ours/Node's (< 1).
  10,000 members x 10 msg/s              chat-ws and Redis pub/sub: zero loss; p99 ws/Redis (<= 1);
                                         server RSS per idle WebSocket member, from loadgen's sample
                                         once every member has joined and before any message
                                         (target <= 1.5 KiB).
Quick mode: 100 members x 100 msg/s, each system once, lossless (the smoke checks).
"""
import datetime
import shutil
import statistics
import subprocess

import benchlib as bl
from chat_suite import MEDIAN_KEYS, chat_line, chat_record
from context import paired, run_order
from systems import label, system

ROOT = bl.ROOT
CPU_VS_TCP_TARGET = 1.3
RSS_TARGET = 1.5 * 1024  # bytes per idle WebSocket member


def ensure_ws_module(ctx):
    """None when bench/node_modules has `ws` (installed with `npm ci --prefix bench` if missing), else why not."""
    if (ROOT / "bench" / "node_modules" / "ws" / "package.json").exists():
        return None
    if not shutil.which("npm"):
        return "`npm` is not installed (bench/node_ws_room.js needs the ws package)"
    bl.log("  installing bench/node_modules (npm ci --prefix bench)")
    try:
        r = subprocess.run(["npm", "ci", "--prefix", str(ROOT / "bench"), "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.SubprocessError) as e:
        return f"npm ci --prefix bench failed: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        return f"npm ci --prefix bench failed: {tail[0]}"
    return None


def run_once(ctx, s, members, rate, duration, warmup, drain, extra=()):
    """One loadgen chat run against a fresh server of system `s`; the server is stopped after it."""
    ctx.wait_quiet()
    server = ctx.start(s)  # Skip / StartError go to the caller
    try:
        res = ctx.loadgen_run(["--mode", "chat", "--dialect", s.dialect, "--port", server.port, "--connections", members,
                               "--rate", f"{rate:g}", "--duration", duration, "--warmup", warmup, "--drain", drain,
                               "--connect-timeout", ctx.args.connect_timeout,
                               "--barrier-timeout", 20 if members > 2000 else 10, "--server-pid", server.pid, *extra],
                              timeout=ctx.args.connect_timeout + 30 + duration + warmup + drain + 60)
        r = chat_record(res, rate)
        if not server.alive():
            r["server_note"] = ctx.stop(server)
        r["fresh_server"] = True
        return r
    finally:
        ctx.stop(server)


def measure_point(ctx, keys, members, rate, rounds, attempts, extra=()):
    a = ctx.args
    point = ctx.abba_point({k: system(k) for k in keys}, rounds, f"[websocket] {members:,} x {rate}",
                           members=members, rate=rate)
    if "skipped" in point:
        return point
    bl.log(f"\n[websocket] {members:,} members x {rate} msg/s: {len(point['order'])} runs, ABBA, fresh servers")
    return run_order(point, attempts,
                     lambda key: run_once(ctx, system(key), members, rate, a.target_duration, a.target_warmup,
                                          a.chat_drain, extra),
                     lambda key, r: chat_line(key, members, r))


def summary(point):
    s = {}
    for key, runs in point["runs"].items():
        good = [r for r in runs if "failed" not in r]
        s[key] = {"n": len(runs), "failed": len(runs) - len(good), "loss": sum(r["loss"] for r in good),
                  "errors": sum(r["errors"] for r in good), "contended": sum(1 for r in good if r["contended"]),
                  **{k: bl.median_of(good, k) for k in MEDIAN_KEYS}}
    return s


def median(v):
    return statistics.median(v) if v else None


def websocket_section(ctx, data):
    a = ctx.args
    why = ensure_ws_module(ctx) if not ctx.unavailable(system("node-ws")) else None
    if why:
        ctx.skip.add("node-ws")
        bl.log(f"  node-ws: {why}")
    out = {"command": data.get("command"), "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "commit": data.get("commit"), "node_ws_problem": why, "points": []}
    data["websocket"] = out
    trio = ["chat-ws", "chat-tcp", "node-ws"]
    if ctx.quick:
        p = measure_point(ctx, trio, 100, 100, 1, 1)
        out["points"].append(p)
        for key in trio:
            s = system(key)
            if p.get("skipped") or not p["runs"][key]:
                ctx.check("websocket", s.label, "skipped", p.get("skipped", "not run"))
                continue
            r = p["runs"][key][0]
            if "failed" in r:
                ctx.check("websocket", s.label, "FAIL", r["failed"])
            elif r["dps"] <= 0 or r["errors"] or r["loss"] or r["duplicates"] or r["out_of_order"]:
                ctx.check("websocket", s.label, "FAIL", f"{r['dps']:.0f} deliveries/s, {r['errors']} error(s), "
                          f"loss {r['loss']}, duplicates {r['duplicates']} {r.get('first_error') or ''}")
            else:
                ctx.check("websocket", s.label, "ok", f"{r['dps']:,.0f} deliveries/s, loss 0")
        return
    rounds, attempts = a.target_rounds, 2
    for rate in (100, 1000):
        out["points"].append(measure_point(ctx, trio, 1000, rate, rounds, attempts))
    # 10,000 members: loadgen in two processes, so the clients use both cores as the server may.
    out["points"].append(measure_point(ctx, ["chat-ws", "redis"], 10000, 10, rounds, attempts,
                                       extra=("--processes", 2)))


# ---- the report ---------------------------------------------------------------------------------------
def target_rows(ws):
    """[(what, measured, ok or None)] for the targets table."""
    rows = []
    if not ws or not ws.get("points"):
        return rows
    for p in ws["points"]:
        if p.get("skipped") or p["members"] < 1000:
            continue
        m, rate = p["members"], p["rate"]
        s = summary(p)
        at = f"{m:,} x {rate:,}/s"
        if "chat-tcp" in p["runs"]:
            v = median(paired(p, "chat-ws", "chat-tcp", "cpu_del"))
            rows.append((f"WebSocket: server CPU per delivery, WebSocket / native TCP, {at} (<= {CPU_VS_TCP_TARGET}x)",
                         "-" if v is None else f"{v:.2f}x", None if v is None else v <= CPU_VS_TCP_TARGET))
        if "node-ws" in p["runs"]:
            v = median(paired(p, "chat-ws", "node-ws", "cpu_del"))
            rows.append((f"WebSocket: server CPU per delivery, chat-server / Node ws, {at} (< 1)",
                         "-" if v is None else f"{v:.2f}x", None if v is None else v < 1))
        if "redis" in p["runs"]:
            v = median(paired(p, "chat-ws", "redis", "p99"))
            rows.append((f"WebSocket: p99, chat-server WebSocket / Redis TCP, {at} (<= 1)",
                         "-" if v is None else f"{v:.2f}x", None if v is None else v <= 1))
            rss = s["chat-ws"]["rss_per_member"]
            rows.append((f"WebSocket: server RSS per idle WebSocket member at {m:,} (<= 1.5 KiB)", bl.fmt_bytes(rss),
                         None if rss is None else rss <= RSS_TARGET))
        ws_runs = [r for r in p["runs"].get("chat-ws", [])]
        lossless = all("failed" not in r and not r["loss"] and not r["errors"] for r in ws_runs)
        rows.append((f"WebSocket: zero loss, {at}", f"loss {s['chat-ws']['loss']:,}, errors {s['chat-ws']['errors']}"
                     + (f", {s['chat-ws']['failed']} failed run(s)" if s["chat-ws"]["failed"] else ""),
                     lossless if ws_runs else None))
    return rows


def md_websocket(ws):
    md = [f"Measured by `{ws.get('command')}` on {ws.get('when')}, code at `{ws.get('commit')}`; the machine as in the "
          "run described at the top. Fresh servers for every run, ABBA order; ratios are the median of the per-round "
          "ratios of adjacent runs. chat-server runs with `--threads 2 --http-port 0` for both its WebSocket and its "
          "native TCP members (the same process, another port); the Node.js room is one process (Node is single-"
          "threaded) with npm's `ws` (bench/node_ws_room.js). CPU per delivery is the server's CPU time in the "
          "measured window over the deliveries in it.", ""]
    if ws.get("node_ws_problem"):
        md += [f"Node ws room not measured: {ws['node_ws_problem']}.", ""]
    for p in ws["points"]:
        m, rate = p["members"], p["rate"]
        md.append(f"#### {m:,} members x {rate:,} msg/s")
        md.append("")
        if p.get("skipped"):
            md += [f"Skipped: {p['skipped']}.", ""]
            continue
        s = summary(p)
        md.append("| server | runs (contended) | deliveries/s | loss (all runs) | p50 ms | p99 ms | server CPU µs/delivery "
                  "| server CPU use | RSS/member (idle, joined) | client CPU use | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        behind = []
        for key in p["runs"]:
            x = s[key]
            # No measured message arrived at all: no latency to show (not a latency of zero).
            timed = not (x["loss"] and not x["p99"])
            if x["dps"] is not None and x["dps"] < 0.9 * m * rate:
                behind.append(label(key))
            md.append(f"| {label(key)} | {x['n']} ({x['contended']}) | {bl.fmt_int(x['dps'])} | {x['loss']:,} "
                      f"| {bl.fmt_f((x['p50'] or 0) / 1000, 1) if timed else '-'} "
                      f"| {bl.fmt_f((x['p99'] or 0) / 1000, 1) if timed else '-'} "
                      f"| {bl.fmt_f(x['cpu_del'], 3)} | {100 * (x['cpu_use'] or 0):.0f}% | {bl.fmt_bytes(x['rss_per_member'])} "
                      f"| {100 * (x['client_use'] or 0):.0f}% | {x['errors']} |")
        md.append("")
        if behind:
            md += [f"Fell behind the offered {m * rate:,} deliveries/s: {', '.join(behind)}. Its loss is what was "
                   "still queued in the server when the drain ended (every measured message was published behind "
                   "the warm-up's backlog); its CPU per delivery is that of a saturated server.", ""]
        pairs = []
        for other, field, what in (("chat-tcp", "cpu_del", "CPU per delivery WebSocket/native TCP"),
                                   ("node-ws", "cpu_del", "CPU per delivery chat-server/Node ws"),
                                   ("redis", "cpu_del", "CPU per delivery chat-server WebSocket/Redis"),
                                   ("redis", "p99", "p99 chat-server WebSocket/Redis")):
            if other in p["runs"]:
                v = paired(p, "chat-ws", other, field)
                pairs.append(f"{what}: {', '.join(f'{x:.2f}' for x in v) or '-'}"
                             + (f" (median {median(v):.2f})" if v else ""))
        if pairs:
            md += ["Per round: " + "; ".join(pairs) + ".", ""]
        fails = [f"{r['seq']}. {k}: {r['failed'] if 'failed' in r else ', '.join(r['problems'])}"
                 for k, runs in p["runs"].items() for r in runs if "failed" in r or r.get("problems")]
        if fails:
            md += ["Runs with problems: " + "; ".join(fails) + ".", ""]
    rows = target_rows(ws)
    if rows:
        md += ["| target | measured | result |", "|---|---|---|"]
        md += [f"| {w} | {v} | {'PASS' if ok else ('-' if ok is None else 'FAIL')} |" for w, v, ok in rows]
        md.append("")
    return "\n".join(md)
