// An IRC server against real IRC clients, not our own parser talking to itself: npm's irc-framework
// (which negotiates message-tags, server-time and echo-message as modern clients do), a plain
// RFC 1459 client on a raw socket (no CAP at all), and Debian's WeeChat (weechat-headless) driven
// through its FIFO and read back from its log files. With chat-server, a native TCP member and a
// WebSocket member share a room with the IRC clients, messages going every way.
//
// The server under test is the program given (its name says which kind):
//   node tests/irc/irc_clients_test.mjs build/bin/chat-server   (or CHAT_SERVER, or TEST_PROGRAM_DIR)
//   node tests/irc/irc_clients_test.mjs /usr/sbin/ngircd        (Debian's IRC servers, to check
//   node tests/irc/irc_clients_test.mjs /usr/sbin/inspircd       the harness; InspIRCd has IRCv3)
// chat-server is started on free ports (--port 0 --http-port 0 --irc-port 0); ngircd and InspIRCd
// get a config file of their own and a free loopback port, never the system's daemon. The part
// with native and WebSocket members runs only with chat-server. Needs `npm ci --prefix tests/irc`
// and Debian's weechat-headless and weechat-plugins (the FIFO plugin).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, test } from 'node:test';

import harness from '../harness/chatproc.cjs';

let IRC;
let WebSocket;
try {
  ({ default: IRC } = await import('irc-framework'));
  ({ default: WebSocket } = await import('ws'));
} catch (e) {
  console.error(`irc_clients_test: ${e.message}\nrun npm ci --prefix tests/irc (./dev.sh test does)`);
  process.exit(1);
}

const serverPath = harness.programPath('chat-server', process.argv[2] || process.env.CHAT_SERVER);
if (!serverPath) {
  console.error('usage: node irc_clients_test.mjs PATH-TO-chat-server|PATH-TO-ngircd|PATH-TO-inspircd');
  process.exit(2);
}
const KIND = ['ngircd', 'inspircd'].find((k) => path.basename(serverPath).startsWith(k)) || 'chat-server';
const CHAT = KIND === 'chat-server';
// A sanitizer build's programs are slower; the machine is shared with other builds.
const TIMEOUT = harness.sanitized() ? 40000 : 15000;
const WEECHAT = process.env.WEECHAT || '/usr/bin/weechat-headless';
// What every IRC client of chat-server must be able to negotiate (the IRC front end's promise);
// another server is only held to what it offers.
const REQUIRED_CAPS = CHAT ? ['message-tags', 'server-time', 'echo-message'] : [];

function within(promise, what, ms = TIMEOUT) {
  return harness.withTimeout(promise, ms, `timed out after ${ms} ms waiting for ${what}`);
}

// Things that arrive queue up until a test waits for one: push() them, expect(match) takes the
// first one (queued or to come) that matches: a RegExp (for strings), an object whose fields must
// be equal, or a function. `seen` keeps everything, taken or not, for checks of what never came.
function mailbox(describe = (m) => JSON.stringify(m)) {
  const inbox = [];
  const seen = [];
  const waiters = [];
  const matches = (match, m) => {
    if (match instanceof RegExp) return typeof m === 'string' && match.test(m);
    if (typeof match === 'function') return match(m);
    return Object.entries(match).every(([k, v]) => m[k] === v);
  };
  let closedReason = null;
  return {
    seen,
    push(m) {
      inbox.push(m);
      seen.push(m);
      for (const w of [...waiters]) w();
    },
    // No more will come: waiters fail at once instead of at their deadline.
    close(reason) {
      closedReason = reason;
      for (const w of [...waiters]) w();
    },
    expect(match, what = String(match instanceof RegExp ? match : JSON.stringify(match))) {
      let check;
      const p = new Promise((resolve, reject) => {
        check = () => {
          const i = inbox.findIndex((m) => matches(match, m));
          if (i >= 0) {
            waiters.splice(waiters.indexOf(check), 1);
            resolve(inbox.splice(i, 1)[0]);
          } else if (closedReason !== null) {
            waiters.splice(waiters.indexOf(check), 1);
            reject(new Error(`${closedReason} while waiting for ${what}; got:\n${seen.slice(-30).map(describe).join('\n')}`));
          }
        };
        waiters.push(check);
        check();
      });
      return within(p, what).catch((e) => {
        const i = waiters.indexOf(check);
        if (i >= 0) waiters.splice(i, 1);
        if (!e.message.startsWith('timed out')) throw e;
        throw new Error(`${e.message}; got:\n${seen.slice(-30).map(describe).join('\n')}`);
      });
    },
  };
}

