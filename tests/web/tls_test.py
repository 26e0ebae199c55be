"""TLS on every front end, with clients that are not ours: Python's ssl module and the openssl command
(s_client), against certificates from a throw-away authority (tests/tls/make_test_ca.sh). Native
members over TLS and plain in one room, big bursts across records, TLS 1.2's ciphers, TLS 1.1
refused, IRC and HTTPS through s_client, the wrong protocol on either kind of port, handshakes that
never end, SIGHUP reloading the certificate with members connected, a bad reload, start-up errors;
the figures in the SIGUSR1 line and in /metrics (read over HTTPS by Debian's prometheus-client).

Run by ctest (tls.clients) with Debian's /usr/bin/python3: tls_test.py PATH-TO-chat-server.
"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import chatproc  # noqa: E402

SERVER = chatproc.server_path(sys.argv)
TIMEOUT = 30 if chatproc.sanitized() else 10
HANDSHAKE_MS = 3000 if chatproc.sanitized() else 1000
MAKE_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls", "make_test_ca.sh")
CA = None  # the authority's directory (setUpModule)


def setUpModule():
    global CA
    CA = tempfile.mkdtemp(prefix="chat-tls-")
    subprocess.run([MAKE_CA, CA], check=True)


def tearDownModule():
    shutil.rmtree(CA, ignore_errors=True)


def ca_file(name):
    return os.path.join(CA, name)


def trusting(max_version=None, ciphers=None):
    """A client context that trusts the test authority (and checks the host name)."""
    ctx = ssl.create_default_context(cafile=ca_file("ca.pem"))
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_socket(port, ctx=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return (ctx or trusting()).wrap_socket(raw, server_hostname="localhost")
    except Exception:
        raw.close()
        raise


def organisation(sock):
    """The O= of the certificate the server presented."""
    for rdn in sock.getpeercert()["subject"]:
        for key, value in rdn:
            if key == "organizationName":
                return value
    return None


class Member:
    """A native member over `sock` (TLS or plain): JSON lines."""

    def __init__(self, sock, user):
        self.sock = sock
        self.buf = b""
        self.send({"type": "hello", "user": user})
        self.expect("welcome")

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the server closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def expect(self, type_, **fields):
        while True:
            try:
                msg = json.loads(self.line())
            except ValueError:
                continue  # the article's lines before the welcome
            if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    def join(self, room):
        self.send({"type": "join", "room": room})
        self.expect("joined", room=room)

    def pings(self):
        self.send({"type": "ping", "id": 9})
        return self.expect("pong").get("id") == 9

    def close(self):
        self.sock.close()


def closed_by_server(sock, timeout=TIMEOUT):
    """True once the server has closed `sock` (what it still sends is read and dropped)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ssl.SSLError, ConnectionResetError):
        return True
    except socket.timeout:
        return False


def figures(server):
    """The SIGUSR1 line's figures: {'tls failed': N, ...} (group, then name)."""
    before = len(server.err.lines)
    server.signal(signal.SIGUSR1)
    line = server.err.wait_for(r"stats: (.*)$", TIMEOUT, start=before).group(1)
    out = {}
    for group in line.split(";"):
        words = group.split()
        name = next((w for w in words if "=" not in w), "")
        for w in words:
            if "=" in w and w.split("=")[1].isdigit():
                out["%s %s" % (name, w.split("=")[0])] = int(w.split("=")[1])
    return out


def s_client(port, request, expect, extra=()):
    """openssl s_client to `port`, trusting the authority and checking the name, sending `request`;
    its output once `expect` (a regex) is in it (or the deadline)."""
    proc = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                             "-verify_hostname", "localhost", "-CAfile", ca_file("ca.pem"), "-verify_return_error",
                             "-quiet", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    proc.stdin.write(request)
    proc.stdin.flush()
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while not re.search(expect, out.decode("utf-8", "replace")):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    proc.kill()
    proc.wait()
    return out.decode("utf-8", "replace")


