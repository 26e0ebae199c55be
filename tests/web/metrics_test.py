"""GET /metrics, read by a real Prometheus text parser (Debian's python3-prometheus-client), with
members of every front end in a room of a two-reactor server; its figures against the SIGUSR1 line's.

Run by ctest (web.metrics) with Debian's /usr/bin/python3: metrics_test.py PATH-TO-chat-server.
"""
import asyncio
import json
import re
import signal
import sys
import tempfile
import unittest

from prometheus_client.parser import text_string_to_metric_families
import websockets

import chatproc

SERVER = chatproc.server_path(sys.argv)
TIMEOUT = 30 if chatproc.sanitized() else 10


async def http_get(reader, writer, path):
    """One GET on a kept-alive connection: (status, headers, body)."""
    writer.write(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), TIMEOUT)
    return status, headers, body.decode()


async def read_json_until(reader, type_, **fields):
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not line:
            raise AssertionError("closed while waiting for %s" % type_)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
            return msg


async def read_line_until(reader, pattern):
    rx = re.compile(pattern)
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not line:
            raise AssertionError("closed while waiting for %r" % pattern)
        if rx.search(line.decode("utf-8", "replace")):
            return line.decode()


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


def stats_line(server, before):
    """Sends SIGUSR1 and returns the figures of the stats line it prints."""
    server.signal(signal.SIGUSR1)
    m = server.err.wait_for(r"stats: (.*)$", TIMEOUT, start=before)
    return m.group(1)


def figure(line, group, name):
    m = re.search(r"(?:^|; )%s [^;]*?\b%s=(\d+)" % (group, name), line)
    if not m:
        raise AssertionError("no %s %s= in %r" % (group, name, line))
    return int(m.group(1))


class Metrics(unittest.TestCase):
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

        # The scrape, on a connection kept open until the stats line is read (it is one of the
        # connections both count).
        hr, hw = await asyncio.open_connection("127.0.0.1", server.http_port)
        # Scraped until each reactor's loop-lag probe (every 100 ms) has fired.
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            status, headers, text = await http_get(hr, hw, "/metrics")
            self.assertEqual(status, 200, text)
            families = {f.name: f for f in text_string_to_metric_families(text)}
            lag = samples([families["chat_loop_lag_seconds"]])
            if all(lag.get(("chat_loop_lag_seconds_count", frozenset({("reactor", k)})), 0) >= 1 for k in "01"):
                break
            self.assertLess(asyncio.get_running_loop().time(), deadline, "no loop-lag probe fired:\n" + text)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        before = len(server.err.lines)
        line = stats_line(server, before)
        hw.close()

        for name, family in families.items():
            self.assertTrue(name.startswith("chat_"), name)
        types = {name: f.type for name, f in families.items()}
        self.assertEqual(types["chat_deliveries"], "counter")  # the parser strips _total
        self.assertEqual(types["chat_connections_open"], "gauge")
        self.assertEqual(types["chat_loop_lag_seconds"], "histogram")
        self.assertEqual(types["chat_store_commit_seconds"], "histogram")
        s = samples(families.values())

        # What this test made.
        self.assertEqual(value(s, "chat_connections_open", front="native"), 2)
        self.assertEqual(value(s, "chat_connections_open", front="article"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="irc"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="web"), 1)
        self.assertEqual(value(s, "chat_connections_open", front="http"), 1)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="tcp"), 3)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="irc"), 1)
        self.assertEqual(value(s, "chat_connections_accepted_total", listener="http"), 2)
        self.assertGreaterEqual(value(s, "chat_http_requests_total"), 2)  # the upgrade and the scrapes
        self.assertEqual(value(s, "chat_messages_in_total"), 4)
        # m: bob, ian, wen and ann (her own copy) x 3; lobby: art's own line; the presence events
        # of m (bob's join to ann, ian's to two, wen's to three).
        self.assertEqual(value(s, "chat_deliveries_total"), 13 + 6)
        self.assertEqual(value(s, "chat_acks_total"), 3)
        self.assertEqual(value(s, "chat_errors_total", code="json"), 1)
        self.assertEqual(value(s, "chat_rooms"), 2)
        self.assertEqual(value(s, "chat_members"), 5)
        self.assertEqual(value(s, "chat_websocket_upgrades_total"), 1)
        self.assertEqual(value(s, "chat_store_messages_total", result="committed"), 4)  # every message is kept
        self.assertGreaterEqual(value(s, "chat_store_commit_seconds_count"), 1)
        # The loop lag, per reactor: cumulative buckets ending in +Inf = count, probes that fired.
        for k in ("0", "1"):
            count = value(s, "chat_loop_lag_seconds_count", reactor=k)
            self.assertGreaterEqual(count, 1)
            self.assertEqual(value(s, "chat_loop_lag_seconds_bucket", reactor=k, le="+Inf"), count)
            buckets = [v for (n, l), v in s.items() if n == "chat_loop_lag_seconds_bucket" and ("reactor", k) in l]
            self.assertEqual(len(buckets), 13)

        # The same figures as SIGUSR1's line.
        pairs = [
            (("connections", "open"), sum(v for (n, l), v in s.items() if n == "chat_connections_open")),
            (("connections", "accepted"), sum(v for (n, l), v in s.items() if n == "chat_connections_accepted_total")),
            (("connections", "refused"), sum(v for (n, l), v in s.items() if n == "chat_connections_refused_total")),
            (("messages", "in"), value(s, "chat_messages_in_total")),
            (("messages", "delivered"), value(s, "chat_deliveries_total")),
            (("bytes", "in"), value(s, "chat_bytes_in_total")),
            (("bytes", "out"), value(s, "chat_bytes_out_total")),
            (("errors", "json"), value(s, "chat_errors_total", code="json")),
            (("errors", "request"), value(s, "chat_errors_total", code="request")),
            (("closed", "slow_consumer"), value(s, "chat_closes_total", reason="slow_consumer")),
            (("http", "requests"), value(s, "chat_http_requests_total")),
            (("http", "websocket"), value(s, "chat_websocket_upgrades_total")),
            (("history", "acks"), value(s, "chat_acks_total")),
            (("rooms", "count"), value(s, "chat_rooms")),
            (("rooms", "members"), value(s, "chat_members")),
            (("auth", "accepted"), value(s, "chat_auth_total", result="accepted")),
            (("auth", "refused"), value(s, "chat_auth_total", result="refused")),
        ]
        self.assertEqual(value(s, "chat_closes_total", reason="unauthorized"), value(s, "chat_auth_total", result="refused"))
        for (group, name), metric in pairs:
            self.assertEqual(figure(line, group, name), metric, "%s %s in %r" % (group, name, line))
        self.assertGreater(value(s, "chat_bytes_out_total"), 0)

        for r, w in natives:
            w.close()
        aw.close()
        iw.close()
        await ws.close()

    def test_no_metrics_serves_none(self):
        server = chatproc.ChatServer(SERVER, "--no-metrics", threads=1)
        try:
            async def get():
                r, w = await asyncio.open_connection("127.0.0.1", server.http_port)
                status, _, _ = await http_get(r, w, "/metrics")
                w.close()
                return status
            self.assertEqual(asyncio.run(get()), 404)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