// A process's output lines, waited on with a deadline; all of them kept for error messages.
function processLines(proc) {
  const box = mailbox((l) => l);
  let all = '';
  for (const stream of [proc.stdout, proc.stderr]) {
    if (!stream) continue;
    readline.createInterface({ input: stream }).on('line', (line) => {
      all += line + '\n';
      box.push(line);
    });
  }
  proc.once('exit', (code, signal) => box.close(`the process exited (${code ?? signal})`));
  return { expect: box.expect, text: () => all };
}

// Whatever this test started goes with it, also when it ends on an uncaught error.
const children = new Set();
process.on('exit', () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });
function started(proc) {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

function exitOf(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve({ code: proc.exitCode, signal: proc.signalCode });
    else proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

function tempDir(what) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `irc-test-${what}-`));
}

// ---------------------------------------------------------------------------------------------
// The servers under test. Each start() resolves to { irc: port, tcp?, http?, stop() }.

// chat-server on free ports (tests/harness/chatproc.cjs); stop() is SIGTERM, then status 0 and no
// sanitizer report.
async function startChatServer(extra = []) {
  const chat = new harness.ChatServer(serverPath, [...harness.FREE_PORTS, '--threads', '2', ...extra]);
  await chat.start(['tcp', 'irc', 'http']);
  return { tcp: chat.ports.tcp, http: chat.ports.http, irc: chat.ports.irc, stop: () => chat.stop() };
}

