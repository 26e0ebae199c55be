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
  websocket     chat-server's WebSocket members (GET /ws) against its native TCP members and a Node.js
                `ws` room (bench/node_ws_room.js; `npm ci --prefix bench` if bench/node_modules is
                missing) at 1,000 members x 100 and x 1,000 msg/s, and against Redis at 10,000 x 10;
                RSS per idle WebSocket member (bench/ws_suite.py).
  history       issue 11: server CPU per delivery and p99 with --store sqlite (the default) against
                --store off (1,000 x 100 and 10,000 x 10 msg/s, every message with an id); acknowledged
                messages per second into one room, pipelined, against Redis XADD with an append-only
                file; a restart with 1,000 members reconnecting at once, each recovering 100 missed
                messages (bench/history_suite.py).
  irc           issue 12: chat-server's IRC members against its native TCP members and against ngircd and
                InspIRCd (Debian's) under the same IRC load, 1,000 x 100 and 10,000 x 10 msg/s; RSS per idle
                IRC member (bench/irc_suite.py).
  ops           issue 13: chat-server with its defaults (/metrics and its loop-lag probes, every limit on)
                against the same server with them off, 1,000 x 100 msg/s (bench/ops_suite.py).
  tls           issue 13: chat-server's members over TLS against its plain ones, and against Redis pub/sub
                over TLS (--tls-port) and plain, 1,000 x 100 msg/s (bench/tls_suite.py).
  accept        --threads 2: one listener handing connections out against a SO_REUSEPORT listener
                per reactor (bench/scale_bench.py).
  scale         100,000 members in one room: chat-server --workers 6 joined through Redis, loadgen
                in several processes (bench/scale_bench.py).

Outputs: BENCHMARKS.md (only the generated blocks between <!-- bench:NAME --> markers are replaced;
the prose around them stays), PNG plots in bench/plots/, every raw result in bench/results/run.json.
--quick: a smoke run (under 2 minutes): every system once, small and short; checks each starts and
its numbers are sane (nonzero throughput, no errors, no loss for the lossless servers); writes
bench/results/quick.md only; exits 1 if a check fails, and if a system could not run (its program
missing, its fixed port taken) unless --skip left it out. In a full run such a system is skipped
and reported, not failed.

Every process started here is stopped by pid in a finally (also on ^C, SIGTERM and the watchdog).

This file is the command line and the table of sections; the code lives beside it:
  systems.py      the systems measured: key, label, command line, how to tell it is ready
  context.py      the run's context: starting systems and loadgen, quiet waits, checks, watchdog, verdict
  echo_suite.py   the sections echo-targets, echo, c10k    (echo_bench.py: the echo-targets scenarios)
  chat_suite.py   the sections chat-targets, chat
  ws_suite.py     the section websocket
  history_suite.py  the section history
  irc_suite.py    the section irc
  ops_suite.py    the section ops (what the operator's defaults, metrics and limits, cost)
  tls_suite.py    the section tls (fan-out over TLS)
  scale_bench.py  the sections accept, scale
  report.py       BENCHMARKS.md's generated blocks          plots.py: the PNG plots
  benchlib.py     processes, /proc sampling, ports, loadgen, medians, formatting
"""
import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import chat_suite  # noqa: E402
import echo_suite  # noqa: E402
import history_suite  # noqa: E402
import irc_suite  # noqa: E402
import ops_suite  # noqa: E402
import tls_suite  # noqa: E402
import report  # noqa: E402
import scale_bench  # noqa: E402
import ws_suite  # noqa: E402
from context import Ctx, measure, verdict  # noqa: E402
from systems import ALL_SYSTEMS  # noqa: E402

ROOT = bl.ROOT
SEED = ROOT.parent / "shared" / "seed"

# The sections in the order they run: name (for --only) -> function(ctx, data) that measures the
# section and files its raw results in `data`.
SECTIONS = {
    "echo-targets": echo_suite.echo_targets_section,
    "echo": echo_suite.echo_section,
    "c10k": echo_suite.c10k_section,
    "chat-targets": chat_suite.chat_targets_section,
    "chat": chat_suite.chat_section,
    "websocket": ws_suite.websocket_section,
    "history": history_suite.history_section,
    "irc": irc_suite.irc_section,
    "ops": ops_suite.ops_section,
    "tls": tls_suite.tls_section,
    "accept": scale_bench.accept_section,
    "scale": scale_bench.scale_section,
}


def parse_args():
    p = argparse.ArgumentParser(description="The benchmark suite (echo, C10K, chat), every system side by side.")
    p.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes; exit 1 if a check fails")
    p.add_argument("--only", action="append", choices=list(SECTIONS),
                   help="run only these sections (then BENCHMARKS.md is not written unless --out is given)")
    p.add_argument("--skip", action="append", metavar="SYSTEM",
                   help="leave a system out (" + ", ".join(s.key for s in ALL_SYSTEMS) + ")")
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
    # How long and how big: the full run's and the quick one's.
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
    return args


def outputs(args):
    """(markdown, plot directory, raw results) to write; None where nothing is written. A partial
    run (--only) leaves BENCHMARKS.md alone unless --out names it."""
    q, partial = args.quick, bool(args.only)
    results_dir = ROOT / "bench" / "results"
    out_md = args.out or (str(results_dir / "quick.md") if q else (None if partial else str(ROOT / "BENCHMARKS.md")))
    if partial and not args.out:
        out_md = str(results_dir / "partial.md")
    plotdir = args.plots or (None if q or partial else str(ROOT / "bench" / "plots"))
    json_out = args.json_out or str(results_dir / ("quick.json" if q else "run.json"))
    return out_md, plotdir, json_out


def main():
    args = parse_args()
    out_md, plotdir, json_out = outputs(args)
    ctx = Ctx(args)
    if not ctx.loadgen.exists():
        bl.log(f"run.py: {ctx.loadgen} is missing: nothing can be measured (build first: ./dev.sh build)")
        return 2
    command = "python3 bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    if args.from_json:
        data = report.load(args.from_json, command)
        ctx.checks = [tuple(c) for c in data.get("checks", [])]
        sections, json_out = [], None
    else:
        data = {"command": command, "quick": args.quick, "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                "commit": report.git_describe()}
        sections = [run for name, run in SECTIONS.items() if name in (args.only or SECTIONS)]
        bl.log(f"run.py: {'quick smoke run' if args.quick else 'full run'}; logs of the servers in {ctx.procs.logdir}")
    status = measure(ctx, sections, data)
    if status == 130:
        return status
    elapsed = data.get("elapsed_s", 0) if args.from_json else time.monotonic() - ctx.started
    blocks, targets = report.render(ctx, data, elapsed, plotdir)
    written = blocks
    if args.only and args.out:
        # A partial run written into a file replaces its own sections' blocks only: the run's
        # description and the targets table there belong to the run that made the rest.
        written = {k: v for k, v in blocks.items() if k not in ("run", "targets")}
    report.write(ctx, data, written, out_md, json_out)
    return verdict(ctx, data, status, blocks["targets"], targets)


if __name__ == "__main__":
    sys.exit(main())
