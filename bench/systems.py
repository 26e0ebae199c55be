"""The systems bench/run.py measures side by side: what each is, how to start it, how to tell it is ready.

ECHO_SYSTEMS serve the echo and c10k sections, CHAT_SYSTEMS the chat sections (WS_SYSTEMS,
HISTORY_SYSTEMS and IRC_SYSTEMS the websocket, history and irc sections). A system's `key` is
what --skip takes and what the raw results (bench/results/run.json) are filed under; its `label` is
what the tables say. Starting and stopping one is Ctx's job (context.py).
"""
import os
import subprocess
import tempfile
from dataclasses import dataclass

import benchlib as bl

ROOT = bl.ROOT


@dataclass
class System:
    key: str
    label: str
    cmd: object                 # callable(ctx, port) -> argv
    ready: str = "line"         # "line": prints "listening on H:P"; "listen": a LISTEN socket on the port
    ready_line: str = ""        # ready "line": a regex for another line than "listening on H:P" (group 2: the port)
    fixed_port: int = 0         # the article's servers: cannot change port
    pick_port: bool = False     # Redis, NATS: we pick a free port and pass it
    needs: tuple = ()           # programs (names in PATH or paths) that must exist
    dialect: str = ""           # chat only
    lossy: bool = False         # chat: loses messages by design (the article's server)
    fresh: bool = False         # a new server for every run (the article's servers die on a reset)
    search: bool = True         # chat: look for the saturation point
    group: str = ""
    note: str = ""
    loadgen: tuple = ()         # chat: what this system's loadgen runs add


def echo_server(*flags):
    return lambda ctx, port: [str(ctx.bin / "echo-server"), *flags, "--host", "127.0.0.1", "--port", "0"]


def python_seed(script):
    return lambda ctx, port: [ctx.python, str(ctx.seed / script)]


ECHO_SYSTEMS = [
    System("ref", "epoll-echo-ref (reference)", lambda c, p: [str(c.bin / "epoll-echo-ref"), "0", "127.0.0.1"],
           needs=("bin:epoll-echo-ref",), group="reference"),
    System("epoll", "echo-server reactor, epoll", echo_server("--model", "reactor", "--backend", "epoll"),
           needs=("bin:echo-server",), group="ours"),
    System("poll", "echo-server reactor, poll", echo_server("--model", "reactor", "--backend", "poll"),
           needs=("bin:echo-server",), group="ours"),
    System("select", "echo-server reactor, select", echo_server("--model", "reactor", "--backend", "select"),
           needs=("bin:echo-server",), group="ours"),
    System("threads", "echo-server thread per connection", echo_server("--model", "threads"),
           needs=("bin:echo-server",), group="ours"),
    System("busy", "echo-server busy-wait", echo_server("--model", "busy-wait"),
           needs=("bin:echo-server",), group="ours"),
    System("node", "Node.js net (bench/node_echo.js)",
           lambda c, p: ["node", str(ROOT / "bench" / "node_echo.js"), "0", "127.0.0.1"],
           needs=("node",), group="other"),
    System("py-reactor", "article EchoServer.py (selectors)", python_seed("EchoServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:EchoServer.py"), fresh=True, group="article"),
    System("py-threads", "article BlockingEchoServer.py", python_seed("BlockingEchoServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:BlockingEchoServer.py"), fresh=True, group="article"),
    System("py-busy", "article BusyWaitNonBlockingEchoServer.py", python_seed("BusyWaitNonBlockingEchoServer.py"),
           ready="listen", fixed_port=2002, needs=("python3", "seed:BusyWaitNonBlockingEchoServer.py"), fresh=True,
           group="article"),
]

