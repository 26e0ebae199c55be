#!/usr/bin/python3
"""--auth-secret with clients that are not ours, and tokens made without our code: the Python and
shell token makers of docs/OPERATIONS.md (taken from the document itself, so that what it shows is
what is tested), a WebSocket client (Debian's python3-websockets) and a raw TCP one; the server's
--mint-token checked with Python's hmac; the counters in /metrics (read by Debian's
python3-prometheus-client) against the SIGUSR1 line.

Run: /usr/bin/python3 tests/web/auth_test.py build/bin/chat-server [unittest args]
(or set CHAT_SERVER, or TEST_PROGRAM_DIR to test another build's chat-server).
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import chatproc  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
import websockets  # noqa: E402  (Debian's python3-websockets)
import websockets.exceptions  # noqa: E402

SERVER = chatproc.server_path(sys.argv)
TIMEOUT = 30.0 if chatproc.sanitized() else 10.0
OPERATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "OPERATIONS.md")


def doc_block(language, must_contain):
    """The fenced block of `language` in docs/OPERATIONS.md that contains `must_contain`."""
    with open(OPERATIONS, encoding="utf-8") as f:
        text = f.read()
    for m in re.finditer(r"```%s\n(.*?)```" % re.escape(language), text, re.S):
        if must_contain in m.group(1):
            return m.group(1)
    raise AssertionError("docs/OPERATIONS.md has no ```%s block with %r" % (language, must_contain))


# The document's Python token maker, as it is written there.
DOC = {}
exec(doc_block("python", "def mint_token"), DOC)  # noqa: S102 (our own document)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_made(secret, payload, header=None):
    """A token made here, apart from the document's maker too."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def mint_by_server(secret_file, user, *extra):
    out = subprocess.run([SERVER, "--auth-secret", secret_file, "--mint-token", user, *extra],
                         capture_output=True, timeout=TIMEOUT, check=True)
    return out.stdout.decode().strip()


