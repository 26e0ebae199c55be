#!/usr/bin/env python3
"""Echo benchmark: our Reactor echo server against the thinnest epoll echo loop, same client.

Servers (each started fresh for every run, on port 0; the script waits for its "listening on" line):
  reference   build/bin/epoll-echo-ref 0 127.0.0.1             (bench/epoll_echo_ref.c)
  reactor     build/bin/echo-server --model reactor --backend epoll --port 0

Client: build/bin/loadgen --mode echo --processes 1 (bench/loadgen, on our Reactor). It samples the
server's CPU time (utime+stime, /proc/PID/stat) and RSS (/proc/PID/status) itself, at the two edges
of the measured window, so connect and warm-up are never counted.

Scenarios:
  a  1,000 connections, all active, depth 1, 64-byte payload
  b  10,000 connections, 100 (1%) active, depth 1, 64-byte payload
  c  memory: RSS growth of the server for 10,000 connections that each made one round trip
Runs of a and b alternate the servers in ABBA order (ref, reactor, reactor, ref, ref, ...) so that
a drift of the shared machine's speed hits both alike; the tables report medians. loadgen also
samples the machine-wide CPU time (/proc/stat): what the rest of the machine used during a window
(busy minus server minus client) marks a run "contended" above 15% of a CPU. Before each run the
script waits (briefly) for a quiet machine, and a contended run is repeated, within a time budget;
medians then use the uncontended runs.

Usage: python3 bench/echo_bench.py [--quick] [--out FILE] [--rounds N] [--duration S] [--check]
Every process started here is stopped at the end, even on error or Ctrl-C. bench/run.py (./dev.sh bench)
runs these scenarios as the first part of the whole suite (run_suite()).
"""
import argparse
import datetime
import json
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

ROOT = bl.ROOT