CHAT_SYSTEMS = [
    System("chat", "chat-server --threads 2, native JSON lines",
           lambda c, p: [str(c.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", "2", "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc",
                         "--store", "off"],
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("chat-article", "chat-server, article dialect",
           lambda c, p: [str(c.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc", "--store", "off"],
           needs=("bin:chat-server",), dialect="article", group="ours"),
    System("chat-1t", "chat-server --threads 1, native",
           lambda c, p: [str(c.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", "1", "--host", "127.0.0.1", "--port", "0", "--no-http", "--no-irc",
                         "--store", "off"],
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("redis", "redis-server (pub/sub)",
           lambda c, p: ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--maxclients", "19000"],
           ready="listen", pick_port=True, needs=("redis-server",), dialect="redis", group="reference"),
    System("nats", "nats-server (core pub/sub)", lambda c, p: ["nats-server", "-a", "127.0.0.1", "-p", str(p)],
           ready="listen", pick_port=True, needs=("nats-server",), dialect="nats", group="other"),
    System("py-chat", "article ReactorChatServer.py", python_seed("ReactorChatServer.py"), ready="listen",
           fixed_port=1234, needs=("python3", "seed:ReactorChatServer.py"), dialect="article", lossy=True,
           fresh=True, group="article"),
]

def chat_server_http(ctx, port):
    return [str(ctx.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", "2", "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--irc-port", "0",
            "--store", "off"]


# The websocket section: the same chat-server (HTTP on) reached over WebSocket and over its native
# TCP port, and a Node.js `ws` room serving the same subset of the protocol (bench/node_ws_room.js).
WS_SYSTEMS = [
    System("chat-ws", "chat-server --threads 2, WebSocket (GET /ws)", chat_server_http,
           ready_line=r"http listening on (\S+):(\d+)", needs=("bin:chat-server",), dialect="ws", group="ours"),
    System("chat-tcp", "chat-server --threads 2, native TCP (HTTP on)", chat_server_http,
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("node-ws", "Node.js ws room (bench/node_ws_room.js)",
           lambda c, p: ["node", str(ROOT / "bench" / "node_ws_room.js"), "0", "127.0.0.1"],
           needs=("node",), dialect="ws", group="other"),
]

def chat_server_store(store, threads=2):
    """chat-server with history kept by `store` (sqlite, off); sqlite in a fresh directory of the run's
    log directory for every start (the history section's storm restarts on one directory itself)."""
    def cmd(ctx, port):
        argv = [str(ctx.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", str(threads), "--host", "127.0.0.1", "--port", "0",
                "--no-http", "--no-irc", "--store", store]
        if store == "sqlite":
            argv += ["--data-dir", tempfile.mkdtemp(prefix="store-", dir=ctx.procs.logdir)]
        return argv
    return cmd


def redis_aof(ctx, port):
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--dir", tempfile.mkdtemp(prefix="redis-aof-", dir=ctx.procs.logdir)]


# The history section (bench/history_suite.py): chat-server with its default store (SQLite) against
# the same server keeping no history, and the acknowledged-publish reference: Redis appending to a
# stream (XADD) with its append-only file written every second, driven by redis-benchmark.
HISTORY_SYSTEMS = [
    System("chat-sqlite", "chat-server --threads 2, --store sqlite (the default)", chat_server_store("sqlite"),
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("chat-off", "chat-server --threads 2, --store off", chat_server_store("off"),
           needs=("bin:chat-server",), dialect="native", group="ours"),
    System("redis-xadd", "redis-server XADD, appendonly yes, appendfsync everysec", redis_aof, ready="listen",
           pick_port=True, needs=("redis-server", "redis-benchmark"), dialect="redis", group="reference"),
]

def chat_server_irc(ctx, port):
    """chat-server as the IRC section runs it: two reactors, no HTTP, no history, its IRC port on a free
    port with flood control off, as for the other servers (the native reference runs the same command:
    the same process, another port)."""
    return [str(ctx.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", "2", "--host", "127.0.0.1", "--port", "0", "--no-http",
            "--store", "off", "--irc-port", "0", "--irc-flood-rate", "0"]


def write_config(ctx, prefix, name, text):
    d = tempfile.mkdtemp(prefix=prefix, dir=ctx.procs.logdir)
    os.chmod(d, 0o777)  # ngircd drops root for nobody before writing its pid file
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text.replace("@DIR@", d))
    return path


# ngircd: its own configuration, never the system's (/etc/ngircd, and no daemon of the package's).
# Limits for thousands of clients; MaxPenaltyTime = 0 turns its flood control off: a client is
# otherwise throttled (read paused for a second) once it sends 256 bytes in a second or leaves more
# than 3 commands unprocessed in one pass of the loop. It also caps the nick length at 9 by default.
NGIRCD_CONF = """[Global]
\tName = irc.bench.local
\tInfo = bench
\tAdminInfo1 = bench
\tAdminInfo2 = bench
\tAdminEMail = bench@localhost
\tListen = 127.0.0.1
\tPorts = @PORT@
\tMotdPhrase = bench
\tPidFile = @DIR@/ngircd.pid
[Limits]
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 31
\tMaxPenaltyTime = 0
\tPingTimeout = 600
\tPongTimeout = 120
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
\tNoticeBeforeRegistration = no
\tIncludeDir = @DIR@/conf.d
"""


def ngircd_cmd(ctx, port):
    path = write_config(ctx, "ngircd-", "ngircd.conf", NGIRCD_CONF.replace("@PORT@", str(port)))
    os.mkdir(os.path.join(os.path.dirname(path), "conf.d"))
    return ["ngircd", "--nodaemon", "--config", path]


# InspIRCd 3: one connect class for loopback with its flood control off (threshold and commandrate
# out of reach, fakelag off), send queues of 1 MiB, a listen backlog of 1,024.
INSPIRCD_CONF = """<server name="irc.bench.local" description="bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="@PORT@" type="clients">
<connect name="bench" allow="127.0.0.0/8" maxchans="0" localmax="100000" globalmax="100000" maxconnwarn="off"
 useident="no" limit="100000" threshold="1000000" commandrate="1000000" fakelag="off" recvq="65536"
 sendq="1048576" softsendq="1048576" hardsendq="1048576" pingfreq="600" timeout="120" resolvehostnames="no">
<performance softlimit="30000" somaxconn="1024" clonesonconnect="no" quietbursts="yes">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="30" maxquit="255" maxtopic="307" maxkick="255"
 maxreal="128" maxgecos="128" maxaway="200">
<pid file="@DIR@/inspircd.pid">
<files motd="@DIR@/motd">
<log method="file" type="* -USERINPUT -USEROUTPUT -CONNECT -QUIT" level="default" target="@DIR@/ircd.log">
"""


def inspircd_cmd(ctx, port):
    path = write_config(ctx, "inspircd-", "inspircd.conf", INSPIRCD_CONF.replace("@PORT@", str(port)))
    with open(os.path.join(os.path.dirname(path), "motd"), "w") as f:
        f.write("bench\n")
    return ["inspircd", "--nofork", "--runasroot", f"--config={path}"]


# The IRC section (bench/irc_suite.py): chat-server's IRC members against its native TCP members (the
# same command: one process, two ports) and against two IRC servers from Debian under the same load.
# `loadgen` is what a system's loadgen runs add: ngircd accepts one connection per pass of its loop
# with a listen backlog of 10, so connects are paced by subscriptions (--batch-until-ready).
IRC_SYSTEMS = [
    System("chat-irc", "chat-server --threads 2, IRC", chat_server_irc, ready_line=r"irc listening on (\S+):(\d+)",
           needs=("bin:chat-server",), dialect="irc", group="ours"),
    System("chat-native", "chat-server --threads 2, native TCP", chat_server_irc,
           ready_line=r"chat-server: listening on (\S+):(\d+)", needs=("bin:chat-server",), dialect="native",
           group="ours"),
    System("ngircd", "ngircd (Debian)", ngircd_cmd, ready="listen", pick_port=True, needs=("ngircd",), dialect="irc",
           group="other", loadgen=("--connect-batch", "8", "--batch-until-ready")),
    System("inspircd", "InspIRCd 3 (Debian)", inspircd_cmd, ready="listen", pick_port=True, needs=("inspircd",),
           dialect="irc", group="other"),
]

def chat_server_ops(on):
    """chat-server as it starts by default (metrics and every limit on), or with all of them off."""
    def cmd(ctx, port):
        argv = [str(ctx.bin / "chat-server"), "--threads", "2", "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
                "--no-irc", "--store", "off"]
        if not on:
            argv += ["--no-metrics", *bl.CHAT_LIMITS_OFF, "--frame-timeout-ms", "0", "--max-room-members", "0",
                     "--max-server-rooms", "0"]
        return argv
    return cmd


# The ops section (bench/ops_suite.py): the defaults' cost. The members come from four source addresses
# and two publishers send (the defaults allow 500 connections per address, 100 messages/s per connection).
OPS_LOAD = ("--source-addresses", "4", "--publishers", "2")
OPS_SYSTEMS = [
    System("chat-ops-on", "chat-server --threads 2, metrics and limits on (the defaults)", chat_server_ops(True),
           ready_line=r"chat-server: listening on (\S+):(\d+)", needs=("bin:chat-server",), dialect="native",
           group="ours", loadgen=OPS_LOAD),
    System("chat-ops-off", "chat-server --threads 2, metrics and limits off", chat_server_ops(False),
           ready_line=r"chat-server: listening on (\S+):(\d+)", needs=("bin:chat-server",), dialect="native",
           group="ours", loadgen=OPS_LOAD),
]

def test_ca(ctx):
    """A throw-away certificate authority for the TLS section (tests/tls/make_test_ca.sh), made once a run."""
    d = os.path.join(ctx.procs.logdir, "tls-ca")
    if not os.path.exists(os.path.join(d, "server.pem")):
        subprocess.run([str(ROOT / "tests" / "tls" / "make_test_ca.sh"), d], check=True)
    return d


def chat_server_tls(ctx, port):
    """chat-server --threads 2 with its TLS listener beside the plain one (loadgen picks which)."""
    d = test_ca(ctx)
    return [str(ctx.bin / "chat-server"), *bl.CHAT_LIMITS_OFF, "--threads", "2", "--host", "127.0.0.1", "--port", "0",
            "--no-http", "--no-irc", "--store", "off", "--tls-cert", os.path.join(d, "server.pem"),
            "--tls-key", os.path.join(d, "server.key"), "--tls-port", "0"]


def redis_tls(ctx, port):
    """redis-server with its TLS port only (Debian's is built with TLS); clients need no certificate."""
    d = test_ca(ctx)
    return ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", os.path.join(d, "server.pem"), "--tls-key-file", os.path.join(d, "server.key"),
            "--tls-ca-cert-file", os.path.join(d, "ca.pem"), "--tls-auth-clients", "no", "--save", "",
            "--appendonly", "no", "--maxclients", "19000"]


# The TLS section (bench/tls_suite.py): one chat-server, its TLS port and its plain one; Redis over TLS
# and plain ("redis" above). loadgen --tls: TLS 1.3, the certificate not checked.
TLS_SYSTEMS = [
    System("chat-tls", "chat-server --threads 2, native over TLS", chat_server_tls,
           ready_line=r"chat-server: tls listening on (\S+):(\d+)", needs=("bin:chat-server", "openssl"),
           dialect="native", group="ours", loadgen=("--tls",)),
    System("chat-tls-plain", "chat-server --threads 2, native, plain (the same server's plain port)", chat_server_tls,
           ready_line=r"chat-server: listening on (\S+):(\d+)", needs=("bin:chat-server", "openssl"),
           dialect="native", group="ours"),
    System("redis-tls", "redis-server (pub/sub) over TLS", redis_tls, ready="listen", pick_port=True,
           needs=("redis-server", "openssl"), dialect="redis", group="reference", loadgen=("--tls",)),
]

ALL_SYSTEMS = ECHO_SYSTEMS + CHAT_SYSTEMS + WS_SYSTEMS + HISTORY_SYSTEMS + IRC_SYSTEMS + OPS_SYSTEMS + TLS_SYSTEMS


def system(key):
    return next(s for s in ALL_SYSTEMS if s.key == key)


def label(key):
    """The table label of a system, or the key itself when no system has it."""
    for s in ALL_SYSTEMS:
        if s.key == key:
            return s.label
    return key
