"""The chat sections of bench/run.py: chat-targets and chat.

chat-targets  chat-server against Redis, ABBA order, fresh servers, at the target points.
chat          every chat system (systems.CHAT_SYSTEMS) at 1,000 and 10,000 members: the fixed rate,
              then the saturation point (the highest rate with zero loss and p99 under 1 s).

Each section is a function (ctx, data) that measures and files its raw results in `data`; report.py
turns them into tables. In quick mode each result is also judged (ctx.check) for the smoke run.
"""
import math
import time

import benchlib as bl
from context import Skip, least_disturbed
from systems import CHAT_SYSTEMS, system

P99_LIMIT_US = 1_000_000  # saturation: p99 under one second
# What target_summary() takes the median of, per system.
MEDIAN_KEYS = ("dps", "p50", "p99", "cpu_del", "cpu_use", "rss_per_member", "client_use", "sent_per_s")


def chat_record(res, rate, lossy=False):
    """What the tables need from one loadgen chat report, and whether the run was good (ok, problems)."""
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


# ---- chat-targets ---------------------------------------------------------------------------------------
def chat_targets_section(ctx, data):
    """chat-server against Redis in ABBA order, fresh servers, at the two target points (not in quick mode)."""
    if ctx.quick:
        return
    a = ctx.args
    chat, redis = system("chat"), system("redis")
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
            def attempt(n):
                runner = ChatRunner(ctx, chat if key == "chat" else redis)
                try:
                    r = runner.run(members, rate, a.target_duration, a.target_warmup, a.chat_drain, fresh=True)
                except (Skip, bl.StartError) as e:
                    r = {"failed": str(e), "rate": rate, "ok": False}
                finally:
                    runner.close()
                r["seq"], r["attempts"] = i + 1, n + 1
                bl.log(chat_line(key, members, r))
                return r

            point["runs"][key].append(least_disturbed(1 if ctx.quick else 2, attempt))
    data["chat_targets"] = out


def target_summary(point):
    """Medians per system (over every run of the point) and the per-round ratios chat/redis."""
    summary = {}
    for key, runs in point["runs"].items():
        good = [r for r in runs if "failed" not in r]
        summary[key] = {
            "n": len(runs), "failed": len(runs) - len(good),
            "loss": sum(r["loss"] for r in good), "errors": sum(r["errors"] for r in good),
            "contended": sum(1 for r in good if r["contended"]),
            **{k: bl.median_of(good, k) for k in MEDIAN_KEYS},
        }
    pairs = list(zip(point["runs"].get("chat", []), point["runs"].get("redis", [])))
    summary["paired_cpu"] = [c["cpu_del"] / r["cpu_del"] for c, r in pairs
                             if "failed" not in c and "failed" not in r and c["cpu_del"] and r["cpu_del"]]
    summary["paired_p99"] = [c["p99"] / r["p99"] for c, r in pairs
                             if "failed" not in c and "failed" not in r and r["p99"]]
    return summary


def target_medians(targets):
    """{(system key, members): {rate: record}}: the chat-targets runs of chat-server and Redis as one
    record per point (medians, all losses and errors), for the chat section to reuse."""
    known = {}
    if not targets:
        return known
    for p in targets["points"]:
        if p.get("skipped"):
            continue
        summ = target_summary(p)
        for key in ("chat", "redis"):
            runs = [r for r in p["runs"][key] if "failed" not in r]
            if runs:
                rec = dict(runs[0])
                rec.update({k: summ[key][k] for k in MEDIAN_KEYS})
                rec["loss"] = max(r["loss"] for r in runs)
                rec["errors"] = sum(r["errors"] for r in runs)
                rec["ok"] = all(r["ok"] for r in p["runs"][key])
                rec["problems"] = sorted({x for r in p["runs"][key] for x in r.get("problems", [])})
                rec["median_of"] = len(runs)
                known.setdefault((key, p["members"]), {})[float(p["rate"])] = rec
    return known


# ---- chat ---------------------------------------------------------------------------------------------
def nice_rate(r):
    if r >= 100:
        return float(round(r / 50) * 50) if r < 2000 else float(round(r / 250) * 250)
    if r >= 10:
        return float(round(r))
    return round(r, 1)


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


def chat_section(ctx, data):
    """Each system at 1,000 and 10,000 members: the fixed rate first, then the saturation search."""
    a = ctx.args
    out = {"points": [], "results": {}}
    plan = ([(200, 100, 100, 4, 100, 100, 1)] if ctx.quick else
            [(1000, 1000, 1000, 4, 10, 64000, a.max_steps), (10000, 10, 10, 4, 0.5, 20000, a.max_steps)])
    # The target runs already measured chat-server and Redis at the fixed rates: reuse their medians.
    known = target_medians(data.get("chat_targets"))
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
    data["chat"] = out


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
