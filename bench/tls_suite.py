"""The tls section of bench/run.py (issue 13): fan-out over TLS. One chat-server (--threads 2) with its
TLS listener beside its plain one, its members over TLS against the same server's plain port, and
against Redis pub/sub over TLS (Debian's redis-server, --tls-port) and plain, under the same load:
1,000 members x 100 msg/s, one room, loadgen --tls (TLS 1.3, the certificate of a throw-away authority,
not checked). Fresh servers for every run, ABBA order; ratios are the median of the per-round ratios
of adjacent runs. The anchor is Redis over TLS: chat-server's CPU per delivery over TLS at most 1.0x
of it. Quick mode: 100 members x 100 msg/s, each system once; the smoke checks.
"""
from irc_suite import ratio_row
from ops_suite import lossless_row, one_point_md, one_point_section

KEYS = ["chat-tls", "chat-tls-plain", "redis-tls", "redis"]
ANCHOR_TARGET = 1.0


def tls_section(ctx, data):
    one_point_section(ctx, data, "tls", KEYS, ctx.args.target_rounds)


def target_rows(tls):
    rows = []
    for p in (tls or {}).get("points", []):
        if p["members"] < 1000:
            continue
        at = f"{p['members']:,} x {p['rate']:,}/s"
        runs = p["runs"]
        if "chat-tls" not in runs:
            rows.append((f"TLS: chat-server's TLS fan-out at {at}", "not measured: "
                         + p["skipped"].get("chat-tls", "not run"), None))
            continue
        if "redis-tls" in runs:
            rows.append(ratio_row(p, "chat-tls", "redis-tls", "cpu_del",
                                  f"TLS: server CPU per delivery, chat-server / Redis, both over TLS, {at}",
                                  ANCHOR_TARGET))
        else:
            rows.append((f"TLS: chat-server / Redis over TLS at {at}", "not measured: "
                         + p["skipped"].get("redis-tls", "not run"), None))
        if "chat-tls-plain" in runs:
            rows.append(ratio_row(p, "chat-tls", "chat-tls-plain", "cpu_del",
                                  f"TLS: chat-server's CPU per delivery, TLS / plain TCP, {at} (no target: its price)"))
            rows.append(ratio_row(p, "chat-tls", "chat-tls-plain", "p99", f"TLS: chat-server's p99, TLS / plain, {at} (no target)"))
        if "redis-tls" in runs and "redis" in runs:
            rows.append(ratio_row(p, "redis-tls", "redis", "cpu_del",
                                  f"TLS: Redis's CPU per delivery, TLS / plain, {at} (no target: for comparison)"))
        rows.append(lossless_row(p, "chat-tls", f"TLS: zero loss over TLS, {at}"))
    return rows


def md_tls(tls):
    return one_point_md(tls, "chat-server runs `--threads 2 --no-http --no-irc --store off` with "
          "`--tls-cert/--tls-key` (an ECDSA P-256 certificate), the limits off (a load generator is one address); "
          "its TLS and plain rows are the same server, loadgen connecting to one port or the other. Redis is "
          "Debian's redis-server with `--tls-port` (no client certificates) or its plain port. loadgen's members "
          "speak TLS 1.3 (TLS_AES_256_GCM_SHA384, OpenSSL's first choice) through the same Filter as the server, "
          "on its own reactor.", target_rows(tls))