# Targets: reactor rtt/s >= 95% of reference; CPU per round trip <= 1.1x reference; RSS <= 1 KiB/conn.
MIN_RATE_RATIO = 0.95
MAX_CPU_RATIO = 1.10
MAX_RSS_PER_CONN = 1024


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.build_dir).resolve() / "bin"
        self.procs = bl.Processes(prefix="echo-bench-")  # every process started, stopped in cleanup()
        self.extra = 0.0  # seconds spent waiting for quiet and repeating contended runs

    # ---- processes ------------------------------------------------------------------------------
    def server_command(self, name):
        if name == "reference":
            return [str(self.bin / "epoll-echo-ref"), "0", "127.0.0.1"]
        return [str(self.bin / "echo-server"), "--model", "reactor", "--backend", "epoll",
                "--host", "127.0.0.1", "--port", "0"]

    def start_server(self, name):
        """Starts a server and waits for its "listening on" line; raises bl.StartError (a RuntimeError)."""
        return self.procs.start(name, self.server_command(name), ready="line", timeout=10)

    def stop(self, server):
        self.procs.stop(server)

    def cleanup(self):
        self.procs.cleanup()

    def load(self, port, pid, connections, active, duration, warmup):
        res = bl.run_loadgen(self.procs, self.bin / "loadgen",
                             ["--mode", "echo", "--port", port, "--connections", connections, "--active", active,
                              "--depth", 1, "--payload", 64, "--duration", duration, "--warmup", warmup,
                              "--processes", 1, "--server-pid", pid],
                             timeout=duration + warmup + 120)
        if "failed" in res:
            raise RuntimeError(f"loadgen failed: {res['failed']}: {' '.join(map(str, res.get('cmd', [])))}\n"
                               + "\n".join(res.get("stderr", [])))
        # The names this script's tables use (from the days of echo-load).
        res["server"]["cpu_us_per_rt"] = res.get("server_cpu_us_per_op") or 0.0
        res["server"]["cpu_s"] = res["server"].get("cpu_s") or 0.0
        if res["errors"] or res["stderr"]:
            print(f"    loadgen reported: {res['errors']} error(s) {res['stderr'][:3]}", file=sys.stderr)
        return res

    def one_run(self, name, connections, active):
        server = self.start_server(name)
        try:
            res = self.load(server.port, server.pid, connections, active, self.args.duration, self.args.warmup)
        finally:
            self.stop(server)
        # What the rest of the machine used in the window: machine-wide busy CPU minus ours.
        res["other_cores"], res["steal_cores"] = bl.others_cores(res)
        res["contended"] = res["other_cores"] > bl.NOISY or res["steal_cores"] > bl.NOISY
        return res

    def budget_left(self):
        return self.args.budget - self.extra

    def wait_quiet(self):
        """Waits (within the time budget) until the rest of the machine uses under bl.NOISY CPUs."""
        waited, said = 0.0, False
        while True:
            load = bl.other_load(0.5)
            if load <= bl.NOISY:
                return
            waited += 0.5
            self.extra += 0.5
            if waited > self.args.max_wait or self.budget_left() < 0:
                print(f"    machine still busy ({load:.2f} cores used by others); running anyway",
                      file=sys.stderr)
                return
            if not said:
                print(f"    waiting for a quieter machine ({load:.2f} cores used by others)", file=sys.stderr)
                said = True

    # ---- scenarios ------------------------------------------------------------------------------
    def throughput(self, key, title, connections, active):
        names = ["reference", "reactor"]
        runs = {n: [] for n in names}
        order = bl.abba(names, self.args.rounds)
        print(f"\n[{key}] {title}: {len(order)} runs of {self.args.duration:g} s "
              f"(+{self.args.warmup:g} s warm-up)", file=sys.stderr)
        for i, name in enumerate(order):
            attempt, best = 0, None
            while True:
                attempt += 1
                self.wait_quiet()
                started = time.monotonic()
                res = self.one_run(name, connections, active)
                if attempt > 1:
                    self.extra += time.monotonic() - started
                s = res["server"]
                print(f"  run {i + 1:2d} {name:9s}: {res['rtt_per_s']:9.0f} rt/s  p50 "
                      f"{res['latency_us']['p50']:8.1f} us  p99 {res['latency_us']['p99']:8.1f} us  "
                      f"server {s['cpu_us_per_rt']:.2f} us/rt "
                      f"({100 * s['cpu_s'] / res['duration_s']:.0f}% cpu; client "
                      f"{100 * res['client_cpu_s'] / res['duration_s']:.0f}%; others "
                      f"{res['other_cores']:.2f} cores)  errors {res['errors']}"
                      + ("  CONTENDED" if res["contended"] else ""), file=sys.stderr)
                if best is None or res["other_cores"] + res["steal_cores"] < best["other_cores"] + best["steal_cores"]:
                    best = res
                # A run disturbed by other work on the machine is done again, while time allows;
                # the least disturbed attempt is kept.
                if not res["contended"] or attempt > self.args.retries or self.budget_left() < 0:
                    break
            res = best
            res["seq"] = i + 1
            res["attempts"] = attempt
            runs[name].append(res)
        return {"key": key, "title": title, "connections": connections, "active": active,
                "runs": runs, "order": order}

    def memory(self, connections):
        out = {}
        print(f"\n[c] memory: {connections} connections, one round trip each, then idle",
              file=sys.stderr)
        for name in ["reference", "reactor"]:
            server = self.start_server(name)
            try:
                listening_kib = bl.rss_kib(server.pid)
                res = self.load(server.port, server.pid, connections, 0, 1.0, 0.2)
            finally:
                self.stop(server)
            s = res["server"]
            growth = (s["rss_kib_connected"] - s["rss_kib_before"]) * 1024
            per_conn = growth / max(res["connected"], 1)
            out[name] = {"listening_kib": listening_kib, "before_kib": s["rss_kib_before"],
                         "connected_kib": s["rss_kib_connected"], "end_kib": s["rss_kib_end"],
                         "connected": res["connected"], "per_conn": per_conn,
                         "errors": res["errors"]}
            print(f"  {name:9s}: RSS {s['rss_kib_before']} KiB -> {s['rss_kib_connected']} KiB with "
                  f"{res['connected']} connections: {per_conn:.0f} bytes/connection", file=sys.stderr)
        return out


