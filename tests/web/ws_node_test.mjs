// chat-server's /ws against npm's `ws`, a strict client: it checks Sec-WebSocket-Accept, that server
// frames are unmasked, RSV bits, opcodes and UTF-8, and reports any breach as an 'error' event
// (none may come). Two ws members and one native TCP member talk in one room; a ping's pong carries
// its payload; the close codes a ws client receives for binary (1003) and oversized (1009)
// messages, and the echo of its own 1000. Over TLS: a wss member (ws checking the certificate against
// a throw-away authority, tests/tls/make_test_ca.sh) and a native member over node:tls, with a plain
// ws member, in one room.
//
// Run: node tests/web/ws_node_test.mjs build/bin/chat-server (or CHAT_SERVER, or TEST_PROGRAM_DIR),
// after `npm ci --prefix tests/web` (./dev.sh test does it).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import readline from 'node:readline';
import { after, before, test } from 'node:test';

import harness from '../harness/chatproc.cjs';

let WebSocket;
try {
  ({ default: WebSocket } = await import('ws'));
} catch (e) {
  console.error('ws_node_test: npm package ws is missing: run npm ci --prefix tests/web (./dev.sh test does)');
  process.exit(1);
}

const serverPath = harness.programPath('chat-server', process.argv[2] || process.env.CHAT_SERVER);
if (!serverPath) {
  console.error('usage: node ws_node_test.mjs PATH-TO-chat-server');
  process.exit(2);
}
const TIMEOUT = harness.sanitized() ? 30000 : 10000;
const MAX_FRAME = 1024;

function within(promise, what, ms = TIMEOUT) {
  return harness.withTimeout(promise, ms, `timed out after ${ms} ms waiting for ${what}`);
}

let server;
let ports;
let ca;  // the test authority's certificate (PEM)

before(async () => {
  const caDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-ws-tls-'));
  execFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'tls', 'make_test_ca.sh'), [caDir]);
  ca = fs.readFileSync(path.join(caDir, 'ca.pem'));
  server = new harness.ChatServer(serverPath, [...harness.FREE_PORTS, '--threads', '2',
                                               '--max-frame', String(MAX_FRAME), '--tls-cert', path.join(caDir, 'server.pem'),
                                               '--tls-key', path.join(caDir, 'server.key'), '--tls-port', '0', '--https-port', '0',
                                               '--ircs-port', '0']);
  await server.start(['tcp', 'http', 'tls', 'https']);
  ports = { tcp: server.ports.tcp, http: server.ports.http, tls: server.ports.tls, https: server.ports.https };
});

// SIGTERM: status 0 and no sanitizer report (tests/harness/chatproc.cjs).
after(async () => {
  if (server) await server.stop();
});

// Messages queue up until a test waits for one: push() what arrives, expect(fields) the first
// message (queued or to come) whose fields match.
function mailbox() {
  const inbox = [];
  const waiters = [];
  return {
    push(m) {
      inbox.push(m);
      for (const w of [...waiters]) w();
    },
    expect: (fields) =>
      within(
        new Promise((resolve) => {
          const check = () => {
            const i = inbox.findIndex((m) => Object.entries(fields).every(([k, v]) => m[k] === v));
            if (i < 0) return;
            waiters.splice(waiters.indexOf(check), 1);
            resolve(inbox.splice(i, 1)[0]);
          };
          waiters.push(check);
          check();
        }),
        JSON.stringify(fields),
      ),
  };
}

// A ws client whose JSON messages queue up until a test waits for one; an 'error' event fails.
// `secure`: wss:// on the HTTPS port, the certificate checked against the test authority.
async function wsClient(secure = false) {
  const ws = secure ? new WebSocket(`wss://localhost:${ports.https}/ws`, { ca })
                    : new WebSocket(`ws://127.0.0.1:${ports.http}/ws`);
  const box = mailbox();
  ws.errors = [];
  ws.on('error', (e) => ws.errors.push(e));
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false, 'the server sent a binary message');
    box.push(JSON.parse(data.toString('utf8')));
  });
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.expect = box.expect;
  ws.sendJson = (obj) => ws.send(JSON.stringify(obj));
  await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 'the handshake');
  return ws;
}

// A native member on the chat port: JSON lines. `secure`: on the TLS port (node:tls, checking the
// certificate against the test authority).
async function tcpClient(secure = false) {
  const sock = secure ? tls.connect({ port: ports.tls, host: '127.0.0.1', servername: 'localhost', ca })
                      : net.connect(ports.tcp, '127.0.0.1');
  const ready = secure ? 'secureConnect' : 'connect';
  await within(new Promise((resolve, reject) => { sock.once(ready, resolve); sock.once('error', reject); }), 'TCP connect');
  if (secure) assert.equal(sock.authorized, true, String(sock.authorizationError));
  const box = mailbox();
  readline.createInterface({ input: sock }).on('line', (line) => {
    let m;
    try { m = JSON.parse(line); } catch { return; }  // the article's lines before the welcome
    box.push(m);
  });
  return {
    send: (obj) => sock.write(JSON.stringify(obj) + '\n'),
    expect: box.expect,
    close: () => sock.destroy(),
  };
}

