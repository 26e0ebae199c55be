#!/usr/bin/env python3
"""The chat page over HTTP: chat-server's static files against nginx serving the same files.

    python3 bench/http_static.py [--build-dir build] [--rounds 4] [--seconds 5] [--connections 50]

Both serve web/ on loopback with keep-alive: chat-server --threads 2 (its copy compiled into the
binary) and nginx with two worker processes (Debian's nginx-light, started here with a minimal
configuration). wrk drives GET / with keep-alive from one thread. ABBA order, fresh servers; it
prints requests per second and server CPU per request for each run, and the per-round ratios
chat-server/nginx with their medians (adjacent runs share the machine's mood).
"""
import argparse
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib as bl

ROOT = pathlib.Path(__file__).resolve().parent.parent

NGINX_CONF = """
worker_processes 2;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  include /etc/nginx/mime.types;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    index index.html;
    add_header Cache-Control no-cache;
  }}
}}
"""


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if bl.port_listening(port):
            return True
        time.sleep(0.05)
    return False


def tree_cpu(pid):
    """CPU seconds of a process and its children (nginx's workers)."""
    total = bl.cpu_seconds(pid)
    try:
        kids = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(bl.cpu_seconds(int(k)) for k in kids)


def run_wrk(port, seconds, connections, pid):
    before = tree_cpu(pid)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = tree_cpu(pid) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "cpu_us": cpu * 1e6 / max(total, 1), "errors": int(errors.group(1)) if errors else 0}


def once(system, args, tmp):
    port = bl.free_port()
    if system == "chat-server":
        cmd = [str(pathlib.Path(args.build_dir) / "bin" / "chat-server"), "--port", "0", "--http-port", str(port), "--no-irc",
               "--threads", "2"]
    else:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port, root=ROOT / "web"))
        cmd = [shutil.which("nginx"), "-c", str(conf), "-e", str(tmp / "error.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port):
            raise RuntimeError(f"{system} did not listen on {port}")
        run_wrk(port, 1, args.connections, proc.pid)  # warm-up
        return run_wrk(port, args.seconds, args.connections, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=str(ROOT / "build"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"http_static: `{tool}` is not installed (apt-get install wrk nginx-light)")
    runs = {"chat-server": [], "nginx": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for system in bl.abba(["chat-server", "nginx"], args.rounds):
            r = once(system, args, tmp)
            runs[system].append(r)
            print(f"  {system:11s} {r['rps']:>10,.0f} requests/s  cpu {r['cpu_us']:.2f} us/request  "
                  f"errors {r['errors']}", flush=True)
    ratio_rps = [c["rps"] / n["rps"] for c, n in zip(runs["chat-server"], runs["nginx"])]
    ratio_cpu = [c["cpu_us"] / n["cpu_us"] for c, n in zip(runs["chat-server"], runs["nginx"])]
    print(f"chat-server/nginx requests per second per round: {', '.join(f'{x:.2f}' for x in ratio_rps)} "
          f"(median {statistics.median(ratio_rps):.2f}); CPU per request: "
          f"{', '.join(f'{x:.2f}' for x in ratio_cpu)} (median {statistics.median(ratio_cpu):.2f})")


if __name__ == "__main__":
    main()