# ---- helpers --------------------------------------------------------------------------------------
def median(values):
    return statistics.median(values) if values else float("nan")


def summarize(scn):
    # Medians over the runs the rest of the machine left alone, when each server has at least two;
    # otherwise over every run (and the tables say so).
    clean = {n: [r for r in rs if not r["contended"]] for n, rs in scn["runs"].items()}
    use_clean = all(len(clean[n]) >= min(2, len(scn["runs"][n])) for n in clean)
    chosen = clean if use_clean else scn["runs"]
    rows = {}
    for name, runs in chosen.items():
        rows[name] = {
            "runs": len(scn["runs"][name]),
            "used": len(runs),
            "contended": sum(r["contended"] for r in scn["runs"][name]),
            "rate": median([r["rtt_per_s"] for r in runs]),
            "rate_min": min(r["rtt_per_s"] for r in runs),
            "rate_max": max(r["rtt_per_s"] for r in runs),
            "p50": median([r["latency_us"]["p50"] for r in runs]),
            "p99": median([r["latency_us"]["p99"] for r in runs]),
            "p999": median([r["latency_us"]["p999"] for r in runs]),
            "cpu_rt": median([r["server"]["cpu_us_per_rt"] for r in runs]),
            "cpu_util": median([r["server"]["cpu_s"] / r["duration_s"] for r in runs]),
            "client_cpu_rt": median([r["client_cpu_s"] * 1e6 / max(r["round_trips"], 1) for r in runs]),
            "client_util": median([r["client_cpu_s"] / r["duration_s"] for r in runs]),
            "errors": sum(r["errors"] for r in scn["runs"][name]),
        }
    ref, rx = rows["reference"], rows["reactor"]
    # Paired ratios: each reactor run against the reference run of the same round (adjacent in time).
    pairs = [(a, b) for a, b in zip(scn["runs"]["reference"], scn["runs"]["reactor"])
             if not (use_clean and (a["contended"] or b["contended"]))]
    return {
        "rows": rows,
        "use_clean": use_clean,
        "rate_ratio": rx["rate"] / ref["rate"] if ref["rate"] else float("nan"),
        "cpu_ratio": rx["cpu_rt"] / ref["cpu_rt"] if ref["cpu_rt"] else float("nan"),
        "paired_rate": [b["rtt_per_s"] / a["rtt_per_s"] for a, b in pairs if a["rtt_per_s"]],
        "paired_cpu": [b["server"]["cpu_us_per_rt"] / a["server"]["cpu_us_per_rt"]
                       for a, b in pairs if a["server"]["cpu_us_per_rt"] > 0],
    }


