"""The PNG plots of BENCHMARKS.md (bench/plots/*.png), drawn by gnuplot from a run's raw results.

echo_throughput.png  round trips and server CPU per round trip, every echo system at every size
c10k.png             idle CPU, memory per idle connection and the active ones' p99
chat_saturation_N.png  p99 against the offered rate for every chat system at N members
A plot gnuplot cannot make (or gnuplot missing) is reported, not fatal.
"""
import shutil
import subprocess
import tempfile
from pathlib import Path

from systems import CHAT_SYSTEMS, ECHO_SYSTEMS


def gnuplot(script, workdir):
    if not shutil.which("gnuplot"):
        return "gnuplot is not installed (apt-get install gnuplot-nox)"
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, cwd=workdir, timeout=60)
    if p.returncode != 0:
        return p.stderr.strip()[-300:]
    return None


PLOT_HEAD = """set terminal pngcairo size {w},{h} font "DejaVu Sans,9"
set output "{out}"
set datafile separator "\\t"
set datafile missing "-"
set grid ytics lc rgb "#dddddd"
set key top left
"""


def short(key):
    """An echo system's name on a plot's axis."""
    return {"ref": "reference", "epoll": "ours epoll", "poll": "ours poll", "select": "ours select",
            "threads": "ours threads", "busy": "ours busy-wait", "node": "Node.js", "py-reactor": "py selectors",
            "py-threads": "py threads", "py-busy": "py busy-wait"}.get(key, key)


def echo_rows(echo, c10k, has, fmt):
    """A TSV row per echo system: fmt(run) at each echo size, then for c10k's active connections; "-"
    where has(run) is false, the run had errors, or the c10k server did not hold every idle connection."""
    rows = []
    for s in ECHO_SYSTEMS:
        vals = []
        for size in echo["sizes"]:
            r = echo["runs"][size].get(s.key, {})
            vals.append(fmt(r) if has(r) and not r.get("errors") else "-")
        ar = c10k["runs"].get(s.key, {}).get("active_run", {})
        ok10k = has(ar) and c10k["runs"][s.key]["held"] >= c10k["total"] - c10k["active"]
        vals.append(fmt(ar) if ok10k else "-")
        rows.append("\t".join([short(s.key)] + vals))
    return rows


def make_plots(ctx, data, plotdir):
    """Draws every plot `data` has the results for into `plotdir`; returns (made, problems)."""
    plotdir = Path(plotdir)
    plotdir.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-plots-", dir=ctx.procs.logdir)
    made, problems = [], []

    def emit(name, script):
        err = gnuplot(script, work)
        if err:
            problems.append(f"{name}: {err}")
        else:
            made.append(name)

    echo, c10k, chat = data.get("echo"), data.get("c10k"), data.get("chat")
    if echo and c10k:
        rows = echo_rows(echo, c10k, lambda r: "rtt" in r, lambda r: f"{r['rtt']:.0f}")
        top = max([float(v) for row in rows for v in row.split("\t")[1:] if v != "-"] or [1.0])
        Path(work, "echo.tsv").write_text("\n".join(rows) + "\n")
        rows = echo_rows(echo, c10k, lambda r: r.get("cpu_rt"), lambda r: f"{r['cpu_rt']:.2f}")
        Path(work, "echo_cpu.tsv").write_text("\n".join(rows) + "\n")
        titles = [f"{int(x):,} conns" for x in echo["sizes"]] + [f"{c10k['total']:,} conns, {c10k['active']} active"]
        cols = " , ".join(f"'echo.tsv' using {i + 2}:xtic(1) title '{t}'" for i, t in enumerate(titles))
        cpu_cols = " , ".join(f"'echo_cpu.tsv' using {i + 2}:xtic(1) notitle" for i, t in enumerate(titles))
        emit("echo_throughput.png", PLOT_HEAD.format(w=900, h=640, out=str(plotdir / "echo_throughput.png")) + f"""
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by 30 right scale 0
set title "Echo round trips per second (64 B, depth 1; no bar = could not run; the client is saturated too)"
set yrange [0:{1.3 * top:.0f}]
set format y "%.0s%c"
set key top right horizontal
plot {cols}
set title "Server CPU per round trip, microseconds (log scale; lower is better)"
set logscale y
set yrange [1:*]
set format y "%g"
plot {cpu_cols}
unset multiplot
""")
        rows = []
        for s in ECHO_SYSTEMS:
            r = c10k["runs"].get(s.key, {})
            if "held" not in r:
                rows.append(f"{short(s.key)}\t-\t-\t-")
                continue
            ar = r.get("active_run", {})
            rows.append("\t".join([short(s.key), f"{100 * (r['idle_cpu'] or 0):.2f}",
                                   f"{r['rss_per_conn']:.0f}" if r.get("rss_per_conn") and r["rss_per_conn"] > 0 else "-",
                                   f"{ar['p99'] / 1000:.3f}" if "p99" in ar and ar["p99"] > 0 else "-"]))
        Path(work, "c10k.tsv").write_text("\n".join(rows) + "\n")
        emit("c10k.png", PLOT_HEAD.format(w=1000, h=360, out=str(plotdir / "c10k.png")) + f"""
set multiplot layout 1,3 title "{c10k['total'] - c10k['active']:,} idle + {c10k['active']} active connections"
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.8
set xtics rotate by 45 right scale 0 font ",8"
set key off
set title "server CPU while idle (% of one CPU)"
set yrange [0:*]
plot 'c10k.tsv' using 2:xtic(1) lc rgb "#c0504d"
set title "RSS per idle connection (bytes, log)"
set logscale y
set yrange [10:*]
plot 'c10k.tsv' using 3:xtic(1) lc rgb "#4f81bd"
set title "p99 latency of the active ones (ms, log)"
set yrange [*:*]
plot 'c10k.tsv' using 4:xtic(1) lc rgb "#9bbb59"
unset multiplot
""")
    if chat:
        for p in chat["points"]:
            members = p["members"]
            series = []
            for s in CHAT_SYSTEMS:
                res = chat["results"].get(f"{s.key}@{members}", {})
                steps = [r for r in res.get("steps", []) if "failed" not in r and r["p99"] > 0]
                if len(steps) < 2:
                    continue
                fname = f"chat_{s.key}_{members}.tsv"
                Path(work, fname).write_text("\n".join(f"{r['rate']:g}\t{r['p99'] / 1000:.3f}\t{1 if r['loss'] else 0}"
                                                        for r in steps) + "\n")
                series.append((fname, s.label))
            if not series:
                continue
            plots = ", ".join(f"'{f}' using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 title '{t}'" for f, t in series)
            plots += ", ".join([""] + [f"'{f}' using 1:($3 > 0 ? $2 : 1/0) with points pt 6 ps 2 lc rgb 'black' notitle"
                                       for f, _ in series])
            out = plotdir / f"chat_saturation_{members}.png"
            emit(out.name, PLOT_HEAD.format(w=900, h=420, out=str(out)) + f"""
set title "Chat fan-out to {members:,} members: p99 latency against the offered rate (circled: messages lost)"
set logscale xy
set xlabel "messages per second published (each goes to {members:,} members)"
set ylabel "p99 latency, ms"
set key top left
set arrow from graph 0, first 1000 to graph 1, first 1000 nohead dt 2 lc rgb "#888888"
set label "1 s" at graph 0.01, first 1150 tc rgb "#888888"
plot {plots}
""")
    return made, problems

