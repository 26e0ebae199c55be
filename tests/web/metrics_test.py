"""GET /metrics, read by a real Prometheus text parser (Debian's python3-prometheus-client), against
docs/OPERATIONS.md's list of families and against the SIGUSR1 line.

- The families a scrape may hold are read from docs/OPERATIONS.md's table ("## Metrics"): a scrape
  must hold every documented one (chat_backplane_* only with --redis, chat_store_* only with the
  SQLite store) and nothing else, each of the documented type, with the documented labels.
- Every sample that has a figure in the SIGUSR1 line (taken right after the scrape, with no traffic
  in between) must show the same number; the only families without one are named in NO_FIGURE.
- Three servers: a two-reactor one with the SQLite store and a member of every front end (messages,
  acks, a history read, a recovery that replays, one that cannot, HTTP errors); a one with tight
  limits (rate_limited, joins refused by both server limits, HTTP errors, an unparsable request);
  two nodes on a throw-away redis-server (published, received, duplicates, a publish Redis refuses,
  an outage with a message delivered here only and not stored, the link back). What each made is
  asserted exactly.

Run by ctest (web.metrics) with Debian's /usr/bin/python3: metrics_test.py PATH-TO-chat-server.
"""
import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import chatproc  # noqa: E402

SERVER = chatproc.server_path(sys.argv)
TIMEOUT = 30 if chatproc.sanitized() else 10
OPERATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "OPERATIONS.md")
# Families with no figure in the SIGUSR1 line: checked for their shape (and what the test made) only.
NO_FIGURE = {"chat_loop_lag_seconds"}


# ---- docs/OPERATIONS.md ----------------------------------------------------------------------------

def documented():
    """({family: (type, label key or None, [values] or None if open-ended)}, [bucket bounds]) from
    the table of docs/OPERATIONS.md's "## Metrics" section. A cell may name several families; a
    name that starts with "_" shares the first one's chat_GROUP prefix (`chat_backplane_published_total`,
    `_received_total`)."""
    with open(OPERATIONS, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        raise AssertionError("no '## Metrics' section in " + OPERATIONS)
    section = m.group(1)
    families = {}
    for row in re.findall(r"^\| `chat_.*\|$", section, re.M):
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 4:
            raise AssertionError("a row of the metrics table without 4 cells: %r" % row)
        names = re.findall(r"`(_?\w+)`", cells[0])
        first = names[0]
        kind = cells[1]
        key = values = None
        if cells[2]:
            lm = re.fullmatch(r"`(\w+)`: (.+)", cells[2])
            if not lm:
                raise AssertionError("labels not as `key`: values in %r" % row)
            key = lm.group(1)
            values = [v.strip() for v in lm.group(2).split(",")]
            if values[-1] == "...":
                values = None
        for name in names:
            if name.startswith("_"):
                name = "_".join(first.split("_")[:2]) + name
            if name in families:
                raise AssertionError("%s documented twice" % name)
            families[name] = (kind, key, values)
    bm = re.search(r"^Histogram buckets \(seconds\): ([0-9., ]+)\.$", section, re.M)
    if not bm:
        raise AssertionError("no 'Histogram buckets (seconds): ...' line in the metrics section")
    buckets = [float(b) for b in bm.group(1).split(",")]
    if len(families) < 20:
        raise AssertionError("only %d families read from %s: the table's format changed?" % (len(families), OPERATIONS))
    return families, buckets


DOCUMENTED, BUCKETS = documented()


def expected_families(redis, sqlite):
    """The documented families a server shows: the backplane's with --redis, the store's with SQLite."""
    return {name for name in DOCUMENTED
            if (redis or not name.startswith("chat_backplane_")) and (sqlite or not name.startswith("chat_store_"))}


# ---- HTTP, the scrape --------------------------------------------------------------------------------

async def http_request(reader, writer, path, method="GET"):
    """One request on a kept-alive connection: (status, headers, body)."""
    extra = "Content-Length: 0\r\n" if method == "POST" else ""
    writer.write(("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, extra)).encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    body = b""
    if method != "HEAD":
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), TIMEOUT)
    return status, headers, body.decode()


def samples(families):
    """{(name, frozenset(labels)): value} of every sample."""
    out = {}
    for family in families:
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(all_samples, name, **labels):
    key = (name, frozenset(labels.items()))
    if key not in all_samples:
        raise AssertionError("no sample %s%s" % (name, labels))
    return all_samples[key]


def total(all_samples, name):
    return sum(v for (n, _), v in all_samples.items() if n == name)


class Scraper:
    """Scrapes /metrics on one kept-alive connection (one of the connections both the scrape and
    SIGUSR1 count: kept open until the stats line is read), counting its requests."""

    def __init__(self, test, server):
        self.test = test
        self.server = server
        self.requests = 0

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.http_port)
        return self

    async def request(self, path, method="GET"):
        self.requests += 1
        return await http_request(self.reader, self.writer, path, method)

    async def scrape(self, until=lambda s: True):
        """Scrapes until each reactor's loop-lag probe (every 100 ms) has fired and until(samples):
        (text, {family name: family}, samples)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            status, headers, text = await self.request("/metrics")
            self.test.assertEqual(status, 200, text)
            self.test.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
            families = {f.name: f for f in text_string_to_metric_families(text)}
            s = samples(families.values())
            lag = [v for (n, _), v in s.items() if n == "chat_loop_lag_seconds_count"]
            if lag and all(v >= 1 for v in lag) and until(s):
                return text, families, s
            self.test.assertLess(time.monotonic(), deadline, "the scrape never settled:\n" + text)
            await asyncio.sleep(0.01)  # the next look at the condition, not a wait for a guessed time

    async def scrape_and_sigusr1(self, until=lambda s: True):
        """A scrape, then the SIGUSR1 line with no traffic in between: (text, families, samples, line)."""
        text, families, s = await self.scrape(until)
        line = stats_line(self.server)
        return text, families, s, line

    def close(self):
        self.writer.close()


# ---- The SIGUSR1 line ----------------------------------------------------------------------------------

def stats_line(server):
    """Sends SIGUSR1 and returns the figures of the stats line it prints."""
    before = len(server.err.lines)
    server.signal(signal.SIGUSR1)
    return server.err.wait_for(r"stats: (.*)$", TIMEOUT, start=before).group(1)


def parse_stats(line):
    """The SIGUSR1 line as {(group, name): value}: ("connections", "open"), ("formats", "native"),
    ("reactors", "open") (their sum), ("redis", "published"), ("store", "batches"), ...; the
    backplane's state is ("redis", "state")."""
    m = re.fullmatch(r"(.*); per reactor open=([\d,]+)(?: (redis=.*?))?(?: (store=.*))?", line)
    if not m:
        raise AssertionError("not a stats line: %r" % line)
    figures = {}
    for part in m.group(1).split("; "):
        group, _, rest = part.partition(" ")
        formats = re.search(r"\((.*)\)", rest)
        if formats:
            for k, v in re.findall(r"(\w+)=(\d+)", formats.group(1)):
                figures[("formats", k)] = int(v)
            rest = rest[:formats.start()]
        for k, v in re.findall(r"(\w+)=(\d+)", rest):
            figures[(group, k)] = int(v)
    figures[("reactors", "open")] = sum(int(v) for v in m.group(2).split(","))
    for group, part in (("redis", m.group(3)), ("store", m.group(4))):
        if not part:
            continue
        for k, v in re.findall(r"(\w+)=(\S+)", part):
            if k == group:
                figures[(group, "state")] = v
            else:
                figures[(group, k)] = int(v)
    return figures


