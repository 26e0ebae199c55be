"""BENCHMARKS.md from a run's raw results: every generated block, and the file written around them.

render() makes the blocks (one per <!-- bench:NAME --> marker: run, targets, echo-targets, echo,
c10k, chat-targets, chat-fixed, chat-saturation, websocket, history, irc, accept, scale, plots, checks) from `data`, whether
it was just measured or read back with --from-json; write() replaces those blocks in the markdown
(the prose around them stays) and saves the raw results. Only what is in `data` is rendered: a
section that did not run leaves its block as it was.
"""
import datetime
import json
import os
import subprocess
from pathlib import Path

import benchlib as bl
import history_suite
import irc_suite
import ops_suite
import tls_suite
import plots
import scale_bench as sb
import ws_suite
from chat_suite import target_summary
from echo_suite import saved_echo_targets
from systems import CHAT_SYSTEMS, ECHO_SYSTEMS, label

ROOT = bl.ROOT
RSS_TARGET = 1024       # bytes per connected member


def load(path, command):
    """A saved run's raw results (--from-json), to render again; `command` stands in for a run that did
    not record its own."""
    data = json.loads(Path(path).read_text())
    data.setdefault("command", command)
    data.setdefault("quick", False)
    return data


def render(ctx, data, elapsed, plotdir):
    """The blocks by name, and the target rows [(what, measured, ok or None)] of echo and chat.
    Completes `data` with the machine (when a saved run has none) and the run's duration."""
    quick = data["quick"]
    mach = data.get("machine") or bl.machine()
    data["machine"] = mach
    data["elapsed_s"] = elapsed
    blocks = {"run": md_run(data, mach, data["command"], elapsed)}
    echo_res = saved_echo_targets(data)
    targets = ((echo_res["targets"] if echo_res else []) + chat_target_rows(data.get("chat_targets"))
               + ws_suite.target_rows(data.get("websocket")) + history_suite.target_rows(data.get("history"))
               + irc_suite.target_rows(data.get("irc")) + ops_suite.target_rows(data.get("ops"))
               + tls_suite.target_rows(data.get("tls")))
    blocks["targets"] = md_targets(targets)
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
        if not quick:
            blocks["chat-saturation"] = md_chat_saturation(data["chat"])
    if "websocket" in data:
        blocks["websocket"] = ws_suite.md_websocket(data["websocket"])
    if "history" in data:
        blocks["history"] = history_suite.md_history(data["history"])
    if "irc" in data:
        blocks["irc"] = irc_suite.md_irc(data["irc"])
    if "ops" in data:
        blocks["ops"] = ops_suite.md_ops(data["ops"])
    if "tls" in data:
        blocks["tls"] = tls_suite.md_tls(data["tls"])
    if "accept" in data:
        blocks["accept"] = sb.md_accept(data["accept"])
    if "scale" in data:
        blocks["scale"] = sb.md_scale(data["scale"])
    if plotdir:
        made, problems = plots.make_plots(ctx, data, plotdir)
        rel = os.path.relpath(plotdir, ROOT)
        blocks["plots"] = "\n\n".join([f"![{m}]({rel}/{m})" for m in made] + [f"Plot not made: {x}" for x in problems])
        bl.log(f"plots: {', '.join(made) or 'none'}" + (f"; problems: {problems}" if problems else ""))
    if quick or ctx.checks:
        lines = ["| section | system | check | detail |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ctx.checks]
        blocks["checks"] = "\n".join(lines) + "\n"
    return blocks, targets


def write(ctx, data, blocks, out_md, json_out):
    """Fills `blocks` into the markdown `out_md` (a new file from TEMPLATE when it has no markers) and
    writes the raw results, with the checks, to `json_out`; either may be None."""
    if out_md:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        write_markdown(out_md, blocks, TEMPLATE + ("\n## Smoke checks\n\n<!-- bench:checks -->\n<!-- /bench:checks -->\n"
                                                   if data["quick"] else ""))
        bl.log(f"written: {out_md}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        data["checks"] = ctx.checks
        Path(json_out).write_text(json.dumps(data, indent=1, default=str))


# ---- the blocks -----------------------------------------------------------------------------------------
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


def md_targets(targets):
    md = ["| target | measured | result |", "|---|---|---|"]
    for what, measured, ok in targets:
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

## WebSocket members

<!-- bench:websocket -->
<!-- /bench:websocket -->

## History

<!-- bench:history -->
<!-- /bench:history -->

## IRC fan-out

<!-- bench:irc -->
<!-- /bench:irc -->

## What the operator's defaults cost

<!-- bench:ops -->
<!-- /bench:ops -->

## Fan-out over TLS

<!-- bench:tls -->
<!-- /bench:tls -->

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