test('two ws members and a TCP member exchange messages in one room', async () => {
  const ann = await wsClient();
  const bob = await wsClient();
  const cat = await tcpClient();
  ann.sendJson({ type: 'hello', user: 'nann' });
  await ann.expect({ type: 'welcome', user: 'nann' });
  bob.sendJson({ type: 'hello', user: 'nbob' });
  await bob.expect({ type: 'welcome', user: 'nbob' });
  cat.send({ type: 'hello', user: 'ncat' });
  await cat.expect({ type: 'welcome', user: 'ncat' });
  for (const c of [ann, bob, cat]) {
    (c.sendJson || c.send)({ type: 'join', room: 'node' });
    await c.expect({ type: 'joined', room: 'node' });
  }
  await ann.expect({ type: 'join', room: 'node', user: 'ncat' });

  const text = 'caf\u00e9 \u{1F600} <img src=x onerror=alert(1)>';
  ann.sendJson({ type: 'message', room: 'node', text });
  for (const c of [ann, bob, cat]) {
    const m = await c.expect({ type: 'message', room: 'node', user: 'nann' });
    assert.equal(m.text, text);
  }
  cat.send({ type: 'message', room: 'node', text: 'from tcp' });
  for (const c of [ann, bob]) await c.expect({ type: 'message', room: 'node', user: 'ncat', text: 'from tcp' });

  // A ping's pong carries its payload.
  const payload = Buffer.from([0, 1, 2, 0xff, 0x41]);
  const pong = within(new Promise((resolve) => bob.once('pong', resolve)), 'the pong');
  bob.ping(payload);
  assert.deepEqual(await pong, payload);

  bob.close(1000, 'bye');
  const closed = await bob.closed;
  assert.equal(closed.code, 1000);
  await ann.expect({ type: 'leave', room: 'node', user: 'nbob' });
  ann.close();
  await ann.closed;
  cat.close();
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(bob.errors, []);
});

test('a binary message is closed with 1003', async () => {
  const ws = await wsClient();
  ws.send(Buffer.from('{"type":"ping"}'));
  assert.equal((await within(ws.closed, 'the close')).code, 1003);
  assert.deepEqual(ws.errors, []);
});

test('a message over --max-frame is closed with 1009', async () => {
  const ws = await wsClient();
  ws.send('x'.repeat(MAX_FRAME + 1));
  assert.equal((await within(ws.closed, 'the close')).code, 1009);
  assert.deepEqual(ws.errors, []);
});

test('a fragmented message is delivered whole', async () => {
  const ws = await wsClient();
  ws.sendJson({ type: 'hello', user: 'nfrag' });
  await ws.expect({ type: 'welcome' });
  const json = JSON.stringify({ type: 'ping', id: 'fragmented \u20ac' });
  const cut = json.indexOf('\u20ac') + 1;  // splits nothing in UTF-16; ws cuts the bytes below
  const bytes = Buffer.from(json);
  const at = Buffer.from(json.slice(0, cut - 1)).length + 1;  // inside the euro sign's bytes
  ws.send(bytes.subarray(0, at), { binary: false, fin: false });
  ws.send(bytes.subarray(at), { binary: false, fin: true });
  await ws.expect({ type: 'pong', id: 'fragmented \u20ac' });
  ws.close();
  assert.equal((await ws.closed).code, 1005);  // ws's close() without a code sends none
  assert.deepEqual(ws.errors, []);
});

test('over TLS: a wss member and a native member over node:tls chat with a plain ws member', async () => {
  const sec = await wsClient(true);
  const tcp = await tcpClient(true);
  const pla = await wsClient();
  sec.sendJson({ type: 'hello', user: 'wss' });
  await sec.expect({ type: 'welcome', user: 'wss' });
  tcp.send({ type: 'hello', user: 'tlstcp' });
  await tcp.expect({ type: 'welcome', user: 'tlstcp' });
  pla.sendJson({ type: 'hello', user: 'plainws' });
  await pla.expect({ type: 'welcome', user: 'plainws' });
  for (const c of [sec, tcp, pla]) {
    (c.sendJson || c.send)({ type: 'join', room: 'secure' });
    await c.expect({ type: 'joined', room: 'secure' });
  }
  const big = 'z'.repeat(MAX_FRAME - 100);  // near the frame limit: a record of its own
  sec.sendJson({ type: 'message', room: 'secure', text: big });
  tcp.send({ type: 'message', room: 'secure', text: 'from node:tls' });
  pla.sendJson({ type: 'message', room: 'secure', text: 'from plain ws' });
  for (const c of [sec, tcp, pla]) {
    assert.equal((await c.expect({ type: 'message', room: 'secure', user: 'wss' })).text, big);
    await c.expect({ type: 'message', room: 'secure', user: 'tlstcp', text: 'from node:tls' });
    await c.expect({ type: 'message', room: 'secure', user: 'plainws', text: 'from plain ws' });
  }
  sec.close(1000, 'bye');
  assert.equal((await sec.closed).code, 1000);
  pla.close();
  await pla.closed;
  tcp.close();
  assert.deepEqual(sec.errors, []);
});