def render(bench_args, command, mach, scenarios, mem, elapsed):
    md = []
    md.append(f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), Linux {mach['kernel']}; "
              f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; `{command}`; "
              f"{bench_args.rounds} round(s) of {bench_args.duration:g} s (+{bench_args.warmup:g} s "
              f"warm-up) per server and scenario, ABBA order; {elapsed:.0f} s in all. "
              f"A run is *contended* when the rest of the machine used over {bl.NOISY:.0%} of a CPU "
              f"during its window; such a run is repeated (up to {bench_args.retries} more times) and "
              f"the medians use uncontended runs when each server has at least two.")
    md.append("")
    targets = []
    for scn in scenarios:
        s = summarize(scn)
        scn["summary"] = s
        md.append(f"### ({scn['key']}) {scn['title']}")
        md.append("")
        md.append("| server | runs used (contended) | rtt/s (median) | rtt/s min..max | p50 µs | p99 µs | p99.9 µs "
                  "| server CPU µs/rt | server CPU use | client CPU µs/rt | client CPU use | errors |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in ["reference", "reactor"]:
            r = s["rows"][name]
            md.append(f"| {name} | {r['used']} of {r['runs']} ({r['contended']}) | {r['rate']:,.0f} | {r['rate_min']:,.0f}..{r['rate_max']:,.0f} "
                      f"| {r['p50']:,.0f} | {r['p99']:,.0f} | {r['p999']:,.0f} | {r['cpu_rt']:.2f} "
                      f"| {100 * r['cpu_util']:.0f}% | {r['client_cpu_rt']:.2f} | {100 * r['client_util']:.0f}% "
                      f"| {r['errors']} |")
        md.append("")
        if not s["use_clean"]:
            md.append("Too few uncontended runs: the medians include runs disturbed by other work on the machine.")
            md.append("")
        md.append(f"reactor/reference: rtt/s **{s['rate_ratio']:.3f}** (per round: "
                  f"{', '.join(f'{x:.3f}' for x in s['paired_rate'])}); "
                  f"CPU per round trip **{s['cpu_ratio']:.3f}** (per round: "
                  f"{', '.join(f'{x:.3f}' for x in s['paired_cpu'])})")
        md.append("")
        label = f"{scn['connections']:,} conns, {scn['active']:,} active"
        targets.append((f"reactor rtt/s >= {MIN_RATE_RATIO:.0%} of reference ({label})",
                        f"{s['rate_ratio']:.1%}", s["rate_ratio"] >= MIN_RATE_RATIO))
        targets.append((f"reactor CPU/round trip <= {MAX_CPU_RATIO:.1f}x reference ({label})",
                        f"{s['cpu_ratio']:.2f}x", s["cpu_ratio"] <= MAX_CPU_RATIO))
    if mem:
        conns = mem["reactor"]["connected"]
        md.append(f"### (c) memory: server RSS for {conns:,} connections (one round trip each, then idle)")
        md.append("")
        md.append("| server | RSS listening KiB | RSS with connections KiB | growth bytes/connection | errors |")
        md.append("|---|---:|---:|---:|---:|")
        for name in ["reference", "reactor"]:
            m = mem[name]
            md.append(f"| {name} | {m['before_kib']:,} | {m['connected_kib']:,} | {m['per_conn']:,.0f} "
                      f"| {m['errors']} |")
        md.append("")
        md.append("RSS counts user-space memory only; the kernel's socket and epoll memory is in neither column.")
        md.append("")
        targets.append((f"reactor RSS growth <= {MAX_RSS_PER_CONN} bytes/connection",
                        f"{mem['reactor']['per_conn']:.0f} B", mem["reactor"]["per_conn"] <= MAX_RSS_PER_CONN))
    errors = sum(r["errors"] for scn in scenarios for r in scn["summary"]["rows"].values())
    errors += sum(m["errors"] for m in mem.values()) if mem else 0
    targets.append(("no client errors (connect, mismatch, unexpected close)", str(errors), errors == 0))
    md.append("### Targets")
    md.append("")
    md.append("| target | measured | result |")
    md.append("|---|---:|---|")
    for what, measured, ok in targets:
        md.append(f"| {what} | {measured} | {'PASS' if ok else 'FAIL'} |")
    md.append("")
    md.append("<details><summary>Every run</summary>")
    md.append("")
    md.append("| scenario | # | server | rtt/s | p50 µs | p99 µs | max µs | server CPU µs/rt | server CPU use "
              "| client CPU use | others' CPU use | connect ms | attempts | errors |")
    md.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scn in scenarios:
        allruns = sorted([r | {"name": n} for n, rs in scn["runs"].items() for r in rs], key=lambda r: r["seq"])
        for r in allruns:
            md.append(f"| {scn['key']} | {r['seq']} | {r['name']} | {r['rtt_per_s']:,.0f} "
                      f"| {r['latency_us']['p50']:,.0f} | {r['latency_us']['p99']:,.0f} "
                      f"| {r['latency_us']['max']:,.0f} | {r['server']['cpu_us_per_rt']:.2f} "
                      f"| {100 * r['server']['cpu_s'] / r['duration_s']:.0f}% "
                      f"| {100 * r['client_cpu_s'] / r['duration_s']:.0f}% "
                      f"| {100 * r['other_cores']:.0f}%{' (contended)' if r['contended'] else ''} "
                      f"| {1000 * r['connect_s']:,.0f} | {r['attempts']} | {r['errors']} |")
    md.append("")
    md.append("</details>")
    return "\n".join(md) + "\n", targets


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one short round per scenario (smoke run)")
    p.add_argument("--rounds", type=int, help="rounds per scenario (each runs both servers; default 7, quick 1)")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 3, quick 1)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per run (default 1, quick 0.3)")
    p.add_argument("--retries", type=int, default=2,
                   help="repeat a run disturbed by other work on the machine up to this many times (default 2)")
    p.add_argument("--max-wait", type=float, default=20,
                   help="seconds to wait for a quiet machine before each run (default 20)")
    p.add_argument("--budget", type=float,
                   help="most seconds spent in all on waiting and repeating (default 90, quick 20)")
    p.add_argument("--only", choices=["a", "b", "c"], action="append", help="run only these scenarios")
    p.add_argument("--build-dir", default=str(ROOT / "build"), help="build tree (default: build)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "echo_bench.md"),
                   help="markdown file to write (default: bench/results/echo_bench.md)")
    p.add_argument("--json-out", help="also write every raw result as JSON here")
    p.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    return p