class TlsFrontEnds(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = chatproc.ChatServer(SERVER, "--tls-cert", ca_file("server.pem"), "--tls-key", ca_file("server.key"),
                                         "--tls-handshake-timeout-ms", str(HANDSHAKE_MS))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_native_members_over_tls_and_plain_share_a_room(self):
        secure = Member(tls_socket(self.server.tls_port), "secure")
        self.assertEqual(secure.sock.version(), "TLSv1.3")
        self.assertEqual(organisation(secure.sock), "first")
        plain = Member(self.server.connect_tcp(), "plain")
        for m in (secure, plain):
            m.join("mixed")
        secure.send({"type": "message", "room": "mixed", "text": "sent over TLS"})
        self.assertEqual(plain.expect("message", user="secure")["text"], "sent over TLS")
        # A burst of big messages: records of up to 16 KiB, each message cut across them, in order.
        texts = ["%05d " % i + "x" * 1500 for i in range(400)]
        for t in texts:
            plain.send({"type": "message", "room": "mixed", "text": t})
        got = [secure.expect("message", user="plain")["text"] for _ in texts]
        self.assertEqual(got, texts)
        secure.close()
        plain.close()

    def test_tls12_takes_forward_secret_aead_ciphers_only_and_tls11_is_refused(self):
        before = figures(self.server)
        s = tls_socket(self.server.tls_port, trusting(max_version=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(s.version(), "TLSv1.2")
        self.assertRegex(s.cipher()[0], r"^ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$")
        Member(s, "twelve").close()
        # A TLS 1.2 client offering only CBC ciphers: the server's alert, then a close.
        with self.assertRaises(ssl.SSLError):
            tls_socket(self.server.tls_port, trusting(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA"))
        # TLS 1.1 (what the client side allows only at security level 0): refused by the server.
        out = s_client(self.server.tls_port, b"", r"alert protocol version|Cipher is", ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
        self.assertIn("alert protocol version", out)
        self.server.err.wait_for(r"closed: TLS handshake: unsupported protocol", TIMEOUT)
        self.server.err.wait_for(r"closed: TLS handshake: no shared cipher", TIMEOUT)
        after = figures(self.server)
        self.assertEqual(after["tls failed"] - before["tls failed"], 2)

    def test_irc_and_https_through_openssl_s_client(self):
        out = s_client(self.server.ircs_port, b"NICK sclient\r\nUSER sclient 0 * :s_client\r\n", r" 001 sclient ")
        self.assertRegex(out, r" 001 sclient ")
        out = s_client(self.server.https_port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                       r"\r\n\r\nok")
        self.assertRegex(out, r"(?m)^HTTP/1.1 200 OK")

    def test_the_wrong_protocol_on_either_port_is_closed_logged_and_counted(self):
        calm = Member(tls_socket(self.server.tls_port), "calm")
        before = figures(self.server)
        mark = len(self.server.err.lines)
        # Plain text to the TLS ports: closed without an answer.
        for port, text in ((self.server.tls_port, b'{"type":"hello","user":"x"}\n'),
                           (self.server.https_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")):
            s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            s.sendall(text)
            self.assertTrue(closed_by_server(s))
            s.close()
        # TLS to the plain ports: the handshake fails, the connection is closed.
        for port in (self.server.port, self.server.http_port):
            with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
                tls_socket(port).close()
        self.server.err.wait_for(r"closed: not TLS: plain text on a TLS port", TIMEOUT, start=mark)
        self.server.err.wait_for(r"closed: a TLS handshake on a plain port", TIMEOUT, start=mark)
        deadline = time.monotonic() + TIMEOUT
        while figures(self.server)["tls wrong_protocol"] - before["tls wrong_protocol"] < 4:
            self.assertLess(time.monotonic(), deadline, "4 wrong-protocol closes not counted")
        self.assertEqual(figures(self.server)["tls wrong_protocol"] - before["tls wrong_protocol"], 4)
        self.assertTrue(calm.pings())
        calm.close()

    def test_a_handshake_that_never_ends_is_closed_after_its_timeout(self):
        calm = Member(tls_socket(self.server.tls_port), "patient")
        before = figures(self.server)
        silent = socket.create_connection(("127.0.0.1", self.server.tls_port), timeout=TIMEOUT)
        partial = socket.create_connection(("127.0.0.1", self.server.ircs_port), timeout=TIMEOUT)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, and no more
        start = time.monotonic()
        for s in (silent, partial):
            self.assertTrue(closed_by_server(s, HANDSHAKE_MS / 1000 + TIMEOUT))
            s.close()
        took = time.monotonic() - start
        self.assertGreaterEqual(took, HANDSHAKE_MS / 1000 * 0.9)
        self.assertTrue(calm.pings())
        after = figures(self.server)
        self.assertEqual(after["tls timeouts"] - before["tls timeouts"], 2)
        self.server.err.wait_for(r"closed: handshake not over within %d ms" % HANDSHAKE_MS, TIMEOUT)
        calm.close()

    def test_metrics_over_https_match_the_stats_line(self):
        conn = http.client.HTTPSConnection("localhost", self.server.https_port, timeout=TIMEOUT, context=trusting())
        # Counters that may move meanwhile are compared after: nothing else runs in this class now.
        line = figures(self.server)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        self.assertEqual(response.status, 200)
        samples = {}
        for family in text_string_to_metric_families(response.read().decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        conn.close()
        self.assertEqual(samples[("chat_wrong_protocol_total", ())], line["tls wrong_protocol"])
        self.assertEqual(samples[("chat_tls_handshake_failures_total", (("reason", "timeout"),))], line["tls timeouts"])
        self.assertEqual(samples[("chat_tls_handshake_failures_total", (("reason", "other"),))], line["tls failed"])
        self.assertGreaterEqual(samples[("chat_connections_accepted_total", (("listener", "https"),))], 1)
        for listener in ("tls", "https", "ircs", "tcp", "http", "irc"):
            self.assertIn(("chat_connections_accepted_total", (("listener", listener),)), samples)


class TlsReload(unittest.TestCase):
    def test_sighup_reloads_the_certificate_without_dropping_anyone(self):
        live = tempfile.mkdtemp(prefix="chat-tls-live-")
        try:
            for ext in ("pem", "key"):
                shutil.copy(ca_file("server." + ext), os.path.join(live, "live." + ext))
            server = chatproc.ChatServer(SERVER, "--tls-cert", os.path.join(live, "live.pem"),
                                         "--tls-key", os.path.join(live, "live.key"))
            try:
                early = Member(tls_socket(server.tls_port), "early")
                self.assertEqual(organisation(early.sock), "first")
                early.join("r")
                # The files change, then SIGHUP: new connections get the new certificate.
                for ext in ("pem", "key"):
                    shutil.copy(ca_file("second." + ext), os.path.join(live, "live." + ext))
                mark = len(server.err.lines)
                server.signal(signal.SIGHUP)
                server.err.wait_for(r"SIGHUP: TLS certificate reloaded: .*O ?= ?second", TIMEOUT, start=mark)
                late = Member(tls_socket(server.tls_port), "late")
                self.assertEqual(organisation(late.sock), "second")
                late.join("r")
                # The member from before the reload is still there, both ways.
                late.send({"type": "message", "room": "r", "text": "after the reload"})
                self.assertEqual(early.expect("message", user="late")["text"], "after the reload")
                early.send({"type": "message", "room": "r", "text": "still here"})
                self.assertEqual(late.expect("message", user="early")["text"], "still here")
                # A broken file: the reload is refused, said so, and the certificate in use stays.
                with open(os.path.join(live, "live.pem"), "w") as f:
                    f.write("not a certificate\n")
                mark = len(server.err.lines)
                server.signal(signal.SIGHUP)
                server.err.wait_for(r"SIGHUP: TLS certificate not reloaded, the one in use stays: certificate .*live.pem",
                                    TIMEOUT, start=mark)
                third = Member(tls_socket(server.tls_port), "third")
                self.assertEqual(organisation(third.sock), "second")
                self.assertTrue(early.pings())
                for m in (early, late, third):
                    m.close()
            finally:
                server.stop()
        finally:
            shutil.rmtree(live, ignore_errors=True)

    def test_bad_certificate_files_stop_the_start_with_one_line(self):
        """A certificate that cannot be read, a key that does not match it, a key given as the
        certificate, a certificate without its key: with --check-config and on a real start alike,
        exit status 2 and one line on stderr naming the problem; a real start listens on nothing."""
        cases = [
            (["--tls-cert", os.path.join(CA, "missing.pem"), "--tls-key", ca_file("server.key")], r"missing\.pem: No such file"),
            (["--tls-cert", ca_file("server.pem"), "--tls-key", ca_file("second.key")], r"does not match"),
            (["--tls-cert", ca_file("server.key"), "--tls-key", ca_file("server.key")], r"certificate .*server\.key"),
            (["--tls-cert", ca_file("server.pem")], r"--tls-key"),
        ]
        # Every port free (0) and history in memory: if a bad case did start, it would take nothing
        # of anyone's and leave nothing behind.
        base = [SERVER, "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc", "--store", "memory",
                "--tls-port", "0", "--https-port", "0", "--ircs-port", "0"]
        for flags, expect in cases:
            for real in (False, True):
                with self.subTest(flags=flags, real_start=real):
                    proc = subprocess.Popen(base + flags + ([] if real else ["--check-config"]), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    try:
                        out, err = proc.communicate(timeout=TIMEOUT * 2)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        out, err = proc.communicate()
                        self.fail("still running %d s after the start: stdout %r stderr %r" % (TIMEOUT * 2, out, err))
                    self.assertEqual(proc.returncode, 2, err)
                    self.assertEqual(len(err.strip().splitlines()), 1, err)
                    self.assertRegex(err, expect)
                    self.assertNotIn("listening", out)
                    if not real:
                        self.assertNotIn("configuration OK", out)


class TlsWithAuthentication(unittest.TestCase):
    def test_a_token_is_checked_inside_tls_as_on_a_plain_port(self):
        secret = os.path.join(CA, "auth-secret")
        with open(secret, "w") as f:
            f.write("s" * 48 + "\n")
        token = subprocess.run([SERVER, "--auth-secret", secret, "--mint-token", "sealed"], capture_output=True,
                               text=True, timeout=TIMEOUT * 2, check=True).stdout.strip()
        server = chatproc.ChatServer(SERVER, "--tls-cert", ca_file("server.pem"), "--tls-key", ca_file("server.key"),
                                     "--auth-secret", secret)
        try:
            sock = tls_socket(server.tls_port)
            sock.sendall((json.dumps({"type": "hello", "user": "sealed", "token": token}) + "\n").encode())
            member = Member.__new__(Member)
            member.sock, member.buf = sock, b""
            member.expect("welcome", user="sealed")
            self.assertTrue(member.pings())
            bare = tls_socket(server.tls_port)
            bare.sendall(b'{"type":"hello","user":"sealed2"}\n')
            refusal = Member.__new__(Member)
            refusal.sock, refusal.buf = bare, b""
            self.assertEqual(refusal.expect("error")["code"], "unauthorized")
            self.assertTrue(closed_by_server(bare))
            member.close()
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
