"""The ops section of bench/run.py (issue 13): what the operator's defaults cost. chat-server as it
starts by default (HTTP on, so /metrics and each reactor's loop-lag probe; every limit on: connections
and connects per address, messages per connection, the frame timeout, members per room, rooms per
server) against the same server with all of them off (--no-metrics, each limit 0), under the same
load: 1,000 native members x 100 msg/s, the members spread over four source addresses (250 each,
under the 500 per address) and two publishers (50 msg/s each, under the 100 per connection).
Fresh servers for every run, ABBA order; the ratio is the median of the per-round ratios of adjacent
runs (target: server CPU per delivery on / off <= 1.03). The counters themselves cannot be turned off:
they were there before this section, in both. Nothing scrapes /metrics during the runs.
Quick mode: 100 members x 100 msg/s, each once; the smoke checks.
"""
import datetime

import benchlib as bl
from irc_suite import measure_point, ratio_row, smoke_checks
from systems import label
from ws_suite import summary

CPU_TARGET = 1.03
KEYS = ["chat-ops-on", "chat-ops-off"]


def ops_section(ctx, data):
    # More rounds than the other points: the difference looked for is a few per cent.
    one_point_section(ctx, data, "ops", KEYS, ctx.args.target_rounds + 2)


def one_point_section(ctx, data, name, keys, rounds):
    """A section of one point over the systems of `keys` (the ops and tls sections), filed under
    data[name]: 1,000 members x 100 msg/s, `rounds` ABBA rounds; quick: 100 x 100 once, and the
    smoke checks."""
    out = {"command": data.get("command"), "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "commit": data.get("commit"), "points": []}
    data[name] = out
    if ctx.quick:
        p = measure_point(ctx, keys, 100, 100, 1, 1, tag=name)
        out["points"].append(p)
        smoke_checks(ctx, name, keys, p)
        return
    out["points"].append(measure_point(ctx, keys, 1000, 100, rounds, 2, tag=name))


def target_rows(ops):
    rows = []
    for p in (ops or {}).get("points", []):
        if p["members"] < 1000:
            continue
        at = f"{p['members']:,} x {p['rate']:,}/s"
        if not all(k in p["runs"] for k in KEYS):
            rows.append((f"Ops: metrics and limits on / off at {at}", "not measured", None))
            continue
        rows.append(ratio_row(p, "chat-ops-on", "chat-ops-off", "cpu_del",
                              f"Ops: server CPU per delivery, metrics and limits on / off, {at}", CPU_TARGET))
        rows.append(ratio_row(p, "chat-ops-on", "chat-ops-off", "p99", f"Ops: p99, on / off, {at} (no target)"))
        rows.append(lossless_row(p, "chat-ops-on", f"Ops: zero loss with the limits on, {at}"))
    return rows


def lossless_row(p, key, what):
    """A target row: every run of `key` at point `p` delivered everything, without an error."""
    lossless = all("failed" not in r and not r["loss"] and not r["errors"] for r in p["runs"][key])
    return (what, "yes" if lossless else "no", lossless)


def one_point_md(section, setup, rows):
    """A one-point section's markdown (ops, tls): how it was measured (the command, when, the code,
    the method, then `setup`), its tables, and its target rows."""
    md = [f"Measured by `{section.get('command')}` on {section.get('when')}, code at `{section.get('commit')}`; the "
          "machine as in the run described at the top. Fresh servers for every run, ABBA order; ratios are the median "
          "of the per-round ratios of adjacent runs. " + setup, ""]
    return "\n".join(md + point_tables(section["points"]) + targets_table(rows))


def md_ops(ops):
    return one_point_md(ops, "Both run `chat-server --threads 2 --http-port 0 --no-irc --store off`; "
          "the second adds `--no-metrics --max-connections-per-address 0 --connect-rate 0 --message-rate 0 "
          "--frame-timeout-ms 0 --max-room-members 0 --max-server-rooms 0`. loadgen spreads the members over four "
          "source addresses and publishes from two connections, so that the defaults (500 connections per address, "
          "100 messages a second per connection) are not met: what is measured is what they cost when nobody "
          "meets them.", target_rows(ops))


def point_tables(points):
    """Markdown lines: for each point, its skipped systems and a table of its systems' runs (the ops
    and tls sections)."""
    md = []
    for p in points:
        md += [f"#### {p['members']:,} members x {p['rate']:,} msg/s", ""]
        for k, why in p.get("skipped", {}).items():
            md.append(f"- {label(k)}: skipped: {why}.")
        if not p["runs"]:
            continue
        s = summary(p)
        md.append("| server | runs (contended) | deliveries/s | loss (all runs) | p50 ms | p99 ms | server CPU µs/delivery "
                  "| server CPU use | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in p["runs"]:
            x = s[key]
            md.append(f"| {label(key)} | {x['n']} ({x['contended']}) | {bl.fmt_int(x['dps'])} | {x['loss']:,} "
                      f"| {bl.fmt_f((x['p50'] or 0) / 1000, 1)} | {bl.fmt_f((x['p99'] or 0) / 1000, 1)} "
                      f"| {bl.fmt_f(x['cpu_del'], 3)} | {100 * (x['cpu_use'] or 0):.0f}% | {x['errors']} |")
        md.append("")
    return md


def targets_table(rows):
    """Markdown lines: the target rows [(what, measured, met or None)] as a table (none: nothing)."""
    if not rows:
        return []
    md = ["| target | measured | met |", "|---|---:|:-:|"]
    md += [f"| {w} | {v} | {'-' if ok is None else ('yes' if ok else 'NO')} |" for w, v, ok in rows]
    return md + [""]