// A Debian IRC server in a directory of its own, on a loopback port that was free a moment ago:
// neither ngircd nor InspIRCd can listen on port 0 and say which port it got, so each start is
// tried again with another port if the server could not bind the one it was given.
async function startDebianIrcd() {
  const dir = tempDir(KIND);
  // Started as root, ngircd drops to "nobody": it must be able to write its pid file here.
  fs.chmodSync(dir, 0o777);
  for (let attempt = 1; ; attempt++) {
    const port = await harness.freePort();
    const conf = path.join(dir, `${KIND}.conf`);
    const log = path.join(dir, `${KIND}.log`);
    let args;
    let ready;
    if (KIND === 'ngircd') {
      fs.writeFileSync(conf, [
        '[Global]',
        'Name = irc.test',
        'Info = a test server',
        'AdminInfo1 = irc_clients_test', 'AdminInfo2 = loopback', 'AdminEMail = nobody@irc.test',
        'Listen = 127.0.0.1',
        `Ports = ${port}`,
        `PidFile = ${path.join(dir, 'ngircd.pid')}`,
        'MotdPhrase = irc_clients_test',
        '[Limits]',
        // Every client of the test comes from 127.0.0.1 (ngircd allows 5 per address by default).
        'MaxConnectionsIP = 0',
        'MaxNickLength = 31',
        '[Options]',
        'DNS = no', 'Ident = no', 'PAM = no',
        '',
      ].join('\n'));
      args = ['--nodaemon', '--config', conf];
      // In the foreground ngircd logs to stdout.
      ready = async (out) => out.expect(new RegExp(`Now listening on \\[127\\.0\\.0\\.1\\]:${port}\\b`), 'ngircd to listen');
    } else {
      // InspIRCd 3 with the IRCv3 modules that chat-server's front end offers too: the harness's
      // server-time, message-tags and echo-message paths run against a real server before ours.
      fs.writeFileSync(conf, [
        '<config format="xml">',
        '<server name="irc.test" description="a test server" network="IrcTest">',
        '<admin name="irc_clients_test" nick="admin" email="nobody@irc.test">',
        `<bind address="127.0.0.1" port="${port}" type="clients">`,
        // No flood penalties (fakelag) or connection limits: the test's clients all come from one address.
        '<connect name="main" allow="*" maxlocal="1000" maxglobal="1000" localmax="1000" globalmax="1000" limit="1000"',
        '  threshold="1000" commandrate="1000000" fakelag="off" useident="no" resolvehostnames="no"',
        '  timeout="60" pingfreq="120" hardsendq="1048576" softsendq="65536" recvq="65536">',
        `<pid file="${path.join(dir, 'inspircd.pid')}">`,
        `<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="${log}">`,
        ...['cap', 'ircv3', 'ircv3_servertime', 'ircv3_echomessage', 'ircv3_msgid', 'ircv3_ctctags']
          .map((m) => `<module name="${m}">`),
        '',
      ].join('\n'));
      args = ['--nofork', '--runasroot', '--config', conf];
      // It says it runs once its listeners are bound; whether this port's was, only its log says.
      ready = async (out) => {
        await out.expect(/InspIRCd is now running/, 'InspIRCd to run');
        const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
        if (!text.includes(`Added a listener on 127.0.0.1:${port}`)) throw new Error(`InspIRCd did not bind ${port}:\n${text}`);
      };
    }
    const proc = started(spawn(serverPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const out = processLines(proc);
    try {
      await ready(out);
    } catch (e) {
      proc.kill('SIGKILL');
      await exitOf(proc);
      if (attempt < 3 && /bind|already in use/i.test(out.text() + e.message)) continue;
      throw new Error(`${KIND} did not start: ${e.message}\n${out.text()}`);
    }
    return {
      irc: port,
      async stop() {
        const exited = exitOf(proc);
        proc.kill('SIGTERM');
        const { code, signal } = await within(exited, `${KIND} to stop`, 20000);
        fs.rmSync(dir, { recursive: true, force: true });
        assert.equal(signal, null, out.text());
        // InspIRCd's status for a stop by SIGTERM is 10 (EXIT_STATUS_SIGTERM).
        assert.equal(code, KIND === 'inspircd' ? 10 : 0, out.text());
      },
    };
  }
}

let server;

before(async () => {
  server = CHAT ? await startChatServer() : await startDebianIrcd();
});

after(async () => {
  if (server) await server.stop();
});

// ---------------------------------------------------------------------------------------------
// Clients.

// An irc-framework client that asks for echo-message besides the caps it always asks for
// (message-tags, server-time, ...). Its events queue up: c.expect('privmsg', {nick: 'bob'}).
// auto_reconnect is off: on a closed socket irc-framework would otherwise connect again (up to 3
// times, with backoff) and a test would see a second registration instead of the close.
// options: more of irc-framework's connect options (password, account); registered: false to not
// wait for the welcome.
async function frameworkClient(nick, options = {}, { at = server, registered = true } = {}) {
  const client = new IRC.Client();
  const box = mailbox((e) => `${e.event} ${JSON.stringify(e.data)}`);
  const events = ['registered', 'join', 'part', 'quit', 'nick', 'nick in use', 'privmsg', 'notice',
                  'userlist', 'irc error', 'reconnecting', 'close', 'loggedin', 'sasl failed'];
  for (const event of events) client.on(event, (data) => box.push({ event, data }));
  client.lines = [];  // what the server sent, as sent (tags included)
  client.on('raw', ({ line, from_server }) => { if (from_server) client.lines.push(line.replace(/\r?\n$/, '')); });
  client.on('close', () => box.close('the connection closed'));
  // The first event of one of these kinds (a name or a list) whose data has these fields.
  client.expect = async (event, fields = {}) => {
    const kinds = [].concat(event);
    return (await box.expect((e) => kinds.includes(e.event) && Object.entries(fields).every(([k, v]) => e.data[k] === v),
                             `${kinds.join(' or ')} ${JSON.stringify(fields)}`)).data;
  };
  // Every event of a kind seen so far (taken by expect() or not).
  client.seen = (event) => box.seen.filter((e) => e.event === event).map((e) => e.data);
  client.connect({
    host: '127.0.0.1', port: at.irc, nick, username: nick, gecos: `irc-framework ${nick}`,
    auto_reconnect: false, enable_echomessage: true, ...options,
  });
  if (registered) await client.expect('registered', { nick });
  return client;
}

// A plain client on a raw socket: no CAP, so it must never get tags; answers PING as clients do.
// c.expect(/regex/) takes the first line (queued or to come) that matches.
async function rawClient(nick) {
  const sock = net.connect(server.irc, '127.0.0.1');
  await within(new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); }), 'IRC connect');
  sock.setEncoding('utf8');
  const box = mailbox((l) => l);
  const c = {
    lines: box.seen,
    send: (line) => sock.write(line + '\r\n'),
    expect: box.expect,
    closed: new Promise((resolve) => sock.once('close', resolve)),
    close: () => sock.destroy(),
  };
  sock.on('error', () => {});
  sock.on('close', () => box.close('the connection closed'));
  readline.createInterface({ input: sock, crlfDelay: Infinity }).on('line', (raw) => {
    const line = raw.replace(/\r$/, '');
    const ping = line.match(/^PING (.*)$/);
    if (ping) c.send(`PONG ${ping[1]}`);
    box.push(line);
  });
  c.send(`NICK ${nick}`);
  c.send(`USER ${nick} 0 * :plain ${nick}`);
  await c.expect(new RegExp(`^:\\S+ 001 ${nick} `));
  return c;
}