def finish_args(args):
    """Fills in the defaults that depend on --quick; returns an error message or None."""
    args.rounds = args.rounds or (1 if args.quick else 7)
    args.duration = args.duration or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    args.budget = args.budget if args.budget is not None else (20.0 if args.quick else 90.0)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        return "--rounds must be >= 1, --duration > 0, --warmup >= 0"
    return None


def missing_binaries(args):
    bindir = Path(args.build_dir).resolve() / "bin"
    return [str(bindir / b) for b in ["epoll-echo-ref", "echo-server", "loadgen"] if not (bindir / b).exists()]


def run_suite(args, command):
    """Runs the scenarios of `args` (see make_parser/finish_args). Returns a dict: md (the tables),
    targets [(what, measured, ok)], scenarios, memory, elapsed. Raises RuntimeError when a server
    or the client fails, KeyboardInterrupt when interrupted; every process is stopped either way."""
    only = set(args.only or ["a", "b", "c"])
    bench = Bench(args)
    started = time.monotonic()
    scenarios, mem = [], {}
    try:
        if "a" in only:
            scenarios.append(bench.throughput("a", "1,000 connections, all active, depth 1, 64-byte payload",
                                              1000, 1000))
        if "b" in only:
            scenarios.append(bench.throughput("b", "10,000 connections, 100 (1%) active, depth 1, 64-byte payload",
                                              10000, 100))
        if "c" in only:
            mem = bench.memory(10000)
    finally:
        bench.cleanup()
    shutil.rmtree(bench.procs.logdir, ignore_errors=True)  # kept when a run failed
    elapsed = time.monotonic() - started
    md, targets = render(args, command, bl.machine(), scenarios, mem, elapsed)
    return {"md": md, "targets": targets, "scenarios": scenarios, "memory": mem, "elapsed": elapsed}


def main():
    args = make_parser().parse_args()
    problem = finish_args(args)
    if problem:
        print(f"echo_bench.py: {problem}", file=sys.stderr)
        return 2
    missing = missing_binaries(args)
    if missing:
        print(f"echo_bench.py: {missing[0]} is missing; build first (cmake --build build, or ./dev.sh build)",
              file=sys.stderr)
        return 2

    def on_term(signo, frame):
        raise KeyboardInterrupt(f"signal {signo}")

    signal.signal(signal.SIGTERM, on_term)
    command = "python3 bench/echo_bench.py" + "".join(f" {a}" for a in sys.argv[1:])
    try:
        result = run_suite(args, command)
    except KeyboardInterrupt:
        print("echo_bench.py: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"echo_bench.py: {e}", file=sys.stderr)
        return 1
    md, targets = result["md"], result["targets"]
    print()
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md)
        print(f"written: {args.out}", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"scenarios": result["scenarios"], "memory": result["memory"]},
                                                  indent=1, default=str))
    if args.check and not all(ok for _, _, ok in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
