#!/usr/bin/python3
"""WebSocket protocol tests for chat-server's /ws (RFC 6455), with clients that are not ours:
Debian's python3-websockets for what a well-behaved peer does, and frames crafted by hand on a raw
socket for what a broken or hostile one does. Each refusal asserts the exact close code the client
receives, the close handshake (the client's echo of that code is followed by the server closing
TCP), and the handshake errors' HTTP statuses.

Run: /usr/bin/python3 tests/web/ws_protocol_test.py build/bin/chat-server [unittest args]
(or set CHAT_SERVER, or TEST_PROGRAM_DIR to test another build's chat-server).
"""
import asyncio
import base64
import hashlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import chatproc  # noqa: E402

import websockets  # noqa: E402  (Debian's python3-websockets)
import websockets.exceptions  # noqa: E402

SERVER = None  # set in main
TIMEOUT = 30.0 if chatproc.sanitized() else 10.0
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    """One client frame, masked unless told otherwise."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Closed(Exception):
    """The server closed the TCP connection."""


def http_request(port, head, timeout=TIMEOUT):
    """Sends `head` (an HTTP request head) on a new connection; returns (status, headers, sock, rest)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response head; got %r" % data)
        data += chunk
    head_bytes, rest = data.split(b"\r\n\r\n", 1)
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, sock, rest


def upgrade_head(key="dGhlIHNhbXBsZSBub25jZQ==", version="13", extra=(), path="/ws", upgrade=True):
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: " + version)
    lines += list(extra)
    return "\r\n".join(lines) + "\r\n\r\n"


