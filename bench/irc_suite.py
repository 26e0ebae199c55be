"""The irc section of bench/run.py (issue 12): IRC members of chat-server against its native TCP members
and against two IRC servers from Debian, ngircd and InspIRCd, under the same IRC load (loadgen
--dialect irc: NICK/USER, JOIN #bench, PRIVMSG; no capabilities, so no echo to the publisher).

Fresh servers for every run, ABBA order; ratios are the median of the per-round ratios of adjacent runs:
  1,000 members x 100 msg/s   chat-irc, chat-native, ngircd, inspircd: zero loss; server CPU per
                              delivery IRC/native (target <= 1.2) and chat-server IRC against each
                              IRC server; p99 likewise.
  10,000 members x 10 msg/s   chat-irc, chat-native, inspircd (loadgen in two processes): the same,
                              and RSS per idle IRC member (the server's growth from start to every
                              member joined, before any message; target <= 1.5 KiB). ngircd is left
                              out here: seating 10,000 members in one channel takes it minutes (each
                              JOIN goes to every member, and every pass of its loop visits every
                              connection; 5,338 joined in 300 s when tried).
Flood control is off in every server: chat-server --irc-flood-rate 0, ngircd MaxPenaltyTime = 0,
InspIRCd threshold/commandrate out of reach and fakelag off (systems.py has their configurations).
Quick mode: 100 members x 100 msg/s, each system once; the smoke checks (a system that is not
installed is skipped, not failed).
"""
import datetime
import statistics

import benchlib as bl
from chat_suite import chat_line, chat_record
from context import paired, run_order
from systems import label, system
from ws_suite import summary

CPU_VS_NATIVE_TARGET = 1.2
RSS_TARGET = 1.5 * 1024  # bytes per idle IRC member
KEYS = ["chat-irc", "chat-native", "ngircd", "inspircd"]


def median(v):
    return statistics.median(v) if v else None


def unavailable(ctx, key):
    why = ctx.unavailable(system(key))
    return why


def run_once(ctx, s, members, rate, extra, connect_timeout):
    """One loadgen chat run against a fresh server of system `s` (stopped after it)."""
    a = ctx.args
    ctx.wait_quiet()
    server = ctx.start(s)  # Skip / StartError go to the caller
    try:
        res = ctx.loadgen_run(["--mode", "chat", "--dialect", s.dialect, "--port", server.port, "--connections", members,
                               "--rate", f"{rate:g}", "--duration", a.target_duration, "--warmup", a.target_warmup,
                               "--drain", a.chat_drain, "--connect-timeout", connect_timeout,
                               "--barrier-timeout", 20 if members > 2000 else 10, "--server-pid", server.pid,
                               *extra, *s.loadgen],
                              timeout=connect_timeout + 30 + a.target_duration + a.target_warmup + a.chat_drain + 60)
        r = chat_record(res, rate)
        if not server.alive():
            r["server_note"] = ctx.stop(server)
        return r
    finally:
        ctx.stop(server)


def measure_point(ctx, keys, members, rate, rounds, attempts, extra=(), connect_timeout=None, tag="irc"):
    """A point over the systems of `keys` that can run here (ABBA order); the others are listed in
    `skipped` with the reason. `tag`: the section, in the log lines (the ops section uses it too)."""
    a = ctx.args
    skipped = {k: why for k in keys if (why := unavailable(ctx, k))}
    run = [k for k in keys if k not in skipped]
    point = {"members": members, "rate": rate, "runs": {k: [] for k in run}, "skipped": skipped,
             "order": bl.abba(run, rounds) if run else []}
    for k, why in skipped.items():
        bl.log(f"  [{tag}] {members:,} x {rate}: {label(k)} skipped: {why}")
    bl.log(f"\n[{tag}] {members:,} members x {rate} msg/s: {len(point['order'])} runs, ABBA, fresh servers")
    return run_order(point, attempts,
                     lambda key: run_once(ctx, system(key), members, rate, extra, connect_timeout or a.connect_timeout),
                     lambda key, r: chat_line(key, members, r))