# Families whose samples the line has as one sum only (checked by check_sigusr1 as a sum).
SUM_ONLY = {"chat_connections_accepted_total"}
# Each sample with a figure in the SIGUSR1 line: sample name -> the figure's key, or for a labelled
# family {(label, value): key}; a function of the parsed line where the figure is computed.
FORMAT_FRONTS = {"native": "native", "article": "article", "websocket": "web"}  # the other formats: irc


def front_figure(front):
    def f(st):
        if front == "http":
            return st[("connections", "open")] - sum(v for (g, _), v in st.items() if g == "formats")
        return sum(v for (g, k), v in st.items() if g == "formats" and FORMAT_FRONTS.get(k, "irc") == front)
    return f


SIGUSR1_FIGURES = {
    "chat_connections_open": {("front", f): front_figure(f) for f in ("native", "article", "web", "irc", "http")},
    "chat_connections_refused_total": {("reason", "per_address"): ("limits", "refused_address"),
                                       ("reason", "connect_rate"): ("limits", "refused_rate"),
                                       ("reason", "other"): lambda st: st[("connections", "refused")]
                                       - st[("limits", "refused_address")] - st[("limits", "refused_rate")]},
    "chat_tls_handshake_failures_total": {("reason", "timeout"): ("tls", "timeouts"), ("reason", "other"): ("tls", "failed")},
    "chat_wrong_protocol_total": ("tls", "wrong_protocol"),
    "chat_rate_limited_total": ("limits", "rate_limited"),
    "chat_presence_held_total": ("rooms", "presence_held"),
    "chat_joins_refused_total": {("limit", "room_members"): ("limits", "room_full"),
                                 ("limit", "server_rooms"): ("limits", "server_rooms_full")},
    "chat_messages_in_total": ("messages", "in"),
    "chat_deliveries_total": ("messages", "delivered"),
    "chat_bytes_in_total": ("bytes", "in"),
    "chat_bytes_out_total": ("bytes", "out"),
    "chat_errors_total": {("code", c): ("errors", c) for c in ("json", "utf8", "too_long", "request", "garbage")},
    "chat_closes_total": {("reason", "slow_consumer"): ("closed", "slow_consumer"),
                          ("reason", "unsynced"): ("closed", "unsynced"),
                          ("reason", "ws_protocol"): ("closed", "ws_protocol"),
                          ("reason", "ping_flood"): ("closed", "ping_flood"),
                          ("reason", "http_timeout"): ("http", "timeouts"),
                          ("reason", "irc_flood"): ("irc", "flood"),
                          ("reason", "irc_timeout"): ("irc", "timeouts"),
                          ("reason", "rate_limit"): ("limits", "rate_closes"),
                          ("reason", "frame_timeout"): ("limits", "frame_timeouts"),
                          ("reason", "unauthorized"): ("auth", "refused")},
    "chat_linger_resets_total": ("closed", "linger_resets"),
    "chat_auth_total": {("result", "accepted"): ("auth", "accepted"), ("result", "refused"): ("auth", "refused")},
    "chat_http_requests_total": ("http", "requests"),
    "chat_http_errors_total": ("http", "errors"),
    "chat_websocket_upgrades_total": ("http", "websocket"),
    "chat_acks_total": ("history", "acks"),
    "chat_not_stored_total": ("history", "not_stored"),
    "chat_recoveries_total": {("result", "recovered"): ("history", "recovered"),
                              ("result", "unrecovered"): ("history", "unrecovered")},
    "chat_replayed_total": ("history", "replayed"),
    "chat_history_reads_total": ("history", "reads"),
    "chat_rooms": ("rooms", "count"),
    "chat_members": ("rooms", "members"),
    "chat_backplane_up": lambda st: int(st[("redis", "state")] == "up"),
    "chat_backplane_outages_total": ("redis", "outages"),
    "chat_backplane_published_total": ("redis", "published"),
    "chat_backplane_received_total": ("redis", "received"),
    "chat_backplane_local_only_total": ("redis", "local_only"),
    "chat_backplane_refused_total": ("redis", "refused"),
    "chat_backplane_overflow_total": ("redis", "overflow"),
    "chat_backplane_duplicates_total": ("redis", "duplicates"),
    "chat_backplane_waiting_bytes": ("redis", "waiting_bytes"),
    "chat_store_queue_depth": ("store", "pending"),
    "chat_store_jobs_queued": ("store", "jobs"),
    "chat_store_batches_total": {("result", "committed"): ("store", "batches"),
                                 ("result", "failed"): ("store", "failed_batches")},
    "chat_store_messages_total": {("result", "committed"): ("store", "appended"),
                                  ("result", "failed"): ("store", "failed")},
    "chat_store_reads_total": {("result", "ok"): lambda st: st[("store", "reads")] - st[("store", "failed_reads")],
                               ("result", "failed"): ("store", "failed_reads")},
    # One observation per committed batch: its count is the line's batches=; the times are not in it.
    "chat_store_commit_seconds_count": ("store", "batches"),
}


