"""The run's context, shared by every section of bench/run.py.

Ctx knows the build and the article's programs, starts and stops the systems (systems.py) and
loadgen through one benchlib.Processes (so every process is stopped by pid in the end), waits for a
quiet machine within the run's budget, and collects the smoke checks. measure() runs the sections
under the watchdog; verdict() says how the run went and gives the exit status.
"""
import shutil
import signal
import sys
import time
from pathlib import Path

import benchlib as bl

ROOT = bl.ROOT


class Skip(Exception):
    """A system that cannot run here (its fixed port is taken): reported, not failed."""


class Watchdog(Exception):
    pass


class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.bin = Path(args.build_dir).resolve() / "bin"
        self.seed = Path(args.seed_dir).resolve()
        self.python = shutil.which("python3") or sys.executable
        self.procs = bl.Processes(prefix="bench-run-")
        self.loadgen = self.bin / "loadgen"
        self.wait_budget = 0.0 if self.quick else args.quiet_budget
        self.checks = []   # (section, system label, "ok" | "FAIL" | "skipped", detail)
        self.skip = set(args.skip or [])
        self.started = time.monotonic()

    # -- availability and servers --
    def unavailable(self, system):
        if system.key in self.skip:
            return "skipped with --skip"
        for need in system.needs:
            if need.startswith("bin:"):
                path = self.bin / need[4:]
                if not path.exists():
                    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing (build it)"
            elif need.startswith("seed:"):
                if not (self.seed / need[5:]).exists():
                    return f"{self.seed / need[5:]} is missing"
            elif not shutil.which(need):
                return f"`{need}` is not installed"
        return None

    def abba_point(self, systems, rounds, where, **fields):
        """A measurement point over `systems` (key -> System) in ABBA order: `fields` with an empty
        list of runs per key and the `order` to run them in; or, when one of them cannot run here,
        with `skipped` saying why (logged as "WHERE: skipped (...)")."""
        point = {**fields, "runs": {k: [] for k in systems}, "order": []}
        missing = [f"{s.label}: {why}" for s in systems.values() if (why := self.unavailable(s))]
        if missing:
            point["skipped"] = "; ".join(missing)
            bl.log(f"\n{where}: skipped ({point['skipped']})")
        else:
            point["order"] = bl.abba(list(systems), rounds)
        return point

    def start(self, system):
        port = 0
        if system.fixed_port:
            why = bl.free_fixed_port(system.fixed_port, timeout=5 if self.quick else 20)
            if why:
                raise Skip(why)
            port = system.fixed_port
        elif system.pick_port:
            port = bl.free_port()
        cmd = system.cmd(self, port)
        return self.procs.start(system.key, cmd, ready=system.ready, port=port,
                                timeout=10 if self.quick else 20, cwd=self.procs.logdir,
                                ready_line=system.ready_line or None)

    def stop(self, server):
        """Stops a server; returns a note when it had died by itself (and why, from its log)."""
        note = None
        if not server.alive():
            rc = server.proc.returncode
            why = server.log_tail(1, r"Error|error|Exception")
            note = f"exited by itself (status {rc}{': ' + why[0].strip() if why else ''})"
        self.procs.stop(server)
        return note

    def wait_quiet(self):
        """Waits (within the run's budget) until the rest of the machine is quiet."""
        if self.wait_budget <= 0:
            return
        t0 = time.monotonic()
        while True:
            load = bl.other_load(0.5)
            if load <= bl.NOISY:
                break
            if time.monotonic() - t0 > 15 or self.wait_budget - (time.monotonic() - t0) <= 0:
                bl.log(f"    machine busy ({load:.2f} CPUs used by others); going on")
                break
        self.wait_budget -= time.monotonic() - t0

    def loadgen_run(self, args, timeout):
        return bl.run_loadgen(self.procs, self.loadgen, args, timeout)

    def check(self, section, label, status, detail=""):
        self.checks.append((section, label, status, detail))