def smoke_checks(ctx, section, keys, p):
    """The quick run's checks of a point measured once per system (`section` names them): each system
    delivered, with no loss, error, duplicate or reordering; a system not run is skipped."""
    for key in keys:
        s = system(key)
        if key in p["skipped"] or not p["runs"].get(key):
            ctx.check(section, s.label, "skipped", p["skipped"].get(key, "not run"))
            continue
        r = p["runs"][key][0]
        if "failed" in r:
            ctx.check(section, s.label, "FAIL", r["failed"])
        elif r["dps"] <= 0 or r["errors"] or r["loss"] or r["duplicates"] or r["out_of_order"]:
            ctx.check(section, s.label, "FAIL", f"{r['dps']:.0f} deliveries/s, {r['errors']} error(s), "
                      f"loss {r['loss']}, duplicates {r['duplicates']} {r.get('first_error') or ''}")
        else:
            ctx.check(section, s.label, "ok", f"{r['dps']:,.0f} deliveries/s, loss 0")


def irc_section(ctx, data):
    a = ctx.args
    out = {"command": data.get("command"), "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "commit": data.get("commit"), "points": []}
    data["irc"] = out
    if ctx.quick:
        p = measure_point(ctx, KEYS, 100, 100, 1, 1)
        out["points"].append(p)
        smoke_checks(ctx, "irc", KEYS, p)
        return
    rounds, attempts = a.target_rounds, 2
    out["points"].append(measure_point(ctx, KEYS, 1000, 100, rounds, attempts))
    # 10,000 members: loadgen in two processes (and over several source addresses, as it chooses);
    # the IRC servers' joins are quadratic, hence the longer connect timeout.
    p = measure_point(ctx, ["chat-irc", "chat-native", "inspircd"], 10000, 10, rounds, attempts,
                      extra=("--processes", 2), connect_timeout=180)
    p["skipped"]["ngircd"] = ("not run at 10,000: seating 10,000 members in one channel takes ngircd minutes (every "
                              "JOIN goes to every member and each pass of its loop visits every connection; 5,338 "
                              "had joined after 300 s when tried)")
    out["points"].append(p)


# ---- the report ---------------------------------------------------------------------------------------
def ratio_row(p, a, b, field, what, target=None):
    v = median(paired(p, a, b, field))
    ok = None if v is None or target is None else v <= target
    return (what + (f" (<= {target}x)" if target else ""), "-" if v is None else f"{v:.2f}x", ok)


def target_rows(irc):
    rows = []
    if not irc or not irc.get("points"):
        return rows
    for p in irc["points"]:
        if p["members"] < 1000:
            continue
        m, rate = p["members"], p["rate"]
        at = f"{m:,} x {rate:,}/s"
        runs = p["runs"]
        if "chat-irc" not in runs:
            rows.append((f"IRC: chat-server's IRC targets at {at}", "not measured: "
                         + p["skipped"].get("chat-irc", "not run"), None))
            continue
        if "chat-native" in runs:
            rows.append(ratio_row(p, "chat-irc", "chat-native", "cpu_del",
                                  f"IRC: server CPU per delivery, IRC / native TCP, {at}", CPU_VS_NATIVE_TARGET))
        for other in ("ngircd", "inspircd"):
            if other in runs:
                rows.append(ratio_row(p, "chat-irc", other, "cpu_del",
                                      f"IRC: server CPU per delivery, chat-server / {label(other)}, {at} (no target)"))
                rows.append(ratio_row(p, "chat-irc", other, "p99", f"IRC: p99, chat-server / {label(other)}, {at} (no target)"))
        s = summary(p)["chat-irc"]
        lossless = all("failed" not in r and not r["loss"] and not r["errors"] for r in runs["chat-irc"])
        rows.append((f"IRC: zero loss, {at}", f"loss {s['loss']:,}, errors {s['errors']}", lossless))
        if m >= 10000:
            rss = s["rss_per_member"]
            rows.append((f"IRC: server RSS per idle IRC member at {m:,} (<= 1.5 KiB)", bl.fmt_bytes(rss),
                         None if rss is None else rss <= RSS_TARGET))
    return rows


def md_irc(irc):
    md = [f"Measured by `{irc.get('command')}` on {irc.get('when')}, code at `{irc.get('commit')}`; the machine as in "
          "the run described at the top. Fresh servers for every run, ABBA order; ratios are the median of the "
          "per-round ratios of adjacent runs. Every IRC system gets the same load: loadgen --dialect irc, members and "
          "publisher registered with NICK/USER and joined to #bench, no capabilities. chat-server runs with "
          "`--threads 2 --no-http --store off --irc-port 0 --irc-flood-rate 0` for both its "
          "IRC and its native members; ngircd and InspIRCd are single-threaded, with their flood control off "
          "(bench/systems.py). CPU per delivery is the server's CPU time in the measured window over the "
          "deliveries in it; RSS/member is the server's growth from start to every member joined.", ""]
    for p in irc["points"]:
        m, rate = p["members"], p["rate"]
        md += [f"#### {m:,} members x {rate:,} msg/s", ""]
        for k, why in p.get("skipped", {}).items():
            md.append(f"- {label(k)}: skipped: {why}.")
        if p.get("skipped"):
            md.append("")
        if not p["runs"]:
            continue
        s = summary(p)
        md.append("| server | runs (contended) | deliveries/s | loss (all runs) | p50 ms | p99 ms | server CPU µs/delivery "
                  "| server CPU use | RSS/member (joined) | client CPU use | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in p["runs"]:
            x = s[key]
            timed = not (x["loss"] and not x["p99"])
            md.append(f"| {label(key)} | {x['n']} ({x['contended']}) | {bl.fmt_int(x['dps'])} | {x['loss']:,} "
                      f"| {bl.fmt_f((x['p50'] or 0) / 1000, 1) if timed else '-'} "
                      f"| {bl.fmt_f((x['p99'] or 0) / 1000, 1) if timed else '-'} "
                      f"| {bl.fmt_f(x['cpu_del'], 3)} | {100 * (x['cpu_use'] or 0):.0f}% | {bl.fmt_bytes(x['rss_per_member'])} "
                      f"| {100 * (x['client_use'] or 0):.0f}% | {x['errors']} |")
        md.append("")
        pairs = []
        base = "chat-irc" if "chat-irc" in p["runs"] else None
        combos = ([(base, o) for o in ("chat-native", "ngircd", "inspircd")] if base else
                  [(o, "chat-native") for o in ("ngircd", "inspircd")])
        for x, y in combos:
            if x in p["runs"] and y in p["runs"]:
                for field, what in (("cpu_del", "CPU per delivery"), ("p99", "p99")):
                    v = paired(p, x, y, field)
                    pairs.append(f"{what} {label(x)} / {label(y)}: {', '.join(f'{r:.2f}' for r in v) or '-'}"
                                 + (f" (median {median(v):.2f})" if v else ""))
        if pairs:
            md += ["Per round: " + "; ".join(pairs) + ".", ""]
        fails = [f"{r['seq']}. {k}: {r['failed'] if 'failed' in r else ', '.join(r['problems'])}"
                 for k, runs in p["runs"].items() for r in runs if "failed" in r or r.get("problems")]
        if fails:
            md += ["Runs with problems: " + "; ".join(fails) + ".", ""]
    rows = target_rows(irc)
    if rows:
        md += ["| target | measured | result |", "|---|---|---|"]
        md += [f"| {w} | {v} | {'PASS' if ok else ('-' if ok is None else 'FAIL')} |" for w, v, ok in rows]
        md.append("")
    return "\n".join(md)