class RawWs:
    """A WebSocket client on a raw socket: the handshake written by hand, frames crafted by the test."""

    def __init__(self, server, timeout=TIMEOUT):
        key = base64.b64encode(os.urandom(16)).decode()
        status, headers, self.sock, self.buf = http_request(server.http_port, upgrade_head(key), timeout)
        if status != 101:
            raise AssertionError("handshake: %d %r" % (status, headers))
        if headers.get("sec-websocket-accept") != accept_of(key):
            raise AssertionError("bad Sec-WebSocket-Accept: %r" % headers)
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def send_text(self, text):
        self.send(frame(OP_TEXT, text))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame within %.1f s (have %r)" % (self.timeout, self.buf[:64]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk

    def recv_frame(self, timeout=None):
        """(fin, opcode, payload) of the next server frame; asserts what a server frame must be."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        at = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            at = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            at = 10
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        if b0 & 0x70:
            raise AssertionError("the server set RSV bits")
        self._fill(at + n, deadline)
        payload = self.buf[at:at + n]
        self.buf = self.buf[at + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_json(self, type_, timeout=None, **fields):
        """The next text message of `type_` (with `fields`), skipping others (presence, ...)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_CLOSE:
                raise AssertionError("closed while waiting for %s: %r" % (type_, payload))
            if op != OP_TEXT:
                continue
            if not fin:
                raise AssertionError("the server fragmented a message")
            msg = json.loads(payload.decode("utf-8"))
            if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    def expect_close(self, code):
        """The server's close frame carries `code`; our echo of it ends with the server closing TCP.
        Frames before the close (none expected) fail the test. Returns the close reason."""
        fin, op, payload = self.recv_frame()
        if op != OP_CLOSE:
            raise AssertionError("expected a close frame (%d), got opcode %d: %r" % (code, op, payload[:200]))
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        if got != code:
            raise AssertionError("close code %r, expected %d (reason %r)" % (got, code, payload[2:]))
        payload[2:].decode("utf-8")  # the reason must be UTF-8 too
        try:
            self.send(frame(OP_CLOSE, close_payload(code)))
        except OSError:
            pass  # the server may already have closed TCP: it owes us nothing after its close
        self.expect_eof()
        return payload[2:]

    def expect_eof(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            except Closed:
                return
            raise AssertionError("expected the connection to end, got opcode %d %r" % (op, payload[:200]))

    def close(self):
        self.sock.close()


async def ws_connect(server, **kw):
    kw.setdefault("ping_interval", None)  # the server's pings are what is tested, not ours
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", TIMEOUT)
    return await websockets.connect("ws://127.0.0.1:%d/ws" % server.http_port, **kw)


async def ws_json(ws, type_, **fields):
    async def loop():
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
                return msg
    return await asyncio.wait_for(loop(), TIMEOUT)


class TcpNative:
    """A native client on the chat port: JSON lines."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server):
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), TIMEOUT)
        return cls(r, w)

    async def send(self, obj):
        self.writer.write((json.dumps(obj) + "\n").encode())
        await self.writer.drain()

    async def expect(self, type_, **fields):
        async def loop():
            while True:
                line = await self.reader.readline()
                if not line:
                    raise AssertionError("TCP client closed while waiting for %s" % type_)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # the article's lines from the lobby before the welcome
                if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
                    return msg
        return await asyncio.wait_for(loop(), TIMEOUT)

    def close(self):
        self.writer.close()


class ServerCase(unittest.TestCase):
    flags = ("--max-frame", str(MAX_FRAME))
    threads = 2

    @classmethod
    def setUpClass(cls):
        cls.server = chatproc.ChatServer(SERVER, *cls.flags, threads=cls.threads)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    names = 0

    def raw(self, hello=False):
        """A raw client; with `hello`, one that has said hello (requests need it)."""
        ws = RawWs(self.server)
        self.addCleanup(ws.close)
        if hello:
            self.hello(ws)
        return ws

    def hello(self, ws, name=None):
        if name is None:
            ServerCase.names += 1
            name = "u%d" % ServerCase.names
        ws.send_text(json.dumps({"type": "hello", "user": name}))
        ws.recv_json("welcome", user=name)
        return name


class HappyPath(ServerCase):
    def test_fan_out_between_websocket_and_tcp_members(self):
        """Two python-websockets members and one native TCP member in one room: each one's message
        reaches all three, with the same room numbering; presence crosses the transports."""
        async def run():
            a = await ws_connect(self.server)
            b = await ws_connect(self.server)
            c = await TcpNative.open(self.server)
            try:
                for ws, name in ((a, "ann"), (b, "bob")):
                    await ws.send(json.dumps({"type": "hello", "user": name}))
                    await ws_json(ws, "welcome", user=name)
                await c.send({"type": "hello", "user": "cat"})
                await c.expect("welcome", user="cat")
                await a.send(json.dumps({"type": "join", "room": "fans"}))
                await ws_json(a, "joined", room="fans")
                await b.send(json.dumps({"type": "join", "room": "fans"}))
                await ws_json(b, "joined", room="fans")
                await ws_json(a, "join", room="fans", user="bob")  # presence, WebSocket to WebSocket
                await c.send({"type": "join", "room": "fans"})
                joined = await c.expect("joined", room="fans")
                self.assertEqual(joined["count"], 3)
                self.assertEqual(sorted(joined["members"]), ["ann", "bob", "cat"])
                await ws_json(b, "join", room="fans", user="cat")  # presence, TCP to WebSocket

                await a.send(json.dumps({"type": "message", "room": "fans", "text": "hi from ann \u00e9\u20ac"}))
                seqs = []
                for ws in (a, b):
                    m = await ws_json(ws, "message", room="fans", user="ann")
                    self.assertEqual(m["text"], "hi from ann \u00e9\u20ac")
                    seqs.append(m["seq"])
                m = await c.expect("message", room="fans", user="ann")
                self.assertEqual(m["text"], "hi from ann \u00e9\u20ac")
                seqs.append(m["seq"])
                await c.send({"type": "message", "room": "fans", "text": "hi from cat"})
                for ws in (a, b):
                    m = await ws_json(ws, "message", room="fans", user="cat")
                    self.assertEqual(m["seq"], seqs[0] + 1)
                m = await c.expect("message", room="fans", user="cat")
                self.assertEqual(seqs, [seqs[0]] * 3)

                # A WebSocket ping is answered by a pong with the same payload (websockets resolves
                # the waiter only on a matching pong), and the JSON ping by the JSON pong.
                waiter = await a.ping(b"payload-\x00\xff-123")
                await asyncio.wait_for(waiter, TIMEOUT)
                await b.send(json.dumps({"type": "ping", "id": 42}))
                await ws_json(b, "pong", id=42)

                await b.close()
                self.assertEqual(b.close_code, 1000)
                await ws_json(a, "leave", room="fans", user="bob")
            finally:
                await a.close()
                await b.close()
                c.close()
        asyncio.run(run())

    def test_handshake_accept_is_rfc_example(self):
        """RFC 6455's own example key gets its example accept value, and the 101 says websocket."""
        status, headers, sock, _ = http_request(self.server.http_port, upgrade_head("dGhlIHNhbXBsZSBub25jZQ=="))
        sock.close()
        self.assertEqual(status, 101)
        self.assertEqual(headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(headers["upgrade"].lower(), "websocket")
        self.assertIn("upgrade", headers["connection"].lower())

    def test_frames_right_behind_the_handshake(self):
        """A client may send its first frames in the same write as the handshake."""
        key = base64.b64encode(os.urandom(16)).decode()
        head = (upgrade_head(key).encode() + frame(OP_TEXT, json.dumps({"type": "hello", "user": "early"})) +
                frame(OP_TEXT, json.dumps({"type": "ping", "id": "early"})))
        sock = socket.create_connection(("127.0.0.1", self.server.http_port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(head)
        ws = RawWs.__new__(RawWs)
        ws.sock, ws.buf, ws.timeout = sock, b"", TIMEOUT
        while b"\r\n\r\n" not in ws.buf:
            ws._fill(len(ws.buf) + 1, time.monotonic() + TIMEOUT)
        head, ws.buf = ws.buf.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        ws.recv_json("welcome", user="early")
        ws.recv_json("pong", id="early")

    def test_raw_ping_pong_same_payload(self):
        ws = self.raw()
        ws.send(frame(OP_PING, b"\x01\x02abc\xff"))
        fin, op, payload = ws.recv_frame()
        self.assertEqual((fin, op, payload), (True, OP_PONG, b"\x01\x02abc\xff"))
        ws.send(frame(OP_PING, b"x" * 125))  # the largest control frame is fine
        self.assertEqual(ws.recv_frame(), (True, OP_PONG, b"x" * 125))

    def test_unsolicited_pong_is_ignored(self):
        ws = self.raw(hello=True)
        ws.send(frame(OP_PONG, b"nobody asked"))
        ws.send_text('{"type":"ping","id":1}')
        ws.recv_json("pong", id=1)

    def test_fragmented_text_with_ping_between_is_delivered_whole(self):
        ws = self.raw(hello=True)
        ws.send(frame(OP_TEXT, '{"type":"pi', fin=False))
        ws.send(frame(OP_PING, b"between"))
        ws.send(frame(OP_CONT, 'ng","id":', fin=False))
        ws.send(frame(OP_PONG, b"and a pong"))
        ws.send(frame(OP_CONT, '7}', fin=True))
        got_pong = got_reply = False
        while not (got_pong and got_reply):
            fin, op, payload = ws.recv_frame()
            self.assertTrue(fin)
            if op == OP_PONG:
                self.assertEqual(payload, b"between")
                self.assertFalse(got_reply, "the ping came before the message's end: its pong first")
                got_pong = True
            else:
                self.assertEqual(op, OP_TEXT)
                self.assertEqual(json.loads(payload), {"type": "pong", "id": 7})
                got_reply = True

    def test_utf8_split_across_fragments_is_accepted(self):
        """A character split between fragments (and between TCP writes) is fine: only the whole
        message must be UTF-8."""
        ws = self.raw()
        self.hello(ws, "splitter")
        ws.send_text('{"type":"join","room":"utf8"}')
        ws.recv_json("joined", room="utf8")
        text = '{"type":"message","room":"utf8","text":"\u20ac\U0001F600"}'.encode()
        cut1 = text.index(b"\xe2") + 1  # inside the euro sign
        cut2 = text.index(b"\xf0") + 2  # inside the emoji
        ws.send(frame(OP_TEXT, text[:cut1], fin=False))
        ws.send(frame(OP_CONT, text[cut1:cut2], fin=False))
        ws.send(frame(OP_CONT, text[cut2:], fin=True))
        m = ws.recv_json("message", room="utf8")
        self.assertEqual(m["text"], "\u20ac\U0001F600")

    def test_frames_split_at_every_byte(self):
        """The server reassembles frames whatever the TCP segments (a byte per send)."""
        ws = self.raw(hello=True)
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = frame(OP_TEXT, '{"type":"ping","id":"slow"}') + frame(OP_PING, b"p")
        for i in range(len(data)):
            ws.send(data[i:i + 1])
        # The control pong may come first: the JSON pong is the chat core's answer.
        got = sorted([ws.recv_frame(), ws.recv_frame()], key=lambda f: f[1])
        self.assertEqual(got, [(True, OP_TEXT, b'{"type":"pong","id":"slow"}'), (True, OP_PONG, b"p")])

    def test_json_error_in_valid_frame_keeps_connection(self):
        """A valid text frame holding bad JSON or a bad request gets the TCP dialect's error reply,
        and the connection goes on."""
        ws = self.raw()
        ws.send_text("{not json")
        err = ws.recv_json("error")
        self.assertEqual(err["code"], "bad_json")
        ws.send_text('{"a":"b\x00c"}')  # a raw NUL: no JSON text holds one
        self.assertEqual(ws.recv_json("error")["code"], "bad_json")
        ws.send_text('{"type":"ping"}')
        err = ws.recv_json("error")
        self.assertEqual(err["code"], "bad_request")
        self.assertIn("hello", err["message"])
        self.hello(ws)
        ws.send_text('{"type":"message","room":"nowhere","text":"x"}')
        self.assertEqual(ws.recv_json("error")["code"], "not_member")
        ws.send_text('{"type":"whatever"}')
        self.assertEqual(ws.recv_json("error")["code"], "unknown_type")
        ws.send_text("[1,2,3]")
        self.assertEqual(ws.recv_json("error")["code"], "bad_request")
        ws.send_text('{"type":"ping","id":"still here"}')
        ws.recv_json("pong", id="still here")

    def test_message_at_max_frame_is_accepted(self):
        """--max-frame bytes exactly is within the limit (the 1009 test below is one byte over)."""
        ws = self.raw(hello=True)
        base = '{"type":"ping","id":"%s"}'
        text = base % ("x" * (MAX_FRAME - len(base % "")))
        self.assertEqual(len(text), MAX_FRAME)
        ws.send_text(text)
        self.assertEqual(len(ws.recv_json("pong")["id"]), MAX_FRAME - len(base % ""))

    def test_client_close_is_echoed(self):
        for code in (1000, 1001, 4001):
            ws = self.raw()
            ws.send(frame(OP_CLOSE, close_payload(code, b"bye")))
            fin, op, payload = ws.recv_frame()
            self.assertEqual(op, OP_CLOSE)
            self.assertEqual(struct.unpack("!H", payload[:2])[0], code)
            ws.expect_eof()

    def test_client_close_without_code(self):
        """An empty close (no status, RFC 6455 7.1.5: 1005) is answered by an empty close or 1000."""
        ws = self.raw()
        ws.send(frame(OP_CLOSE, b""))
        fin, op, payload = ws.recv_frame()
        self.assertEqual(op, OP_CLOSE)
        self.assertIn(payload[:2], (b"", struct.pack("!H", 1000)))
        ws.expect_eof()

    def test_websockets_client_sees_1000_after_close(self):
        async def run():
            ws = await ws_connect(self.server)
            await ws.close(1000, "done")
            self.assertEqual(ws.close_code, 1000)
        asyncio.run(run())


class Refusals(ServerCase):
    """Frames a strict peer must refuse: each closes with the RFC's code."""

    def refused(self, data, code, before=None):
        ws = self.raw()
        if before:
            before(ws)
        ws.send(data)
        return ws.expect_close(code)

    def test_unmasked_frame_1002(self):
        self.refused(frame(OP_TEXT, '{"type":"ping"}', mask=False), 1002)

    def test_unmasked_control_frame_1002(self):
        self.refused(frame(OP_PING, b"x", mask=False), 1002)

    def test_reserved_opcodes_1002(self):
        for op in (0x3, 0x7, 0xB, 0xF):
            with self.subTest(opcode=op):
                self.refused(frame(op, b"x"), 1002)

    def test_rsv_bits_1002(self):
        for rsv in (0x4, 0x2, 0x1):  # RSV1 (what permessage-deflate would use), RSV2, RSV3
            with self.subTest(rsv=rsv):
                self.refused(frame(OP_TEXT, '{"type":"ping"}', rsv=rsv), 1002)

    def test_control_frame_over_125_bytes_1002(self):
        self.refused(frame(OP_PING, b"x" * 126), 1002)

    def test_fragmented_control_frame_1002(self):
        self.refused(frame(OP_PING, b"x", fin=False), 1002)

    def test_continuation_without_start_1002(self):
        self.refused(frame(OP_CONT, '{"type":"ping"}'), 1002)

    def test_new_message_inside_fragmented_one_1002(self):
        self.refused(frame(OP_TEXT, '{"type":"pi', fin=False) + frame(OP_TEXT, '{"type":"ping"}'), 1002)

    def test_binary_message_1003(self):
        self.refused(frame(OP_BINARY, b'{"type":"ping"}'), 1003)

    def test_binary_message_from_websockets_1003(self):
        async def run():
            ws = await ws_connect(self.server)
            await ws.send(b'{"type":"ping"}')
            with self.assertRaises(websockets.exceptions.ConnectionClosedError) as cm:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            self.assertEqual(cm.exception.rcvd.code, 1003)
            self.assertEqual(ws.close_code, 1003)
        asyncio.run(run())

    def test_invalid_utf8_1007(self):
        for bad in (b'{"type":"ping","id":"\xff"}', b'{"id":"\xc0\xaf"}', b'{"id":"\xed\xa0\x80"}',
                    b'{"id":"\xf4\x90\x80\x80"}', b'{"id":"\xe2\x82"}'):
            with self.subTest(payload=bad):
                self.refused(frame(OP_TEXT, bad), 1007)

    def test_invalid_utf8_split_across_fragments_1007(self):
        """Each fragment alone could be the start or the end of valid text; together they are not."""
        self.refused(frame(OP_TEXT, b'{"id":"\xe2\x82', fin=False) + frame(OP_CONT, b'("}'), 1007)

    def test_truncated_utf8_at_message_end_1007(self):
        self.refused(frame(OP_TEXT, b'{"id":"', fin=False) + frame(OP_CONT, b'\xf0\x9f\x98'), 1007)

    def test_message_over_max_frame_1009(self):
        text = '{"type":"ping","id":"%s"}' % ("x" * MAX_FRAME)
        self.refused(frame(OP_TEXT, text), 1009)

    def test_fragmented_message_over_max_frame_1009(self):
        half = b"x" * (MAX_FRAME // 2 + 1)
        self.refused(frame(OP_TEXT, half, fin=False) + frame(OP_CONT, half), 1009)

    def test_refused_frame_leaves_no_state_for_others(self):
        """Regression: a frame over the limit, refused from its header, left the shard's shared
        wslay context mid-frame, and the next member's good frames were read as its payload (a
        valid message then got 1009, or nothing). Several members after it, on every shard, are
        served normally."""
        for attempt in range(3):
            head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", MAX_FRAME + 100) + os.urandom(4)
            self.refused(head + b"x" * 10, 1009)
            for _ in range(2 * self.threads):
                ws = self.raw(hello=True)
                ws.send_text('{"type":"ping","id":%d}' % attempt)
                ws.recv_json("pong", id=attempt)

    def test_huge_declared_length_1009(self):
        """A header declaring 2^62 bytes is refused from the header: nothing waits for the payload."""
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 62) + os.urandom(4)
        self.refused(head, 1009)

    def test_message_over_max_frame_from_websockets_1009(self):
        async def run():
            ws = await ws_connect(self.server)
            await ws.send("x" * (MAX_FRAME + 1))
            with self.assertRaises(websockets.exceptions.ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            self.assertEqual(ws.close_code, 1009)
        asyncio.run(run())

    def test_invalid_close_code_1002(self):
        for code in (999, 1005, 1006, 1015, 2999):
            with self.subTest(code=code):
                self.refused(frame(OP_CLOSE, close_payload(code)), 1002)

    def test_close_with_one_byte_payload_1002(self):
        self.refused(frame(OP_CLOSE, b"\x03"), 1002)

    def test_refusal_after_a_good_message(self):
        """A member that broke the rules after joining is closed like any other, and leaves its
        rooms (the others see it go)."""
        async def run():
            watcher = await ws_connect(self.server)
            await watcher.send(json.dumps({"type": "hello", "user": "watcher"}))
            await ws_json(watcher, "welcome")
            await watcher.send(json.dumps({"type": "join", "room": "r1002"}))
            await ws_json(watcher, "joined", room="r1002")
            ws = RawWs(self.server)
            try:
                self.hello(ws, "breaker")
                ws.send_text('{"type":"join","room":"r1002"}')
                ws.recv_json("joined", room="r1002")
                await ws_json(watcher, "join", room="r1002", user="breaker")
                ws.send(frame(OP_TEXT, "x", mask=False))
                ws.expect_close(1002)
                await ws_json(watcher, "leave", room="r1002", user="breaker")
            finally:
                ws.close()
                await watcher.close()
        asyncio.run(run())


class Handshake(ServerCase):
    def status_of(self, head):
        status, headers, sock, _ = http_request(self.server.http_port, head)
        sock.close()
        return status, headers

    def test_version_other_than_13_is_426(self):
        for version in ("8", "12", "14", "13, 8", ""):
            with self.subTest(version=version):
                status, headers = self.status_of(upgrade_head(version=version))
                self.assertEqual(status, 426)
                self.assertEqual(headers.get("sec-websocket-version"), "13")

    def test_missing_version_is_426(self):
        status, headers = self.status_of(upgrade_head(version=None))
        self.assertEqual(status, 426)
        self.assertEqual(headers.get("sec-websocket-version"), "13")

    def test_missing_key_is_400(self):
        self.assertEqual(self.status_of(upgrade_head(key=None))[0], 400)

    def test_bad_keys_are_400(self):
        for key in ("", "abc", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                    base64.b64encode(os.urandom(15)).decode(), base64.b64encode(os.urandom(17)).decode(),
                    "!!!!!!!!!!!!!!!!!!!!!!==", "dGhlIHNhbXBsZSBub25jZ==="):
            with self.subTest(key=key):
                self.assertEqual(self.status_of(upgrade_head(key=key))[0], 400)

    def test_get_ws_without_upgrade_is_426(self):
        status, headers = self.status_of(upgrade_head(upgrade=False))
        self.assertEqual(status, 426)
        self.assertEqual(headers.get("upgrade", "").lower(), "websocket")

    def test_upgrade_to_something_else_is_426(self):
        head = upgrade_head(upgrade=False, extra=("Upgrade: h2c", "Connection: Upgrade"))
        self.assertEqual(self.status_of(head)[0], 426)

    def test_upgrade_without_connection_upgrade_is_400(self):
        head = upgrade_head(upgrade=False, extra=("Upgrade: websocket",))
        self.assertIn(self.status_of(head)[0], (400, 426))

    def test_http10_handshake_is_400(self):
        """RFC 6455 4.1: the handshake is an HTTP/1.1 request; 1.0 with every Upgrade header is refused."""
        head = upgrade_head().replace("HTTP/1.1", "HTTP/1.0", 1)
        status, headers, sock, rest = http_request(self.server.http_port, head)
        self.assertEqual(status, 400)
        self.assertNotIn("sec-websocket-accept", headers)
        sock.close()

    def test_two_keys_or_two_versions_are_400(self):
        key = base64.b64encode(os.urandom(16)).decode()
        for extra in (("Sec-WebSocket-Key: " + key,), ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",),
                      ("Sec-WebSocket-Version: 13",)):
            with self.subTest(extra=extra):
                status, headers = self.status_of(upgrade_head(extra=extra))
                self.assertEqual(status, 400)
                self.assertNotIn("sec-websocket-accept", headers)

    def test_post_ws_is_405(self):
        status, headers = self.status_of("POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("allow"), "GET")

    def test_header_names_and_tokens_any_case(self):
        key = base64.b64encode(os.urandom(16)).decode()
        head = ("GET /ws?room=x HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
                "sec-websocket-key: %s\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n" % key)
        status, headers = self.status_of(head)
        self.assertEqual(status, 101)
        self.assertEqual(headers["sec-websocket-accept"], accept_of(key))


class Origins(ServerCase):
    flags = ("--allowed-origin", "http://good.example", "--allowed-origin", "https://also.example")

    def status_of(self, *extra):
        status, headers, sock, _ = http_request(self.server.http_port, upgrade_head(extra=extra))
        sock.close()
        return status

    def test_allowed_origins_get_101(self):
        self.assertEqual(self.status_of("Origin: http://good.example"), 101)
        self.assertEqual(self.status_of("Origin: https://also.example"), 101)

    def test_other_origins_get_403(self):
        for origin in ("http://evil.example", "http://good.example.evil", "http://good.example:8080",
                       "null", "HTTP://GOOD.EXAMPLE.evil"):
            with self.subTest(origin=origin):
                self.assertEqual(self.status_of("Origin: " + origin), 403)

    def test_missing_origin_gets_403(self):
        """With a list, a client that names no Origin is not on it."""
        self.assertEqual(self.status_of(), 403)

    def test_websockets_client_with_good_origin(self):
        async def run():
            ws = await ws_connect(self.server, origin="http://good.example")
            await ws.send('{"type":"hello","user":"origin"}')
            await ws_json(ws, "welcome")
            await ws.send('{"type":"ping","id":1}')
            await ws_json(ws, "pong", id=1)
            await ws.close()
        asyncio.run(run())

    def test_websockets_client_with_bad_origin(self):
        async def run():
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                await ws_connect(self.server, origin="http://evil.example")
            self.assertEqual(cm.exception.status_code, 403)
        asyncio.run(run())


PING_MS, PONG_TIMEOUT_MS = 300, 800


class SlowConsumers(ServerCase):
    """The output limits are one policy for every transport: a WebSocket member that reads nothing
    is closed past the hard limit, counted as a slow consumer, and the room goes on."""
    flags = ("--output-limit", "262144", "--soft-limit", "131072", "--soft-ms", "60000")

    def test_a_websocket_member_that_never_reads_is_closed_and_counted(self):
        slow = self.raw(hello=True)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.send_text(json.dumps({"type": "join", "room": "flood"}))
        slow.recv_json("joined", room="flood")
        pub = self.raw(hello=True)
        pub.send_text(json.dumps({"type": "join", "room": "flood"}))
        pub.recv_json("joined", room="flood")
        text = "y" * 1000
        closed = False
        for batch in range(200):  # up to 20 MB; the kernel's buffers take a few MB first
            for _ in range(100):
                pub.send_text(json.dumps({"type": "message", "room": "flood", "text": text}))
            pub.send_text(json.dumps({"type": "ping", "id": batch}))
            # The publisher reads its own copies up to its pong: it keeps up.
            pub.recv_json("pong", id=batch)
            if "closed: slow consumer: output limit exceeded" in self.server.err.text():
                closed = True
                break
        self.assertTrue(closed, self.server.err.text()[-2000:])
        # The room goes on for the others.
        pub.send_text(json.dumps({"type": "message", "room": "flood", "text": "after"}))
        pub.recv_json("message", text="after")
        self.server.signal(signal.SIGUSR1)
        m = self.server.err.wait_for(r"stats: .*closed slow_consumer=(\d+)", TIMEOUT)
        self.assertEqual(int(m.group(1)), 1)

    def test_a_client_that_sends_pings_and_reads_nothing_is_closed_as_a_ping_flood(self):
        """The pongs wslay answers with are bounded before the output limit: a client that pings on
        while more than 64 KiB of its pongs wait unread is closed at once (a reset), long before the
        output limit (256 KiB here) or the kernel's buffers (a few MB) are full of them."""
        ws = self.raw(hello=True)
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ping = frame(OP_PING, b"p" * 125)
        start = len(self.server.err.text())
        # Up to 200,000 pings: 25 MB of pongs, past what the kernel's buffers on both sides hold.
        for _ in range(1600):
            try:
                ws.send(ping * 125)
            except OSError:
                break  # the server gave up on us
            if "closed: WebSocket: ping flood" in self.server.err.text()[start:]:
                break
        self.server.err.wait_for(r"closed: WebSocket: ping flood: \d+ bytes of pongs owed while the peer does not "
                                 r"read \(at most 65536\)", TIMEOUT)
        self.assertNotIn("slow consumer", self.server.err.text()[start:])


def cpu_seconds(pid):
    """A process's CPU time so far (utime + stime from /proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PingFlood(ServerCase):
    """A client that sends pings as fast as it can and never reads costs the server little: closed
    as a ping flood, or (after a protocol error) reset once it has sent more than the lingering
    close's budget, instead of being read and dropped for the linger's 5 s (GBs on loopback).
    At most 1 s of the server's CPU (3 s for a sanitizer's build); before, 2.4 s in Release."""
    flags = ()
    MAX_CPU = 3.0 if chatproc.sanitized() else 1.0

    def flood(self, first):
        ws = self.raw()
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws.sock.settimeout(0.5)
        ws.send(first)
        block = frame(OP_PING, b"p" * 125) * 512
        before = cpu_seconds(self.server.proc.pid)
        deadline = time.monotonic() + 3 * TIMEOUT
        sent, ended = 0, None
        while ended is None and time.monotonic() < deadline:
            try:
                sent += ws.sock.send(block)
            except socket.timeout:
                continue
            except OSError as e:
                ended = e
        self.assertIsInstance(ended, (ConnectionResetError, BrokenPipeError), "still sending after %d bytes" % sent)
        return cpu_seconds(self.server.proc.pid) - before

    def test_pings_that_are_never_read(self):
        start = len(self.server.err.lines)
        cpu = self.flood(b"")
        self.server.err.wait_for(r"closed: WebSocket: ping flood", TIMEOUT, start=start)
        self.assertLess(cpu, self.MAX_CPU)

    def test_pings_after_a_protocol_error_reset_past_the_linger_budget(self):
        start = len(self.server.err.lines)
        cpu = self.flood(frame(OP_PING, b"", mask=False))  # 1002, then the lingering close
        self.server.err.wait_for(r"closed: WebSocket protocol error \(close 1002\) \(reset: \d+ bytes more came "
                                 r"after the close, over 262144\)", TIMEOUT, start=start)
        self.assertLess(cpu, self.MAX_CPU)


class FrameTimeout(ServerCase):
    """--frame-timeout-ms on WebSocket members (slowloris): a frame trickled a byte at a time, or a
    message sent in fragments that never ends, is closed (1008) once the timeout has passed since it
    began, not before; a member sending whole messages as slowly is not."""
    TIMEOUT_MS = 800
    flags = ("--max-frame", str(MAX_FRAME), "--frame-timeout-ms", str(TIMEOUT_MS))

    def closed_while_sending(self, ws, pieces):
        """Sends `pieces`, waiting up to 100 ms after each for a server frame; returns the seconds from
        the first piece to the server's close frame (asserted 1008, naming the frame timeout)."""
        start = time.monotonic()
        for piece in pieces:
            try:
                ws.send(piece)
            except OSError:
                break
            if select.select([ws.sock], [], [], 0.1)[0] or ws.buf:
                fin, op, payload = ws.recv_frame()
                self.assertEqual(op, OP_CLOSE, payload[:200])
                self.assertEqual(struct.unpack("!H", payload[:2])[0], 1008)
                self.assertIn(b"--frame-timeout-ms", payload)
                return time.monotonic() - start
        self.fail("not closed while the pieces were sent")

    def test_a_frame_trickled_byte_by_byte_is_closed_after_the_timeout(self):
        ws = self.raw(hello=True)
        whole = frame(OP_TEXT, json.dumps({"type": "ping", "id": "x" * 180}))
        took = self.closed_while_sending(ws, [whole[:8]] + [whole[i:i + 1] for i in range(8, len(whole))])
        self.assertGreaterEqual(took, self.TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(took, self.TIMEOUT_MS / 1000 + TIMEOUT / 2)

    def test_a_message_in_fragments_that_never_ends_is_closed_after_the_timeout(self):
        ws = self.raw(hello=True)
        pieces = [frame(OP_TEXT, '{"type":', fin=False)] + [frame(OP_CONT, " ", fin=False)] * 200
        took = self.closed_while_sending(ws, pieces)
        self.assertGreaterEqual(took, self.TIMEOUT_MS / 1000 * 0.9)

    def test_whole_messages_as_slow_keep_the_member(self):
        ws = self.raw(hello=True)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 2.5 * self.TIMEOUT_MS / 1000:
            n += 1
            ws.send_text(json.dumps({"type": "ping", "id": n}))
            ws.recv_json("pong", id=n)
            select.select([ws.sock], [], [], 0.1)  # paced: at most a message every 100 ms
        self.assertGreater(n, 5)


class KeepAlive(ServerCase):
    """The server pings a member silent for --ws-ping-ms and closes one that does not answer
    within --ws-pong-timeout-ms."""
    flags = ("--ws-ping-ms", str(PING_MS), "--ws-pong-timeout-ms", str(PONG_TIMEOUT_MS))

    def test_silent_member_is_pinged_then_closed(self):
        """The wait after the ping is the server's own figure, from the reason it logs for the close:
        timed here from this side's read of the ping, a late read (a busy machine) shrinks it. What
        this side measures is only what lateness here can make longer: from before the handshake, the
        ping not before --ws-ping-ms, the close not before both timeouts; the close not absurdly late."""
        mark = len(self.server.err.lines)
        start = time.monotonic()  # before the handshake: the server counts the silence from after it
        ws = self.raw()
        fin, op, payload = ws.recv_frame()
        pinged = time.monotonic()
        self.assertEqual(op, OP_PING)
        self.assertGreaterEqual(pinged - start, (PING_MS - 1) / 1000)  # one clock, the same on both sides
        ws.expect_eof()  # no answer: closed
        closed = time.monotonic()
        # The server's silence and its wait after the ping both began after `start`.
        self.assertGreaterEqual(closed - start, (PING_MS + PONG_TIMEOUT_MS - 1) / 1000)
        self.assertLess(closed - pinged, PONG_TIMEOUT_MS / 1000 + TIMEOUT / 2)
        m = self.server.err.wait_for(r"closed: WebSocket: no answer to a ping in (\d+) ms "
                                     r"\(--ws-pong-timeout-ms (\d+)\)", TIMEOUT, start=mark)
        self.assertEqual(int(m.group(2)), PONG_TIMEOUT_MS)
        self.assertGreaterEqual(int(m.group(1)), PONG_TIMEOUT_MS)

    def test_member_answering_pings_stays(self):
        ws = self.raw()
        start = time.monotonic()
        pings = 0
        while pings < 4:
            fin, op, payload = ws.recv_frame()
            self.assertEqual(op, OP_PING)
            ws.send(frame(OP_PONG, payload))
            pings += 1
        # Four rounds took longer than the pong timeout: the answers kept the member.
        self.assertGreater(time.monotonic() - start, PONG_TIMEOUT_MS / 1000)
        self.hello(ws)
        ws.send_text('{"type":"ping","id":"alive"}')
        ws.recv_json("pong", id="alive")

    def test_websockets_client_answers_and_stays(self):
        """python-websockets answers the server's pings by itself; after several ping rounds its
        connection is still open and served."""
        async def run():
            ws = await ws_connect(self.server)
            try:
                # Time passing is the thing tested here: three pong timeouts.
                await asyncio.sleep(3 * PONG_TIMEOUT_MS / 1000)
                await ws.send('{"type":"hello","user":"later"}')
                await ws_json(ws, "welcome")
                await ws.send('{"type":"ping","id":"later"}')
                await ws_json(ws, "pong", id="later")
            finally:
                await ws.close()
            self.assertEqual(ws.close_code, 1000)
        asyncio.run(run())


class Shutdown(unittest.TestCase):
    def stay_until_sigterm(self, flags, reason, code):
        server = chatproc.ChatServer(SERVER, *flags, threads=2)
        try:
            ws = RawWs(server)
            ws.send_text('{"type":"hello","user":"stayer"}')
            ws.recv_json("welcome")
            ws.send_text('{"type":"ping","id":0}')
            ws.recv_json("pong", id=0)
            server.signal()
            ws.recv_json("reconnect", reason=reason)
            ws.expect_close(code)
            ws.close()
        finally:
            server.stop()

    def test_members_are_told_to_reconnect_and_get_1012_when_sigterm_drains(self):
        self.stay_until_sigterm(("--drain-ms", "500"), "server draining", 1012)

    def test_members_are_told_to_reconnect_and_get_1001_on_sigterm_without_a_drain(self):
        self.stay_until_sigterm(("--drain-ms", "0"), "server shutting down", 1001)


def main():
    global SERVER
    SERVER = chatproc.server_path(sys.argv)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