class Metrics(unittest.TestCase):
    # ---- what every scrape is checked for -------------------------------------------------------------

    def check_documented(self, families, redis, sqlite):
        """The scrape's families are the documented ones (for this server), of their type, with their
        labels; histograms with the documented buckets."""
        scraped = {}
        for family in families.values():
            name = family.name
            if family.type == "counter":  # the parser strips _total from a counter's name
                name += "_total"
            for s in family.samples:
                if family.type == "histogram":
                    self.assertIn(s.name, (name + "_bucket", name + "_sum", name + "_count"), s)
                else:
                    self.assertEqual(s.name, name, "a sample of family %s" % name)
            scraped[name] = family
        expected = expected_families(redis, sqlite)
        self.assertEqual(sorted(set(scraped) - expected), [], "scraped, not documented in docs/OPERATIONS.md")
        self.assertEqual(sorted(expected - set(scraped)), [], "documented in docs/OPERATIONS.md, not scraped")
        for name, family in scraped.items():
            kind, key, values = DOCUMENTED[name]
            self.assertEqual(family.type, kind, name)
            self.assertTrue(family.samples, name)
            keys = set()
            seen = set()
            for s in family.samples:
                labels = dict(s.labels)
                if s.name.endswith("_bucket") and kind == "histogram":
                    labels.pop("le", None)
                keys |= set(labels)
                if key in labels:
                    seen.add(labels[key])
            self.assertEqual(keys, {key} if key else set(), "the labels of " + name)
            if values is not None:
                self.assertEqual(sorted(seen), sorted(values), "the values of %s's label %s" % (name, key))
            if kind == "histogram":
                by_series = {}
                for s in family.samples:
                    if s.name.endswith("_bucket"):
                        series = frozenset((k, v) for k, v in s.labels.items() if k != "le")
                        by_series.setdefault(series, []).append((float(s.labels["le"]), s.value))
                for series, buckets in by_series.items():
                    self.assertEqual([le for le, _ in buckets], BUCKETS + [float("inf")], name)
                    self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets), "cumulative: " + name)
                    count = [s.value for s in family.samples if s.name == name + "_count"
                             and frozenset(s.labels.items()) == series]
                    self.assertEqual(count, [buckets[-1][1]], name)

    def check_sigusr1(self, families, s, line, skip=()):
        """Every sample with a figure in the SIGUSR1 line shows the same number; every sample has one,
        but those of NO_FIGURE, the histograms' buckets and sums, and `skip`."""
        st = parse_stats(line)
        compared = set()
        for (name, labels), v in s.items():
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base in NO_FIGURE or name in skip or name in SUM_ONLY or (
                    base in families and families[base].type == "histogram" and name not in SIGUSR1_FIGURES):
                continue
            fig = SIGUSR1_FIGURES.get(name)
            if isinstance(fig, dict):
                self.assertEqual(len(labels), 1, (name, labels))
                fig = fig.get(next(iter(labels)))
            self.assertIsNotNone(fig, "no SIGUSR1 figure known for %s%s" % (name, dict(labels)))
            want = fig(st) if callable(fig) else st.get(fig)
            self.assertIsNotNone(want, "%s not in the SIGUSR1 line %r" % (fig, line))
            self.assertEqual(v, want, "%s%s: scraped %s, SIGUSR1 %s in %r" % (name, dict(labels), v, want, line))
            compared.add(name)
        # Sums the line has besides.
        if "chat_connections_open" not in skip:
            self.assertEqual(total(s, "chat_connections_open"), st[("connections", "open")])
            self.assertEqual(total(s, "chat_connections_open"), st[("reactors", "open")])
        self.assertEqual(total(s, "chat_connections_accepted_total"), st[("connections", "accepted")])
        self.assertEqual(total(s, "chat_connections_refused_total"), st[("connections", "refused")])
        return compared | SUM_ONLY

    # ---- 1: every front end, the SQLite store ------------------------------------------------------

    def test_every_front_end_counted_and_the_same_figures_as_sigusr1(self):
        data = tempfile.TemporaryDirectory()
        self.addCleanup(data.cleanup)
        server = chatproc.ChatServer(SERVER, "--data-dir", data.name, threads=2, store="sqlite")
        try:
            asyncio.run(self.scenario(server))
        finally:
            server.stop()

    async def scenario(self, server):
        natives = []
        for name in ("ann", "bob"):
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write((json.dumps({"type": "hello", "user": name}) + "\n").encode())
            await read_json_until(r, "welcome")
            w.write((json.dumps({"type": "join", "room": "m"}) + "\n").encode())
            await read_json_until(r, "joined", room="m")
            natives.append((r, w))
        # The article's dialect: a member of lobby from the start.
        ar, aw = await asyncio.open_connection("127.0.0.1", server.port)
        aw.write(json.dumps({"user": "art", "text": "hello lobby"}).encode())
        await read_line_until(ar, r"\[art\] hello lobby")
        # IRC.
        ir, iw = await asyncio.open_connection("127.0.0.1", server.irc_port)
        iw.write(b"NICK ian\r\nUSER ian 0 * :Ian\r\nJOIN #m\r\n")
        await read_line_until(ir, r" 366 ian #m ")
        # WebSocket.
        ws = await websockets.connect("ws://127.0.0.1:%d/ws" % server.http_port)
        await ws.send(json.dumps({"type": "hello", "user": "wen"}))
        await ws.send(json.dumps({"type": "join", "room": "m"}))
        while json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)).get("type") != "joined":
            pass

        # Three messages with ids into m (stored, acked), and one line of bad JSON.
        ann_r, ann_w = natives[0]
        for i in range(3):
            ann_w.write((json.dumps({"type": "message", "room": "m", "text": "t%d" % i, "id": "x%d" % i}) + "\n").encode())
            await read_json_until(ann_r, "ack", id="x%d" % i)
        for i in range(3):
            await read_json_until(natives[1][0], "message", text="t%d" % i)
            await read_line_until(ir, r"PRIVMSG #m :t%d" % i)
        seen = 0
        while seen < 3:
            if json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)).get("type") == "message":
                seen += 1
        ann_w.write(b"{not json\n")
        await read_json_until(ann_r, "error", code="bad_json")

        # History: rex, alone in h, says five things there and leaves; joins again with since 0
        # (all replayed: one recovery, five messages replayed), reads h's history four times, a page
        # at a time, and joins u and v with an epoch that is not the store's (two recoveries that
        # fail: nothing read). Counts that differ, so that two figures swapped would show.
        rr, rw = await asyncio.open_connection("127.0.0.1", server.port)
        rex = (rr, rw)
        await request(rex, {"type": "hello", "user": "rex"}, "welcome")
        joined = await request(rex, {"type": "join", "room": "h"}, "joined", room="h")
        for i in range(5):
            await request(rex, {"type": "message", "room": "h", "text": "h%d" % i}, "message", text="h%d" % i)
        await request(rex, {"type": "leave", "room": "h"}, "left", room="h")
        again = await request(rex, {"type": "join", "room": "h", "since": 0, "epoch": joined["epoch"]}, "joined", room="h")
        self.assertIs(again.get("recovered"), True, again)
        self.assertEqual([(await read_json_until(rr, "message"))["text"] for _ in range(5)], ["h%d" % i for i in range(5)])
        pages, before = [], {}
        for _ in range(4):
            history = await request(rex, {"type": "history", "room": "h", "limit": 2, **before}, "history", room="h")
            pages.append([m["text"] for m in history["messages"]])
            if history["messages"]:
                before = {"before": history["messages"][0]["seq"]}
        self.assertEqual(pages, [["h3", "h4"], ["h1", "h2"], ["h0"], []])
        for room in ("u", "v"):
            lost = await request(rex, {"type": "join", "room": room, "since": 0, "epoch": "not" + joined["epoch"]}, "joined", room=room)
            self.assertIs(lost.get("recovered"), False, lost)

        # HTTP errors on the scrape's connection: a page that is not there, a method not allowed.
        scraper = await Scraper(self, server).open()
        self.assertEqual((await scraper.request("/no-such-page"))[0], 404)
        self.assertEqual((await scraper.request("/", "POST"))[0], 405)
        text, families, s, line = await scraper.scrape_and_sigusr1()
        scraper.close()

        self.check_documented(families, redis=False, sqlite=True)
        self.check_sigusr1(families, s, line)

        # What this test made.
        self.assertEqual(value(s, "chat_connections_open", front="native"), 3)
        self.assertEqual(value(s, "chat_connections_open", front="article"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="irc"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="web"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="http"), 1)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="tcp"), 4)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="irc"), 1)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="http"), 2)
        self.assertEqual(value(s, "chat_http_requests_total"), 1 + scraper.requests)  # the upgrade, and ours
        self.assertEqual(value(s, "chat_http_errors_total"), 2)
        self.assertEqual(value(s, "chat_messages_in_total"), 4 + 5)
        # m: bob, ian, wen and ann (her own copy) x 3; lobby: art's own line; the presence events
        # of m (bob's join to ann, ian's to two, wen's to three); h: rex's own five (not the replays).
        self.assertEqual(value(s, "chat_deliveries_total"), 13 + 6 + 5)
        self.assertEqual(value(s, "chat_acks_total"), 3)
        self.assertEqual(value(s, "chat_not_stored_total"), 0)
        self.assertEqual(value(s, "chat_recoveries_total", result="recovered"), 1)
        self.assertEqual(value(s, "chat_recoveries_total", result="unrecovered"), 2)
        self.assertEqual(value(s, "chat_replayed_total"), 5)
        self.assertEqual(value(s, "chat_history_reads_total"), 4)
        self.assertEqual(value(s, "chat_errors_total", code="json"), 1)
        self.assertEqual(value(s, "chat_rooms"), 5)  # m, lobby, h, u, v
        self.assertEqual(value(s, "chat_members"), 8)
        self.assertEqual(value(s, "chat_websocket_upgrades_total"), 1)
        self.assertEqual(value(s, "chat_rate_limited_total"), 0)
        self.assertEqual(total(s, "chat_joins_refused_total"), 0)
        self.assertGreater(value(s, "chat_bytes_out_total"), 0)
        self.assertGreater(value(s, "chat_bytes_in_total"), 0)
        # The store: every message kept; a read per history page and one for the recovery; at rest.
        self.assertEqual(value(s, "chat_store_messages_total", result="committed"), 9)
        self.assertEqual(value(s, "chat_store_messages_total", result="failed"), 0)
        committed = value(s, "chat_store_batches_total", result="committed")
        self.assertTrue(1 <= committed <= 9, committed)
        self.assertEqual(value(s, "chat_store_batches_total", result="failed"), 0)
        self.assertEqual(value(s, "chat_store_commit_seconds_count"), committed)
        self.assertEqual(value(s, "chat_store_reads_total", result="ok"), 4 + 1)
        self.assertEqual(value(s, "chat_store_reads_total", result="failed"), 0)
        self.assertEqual(value(s, "chat_store_queue_depth"), 0)
        self.assertEqual(value(s, "chat_store_jobs_queued"), 0)
        # The loop lag, per reactor: one series each, probes that fired.
        self.assertEqual({dict(l)["reactor"] for (n, l) in s if n == "chat_loop_lag_seconds_count"}, {"0", "1"})
        for k in ("0", "1"):
            self.assertGreaterEqual(value(s, "chat_loop_lag_seconds_count", reactor=k), 1)
        self.assertEqual(value(s, "chat_closes_total", reason="unauthorized"), value(s, "chat_auth_total", result="refused"))

        for r, w in natives + [rex]:
            w.close()
        aw.close()
        iw.close()
        await ws.close()

    # ---- 2: the limits ----------------------------------------------------------------------------

    def test_limits_and_http_errors_counted_exactly(self):
        # A burst of 3 refilled at one message per 100 s: three more at once are refused (not more
        # refusals in a row than the burst: the connection stays).
        server = chatproc.ChatServer(SERVER, "--message-rate", "0.01", "--message-burst", "4", "--max-room-members", "2",
                                     "--max-server-rooms", "2", threads=2)
        try:
            asyncio.run(self.limits(server))
        finally:
            server.stop()

    async def limits(self, server):
        members = {}
        for name in ("a", "b", "c"):
            members[name] = await asyncio.open_connection("127.0.0.1", server.port)
            await request(members[name], {"type": "hello", "user": name}, "welcome")
        a, b, c = members["a"], members["b"], members["c"]
        await request(a, {"type": "join", "room": "r1"}, "joined", room="r1")
        await request(b, {"type": "join", "room": "r1"}, "joined", room="r1")
        # r1 is full (--max-room-members 2: refused twice); r2 is the server's second room
        # (--max-server-rooms 2), so r3 would be a third.
        for _ in range(2):
            await request(c, {"type": "join", "room": "r1"}, "error", code="join_refused", room="r1")
        await request(c, {"type": "join", "room": "r2"}, "joined", room="r2")
        await request(c, {"type": "join", "room": "r3"}, "error", code="join_refused", room="r3")
        # Six messages at once: three go, three are refused.
        a[1].write(b"".join((json.dumps({"type": "message", "room": "r1", "text": "q%d" % i}) + "\n").encode()
                            for i in range(6)))
        got = []
        while len([m for m in got if m["type"] == "error"]) < 3 or len([m for m in got if m["type"] == "message"]) < 3:
            got.append(await read_json_until(a[0], None))
        await request(a, {"type": "ping"}, "pong")
        self.assertEqual([m["text"] for m in got if m["type"] == "message"], ["q0", "q1", "q2"], got)
        self.assertEqual([m["code"] for m in got if m["type"] == "error"], ["rate_limited"] * 3, got)
        for i in range(3):
            await read_json_until(b[0], "message", text="q%d" % i)

        # HTTP errors: 404, 405, and a request that does not parse (400, on its own connection,
        # which the server closes: scraped once it is gone).
        bad_r, bad_w = await asyncio.open_connection("127.0.0.1", server.http_port)
        bad_w.write(b"NOT HTTP AT ALL\r\n\r\n")
        answer = await asyncio.wait_for(bad_r.read(), TIMEOUT)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
        bad_w.close()
        scraper = await Scraper(self, server).open()
        self.assertEqual((await scraper.request("/nothing-here"))[0], 404)
        self.assertEqual((await scraper.request("/healthz", "POST"))[0], 405)
        text, families, s, line = await scraper.scrape_and_sigusr1(
            until=lambda s: value(s, "chat_connections_open", front="http") == 1)
        scraper.close()

        self.check_documented(families, redis=False, sqlite=False)
        self.check_sigusr1(families, s, line)
        self.assertEqual(value(s, "chat_rate_limited_total"), 3)
        self.assertEqual(value(s, "chat_closes_total", reason="rate_limit"), 0)
        self.assertEqual(value(s, "chat_joins_refused_total", limit="room_members"), 2)
        self.assertEqual(value(s, "chat_joins_refused_total", limit="server_rooms"), 1)
        self.assertEqual(value(s, "chat_http_errors_total"), 3)
        self.assertEqual(value(s, "chat_http_requests_total"), scraper.requests)  # the unparsable one is not answered as a request
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="http"), 2)
        self.assertEqual(value(s, "chat_messages_in_total"), 3)
        self.assertEqual(value(s, "chat_rooms"), 2)
        self.assertEqual(value(s, "chat_members"), 3)
        for name in ("chat_acks_total", "chat_not_stored_total", "chat_replayed_total", "chat_history_reads_total"):
            self.assertEqual(value(s, name), 0, name)
        for _, w in members.values():
            w.close()

    # ---- 3: two nodes on Redis ------------------------------------------------------------------------

    def test_two_nodes_on_redis_count_the_backplane(self):
        redis = RedisServer()
        self.addCleanup(redis.dir.cleanup)
        self.addCleanup(redis.stop)
        nodes = []
        try:
            for threads in (2, 1):
                nodes.append(chatproc.ChatServer(SERVER, "--redis", "redis://127.0.0.1:%d" % redis.port,
                                                 threads=threads, store="redis"))
            for node in nodes:
                node.err.wait_for(r"redis [\d.]+:\d+: connected", TIMEOUT)
            asyncio.run(self.backplane(redis, *nodes))
        finally:
            for node in nodes:
                node.stop()

    async def backplane(self, redis, a, b):
        ann = await asyncio.open_connection("127.0.0.1", a.port)
        bob = await asyncio.open_connection("127.0.0.1", b.port)
        await request(ann, {"type": "hello", "user": "ann"}, "welcome")
        await request(bob, {"type": "hello", "user": "bob"}, "welcome")
        await request(ann, {"type": "join", "room": "hall"}, "joined", room="hall")
        await request(bob, {"type": "join", "room": "hall"}, "joined", room="hall")
        # Three with ids from a (published, back on both nodes), x0 and x1 again (duplicates: acked,
        # not published again), one from b without an id.
        seqs = []
        for i in range(3):
            seqs.append((await request(ann, message("hall", "t%d" % i, "x%d" % i), "ack", id="x%d" % i))["seq"])
        for i in range(2):
            again = await request(ann, message("hall", "t%d" % i, "x%d" % i), "ack", id="x%d" % i)
            self.assertEqual(again["seq"], seqs[i])
        for text in ("t0", "t1", "t2"):
            await read_json_until(bob[0], "message", text=text)
        await request(bob, message("hall", "hi"), "message", text="hi")
        await read_json_until(ann[0], "message", text="hi")
        # Redis out of memory refuses the publish: a delivers it itself, not stored.
        self.assertEqual(redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction"), "+OK")
        self.assertEqual(redis.command("CONFIG", "SET", "maxmemory", "1"), "+OK")
        await request(ann, message("hall", "refused", "r0"), "error", code="not_stored", id="r0")
        self.assertEqual(redis.command("CONFIG", "SET", "maxmemory", "0"), "+OK")
        await request(ann, {"type": "ping"}, "pong")

        sa, sb = await Scraper(self, a).open(), await Scraper(self, b).open()
        _, families, s, line = await sa.scrape_and_sigusr1()
        self.check_documented(families, redis=True, sqlite=False)
        self.check_sigusr1(families, s, line)
        self.assert_backplane(s, up=1, outages=0, published=6, received=4, local_only=1, refused=1, duplicates=2)
        self.assertEqual(value(s, "chat_acks_total"), 5)
        self.assertEqual(value(s, "chat_not_stored_total"), 1)
        self.assertEqual(value(s, "chat_messages_in_total"), 6)
        _, families, s, line = await sb.scrape_and_sigusr1()
        self.check_documented(families, redis=True, sqlite=False)
        self.check_sigusr1(families, s, line)
        self.assert_backplane(s, up=1, outages=0, published=1, received=4, local_only=0, refused=0, duplicates=0)
        self.assertEqual(value(s, "chat_messages_in_total"), 1)

        # Redis goes away: the link is down (its retries count outages meanwhile: not compared), a
        # message with an id is delivered here only and not stored.
        mark = len(a.err.lines)
        redis.stop()
        a.err.wait_for(r"serving this node's members only", TIMEOUT, start=mark)
        await request(ann, message("hall", "alone", "z0"), "error", code="not_stored", id="z0")
        _, families, s, line = await sa.scrape_and_sigusr1()
        self.check_documented(families, redis=True, sqlite=False)
        self.check_sigusr1(families, s, line, skip={"chat_backplane_outages_total"})
        self.assertEqual(parse_stats(line)[("redis", "state")], "down")
        self.assertEqual(value(s, "chat_backplane_up"), 0)
        self.assertGreaterEqual(value(s, "chat_backplane_outages_total"), 1)
        self.assertEqual(value(s, "chat_backplane_local_only_total"), 2)
        self.assertEqual(value(s, "chat_not_stored_total"), 2)

        # Back on the same port: both nodes connect again, and every figure agrees again.
        marks = [len(n.err.lines) for n in (a, b)]
        redis.start()
        for node, mark in zip((a, b), marks):
            node.err.wait_for(r"redis [\d.]+:\d+: connected again", TIMEOUT, start=mark)
        for scraper, published, received, local_only, refused, duplicates in ((sa, 6, 4, 2, 1, 2), (sb, 1, 4, 0, 0, 0)):
            _, families, s, line = await scraper.scrape_and_sigusr1()
            self.check_documented(families, redis=True, sqlite=False)
            self.check_sigusr1(families, s, line)
            self.assertGreaterEqual(value(s, "chat_backplane_outages_total"), 1)
            self.assert_backplane(s, up=1, outages=None, published=published, received=received, local_only=local_only,
                                  refused=refused, duplicates=duplicates)
            scraper.close()
        for _, w in (ann, bob):
            w.close()

    def assert_backplane(self, s, up, outages, published, received, local_only, refused, duplicates):
        figures = {"chat_backplane_up": up, "chat_backplane_outages_total": outages,
                   "chat_backplane_published_total": published, "chat_backplane_received_total": received,
                   "chat_backplane_local_only_total": local_only, "chat_backplane_refused_total": refused,
                   "chat_backplane_duplicates_total": duplicates, "chat_backplane_overflow_total": 0,
                   "chat_backplane_waiting_bytes": 0}
        for name, want in figures.items():
            if want is not None:
                self.assertEqual(value(s, name), want, name)

    # ---- the connection gauges come back down ---------------------------------------------------------

    def test_connections_open_counts_down_for_every_front_end_and_every_way_of_closing(self):
        server = chatproc.ChatServer(SERVER, threads=2)
        try:
            asyncio.run(self.open_and_close(server))
        finally:
            server.stop()

    async def open_and_close(self, server):
        fronts = ("native", "article", "irc", "web")

        async def members():
            """One member of each front end, counted by the server: (closers by front end)."""
            nr, nw = await asyncio.open_connection("127.0.0.1", server.port)
            await request((nr, nw), {"type": "hello", "user": "nat"}, "welcome")
            ar, aw = await asyncio.open_connection("127.0.0.1", server.port)
            aw.write(json.dumps({"user": "art", "text": "hi"}).encode())
            await read_line_until(ar, r"\[art\] hi")
            ir, iw = await asyncio.open_connection("127.0.0.1", server.irc_port)
            iw.write(b"NICK ian\r\nUSER ian 0 * :Ian\r\n")
            await read_line_until(ir, r" 001 ian ")
            ws = await websockets.connect("ws://127.0.0.1:%d/ws" % server.http_port)
            await ws.send(json.dumps({"type": "hello", "user": "wen"}))
            while json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)).get("type") != "welcome":
                pass
            return (nr, nw), (ar, aw), (ir, iw), ws

        scraper = await Scraper(self, server).open()

        async def gauges_reach(want, http=1):
            # `http`: the scrape's own connection, and any other open on the HTTP port (not upgraded).
            _, _, s = await scraper.scrape(until=lambda s: value(s, "chat_connections_open", front="http") == http and all(
                value(s, "chat_connections_open", front=f) == want for f in fronts))
            for f in fronts:
                self.assertEqual(value(s, "chat_connections_open", front=f), want, f)
            self.assertEqual(value(s, "chat_connections_open", front="http"), http)

        # 1. The clients close (FIN).
        (nr, nw), (ar, aw), (ir, iw), ws = await members()
        await gauges_reach(1)
        for w in (nw, aw, iw):
            w.close()
        await ws.close()
        await gauges_reach(0)

        # 2. The server closes: an error that ends the stream (a frame that goes on past what the
        # server discards, native and article; IRC's QUIT; a WebSocket frame that is not masked).
        (nr, nw), (ar, aw), (ir, iw), ws = await members()
        await gauges_reach(1)
        nw.write(b"x" * (4 << 20))
        aw.write(b'{"text": "' + b"y" * (4 << 20))
        iw.write(b"QUIT :bye\r\n")
        ws.transport.write(b"\x81\x02hi")  # unmasked: a protocol error (RFC 6455 5.1)
        for front, r in zip(fronts, (nr, ar, ir)):
            try:
                while await asyncio.wait_for(r.read(65536), TIMEOUT):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass  # past what a closing connection reads, the server resets it: closed too
            except asyncio.TimeoutError:
                self.fail("the server did not close the %s connection" % front)
        await gauges_reach(0)

        # 3. The clients reset (RST), and an HTTP connection that goes: http comes back to the scrape's one.
        (nr, nw), (ar, aw), (ir, iw), ws = await members()
        hr, hw = await asyncio.open_connection("127.0.0.1", server.http_port)
        self.assertEqual((await http_request(hr, hw, "/healthz"))[0], 200)
        await gauges_reach(1, http=2)
        for w in (nw, aw, iw, ws.transport):
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.close()
        hw.close()
        await gauges_reach(0)
        scraper.close()
    # ---- 4: WebSocket abuse ------------------------------------------------------------------------

    def test_websocket_abuse_closes_counted_with_their_reasons(self):
        """Two protocol errors (an unmasked frame: 1002; a binary message: 1003), a ping flood that
        never reads (closed at once), and a protocol error followed by a flood that never reads (the
        lingering close reset past its budget): each counted under its reason."""
        server = chatproc.ChatServer(SERVER, threads=2)
        try:
            unmasked_ping = bytes([0x89, 0x00])
            binary = bytes([0x82, 0x81]) + b"\0\0\0\0x"
            for bad, code in ((unmasked_ping, 1002), (binary, 1003)):
                sock = raw_websocket(server.http_port)
                sock.sendall(bad)
                got = b""
                while True:  # the close frame, then the server's end of the stream
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                self.assertEqual(got[:4], bytes([0x88, len(got) - 2]) + code.to_bytes(2, "big"), got)
                sock.close()
            flood_ended = []
            for first in (b"", unmasked_ping):
                sock = raw_websocket(server.http_port, rcvbuf=4096)
                sock.sendall(first)
                flood_ended.append(ping_flood(sock, time.monotonic() + 3 * TIMEOUT))
                sock.close()
            for ended in flood_ended:  # the server's reset, seen at a send as a reset or a broken pipe
                self.assertIn(ended, ("ConnectionResetError", "BrokenPipeError"), flood_ended)
            asyncio.run(self.abuse_counted(server))
            self.assertRegex(server.err.text(), r"closed: WebSocket: ping flood: \d+ bytes of pongs owed")
            self.assertRegex(server.err.text(), r"closed: WebSocket protocol error \(close 1002\) \(reset: \d+ bytes "
                                                r"more came after the close, over 262144\)")
        finally:
            server.stop()

    async def abuse_counted(self, server):
        scraper = await Scraper(self, server).open()
        text, families, s, line = await scraper.scrape_and_sigusr1(
            until=lambda s: value(s, "chat_linger_resets_total") + value(s, "chat_closes_total", reason="ping_flood") == 2)
        scraper.close()
        self.check_documented(families, redis=False, sqlite=False)
        # The connections this test closed are not what it counts (test 1 and the front ends' own
        # tests count those): only the closes.
        self.check_sigusr1(families, s, line)
        self.assertEqual(value(s, "chat_closes_total", reason="ws_protocol"), 3)
        self.assertEqual(value(s, "chat_closes_total", reason="ping_flood"), 1)
        self.assertEqual(value(s, "chat_linger_resets_total"), 1)
        self.assertEqual(value(s, "chat_closes_total", reason="slow_consumer"), 0)
        self.assertEqual(value(s, "chat_websocket_upgrades_total"), 4)

    # ---- --no-metrics ------------------------------------------------------------------------------

    def test_no_metrics_serves_none(self):
        server = chatproc.ChatServer(SERVER, "--no-metrics", threads=1)
        try:
            async def get():
                r, w = await asyncio.open_connection("127.0.0.1", server.http_port)
                status, _, _ = await http_request(r, w, "/metrics")
                w.close()
                return status
            self.assertEqual(asyncio.run(get()), 404)
        finally:
            server.stop()