// A native member on the chat port (chat-server only): JSON lines.
async function nativeClient(user) {
  const sock = net.connect(server.tcp, '127.0.0.1');
  await within(new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); }), 'TCP connect');
  const box = mailbox();
  readline.createInterface({ input: sock }).on('line', (line) => {
    let m;
    try { m = JSON.parse(line); } catch { return; }  // the article's lobby lines before the welcome
    box.push(m);
  });
  const c = { send: (obj) => sock.write(JSON.stringify(obj) + '\n'), expect: box.expect, close: () => sock.destroy() };
  c.send({ type: 'hello', user });
  await c.expect({ type: 'welcome', user });
  return c;
}

// A WebSocket member on /ws (chat-server only), the native dialect in text messages.
async function webClient(user) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.http}/ws`);
  const box = mailbox();
  const errors = [];
  ws.on('error', (e) => errors.push(e));
  ws.on('message', (data) => box.push(JSON.parse(data.toString('utf8'))));
  const closed = new Promise((resolve) => ws.on('close', resolve));
  await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 'the WebSocket handshake');
  const c = {
    send: (obj) => ws.send(JSON.stringify(obj)),
    expect: box.expect,
    errors,
    async close() { ws.close(1000); await within(closed, 'the WebSocket close'); },
  };
  c.send({ type: 'hello', user });
  await c.expect({ type: 'welcome', user });
  return c;
}

// WeeChat without a terminal: weechat-headless in a home directory of its own, configured by -r
// commands, driven through its FIFO (`irc.server.NAME */cmd` or `irc.NAME.#chan *text`, as typed in
// that buffer) and read back from the logger's files, which are written at once (flush_delay 0;
// the default holds lines for 120 s). No fixed sleeps: readiness is what the other clients see
// (its JOIN) and what its logs show, each polled with a deadline.
async function startWeechat({ nick, channel }) {
  if (!fs.existsSync(WEECHAT)) {
    throw new Error(`${WEECHAT} is missing: apt-get install weechat-headless weechat-plugins`);
  }
  const dir = tempDir('weechat');
  const commands = [
    '/set logger.file.flush_delay 0',
    '/set logger.file.auto_log on',
    // WeeChat would otherwise reconnect when the server goes away at the end of a test.
    '/set irc.server_default.autoreconnect off',
    // Its anti-flood queue sends a message typed after the registration burst 2 s late (it shows
    // it at once): off, so that what it sends arrives when the test says it. The option is
    // anti_flood_prio_high/low (s) in WeeChat 3.8 (Debian 12), anti_flood (ms) from 4.0 on; TLS is
    // off by default in 3.8 and on from 4.0 (ssl, then tls). A /set of the other version's name
    // only prints an error.
    '/set irc.server_default.anti_flood_prio_high 0',
    '/set irc.server_default.anti_flood_prio_low 0',
    '/set irc.server_default.anti_flood 0',
    '/set irc.server_default.tls off',
    `/server add t 127.0.0.1/${server.irc}`,
    `/set irc.server.t.nicks ${nick}`,
    `/set irc.server.t.username ${nick}`,
    `/set irc.server.t.realname WeeChat`,
    `/set irc.server.t.autojoin ${channel}`,
    '/connect t',
  ];
  // Only the plugins used: irc, logger (its files are what it received) and fifo (how it is driven).
  const args = ['--dir', dir, '--stdout', '--plugins', 'irc,logger,fifo', '--no-script'];
  for (const c of commands) args.push('-r', c);
  const proc = started(spawn(WEECHAT, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = processLines(proc);
  const exited = exitOf(proc);

  const logText = () => {
    const logs = path.join(dir, 'logs');
    if (!fs.existsSync(logs)) return '';
    return fs.readdirSync(logs).filter((f) => f.startsWith('irc.t.'))
      .map((f) => fs.readFileSync(path.join(logs, f), 'utf8')).join('');
  };
  const pollFor = async (what, found) => {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const v = found();
      if (v) return v;
      if (proc.exitCode !== null) throw new Error(`WeeChat exited while waiting for ${what}:\n${out.text()}`);
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what} in WeeChat's logs:\n${logText()}\nits output:\n${out.text()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const fifo = await pollFor('its FIFO', () => {
    const f = fs.readdirSync(dir).find((n) => n.startsWith('weechat_fifo'));
    return f && path.join(dir, f);
  });
  // Opened without blocking: with WeeChat gone, a blocking open of its FIFO would wait for ever.
  const toFifo = (line) => {
    const fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    try { fs.writeSync(fd, line + '\n'); } finally { fs.closeSync(fd); }
  };
  return {
    dir,
    // As if typed in the channel's buffer.
    say: (text) => toFifo(`irc.t.${channel} *${text}`),
    command: (cmd) => toFifo(`irc.server.t */${cmd}`),
    // A logged channel line is "DATE\tPREFIX\tTEXT"; PREFIX is the nick with its mode sign (@, +).
    waitLog: (re, what) => pollFor(what, () => logText().split('\n').find((l) => re.test(l))),
    // WeeChat has its channel buffer (what say() writes to) once it has handled the server's JOIN,
    // which may be after the other members saw that JOIN: text for a buffer not yet there is lost.
    joined: () => pollFor(`WeeChat's own JOIN of ${channel}`,
                          () => logText().split('\n').find((l) => new RegExp(`\t-->\t${nick} .*has joined ${escapeRe(channel)}$`).test(l))),
    logLines: (re) => logText().split('\n').filter((l) => re.test(l)),
    exited,
    output: out.text,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Checks.

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// server-time: ISO 8601 UTC with milliseconds, near now.
function assertServerTime(tags, what) {
  assert.ok(tags && typeof tags.time === 'string', `${what}: no server-time tag: ${JSON.stringify(tags)}`);
  assert.match(tags.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, `${what}: server-time format`);
  const skew = Math.abs(Date.parse(tags.time) - Date.now());
  assert.ok(skew < 60000, `${what}: server-time ${tags.time} is ${skew} ms from now`);
}

// The user@host part of a prefix: chat-server says which front end a sender is on; other servers
// show whatever ident and address they like.
function assertFrom(data, nick, host) {
  assert.equal(data.nick, nick);
  if (CHAT) {
    assert.equal(data.ident, nick, `ident of ${nick}`);
    assert.equal(data.hostname, host, `host of ${nick}`);
  }
}
const rawPrefix = (nick, host) => (CHAT ? `:${escapeRe(nick)}!${escapeRe(nick)}@${host}` : `:${escapeRe(nick)}!\\S+`);

function negotiatedCaps(client) {
  const offered = [...client.network.cap.available.keys()];
  const enabled = client.network.cap.enabled;
  for (const cap of REQUIRED_CAPS) assert.ok(enabled.includes(cap), `${cap} not negotiated (offered: ${offered}; enabled: ${enabled})`);
  // irc-framework asks for these whenever they are offered: an offered cap must be acknowledged.
  for (const cap of ['message-tags', 'server-time', 'echo-message']) {
    if (offered.includes(cap)) assert.ok(enabled.includes(cap), `${cap} offered but not acknowledged (enabled: ${enabled})`);
  }
  return { echo: enabled.includes('echo-message'), time: enabled.includes('server-time'), tags: enabled.includes('message-tags') };
}

// ---------------------------------------------------------------------------------------------

test('irc-framework and a plain client: CAP, JOIN, NAMES, PRIVMSG both ways, NICK, PART, QUIT', async () => {
  const chan = '#fwtest';
  const alice = await frameworkClient('alice');
  const caps = negotiatedCaps(alice);
  console.log(`# ${KIND}: offered ${[...alice.network.cap.available.keys()].join(' ') || 'no caps'}; ` +
              `irc-framework enabled ${alice.network.cap.enabled.join(' ') || 'none'}`);
  if (CHAT) assert.equal(alice.network.options.CASEMAPPING, 'ascii');

  alice.join(chan);
  await alice.expect('join', { nick: 'alice', channel: chan });
  const own = await alice.expect('userlist', { channel: chan });
  assert.deepEqual(own.users.map((u) => u.nick), ['alice']);

  const bob = await rawClient('bob');
  bob.send(`JOIN ${chan}`);
  await bob.expect(new RegExp(`^${rawPrefix('bob', 'irc')} JOIN :?${chan}$`));
  const names = await bob.expect(new RegExp(`^:\\S+ 353 bob [=*@] ${chan} :`));
  assert.deepEqual(names.split(' :')[1].split(' ').map((n) => n.replace(/^[@+]/, '')).sort(), ['alice', 'bob']);
  await bob.expect(new RegExp(`^:\\S+ 366 bob ${chan} `));
  assertFrom(await alice.expect('join', { nick: 'bob', channel: chan }), 'bob', 'irc');

  alice.raw(`NAMES ${chan}`);
  const list = await alice.expect('userlist', { channel: chan });
  assert.deepEqual(list.users.map((u) => u.nick).sort(), ['alice', 'bob']);

  // irc-framework -> plain client: UTF-8 intact, no tags for a client that did not ask for them.
  const hello = 'hello from irc-framework: caf\u00e9 \u{1F600}';
  alice.say(chan, hello);
  await bob.expect(new RegExp(`^${rawPrefix('alice', 'irc')} PRIVMSG ${chan} :${escapeRe(hello)}$`));
  if (caps.echo) {
    const echoed = await alice.expect('privmsg', { nick: 'alice', target: chan, message: hello });
    if (caps.time) assertServerTime(echoed.tags, 'the echo');
  }

  // plain client -> irc-framework, with server-time.
  bob.send(`PRIVMSG ${chan} :reply from a plain client`);
  const reply = await alice.expect('privmsg', { nick: 'bob', target: chan, message: 'reply from a plain client' });
  assertFrom(reply, 'bob', 'irc');
  if (caps.time) {
    assertServerTime(reply.tags, 'a relayed PRIVMSG');
    assert.ok(alice.lines.some((l) => l.startsWith('@') && / PRIVMSG #fwtest :reply from a plain client$/.test(l)),
              'the PRIVMSG line carries its tags');
  }
  // Without echo-message a sender gets no copy: had bob's come, it would be queued before the
  // answer alice sends only after she has bob's message.
  alice.say(chan, 'got it');
  await bob.expect(new RegExp(` PRIVMSG ${chan} :got it$`));
  assert.ok(!bob.lines.some((l) => / PRIVMSG #fwtest :reply from a plain client$/.test(l)), 'bob got his own message');
  if (!caps.echo) assert.deepEqual(alice.seen('privmsg').filter((m) => m.nick === 'alice'), []);
  assert.deepEqual(bob.lines.filter((l) => l.startsWith('@')), [], 'tags sent to a client that did not negotiate message-tags');

  // NICK, seen by both; a nick that differs from a taken one only in case is taken.
  bob.send('NICK bobby');
  await bob.expect(new RegExp(`^${rawPrefix('bob', 'irc')} NICK :?bobby$`));
  assertFrom(await alice.expect('nick', { nick: 'bob', new_nick: 'bobby' }), 'bob', 'irc');
  alice.changeNick('alicia');
  await alice.expect('nick', { nick: 'alice', new_nick: 'alicia' });
  await bob.expect(new RegExp(`^${rawPrefix('alice', 'irc')} NICK :?alicia$`));
  bob.send('NICK ALICIA');
  await bob.expect(/^:\S+ 433 bobby ALICIA :/);
  bob.send(`PRIVMSG ${chan} :still bobby`);
  assertFrom(await alice.expect('privmsg', { nick: 'bobby', message: 'still bobby' }), 'bobby', 'irc');

  // PART with a reason, then back, then QUIT with a reason: ERROR to the quitter, QUIT to the rest.
  bob.send(`PART ${chan} :stepping out`);
  await bob.expect(new RegExp(`^${rawPrefix('bobby', 'irc')} PART ${chan}`));
  const part = await alice.expect('part', { nick: 'bobby', channel: chan });
  assert.equal(part.message, 'stepping out');
  bob.send(`JOIN ${chan}`);
  await alice.expect('join', { nick: 'bobby', channel: chan });
  bob.send('QUIT :bye for now');
  await bob.expect(/^ERROR :/);
  await within(bob.closed, 'the server to close the quitter\'s connection');
  const quit = await alice.expect('quit', { nick: 'bobby' });
  assert.match(quit.message, /bye for now/);
  alice.raw(`NAMES ${chan}`);
  assert.deepEqual((await alice.expect('userlist', { channel: chan })).users.map((u) => u.nick), ['alicia']);

  assert.deepEqual(alice.seen('irc error'), []);
  // The ERROR that answers QUIT comes to irc-framework as an 'irc error' too: not checked after it.
  alice.quit('done');
  await alice.expect('close');
  assert.deepEqual(alice.seen('reconnecting'), []);
});

test('WeeChat (weechat-headless) and irc-framework: JOIN, PRIVMSG both ways, NICK, QUIT', async () => {
  const chan = '#weetest';
  const alice = await frameworkClient('ann');
  const caps = negotiatedCaps(alice);
  alice.join(chan);
  await alice.expect('join', { nick: 'ann', channel: chan });

  const wee = await startWeechat({ nick: 'wee', channel: chan });
  try {
    assertFrom(await alice.expect('join', { nick: 'wee', channel: chan }), 'wee', 'irc');
    await wee.joined();

    wee.say('hello from WeeChat \u00e9');
    const got = await alice.expect('privmsg', { nick: 'wee', target: chan, message: 'hello from WeeChat \u00e9' });
    if (caps.time) assertServerTime(got.tags, 'a PRIVMSG from WeeChat');

    alice.say(chan, 'hello to WeeChat');
    await wee.waitLog(/\t[@+]?ann\thello to WeeChat$/, 'ann\'s message');
    // WeeChat shows its own message once, whether it prints it itself or waits for the echo (its
    // own message was echoed, if at all, before ann's arrived).
    assert.equal(wee.logLines(/\t[@+]?wee\thello from WeeChat \u00e9$/).length, 1, 'WeeChat showed its own message other than once');

    wee.command('nick weeder');
    assertFrom(await alice.expect('nick', { nick: 'wee', new_nick: 'weeder' }), 'wee', 'irc');

    wee.command('quit leaving now');
    const quit = await alice.expect('quit', { nick: 'weeder' });
    assert.match(quit.message, /leaving now/);
    const { code } = await within(wee.exited, 'WeeChat to exit after /quit');
    assert.equal(code, 0, wee.output());
  } catch (e) {
    e.message += `\nWeeChat's output:\n${wee.output()}`;
    throw e;
  } finally {
    await wee.stop();
    alice.quit('done');
  }
});

// The IRC front end's point: IRC #mixed is the room `mixed` of the native and WebSocket front ends.
test('native, WebSocket, irc-framework and WeeChat members in one room, messages every way',
     { skip: !CHAT && `needs chat-server (the server under test is ${KIND})` }, async () => {
  const room = 'mixed';
  const chan = `#${room}`;
  const fw = await frameworkClient('ircfw');
  fw.join(chan);
  await fw.expect('join', { nick: 'ircfw', channel: chan });
  const wee = await startWeechat({ nick: 'weec', channel: chan });
  const clients = [];
  try {
    await fw.expect('join', { nick: 'weec', channel: chan });
    await wee.joined();

    const nat = await nativeClient('nat');
    clients.push(nat);
    nat.send({ type: 'join', room });
    const joined = await nat.expect({ type: 'joined', room });
    assert.equal(joined.count, 3, 'joined.count: every dialect\'s members (ircfw, weec, nat)');
    const web = await webClient('webby');
    clients.push(web);
    web.send({ type: 'join', room });
    await web.expect({ type: 'joined', room });
    await nat.expect({ type: 'join', room, user: 'webby' });

    // Presence of the other front ends' members, as IRC clients expect it (issue 12).
    assertFrom(await fw.expect('join', { nick: 'nat', channel: chan }), 'nat', 'native');
    assertFrom(await fw.expect('join', { nick: 'webby', channel: chan }), 'webby', 'web');
    fw.raw(`NAMES ${chan}`);
    await fw.expect('userlist', { channel: chan });  // the one from its own JOIN
    const names = (await fw.expect('userlist', { channel: chan })).users.map((u) => u.nick).sort();
    assert.deepEqual(names, ['ircfw', 'nat', 'webby', 'weec']);

    // One namespace across front ends, without regard to case.
    const intruder = await rawClient('intruder');
    clients.push({ close: intruder.close });
    intruder.send('NICK NAT');
    await intruder.expect(/^:\S+ 433 intruder NAT :/);
    intruder.send('NICK Webby');
    await intruder.expect(/^:\S+ 433 intruder Webby :/);
    const native2 = net.connect(server.tcp, '127.0.0.1');
    clients.push({ close: () => native2.destroy() });
    const native2Box = mailbox();
    readline.createInterface({ input: native2 }).on('line', (l) => { try { native2Box.push(JSON.parse(l)); } catch { /* lobby lines */ } });
    native2.write(JSON.stringify({ type: 'hello', user: 'IRCFW' }) + '\n');
    await native2Box.expect({ type: 'error', code: 'name_taken' });

    // native -> IRC
    nat.send({ type: 'message', room, text: 'from native \u00e9' });
    assertFrom(await fw.expect('privmsg', { nick: 'nat', target: chan, message: 'from native \u00e9' }), 'nat', 'native');
    await web.expect({ type: 'message', room, user: 'nat', text: 'from native \u00e9' });
    await wee.waitLog(/\t[@+]?nat\tfrom native \u00e9$/, 'the native member\'s message');

    // WebSocket -> IRC
    web.send({ type: 'message', room, text: 'from the web \u{1F600}' });
    const fromWeb = await fw.expect('privmsg', { nick: 'webby', target: chan, message: 'from the web \u{1F600}' });
    assertFrom(fromWeb, 'webby', 'web');
    assertServerTime(fromWeb.tags, 'a message from the web');
    await nat.expect({ type: 'message', room, user: 'webby', text: 'from the web \u{1F600}' });
    await wee.waitLog(/\t[@+]?webby\tfrom the web \u{1F600}$/u, 'the WebSocket member\'s message');

    // irc-framework -> native, WebSocket, WeeChat
    fw.say(chan, 'from irc-framework');
    for (const c of [nat, web]) {
      const m = await c.expect({ type: 'message', room, user: 'ircfw', text: 'from irc-framework' });
      assert.equal(typeof m.seq, 'number');
    }
    await wee.waitLog(/\t[@+]?ircfw\tfrom irc-framework$/, 'irc-framework\'s message');
    await fw.expect('privmsg', { nick: 'ircfw', message: 'from irc-framework' });  // echo-message

    // WeeChat -> native, WebSocket, irc-framework
    wee.say('from WeeChat');
    for (const c of [nat, web]) await c.expect({ type: 'message', room, user: 'weec', text: 'from WeeChat' });
    await fw.expect('privmsg', { nick: 'weec', target: chan, message: 'from WeeChat' });

    // The WebSocket member leaves: the IRC members see it go (as PART or QUIT).
    web.send({ type: 'leave', room });
    await web.expect({ type: 'left', room });
    await fw.expect(['part', 'quit'], { nick: 'webby' });
    await web.close();
    assert.deepEqual(web.errors, []);
  } catch (e) {
    e.message += `\nWeeChat's output:\n${wee.output()}`;
    throw e;
  } finally {
    for (const c of clients) c.close();
    await wee.stop();
    fw.quit('done');
  }
});

// --auth-secret: irc-framework signs in with its SASL PLAIN (account and password) and with a
// server password (which it sends as PASS and through SASL both); a bad token is refused.
test('with --auth-secret: irc-framework registers with a token through SASL PLAIN or as its password; a bad one is refused',
  { skip: !CHAT && 'chat-server only' }, async () => {
    const dir = tempDir('auth');
    const secret = path.join(dir, 'secret');
    fs.writeFileSync(secret, 'a'.repeat(40) + '\n');
    const mint = (user, ttl = '600') =>
      execFileSync(serverPath, ['--auth-secret', secret, '--mint-token', user, '--token-ttl', ttl]).toString().trim();
    const authed = await startChatServer(['--auth-secret', secret]);
    const clients = [];
    try {
      const sasl = await frameworkClient('saslfw', { account: { account: 'saslfw', password: mint('saslfw') } }, { at: authed });
      clients.push(sasl);
      assert.equal((await sasl.expect('loggedin')).account, 'saslfw');
      assert.ok(sasl.network.cap.enabled.includes('sasl'));
      const pass = await frameworkClient('passfw', { password: mint('passfw') }, { at: authed });
      clients.push(pass);
      sasl.join('#authed');
      await sasl.expect('join', { nick: 'saslfw', channel: '#authed' });
      pass.join('#authed');
      await pass.expect('join', { nick: 'passfw', channel: '#authed' });
      pass.say('#authed', 'signed in');
      await sasl.expect('privmsg', { nick: 'passfw', target: '#authed', message: 'signed in' });

      // Signed by another secret: SASL fails (904), registration is refused (464), the link closes.
      const other = path.join(dir, 'other');
      fs.writeFileSync(other, 'b'.repeat(40) + '\n');
      const forged = execFileSync(serverPath, ['--auth-secret', other, '--mint-token', 'eve']).toString().trim();
      const eve = await frameworkClient('eve', { account: { account: 'eve', password: forged } },
                                        { at: authed, registered: false });
      clients.push(eve);
      await eve.expect('sasl failed');
      await eve.expect('close');
      assert.ok(eve.lines.some((l) => / 904 /.test(l)), eve.lines.join('\n'));
      assert.ok(eve.lines.some((l) => / 464 eve :Password incorrect/.test(l)), eve.lines.join('\n'));
      assert.equal(eve.seen('registered').length, 0);
    } finally {
      for (const c of clients) c.quit('done');
      await authed.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
