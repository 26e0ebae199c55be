#!/usr/bin/python3
"""HTTP tests for chat-server's --http-port, with clients that are not ours (http.client and raw
sockets): the page's files with their headers and validators, HEAD, keep-alive and pipelining in
order, the error statuses and their limits, the request timeout against slow clients, directory
traversal in every spelling we know (and symlinks out of --web-root), and /healthz.

Run: /usr/bin/python3 tests/web/http_test.py build/bin/chat-server [unittest args]
(or set CHAT_SERVER, or TEST_PROGRAM_DIR to test another build's chat-server).
"""
import email.utils
import http.client
import os
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import chatproc  # noqa: E402

SERVER = None  # set in main
TIMEOUT = 30.0 if chatproc.sanitized() else 10.0
INDEX = b"<!doctype html><title>test page</title><p>hello from the web root</p>\n"
APP_JS = b"console.log('app');\n"
SECRET = b"SECRET-OUTSIDE-THE-ROOT\n"


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


class Conn:
    """A raw HTTP/1.1 connection: send bytes, read responses one at a time (Content-Length bodies)."""

    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete response within %.1f s (have %r)" % (self.timeout, self.buf[:200]))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            return True
        if not chunk:
            return False
        self.buf += chunk
        return True

    def response(self, head_only=False):
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._more(deadline):
                raise AssertionError("connection closed before a response (have %r)" % self.buf[:200])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        if version != "HTTP/1.1":
            raise AssertionError("status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            if k.lower() in headers:
                raise AssertionError("header %s twice" % k)
            headers[k.strip().lower()] = v.strip()
        n = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            if not self._more(deadline):
                raise AssertionError("connection closed inside a body")
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(int(status), headers, body)

    def closed(self, timeout=None):
        """True once the server has closed the connection (nothing more arrives), within `timeout`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if not self._more(deadline):
                return self.buf == b""
        return False

    def close(self):
        self.sock.close()


def request(method, target, headers=(), body=b"", version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version), "Host: 127.0.0.1"] + list(headers)
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class WebRootCase(unittest.TestCase):
    """A server on a temporary --web-root: index.html, app.js, a subdirectory, a symlink to a file
    outside the root and one to a directory outside it; secret.txt lives beside the root."""
    flags = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chat-http-test-")
        root = os.path.join(cls.tmp, "root")
        os.makedirs(os.path.join(root, "sub"))
        outside = os.path.join(cls.tmp, "outside")
        os.makedirs(outside)
        for path, data in (("root/index.html", INDEX), ("root/app.js", APP_JS), ("root/sub/index.html", b"sub\n"),
                           ("root/sub/a.txt", b"a\n"), ("root/b.txt", b"b\n"), ("secret.txt", SECRET),
                           ("outside/secret.txt", SECRET)):
            with open(os.path.join(cls.tmp, path), "wb") as f:
                f.write(data)
        os.symlink(os.path.join(cls.tmp, "secret.txt"), os.path.join(root, "link.txt"))
        os.symlink(outside, os.path.join(root, "outdir"))
        os.symlink(os.path.join(root, "app.js"), os.path.join(root, "inside-link.js"))
        cls.root = root
        cls.server = chatproc.ChatServer(SERVER, "--web-root", root, *cls.flags)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            shutil.rmtree(cls.tmp)

    def conn(self):
        c = Conn(self.server.http_port)
        self.addCleanup(c.close)
        return c

    def get(self, target, headers=(), method="GET"):
        c = self.conn()
        c.send(request(method, target, headers))
        return c.response(head_only=(method == "HEAD"))


class Files(WebRootCase):
    def test_get_root_serves_index(self):
        r = self.get("/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, INDEX)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("content-length"), str(len(INDEX)))
        date = email.utils.parsedate_to_datetime(r.header("date"))
        self.assertLess(abs(date.timestamp() - time.time()), 120)
        self.assertTrue(r.header("date").endswith(" GMT"))
        etag = r.header("etag")
        self.assertRegex(etag, r'^"[^"]+"$')  # a strong validator
        self.assertIsNotNone(r.header("cache-control"))
        self.assertEqual(self.get("/index.html").body, INDEX)
        self.assertEqual(self.get("/index.html").header("etag"), etag)

    def test_content_types(self):
        r = self.get("/app.js")
        self.assertEqual((r.status, r.body), (200, APP_JS))
        self.assertEqual(r.header("content-type"), "text/javascript; charset=utf-8")
        self.assertEqual(self.get("/b.txt").header("content-type"), "text/plain; charset=utf-8")

    def test_query_string_is_ignored(self):
        self.assertEqual(self.get("/app.js?v=123").body, APP_JS)

    def test_subdirectory_index(self):
        self.assertEqual(self.get("/sub/").body, b"sub\n")
        self.assertEqual(self.get("/sub/a.txt").body, b"a\n")

    def test_if_none_match_gives_304(self):
        etag = self.get("/").header("etag")
        c = self.conn()
        c.send(request("GET", "/", ["If-None-Match: " + etag]))
        r = c.response()
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("etag"), etag)
        self.assertIsNone(r.header("content-length"))
        # The 304 had no body: the next response on the connection starts right after its head.
        c.send(request("GET", "/b.txt"))
        self.assertEqual(c.response().body, b"b\n")
        c.send(request("GET", "/", ['If-None-Match: "not-the-etag"']))
        self.assertEqual(c.response().status, 200)

    def test_head_has_headers_and_no_body(self):
        c = self.conn()
        c.send(request("HEAD", "/") + request("GET", "/b.txt"))
        r = c.response(head_only=True)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), str(len(INDEX)))
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        r2 = c.response()  # begins right after the HEAD's headers: no body was sent
        self.assertEqual((r2.status, r2.body), (200, b"b\n"))

    def test_head_errors_have_no_body(self):
        """Regression: a HEAD answered 404 or 405 carried the error page, which a keep-alive client
        then read as the start of the next response."""
        c = self.conn()
        c.send(request("HEAD", "/nope") + request("HEAD", "/ws") + request("GET", "/b.txt"))
        r = c.response(head_only=True)
        self.assertEqual(r.status, 404)
        self.assertNotEqual(r.header("content-length"), "0")  # the length a GET would have had
        r = c.response(head_only=True)
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET")
        r = c.response()
        self.assertEqual((r.status, r.body), (200, b"b\n"))

    def test_keep_alive_two_requests_one_connection(self):
        hc = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=TIMEOUT)
        self.addCleanup(hc.close)
        hc.request("GET", "/")
        r = hc.getresponse()
        self.assertEqual(r.read(), INDEX)
        sock = hc.sock
        self.assertIsNotNone(sock)
        hc.request("GET", "/app.js")
        r = hc.getresponse()
        self.assertEqual(r.read(), APP_JS)
        self.assertIs(hc.sock, sock, "the second request needed a new connection")

    def test_pipelined_requests_answered_in_order(self):
        c = self.conn()
        c.send(request("GET", "/b.txt") + request("GET", "/nope") + request("GET", "/app.js"))
        got = [c.response() for _ in range(3)]
        self.assertEqual([(r.status, r.body if r.status == 200 else None) for r in got],
                         [(200, b"b\n"), (404, None), (200, APP_JS)])
        # Many more in one write, and split at awkward places.
        data = b"".join(request("GET", "/sub/a.txt" if i % 2 else "/b.txt") for i in range(50))
        c.send(data[:7])
        c.send(data[7:1000])
        c.send(data[1000:])
        for i in range(50):
            self.assertEqual(c.response().body, b"a\n" if i % 2 else b"b\n")

    def test_http10_closes_after_answer(self):
        c = self.conn()
        c.send(request("GET", "/b.txt", version="HTTP/1.0"))
        r = c.response()
        self.assertEqual(r.body, b"b\n")
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed())

    def test_connection_close_is_honoured(self):
        c = self.conn()
        c.send(request("GET", "/b.txt", ["Connection: close"]))
        self.assertEqual(c.response().header("connection"), "close")
        self.assertTrue(c.closed())


class Errors(WebRootCase):
    def test_malformed_request_400(self):
        for bad in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"):
            with self.subTest(request=bad):
                c = self.conn()
                c.send(bad)
                r = c.response()
                self.assertEqual(r.status, 400)
                self.assertEqual(r.header("connection"), "close")
                self.assertTrue(c.closed())

    def test_obsolete_line_folding_400(self):
        """RFC 9112 5.2: a header line starting with a space or a tab (obs-fold) is refused, not
        taken as more of the value before it; also when the fold arrives in a later read."""
        for folded in (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
                       b"GET /index.html HTTP/1.1\r\nX-A: one\r\n\ttwo\r\nHost: a\r\n\r\n",
                       b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection:\r\n Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"):
            for split in (None, folded.index(b"\r\n ") + 2 if b"\r\n " in folded else folded.index(b"\r\n\t") + 2):
                with self.subTest(request=folded, split=split):
                    c = self.conn()
                    if split is None:
                        c.send(folded)
                    else:
                        c.send(folded[:split])
                        c.send(folded[split:])  # the server has read the first part or not: either way
                    r = c.response()
                    self.assertEqual(r.status, 400)
                    self.assertIn(b"folding", r.body)
                    self.assertTrue(c.closed())

    def test_unsupported_version_505(self):
        c = self.conn()
        c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
        self.assertEqual(c.response().status, 505)

    def test_not_found_404_keeps_connection(self):
        c = self.conn()
        c.send(request("GET", "/no-such-file.html"))
        r = c.response()
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        c.send(request("GET", "/b.txt"))
        self.assertEqual(c.response().status, 200)

    def test_directory_without_index_404(self):
        os.makedirs(os.path.join(self.root, "empty"), exist_ok=True)
        self.assertEqual(self.get("/empty/").status, 404)
        self.assertEqual(self.get("/sub").status, 404)  # a directory is not a file

    def test_method_not_allowed_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method=method):
                c = self.conn()
                c.send(request(method, "/", body=b"x=1" if method in ("POST", "PUT") else b""))
                r = c.response()
                self.assertEqual(r.status, 405)
                allow = {m.strip() for m in r.header("allow").split(",")}
                self.assertEqual(allow, {"GET", "HEAD"})
                # The body was read: the connection goes on with the next request.
                c.send(request("GET", "/b.txt"))
                self.assertEqual(c.response().body, b"b\n")

    def test_body_over_limit_413(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n")
        r = c.response()  # refused from the header: no body was sent
        self.assertEqual(r.status, 413)
        self.assertTrue(c.closed())

    def test_chunked_body_over_limit_413(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 16384
        status = None
        for _ in range(8):  # 128 KiB, past the 64 KiB limit
            try:
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
        self.assertEqual(c.response().status, 413)

    def test_headers_over_8k_431(self):
        c = self.conn()
        c.send(request("GET", "/", ["X-Big: " + "a" * 9000]))
        self.assertEqual(c.response().status, 431)
        self.assertTrue(c.closed())

    def test_many_headers_431(self):
        c = self.conn()
        c.send(request("GET", "/", ["X-H%d: v" % i for i in range(200)]))
        self.assertEqual(c.response().status, 431)

    def test_headers_just_under_limit_ok(self):
        c = self.conn()
        c.send(request("GET", "/b.txt", ["X-Big: " + "a" * 7000]))
        self.assertEqual(c.response().status, 200)

    def test_long_target_414(self):
        c = self.conn()
        c.send(request("GET", "/" + "a" * 9000))
        self.assertEqual(c.response().status, 414)
        self.assertTrue(c.closed())


class UpgradesWeDoNotTake(WebRootCase):
    def test_connect_is_answered_once_and_closed(self):
        """llhttp treats CONNECT (and any Upgrade) as the end of HTTP on the connection: it is
        answered once and the connection closes; it never loops on the same request."""
        c = self.conn()
        c.send(b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\nX" + request("GET", "/"))
        r = c.response()
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed(), "the connection stays open after an upgrade we did not take")
        self.assertEqual(self.get("/").status, 200, "the server must still answer")

    def test_h2c_upgrade_to_a_file_is_served_over_http1_then_closed(self):
        c = self.conn()
        c.send(request("GET", "/", ("Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings",
                                    "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA")) + request("GET", "/app.js"))
        r = c.response()
        self.assertEqual((r.status, r.body), (200, INDEX))
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed())
        self.assertEqual(self.get("/app.js").body, APP_JS)


class ClientsThatDoNotRead(WebRootCase):
    flags = ("--http-timeout-ms", "1000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(os.path.join(cls.root, "big.bin"), "wb") as f:
            f.write(os.urandom(200 * 1024))

    def rss_kib(self):
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def test_pipelined_answers_wait_for_the_client_and_all_arrive(self):
        """Answers to pipelined requests are not piled up without bound: the server stops reading
        requests while their answers wait, and goes on as the client reads."""
        before = self.rss_kib()
        s = socket.create_connection(("127.0.0.1", self.server.http_port), timeout=TIMEOUT)
        self.addCleanup(s.close)
        n = 500  # 100 MB of answers if they were all queued at once
        s.sendall(request("GET", "/big.bin") * n)
        time.sleep(0.5)  # the server works on the pipeline meanwhile (time passing is the point)
        grown = self.rss_kib() - before
        self.assertLess(grown, 40 * 1024, "the server queued %d KiB for a client that reads nothing" % grown)
        got = 0
        buf = b""
        deadline = time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = buf[:head_end].decode()
                length = int([l for l in head.split("\r\n") if l.lower().startswith("content-length:")][0].split(":")[1])
                if len(buf) < head_end + 4 + length:
                    break
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
                buf = buf[head_end + 4 + length:]
                got += 1
        self.assertEqual(got, n)

    def test_a_client_that_never_reads_its_last_answer_is_closed(self):
        s = socket.create_connection(("127.0.0.1", self.server.http_port), timeout=TIMEOUT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.addCleanup(s.close)
        s.sendall(request("GET", "/big.bin") * 40 + request("GET", "/big.bin", ("Connection: close",)))
        self.server.err.wait_for(r"closed: HTTP client did not read its answer in time", TIMEOUT)


class Traversal(WebRootCase):
    """Nothing outside --web-root is ever served, however the path is spelled."""

    def assert_not_served(self, target):
        c = self.conn()
        c.send(("GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target).encode("latin-1"))
        r = c.response()
        self.assertNotIn(b"SECRET", r.body, target)
        self.assertEqual(r.status, 404, target)

    def test_dot_dot(self):
        for target in ("/../secret.txt", "/sub/../../secret.txt", "/../../../../etc/passwd", "/./b.txt",
                       "/sub/../b.txt", "/..", "/sub/..", "/sub/."):
            with self.subTest(target=target):
                self.assert_not_served(target)

    def test_encoded_dot_dot(self):
        for target in ("/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/%2E%2E%2Fsecret.txt", "/..%2fsecret.txt",
                       "/..%2Fsecret.txt", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/sub%2f..%2f..%2fsecret.txt",
                       "/.%2e/secret.txt", "/%2e./secret.txt", "/..%5csecret.txt", "/..\\secret.txt",
                       "/%2e%2e%5csecret.txt"):
            with self.subTest(target=target):
                self.assert_not_served(target)

    def test_double_encoded(self):
        """%25 decodes to '%' once, and only once: "%252e%252e" names a file called "%2e%2e"."""
        for target in ("/%252e%252e/secret.txt", "/%252E%252E%252Fsecret.txt", "/%25%32%65%25%32%65/secret.txt"):
            with self.subTest(target=target):
                self.assert_not_served(target)

    def test_nul_and_bad_escapes(self):
        for target in ("/b.txt%00.html", "/%zz", "/%2", "/%", "/secret.txt%00"):
            with self.subTest(target=target):
                self.assert_not_served(target)

    def test_absolute_and_odd_targets(self):
        for target in ("//secret.txt", "/" + self.tmp + "/secret.txt", "//" + self.tmp + "/secret.txt"):
            with self.subTest(target=target):
                self.assert_not_served(target)

    def test_symlink_out_of_root(self):
        self.assert_not_served("/link.txt")
        self.assert_not_served("/outdir/secret.txt")
        # A symlink that stays inside the root is just another name for a file there.
        self.assertEqual(self.get("/inside-link.js").body, APP_JS)


class SlowClients(WebRootCase):
    flags = ("--http-timeout-ms", "1000")

    def test_trickled_request_gets_408(self):
        """A request sent a byte every 300 ms never completes within the 1 s timeout: 408, then
        closed, within about the timeout whatever the trickle."""
        c = self.conn()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        data = request("GET", "/b.txt", ["X-Padding: " + "p" * 40])
        answered = None
        for i in range(len(data)):
            try:
                c.send(data[i:i + 1])
            except OSError:
                break
            # Time passing is what this test is about: the trickle.
            c.sock.settimeout(0.3)
            try:
                chunk = c.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            c.buf += chunk
            answered = time.monotonic() - start
            break
        self.assertIsNotNone(answered, "the whole request went through without an answer")
        self.assertTrue(c.buf.startswith(b"HTTP/1.1 408 "), c.buf[:100])
        self.assertGreater(answered, 0.8)
        self.assertLess(answered, 3.0 if not chatproc.sanitized() else 6.0)
        r = c.response()
        self.assertEqual(r.status, 408)
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed(5))

    def test_idle_connection_gets_408_and_is_closed(self):
        """PROTOCOL.md (Errors): a request not complete within --http-timeout-ms of the connection or
        of the previous answer gets a 408, and the connection closes. Both kinds of idle: a
        connection that never sent a byte, and a kept-alive one after an answer. Each 408 is read
        no sooner than the timeout after a moment before the server began counting."""
        start_never = time.monotonic()  # before the connection: the server counts from its accept
        never = self.conn()
        used = self.conn()
        start_used = time.monotonic()  # before the request: the server counts from its answer
        used.send(request("GET", "/b.txt"))
        r = used.response()
        self.assertEqual((r.status, r.body), (200, b"b\n"))
        self.assertEqual(r.header("connection"), "keep-alive")
        for c, start in ((never, start_never), (used, start_used)):
            r = c.response()
            self.assertEqual(r.status, 408)
            self.assertGreaterEqual(time.monotonic() - start, 0.999)  # --http-timeout-ms 1000
            self.assertEqual(r.header("connection"), "close")
            self.assertTrue(c.closed(5), c.buf[:200])

    def test_timeout_restarts_after_each_answer(self):
        """Keep-alive: each request has the whole timeout, counted from the previous answer."""
        c = self.conn()
        for _ in range(3):
            c.send(request("GET", "/b.txt"))
            self.assertEqual(c.response().status, 200)
            time.sleep(0.6)  # within the timeout each time, more than it in total
        c.send(request("GET", "/b.txt"))
        self.assertEqual(c.response().status, 200)


class ManySlowClients(WebRootCase):
    flags = ("--http-timeout-ms", "20000")

    def test_200_slow_connections_do_not_stop_a_normal_request(self):
        slow = []
        try:
            for i in range(200):
                s = socket.create_connection(("127.0.0.1", self.server.http_port), timeout=TIMEOUT)
                s.sendall(b"GET /b.txt HTTP/1.1\r\nHost: a\r\nX-Slow: ")  # and nothing more
                slow.append(s)
            start = time.monotonic()
            c = self.conn()
            c.send(request("GET", "/"))
            r = c.response()
            self.assertEqual((r.status, r.body), (200, INDEX))
            self.assertLess(time.monotonic() - start, 5)
            # The slow ones are still open (the timeout is far): served alongside, not after.
            for s in slow[:10] + slow[-10:]:
                s.setblocking(False)
                with self.assertRaises(BlockingIOError):
                    s.recv(1)
        finally:
            for s in slow:
                s.close()


class Health(unittest.TestCase):
    def test_healthz_200_then_503_while_draining_then_the_port_closes(self):
        """/healthz is 200 while serving. After SIGTERM, while the drain lasts, 503 "draining" (and the
        connection closed after it) on a kept-alive connection and on a new one. The drain is held
        open on purpose: a drain lasts until its --drain-ms window ends or the last member has gone,
        and one member stays connected through a window far longer than the test. Once the member
        leaves, the drain is over and the graceful stop closes the HTTP connections, an idle one
        without a word, and answers no new one: never a 200 after SIGTERM. (HealthWhileMembersDrain
        below: the later phase, a member's queued output holding the stop after the drain.)"""
        # Every window far longer than the test: the drain held by the member, the HTTP connections
        # closed by the stop itself (not by its grace period's end, nor by their request timeout).
        server = chatproc.ChatServer(SERVER, "--drain-ms", "60000", "--shutdown-grace-ms", "60000",
                                     "--http-timeout-ms", "60000", threads=1)
        member = None
        conns = []
        stopped = False
        try:
            member = server.connect_tcp(timeout=TIMEOUT)
            member.sendall(b'{"type":"hello","user":"holder"}\n')
            got = b""
            while b'"welcome"' not in got:
                chunk = member.recv(65536)
                self.assertTrue(chunk, "the member was closed before its welcome: %r" % got[:200])
                got += chunk
            c = Conn(server.http_port)
            conns.append(c)
            c.send(request("GET", "/healthz"))
            r = c.response()
            self.assertEqual((r.status, r.body), (200, b"ok\n"))
            self.assertEqual(r.header("cache-control"), "no-store")
            c.send(request("HEAD", "/healthz"))
            self.assertEqual(c.response(head_only=True).status, 200)
            idle = Conn(server.http_port)  # says nothing: its end comes with the stop
            conns.append(idle)
            server.signal()
            server.err.wait_for(r"stopping: members closed over 60000 ms", TIMEOUT)
            # The kept-alive connection, then a new one: 503 each, the connection's last answer.
            c.send(request("GET", "/healthz"))
            r = c.response()
            self.assertEqual((r.status, r.body), (503, b"draining\n"))
            self.assertEqual(r.header("connection"), "close")
            self.assertTrue(c.closed(), c.buf[:200])
            c.close()  # the server lingers for this side's end: not to hold the stop up
            c2 = Conn(server.http_port)
            conns.append(c2)
            c2.send(request("GET", "/healthz"))
            r = c2.response()
            self.assertEqual((r.status, r.body), (503, b"draining\n"))
            self.assertEqual(r.header("connection"), "close")
            self.assertTrue(c2.closed(), c2.buf[:200])
            c2.close()
            # The member goes: the drain ends, the stop closes HTTP (the idle connection: no answer).
            member.close()
            member = None
            self.assertTrue(idle.closed(), "an HTTP connection left open, or answered, after the drain: %r"
                            % idle.buf[:200])
            idle.close()
            # And a new connection: refused, or (still in the backlog of a listener that no longer
            # accepts) closed unanswered.
            try:
                late = Conn(server.http_port, timeout=TIMEOUT)
            except ConnectionRefusedError:
                late = None
            if late is not None:
                try:
                    late.send(request("GET", "/healthz"))
                except OSError:
                    pass  # reset already: unanswered
                conns.append(late)
                self.assertTrue(late.closed(), "a new HTTP connection answered after the drain: %r" % late.buf[:200])
            stopped = True
            server.stop()  # exit status 0
            # The stop ended by itself, the HTTP connections closed by it: not by the grace period's end.
            self.assertNotIn("grace period", server.err.text())
        finally:
            for conn in conns:
                conn.close()
            if member is not None:
                member.close()
            if not stopped:
                server.stop()


class HealthWhileMembersDrain(unittest.TestCase):
    def test_healthz_is_503_while_a_slow_member_holds_the_drain(self):
        """A member that does not read keeps its shard flushing after SIGTERM (up to the grace):
        meanwhile /healthz on a new connection answers 503, so a load balancer sees the drain."""
        import json
        import threading
        server = chatproc.ChatServer(SERVER, "--shutdown-grace-ms", "4000", "--output-limit", "67108864",
                                     "--soft-limit", "33554432", "--soft-ms", "60000", threads=1)
        slow = pub = None
        stop = threading.Event()
        try:
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", server.port))
            slow.sendall(b'{"type":"hello","user":"slow"}\n{"type":"join","room":"r"}\n')
            pub = server.connect_tcp(timeout=60)
            pub.sendall(b'{"type":"hello","user":"pub"}\n{"type":"join","room":"r"}\n')

            def drain():  # the publisher reads everything it is sent (its own copies too)
                import select
                while not stop.is_set():
                    try:
                        ready, _, _ = select.select([pub], [], [], 0.2)
                        if ready and not pub.recv(65536):
                            return
                    except (OSError, ValueError):
                        return
            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            text = "x" * 1000
            line = (json.dumps({"type": "message", "room": "r", "text": text}) + "\n").encode()
            pub.sendall(line * 16000)  # 16 MB for a member that reads nothing
            pub.sendall(b'{"type":"ping","id":1}\n')  # the pong comes once all is queued to slow
            server.signal()
            server.err.wait_for(r"stopping", TIMEOUT)
            c = Conn(server.http_port, timeout=5)
            c.send(request("GET", "/healthz"))
            r = c.response()
            self.assertEqual(r.status, 503)
            self.assertEqual(r.body, b"draining\n")
            self.assertEqual(r.header("connection"), "close")
        finally:
            stop.set()
            for sock in (slow, pub):
                if sock:
                    sock.close()
            server.stop()


def main():
    global SERVER
    SERVER = chatproc.server_path(sys.argv)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