def mint_by_shell(secret_file, user, ttl="3600"):
    script = doc_block("sh", "openssl dgst")
    out = subprocess.run(["/bin/sh", "-c", script, "mint-token", user, ttl], capture_output=True, timeout=TIMEOUT,
                         check=True, env=dict(os.environ, SECRET_FILE=secret_file))
    return out.stdout.decode().strip()


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.secret_file = os.path.join(cls.dir.name, "auth-secret")
        with open(cls.secret_file, "w") as f:
            f.write(os.urandom(32).hex() + "\n")  # as openssl rand -hex 32 makes it
        cls.secret = DOC["read_secret"](cls.secret_file)
        assert len(cls.secret) == 64

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_the_three_makers_make_one_format_and_the_server_checks_it(self):
        server_token = mint_by_server(self.secret_file, "ann", "--token-ttl", "600")
        python_token = DOC["mint_token"](self.secret, "ann", 600)
        shell_token = mint_by_shell(self.secret_file, "ann", "600")
        for token in (server_token, python_token, shell_token):
            header, payload, signature = token.split(".")
            self.assertEqual(json.loads(unb64url(header)), {"alg": "HS256", "typ": "JWT"})
            claims = json.loads(unb64url(payload))
            self.assertEqual(claims["sub"], "ann")
            self.assertEqual(claims["exp"] - claims["iat"], 600)
            self.assertLessEqual(abs(claims["iat"] - time.time()), 5)
            expected = hmac.new(self.secret, (header + "." + payload).encode(), hashlib.sha256).digest()
            self.assertEqual(unb64url(signature), expected, token)
            self.assertNotIn("=", token)
        # Made in the same second, they are the same bytes.
        for _ in range(3):
            a, b, c = (mint_by_server(self.secret_file, "bo"), DOC["mint_token"](self.secret, "bo"),
                       mint_by_shell(self.secret_file, "bo"))
            if a.split(".")[1] == b.split(".")[1] == c.split(".")[1]:
                self.assertEqual(a, b)
                self.assertEqual(a, c)
                break
        else:
            self.fail("three makers never agreed within one second")
        # With --config, the secret comes from [auth] secret.
        config = os.path.join(self.dir.name, "chat.toml")
        with open(config, "w") as f:
            f.write('[auth]\nsecret = "%s"\n' % self.secret_file)
        out = subprocess.run([SERVER, "--config", config, "--mint-token", "cfg"], capture_output=True,
                             timeout=TIMEOUT, check=True)
        self.assertEqual(json.loads(unb64url(out.stdout.decode().split(".")[1]))["sub"], "cfg")

    def test_websocket_and_tcp_with_tokens_made_elsewhere_and_the_counters(self):
        server = chatproc.ChatServer(SERVER, "--auth-secret", self.secret_file)
        try:
            asyncio.run(self.scenario(server))
        finally:
            server.stop()

    def test_a_native_hello_over_the_frame_limit_is_answered_in_native_json(self):
        """A hello whose token makes it longer than --max-frame (1 MB, and 1.2 MB: past what the
        framer discards) is a native client's: answered with the native error line, not in the
        article's words; with --auth-secret `unauthorized` and the close, without it `too_long`
        and the connection kept for a proper hello."""
        for auth in (True, False):
            # A client that writes its members sorted puts the token before the type.
            for size, sort_keys in ((1_000_000, False), (1_200_000, False), (1_000_000, True)):
                with self.subTest(auth=auth, size=size, sort_keys=sort_keys):
                    flags = ("--auth-secret", self.secret_file) if auth else ()
                    server = chatproc.ChatServer(SERVER, *flags)
                    try:
                        asyncio.run(self.overlong_hello(server, auth, size, sort_keys))
                    finally:
                        server.stop()

    async def overlong_hello(self, server, auth, size, sort_keys):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        hello = {"type": "hello", "user": "eve", "token": "e" * size}
        writer.write((json.dumps(hello, sort_keys=sort_keys) + "\n").encode())
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        answer = json.loads(line)  # JSON, not the article's "authentication required: ..." line
        self.assertEqual(answer["type"], "error", answer)
        self.assertEqual(answer["code"], "unauthorized" if auth else "too_long", answer)
        self.assertIn("hello", answer["message"])
        if auth:
            self.assertEqual(await asyncio.wait_for(reader.read(), TIMEOUT), b"")  # closed after it
        elif size < 1_048_576:  # within what is discarded: the stream goes on, a proper hello is taken
            writer.write(b'{"type":"hello","user":"eve"}\n')
            self.assertEqual(json.loads(await asyncio.wait_for(reader.readline(), TIMEOUT)),
                             {"type": "welcome", "user": "eve"})
        writer.close()

    async def scenario(self, server):
        url = "ws://127.0.0.1:%d/ws" % server.http_port

        async def hello(ws, user, token=None):
            msg = {"type": "hello", "user": user}
            if token is not None:
                msg["token"] = token
            await ws.send(json.dumps(msg))
            return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))

        # Accepted: the document's Python maker over WebSocket, the shell's over TCP.
        web = await websockets.connect(url)
        self.assertEqual(await hello(web, "wen", DOC["mint_token"](self.secret, "wen", 60)),
                         {"type": "welcome", "user": "wen"})
        await web.send(json.dumps({"type": "join", "room": "r"}))
        while json.loads(await asyncio.wait_for(web.recv(), TIMEOUT)).get("type") != "joined":
            pass
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((json.dumps({"type": "hello", "user": "tee", "token": mint_by_shell(self.secret_file, "tee")})
                      + "\n").encode())
        self.assertEqual(json.loads(await asyncio.wait_for(reader.readline(), TIMEOUT))["type"], "welcome")
        writer.write(b'{"type":"join","room":"r"}\n{"type":"message","room":"r","text":"from tcp"}\n')
        while True:
            got = json.loads(await asyncio.wait_for(web.recv(), TIMEOUT))
            if got.get("type") == "message":
                self.assertEqual((got["user"], got["text"]), ("tee", "from tcp"))
                break

        # Refused over WebSocket: said, then a close frame 1008 (policy violation).
        now = int(time.time())
        refusals = [
            ("missing", None, "needs a token"),
            ("expired", hand_made(self.secret, {"sub": "eve", "exp": now - 3600}), "token expired"),
            ("other secret", hand_made(b"x" * 64, {"sub": "eve", "exp": now + 600}), "bad token signature"),
            ("alg none", b64url(b'{"alg":"none"}') + "." + b64url(json.dumps({"sub": "eve", "exp": now + 600}).encode())
             + ".", "not signed with HS256"),
            ("another user's", DOC["mint_token"](self.secret, "wen2", 60), "for another user"),
            # Correctly signed, but never expiring, or expiring past the documented maximum.
            ("never expires", hand_made(self.secret, {"sub": "eve", "exp": 1e300}), "more than 366 days ahead"),
            ("two years", hand_made(self.secret, {"sub": "eve", "exp": now + 2 * 365 * 86400}),
             "more than 366 days ahead"),
        ]
        for what, token, says in refusals:
            with self.subTest(what):
                ws = await websockets.connect(url)
                answer = await hello(ws, "eve", token)
                self.assertEqual(answer["type"], "error")
                self.assertEqual(answer["code"], "unauthorized")
                self.assertIn(says, answer["message"])
                with self.assertRaises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
                self.assertEqual(ws.close_code, 1008)
        # The members in were not touched.
        await web.send(json.dumps({"type": "ping", "id": 5}))
        while json.loads(await asyncio.wait_for(web.recv(), TIMEOUT)).get("type") != "pong":
            pass

        # The counters: /metrics against SIGUSR1.
        hr, hw = await asyncio.open_connection("127.0.0.1", server.http_port)
        hw.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(hr.readuntil(b"\r\n\r\n"), TIMEOUT)
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        text = (await asyncio.wait_for(hr.readexactly(length), TIMEOUT)).decode()
        hw.close()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        accepted = samples[("chat_auth_total", (("result", "accepted"),))]
        refused = samples[("chat_auth_total", (("result", "refused"),))]
        self.assertEqual((accepted, refused), (2, len(refusals)))
        self.assertEqual(samples[("chat_closes_total", (("reason", "unauthorized"),))], refused)
        before = len(server.err.lines)
        server.signal(signal.SIGUSR1)
        line = server.err.wait_for(r"stats: .*\bauth accepted=(\d+) refused=(\d+)", TIMEOUT, start=before)
        self.assertEqual((int(line.group(1)), int(line.group(2))), (accepted, refused))
        # No token in the log.
        self.assertNotIn("eyJ", server.err.text())
        writer.close()
        await web.close()


if __name__ == "__main__":
    unittest.main()