# ---- Members --------------------------------------------------------------------------------------------

def raw_websocket(port, rcvbuf=None):
    """A WebSocket on a raw socket, past its handshake (blocking, with the test's timeout)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)  # one at a time: nothing after the head is taken
        if not byte:
            raise AssertionError("closed during the handshake: %r" % head)
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def ping_flood(sock, deadline):
    """Sends masked 125-byte pings as fast as the socket takes them, never reading, until the
    server ends the connection (the error's name) or the deadline (\"time\")."""
    block = (bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125) * 512
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            sock.send(block)
        except socket.timeout:
            continue
        except OSError as e:
            return e.__class__.__name__
    return "time"


def message(room, text, id_=None):
    m = {"type": "message", "room": room, "text": text}
    if id_ is not None:
        m["id"] = id_
    return m


async def read_json_until(reader, type_, **fields):
    """The next JSON line of type `type_` (any type if None) with those fields."""
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not line:
            raise AssertionError("closed while waiting for %s %s" % (type_, fields))
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (type_ is None or msg.get("type") == type_) and all(msg.get(k) == v for k, v in fields.items()):
            return msg


async def request(member, msg, type_, **fields):
    reader, writer = member
    writer.write((json.dumps(msg) + "\n").encode())
    return await read_json_until(reader, type_, **fields)


async def read_line_until(reader, pattern):
    rx = re.compile(pattern)
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not line:
            raise AssertionError("closed while waiting for %r" % pattern)
        if rx.search(line.decode("utf-8", "replace")):
            return line.decode()


# ---- A throw-away redis-server --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on a free port (it takes no port 0), without persistence, in a scratch
    directory; start() again after stop() on the same port."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.proc = None
        for attempt in range(5):
            self.port = free_port()
            try:
                self.start()
                return
            except AssertionError:
                if attempt == 4:
                    raise

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], cwd=self.dir.name, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                if self.command("PING") == "+PONG":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("redis-server did not answer PING on port %d" % self.port)
            # Not a fixed sleep: the next attempt, until the deadline.
            self.proc_wait(0.02)

    def proc_wait(self, seconds):
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

    def command(self, *args):
        """One command; the first line of its answer ("+OK", "-ERR ...")."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as s:
            s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)).encode())
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("redis closed the connection")
                data += chunk
            return data.split(b"\r\n", 1)[0].decode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT)
        self.proc = None


if __name__ == "__main__":
    unittest.main()