def least_disturbed(attempts, attempt):
    """Calls attempt(i) for i = 0, 1, ... up to `attempts` times, until a run failed or the rest of the
    machine left it alone (not "contended"); returns the run the others disturbed least (a failed
    run only when it came first)."""
    best = None
    for i in range(attempts):
        r = attempt(i)
        if best is None or ("failed" not in r and r.get("others", 9) < best.get("others", 9)):
            best = r
        if "failed" in r or not r["contended"]:
            break
    return best


def run_order(point, attempts, run, line):
    """Runs `point`'s systems in its ABBA `order`: run(key) makes one record (a Skip or a StartError
    makes a failed one), logged with line(key, record); each key's runs go to point["runs"][key], up
    to `attempts` tries each for one the rest of the machine left alone (least_disturbed)."""
    for i, key in enumerate(point["order"]):
        def attempt(n, i=i, key=key):
            try:
                r = run(key)
            except (Skip, bl.StartError) as e:
                r = {"failed": str(e), "rate": point.get("rate"), "ok": False}
            r["seq"], r["attempts"] = i + 1, n + 1
            bl.log(line(key, r))
            return r

        point["runs"][key].append(least_disturbed(attempts, attempt))
    return point


def paired(point, a, b, field):
    """Per round: a's run over b's adjacent run (the k-th run of each), for `field`; rounds where either
    failed or lacks the field are left out."""
    out = []
    for x, y in zip(point["runs"].get(a, []), point["runs"].get(b, [])):
        if "failed" in x or "failed" in y or not x.get(field) or not y.get(field):
            continue
        out.append(x[field] / y[field])
    return out


def measure(ctx, sections, data):
    """Runs each section(ctx, data) in turn under the watchdog (SIGALRM after --watchdog seconds);
    SIGTERM and ^C end the run. Every process is stopped either way. Returns 0, 1 (the watchdog
    fired) or 130 (interrupted)."""
    def on_signal(signo, frame):
        raise KeyboardInterrupt(f"signal {signo}")

    def on_alarm(signo, frame):
        raise Watchdog(f"watchdog: the run took longer than {ctx.args.watchdog:.0f} s")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(ctx.args.watchdog))
    status = 0
    try:
        for section in sections:
            section(ctx, data)
    except KeyboardInterrupt as e:
        bl.log(f"run.py: interrupted ({e})")
        status = 130
    except Watchdog as e:
        bl.log(f"run.py: {e}")
        ctx.check("run", "watchdog", "FAIL", str(e))
        status = 1
    finally:
        signal.alarm(0)
        ctx.procs.cleanup()
    return status


def verdict(ctx, data, status, targets_md, targets):
    """Logs the targets (and in quick mode the smoke checks), keeps the servers' logs only when
    something failed or --keep-logs asks, and returns the exit status."""
    quick, elapsed = data["quick"], data["elapsed_s"]
    bl.log("")
    if quick:
        bl.log("Targets from one short round (quick mode): not a verdict, only the smoke checks below count.")
    bl.log(targets_md)
    failed_any = status != 0 or any(c[2] == "FAIL" for c in ctx.checks)
    if failed_any or ctx.args.keep_logs:
        bl.log(f"the servers' logs: {ctx.procs.logdir}")
    else:
        shutil.rmtree(ctx.procs.logdir, ignore_errors=True)
    if quick:
        fails = [c for c in ctx.checks if c[2] == "FAIL"]
        skipped = [c for c in ctx.checks if c[2] == "skipped"]
        for sec, lab, st, detail in ctx.checks:
            bl.log(f"  {st:7s} {sec:13s} {lab}: {detail}")
        ran = [c for c in ctx.checks if c[2] == "ok"]
        # A smoke run that did not run a system proves nothing about it: only what --skip asked to
        # leave out may be left out (./dev.sh test installs every system it needs).
        unasked = [c for c in skipped
                   if not all(why.endswith("skipped with --skip") for why in str(c[3]).split("; "))]
        bl.log(f"quick: took {elapsed:.0f} s")
        bl.log(f"quick: {len(ran)} passed, {len(fails)} failed, {len(skipped)} skipped"
               + (f" ({len(unasked)} not by --skip: each is a failure)" if unasked else ""))
        if fails or unasked or not ran:
            return 1
    if status:
        return status
    if ctx.args.check and any(ok is False for _, _, ok in targets):
        return 1
    return 0
