#!/usr/bin/env node
// The chat page in a real browser: Debian's headless Chromium, driven by playwright-core, against
// a real chat-server started here. Two pages and one native TCP client talk in one room; presence,
// unread counts, a taken name, text that looks like HTML, the keyboard path, a phone-size screen,
// and a server restart the pages must live through. Every wait is on a condition, with a timeout.
//
//   CHAT_SERVER   path to the chat-server binary (default: build/bin/chat-server of this repo)
//   SCREENSHOT    where to save the page's screenshot (default: tests/browser/chat.png); the
//                 phone-size one goes beside it with "-phone" before the extension
//   CHROMIUM      the browser (default: /usr/bin/chromium); none is ever downloaded
//   CHAT_SERVER_ARGS  extra flags for the server, split on spaces
'use strict';

const { spawn } = require('node:child_process');
const net = require('node:net');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const fs = require('node:fs');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
// TEST_PROGRAM_DIR (set by dev.sh for the sanitizer runs) wins, as for the C++ integration tests.
const CLIENT_BIN = process.env.TEST_PROGRAM_DIR
  ? path.join(process.env.TEST_PROGRAM_DIR, 'chat-client')
  : process.env.CHAT_CLIENT || path.join(REPO, 'build', 'bin', 'chat-client');
const SERVER_BIN = process.env.TEST_PROGRAM_DIR
  ? path.join(process.env.TEST_PROGRAM_DIR, 'chat-server')
  : process.env.CHAT_SERVER || path.join(REPO, 'build', 'bin', 'chat-server');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.resolve(process.env.SCREENSHOT || path.join(__dirname, 'chat.png'));
const PHONE_SCREENSHOT = SCREENSHOT.replace(/(\.png)?$/i, '-phone.png');
const EXTRA_ARGS = (process.env.CHAT_SERVER_ARGS || '').split(' ').filter(Boolean);

// Generous: the machine that runs this is shared and loaded.
const WAIT_MS = 20000;
const RECONNECT_MS = 45000;

// ---- the server ------------------------------------------------------------------------------

// The chat listener prints "chat-server: listening on HOST:PORT (...)"; the HTTP listener a line
// with "http" before "listening on HOST:PORT". HOST may be an IPv6 address in brackets.
const CHAT_LINE = /^(?:chat-server:\s*)?listening on \S*:(\d+)\b/;
const HTTP_LINE = /\bhttp\b.*\blistening on \S*:(\d+)\b/i;

class Server {
  constructor(httpPort) {
    this.httpPort = httpPort;
    this.output = [];
    this.exited = null;
  }

  start() {
    if (!fs.existsSync(SERVER_BIN)) throw new Error('no chat-server at ' + SERVER_BIN + ' (set CHAT_SERVER)');
    const args = ['--port', '0', '--http-port', String(this.httpPort), '--threads', '2', ...EXTRA_ARGS];
    // Started away from the repo: the server must find its page wherever it is started from.
    this.proc = spawn(SERVER_BIN, args, { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.exitedPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => { this.exited = { code, signal }; resolve(this.exited); });
    });
    return new Promise((resolve, reject) => {
      let chatPort = null;
      let httpPort = null;
      const timer = setTimeout(() => fail(new Error('server did not print both listening lines within ' +
        WAIT_MS + ' ms')), WAIT_MS);
      const fail = (err) => { clearTimeout(timer); reject(err); };
      const onLine = (line, stream) => {
        this.output.push(stream + ': ' + line);
        let m;
        if ((m = HTTP_LINE.exec(line))) httpPort = Number(m[1]);
        else if ((m = CHAT_LINE.exec(line))) chatPort = Number(m[1]);
        if (chatPort !== null && httpPort !== null) {
          clearTimeout(timer);
          this.chatPort = chatPort;
          this.httpPort = httpPort;
          resolve(this);
        }
      };
      lines(this.proc.stdout, (l) => onLine(l, 'stdout'));
      lines(this.proc.stderr, (l) => onLine(l, 'stderr'));
      this.proc.on('exit', (code, signal) => fail(new Error('server exited early: ' + (signal || code))));
      this.proc.on('error', fail);
    });
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.exited) return this.exited;
    this.proc.kill(signal);
    return withTimeout(this.exitedPromise, WAIT_MS, 'server did not exit after ' + signal);
  }

  url(p = '/') { return 'http://127.0.0.1:' + this.httpPort + p; }
}

function lines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// A port nobody holds now, so that a restarted server can take the same one again (the page
// reconnects to the address it was loaded from).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(WAIT_MS, () => req.destroy(new Error('GET ' + url + ' timed out')));
  });
}

// ---- a native client over TCP: JSON lines, as chat-client speaks them ----------------------------

class NativeClient {
  constructor(name) {
    this.name = name;
    this.received = [];
    this.waiters = [];
  }

  connect(port) {
    return new Promise((resolve, reject) => {
      this.sock = net.connect(port, '127.0.0.1', resolve);
      this.sock.on('error', reject);
      lines(this.sock, (line) => {
        if (!line.trim()) return;
        const msg = JSON.parse(line);
        this.received.push(msg);
        this.waiters = this.waiters.filter((w) => !w.check());
      });
    });
  }

  send(obj) { this.sock.write(JSON.stringify(obj) + '\n'); }

  // Resolves with the first received message (past or future) that matches.
  waitFor(predicate, what) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const found = this.received.find(predicate);
          if (!found) return false;
          clearTimeout(waiter.timer);
          resolve(found);
          return true;
        },
      };
      if (waiter.check()) return;
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(this.name + ' (TCP) did not get ' + what + '; got: ' +
          this.received.map((m) => JSON.stringify(m)).join(' ')));
      }, WAIT_MS);
      this.waiters.push(waiter);
    });
  }

  close() { if (this.sock) this.sock.end(); }
}

// ---- the page, as a person uses it -----------------------------------------------------------

async function openPage(browser, server, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.dialogs = [];
  page.errors = [];
  page.on('dialog', (d) => { page.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(server.url('/'), { timeout: WAIT_MS });
  await waitConn(page, 'online');
  return page;
}

function waitConn(page, kind, timeout = WAIT_MS) {
  return page.waitForFunction((k) => document.body.dataset.conn === k, kind, { timeout });
}

async function enterAs(page, name) {
  await page.fill('#name-input', name);
  await page.press('#name-input', 'Enter');
  await page.waitForFunction(() => document.getElementById('room-title').textContent === '#lobby' &&
    !document.getElementById('chat').hidden, null, { timeout: WAIT_MS });
}

async function say(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

function waitMessage(page, user, text, timeout = WAIT_MS) {
  return page.waitForFunction(([u, t]) => Array.from(document.querySelectorAll('#messages li.message'))
    .some((li) => li.querySelector('.sender').textContent === u && li.querySelector('.text').textContent === t),
  [user, text], { timeout });
}

function waitMembers(page, names, timeout = WAIT_MS) {
  return page.waitForFunction((want) => {
    const have = Array.from(document.querySelectorAll('#member-list li:not(.others)'))
      .map((li) => li.firstChild.textContent);
    return want.every((n) => have.includes(n));
  }, names, { timeout });
}

function waitLoginError(page, pattern) {
  return page.waitForFunction((p) => new RegExp(p, 'i').test(document.getElementById('login-error').textContent),
    pattern, { timeout: WAIT_MS });
}

// ---- the run ---------------------------------------------------------------------------------

const steps = [];
function step(name, fn) { steps.push({ name, fn }); }

async function main() {
  const httpPort = await freePort();
  let server = new Server(httpPort);
  let browser;
  let carol;
  const pages = [];
  const t = {};

  step('the server starts, its HTTP listener answers /healthz and serves the page', async () => {
    await server.start();
    const health = await httpGet(server.url('/healthz'));
    if (health.status !== 200) throw new Error('/healthz answered ' + health.status);
    const index = await httpGet(server.url('/'));
    if (index.status !== 200 || !/<title>Reactor Chat<\/title>/.test(index.body)) {
      throw new Error('GET / answered ' + index.status + ' without the chat page');
    }
  });

  step('two pages load, come online and enter as alice and bob; both start in lobby', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: WAIT_MS });
    t.alice = await openPage(browser, server, { viewport: { width: 1200, height: 760 } });
    pages.push(t.alice);
    await enterAs(t.alice, 'alice');
    await waitMembers(t.alice, ['alice']);
    t.bob = await openPage(browser, server, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    pages.push(t.bob);
    await enterAs(t.bob, 'bob');
    await waitMembers(t.bob, ['alice', 'bob']);
  });

  step('presence: bob joining shows on alice\'s page (member list, count, a line in the log)', async () => {
    await waitMembers(t.alice, ['alice', 'bob']);
    await t.alice.waitForFunction(() => /\b2 people\b/.test(document.getElementById('member-count').textContent),
      null, { timeout: WAIT_MS });
    await t.alice.waitForFunction(() => Array.from(document.querySelectorAll('#messages li.system'))
      .some((li) => li.textContent === 'bob joined'), null, { timeout: WAIT_MS });
  });

  step('a taken name and a bad name are refused with a clear message, and the page can still enter', async () => {
    const other = await openPage(browser, server);
    await other.fill('#name-input', 'alice');
    await other.press('#name-input', 'Enter');
    await waitLoginError(other, 'taken');
    if (!(await other.isVisible('#login-form'))) throw new Error('the login form went away after name_taken');
    await other.fill('#name-input', 'not a name!');
    await other.press('#name-input', 'Enter');
    await waitLoginError(other, 'not a valid name');
    await enterAs(other, 'dave');
    await waitMembers(t.alice, ['dave']);
    await other.context().close();
    await t.alice.waitForFunction(() => Array.from(document.querySelectorAll('#messages li.system'))
      .some((li) => li.textContent === 'dave left'), null, { timeout: WAIT_MS });
  });

  step('a native TCP client (carol) joins lobby and appears on both pages', async () => {
    carol = new NativeClient('carol');
    await carol.connect(server.chatPort);
    carol.send({ type: 'hello', user: 'carol' });
    await carol.waitFor((m) => m.type === 'welcome' && m.user === 'carol', 'welcome');
    carol.send({ type: 'join', room: 'lobby' });
    const joined = await carol.waitFor((m) => m.type === 'joined' && m.room === 'lobby', 'joined lobby');
    if (joined.count !== 3) throw new Error('carol joined a lobby of ' + joined.count + ', expected 3');
    await waitMembers(t.alice, ['alice', 'bob', 'carol']);
    await waitMembers(t.bob, ['alice', 'bob', 'carol']);
  });

  step('chat-client (the terminal client) talks with the pages both ways', async () => {
    if (!fs.existsSync(CLIENT_BIN)) throw new Error('no chat-client at ' + CLIENT_BIN + ' (set CHAT_CLIENT)');
    const cli = spawn(CLIENT_BIN, ['--port', String(server.chatPort), '--user', 'erin', '--room', 'lobby'],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    cli.stdout.on('data', (d) => { out += d.toString(); });
    try {
      await waitMembers(t.alice, ['alice', 'bob', 'carol', 'erin']);
      cli.stdin.write('hello from the terminal\n');
      await waitMessage(t.alice, 'erin', 'hello from the terminal');
      await waitMessage(t.bob, 'erin', 'hello from the terminal');
      await say(t.bob, 'hello erin');
      const deadline = Date.now() + 10000;
      while (!out.includes('[lobby] bob: hello erin')) {
        if (Date.now() > deadline) throw new Error('chat-client printed: ' + JSON.stringify(out));
        await new Promise((r) => cli.stdout.once('data', r));
      }
    } finally {
      cli.stdin.end('/quit\n');
      await new Promise((r) => { if (cli.exitCode !== null) r(); else cli.once('exit', r); });
    }
    await waitMembers(t.alice, ['alice', 'bob', 'carol']);
  });

  step('messages go every way between the two pages and the TCP client, with sender and time', async () => {
    const before = Date.now();
    await say(t.alice, 'hello from alice');
    await waitMessage(t.bob, 'alice', 'hello from alice');
    await waitMessage(t.alice, 'alice', 'hello from alice');
    const got = await carol.waitFor((m) => m.type === 'message' && m.text === 'hello from alice', 'alice\'s message');
    if (got.user !== 'alice' || got.room !== 'lobby') throw new Error('carol got ' + JSON.stringify(got));

    await say(t.bob, 'hello from bob');
    await waitMessage(t.alice, 'bob', 'hello from bob');
    await carol.waitFor((m) => m.type === 'message' && m.user === 'bob' && m.text === 'hello from bob', 'bob\'s message');

    carol.send({ type: 'message', room: 'lobby', text: 'hello from carol' });
    await waitMessage(t.alice, 'carol', 'hello from carol');
    await waitMessage(t.bob, 'carol', 'hello from carol');

    // The time shown is the server's ts: a <time> whose datetime is within this step.
    const stamp = await t.bob.evaluate(() => {
      const li = Array.from(document.querySelectorAll('#messages li.message'))
        .find((x) => x.querySelector('.text').textContent === 'hello from carol');
      const time = li.querySelector('time');
      return { datetime: time.dateTime, shown: time.textContent };
    });
    const ts = Date.parse(stamp.datetime);
    if (!(ts >= before - 60000 && ts <= Date.now() + 60000) || !/\d/.test(stamp.shown)) {
      throw new Error('message time looks wrong: ' + JSON.stringify(stamp));
    }
  });

  step('unread counts: a message in a room not shown is counted, and read when the room is opened', async () => {
    // Keyboard only: Tab to the join box, type, Enter.
    await t.bob.focus('#join-input');
    await t.bob.keyboard.type('side');
    await t.bob.keyboard.press('Enter');
    await t.bob.waitForFunction(() => document.getElementById('room-title').textContent === '#side', null,
      { timeout: WAIT_MS });
    carol.send({ type: 'message', room: 'lobby', text: 'while bob looks away' });
    await t.bob.waitForFunction(() => {
      const b = document.querySelector('#room-list button[data-room="lobby"] .unread');
      return b && b.firstChild.textContent === '1';
    }, null, { timeout: WAIT_MS });
    await t.bob.click('#room-list button[data-room="lobby"]');
    await waitMessage(t.bob, 'carol', 'while bob looks away');
    await t.bob.waitForFunction(() => !document.querySelector('#room-list button[data-room="lobby"] .unread'),
      null, { timeout: WAIT_MS });
  });

  step('text that looks like HTML shows as text and runs nothing', async () => {
    const attack = '<img src=x onerror=alert(1)>';
    const attack2 = '<script>alert(2)</script><b onmouseover=alert(3)>bold?</b>';
    await say(t.alice, attack);
    carol.send({ type: 'message', room: 'lobby', text: attack2 });
    // A plain message after them, seen by both pages: whatever the two did has been done by then.
    carol.send({ type: 'message', room: 'lobby', text: 'after the markup' });
    for (const page of [t.alice, t.bob]) {
      await waitMessage(page, 'carol', 'after the markup');
      const elements = await page.evaluate(() => document.querySelectorAll('#messages img, #messages script, #messages b').length);
      if (elements !== 0) throw new Error('a message became ' + elements + ' HTML element(s)');
      if (page.dialogs.length) throw new Error('a dialog fired: ' + page.dialogs.join(', '));
      await waitMessage(page, 'alice', attack);
      await waitMessage(page, 'carol', attack2);
    }
  });

  step('keyboard alone: Tab reaches the message box, Enter sends, and focus is visible', async () => {
    await t.alice.focus('#name-input').catch(() => {});
    await t.alice.evaluate(() => document.activeElement && document.activeElement.blur());
    let reached = false;
    for (let i = 0; i < 30 && !reached; i++) {
      await t.alice.keyboard.press('Tab');
      reached = await t.alice.evaluate(() => document.activeElement && document.activeElement.id === 'message-input');
    }
    if (!reached) throw new Error('Tab never reached the message box');
    const outline = await t.alice.evaluate(() => {
      const style = getComputedStyle(document.activeElement);
      return { style: style.outlineStyle, width: parseFloat(style.outlineWidth) };
    });
    if (outline.style === 'none' || !(outline.width >= 2)) {
      throw new Error('no visible focus on the message box: ' + JSON.stringify(outline));
    }
    await t.alice.keyboard.type('typed with the keyboard');
    await t.alice.keyboard.press('Enter');
    await waitMessage(t.alice, 'alice', 'typed with the keyboard');
    await waitMessage(t.bob, 'alice', 'typed with the keyboard');
    await carol.waitFor((m) => m.type === 'message' && m.text === 'typed with the keyboard', 'the typed message');
  });

  step('screenshots: a desktop window and a phone-size screen', async () => {
    await t.alice.screenshot({ path: SCREENSHOT });
    const fits = await t.bob.evaluate(() => {
      const input = document.getElementById('message-input').getBoundingClientRect();
      return {
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        inputVisible: input.bottom <= window.innerHeight && input.top >= 0 && input.width > 100,
      };
    });
    if (fits.overflow > 0) throw new Error('the phone-size page scrolls sideways by ' + fits.overflow + ' px');
    if (!fits.inputVisible) throw new Error('the message box is not on a phone-size screen');
    await t.bob.screenshot({ path: PHONE_SCREENSHOT });
  });

  step('a server restart: the pages show they are offline, come back by themselves, rejoin and talk', async () => {
    carol.close();
    await waitMembers(t.alice, ['alice', 'bob']);
    const exit = await server.stop('SIGTERM');
    if (exit.code !== 0) throw new Error('server stopped with ' + JSON.stringify(exit));
    await waitConn(t.alice, 'offline');
    await waitConn(t.bob, 'offline');
    const offlineText = await t.alice.textContent('#conn-text');
    if (!/offline/i.test(offlineText)) throw new Error('the page does not say it is offline: ' + offlineText);

    server = new Server(httpPort);
    await server.start();
    if (server.httpPort !== httpPort) throw new Error('restarted server is on ' + server.httpPort);
    await waitConn(t.alice, 'online', RECONNECT_MS);
    await waitConn(t.bob, 'online', RECONNECT_MS);
    // Both greeted again with their names and rejoined lobby (bob also side).
    await waitMembers(t.alice, ['alice', 'bob'], RECONNECT_MS);
    await waitMembers(t.bob, ['alice', 'bob'], RECONNECT_MS);
    await t.bob.waitForFunction(() => Array.from(document.querySelectorAll('#room-list button:not(.stale)'))
      .map((b) => b.dataset.room).join(',') === 'lobby,side', null, { timeout: RECONNECT_MS });
    await say(t.alice, 'back after the restart');
    await waitMessage(t.bob, 'alice', 'back after the restart');
    await say(t.bob, 'welcome back');
    await waitMessage(t.alice, 'bob', 'welcome back');
  });

  step('keep-alive: a page pings every 20 s and gives up a server that stops answering, then comes back', async () => {
    // This page's clock is Playwright's: 20 s of pings pass in an instant. The server is stopped
    // (SIGSTOP), so the connection stays open but nothing answers, as over a dead link.
    const context = await browser.newContext();
    const page = await context.newPage();
    page.errors = [];
    page.dialogs = [];
    page.on('pageerror', (e) => page.errors.push(String(e)));
    page.on('dialog', (d) => { page.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
    pages.push(page);
    let pongs = 0;
    let onPong = null;
    page.on('websocket', (ws) => ws.on('framereceived', (f) => {
      if (/"type"\s*:\s*"pong"/.test(String(f.payload))) { pongs += 1; if (onPong) onPong(); }
    }));
    await page.clock.install();
    await page.goto(server.url('/'), { timeout: WAIT_MS });
    await waitConn(page, 'online');
    await enterAs(page, 'erin');
    const pong = new Promise((resolve) => { onPong = resolve; });
    await page.clock.runFor(21000);
    await withTimeout(pong, WAIT_MS, 'no pong for the page\'s keep-alive ping');
    if (pongs < 1) throw new Error('no pong');
    server.proc.kill('SIGSTOP');
    try {
      await page.clock.runFor(20000);      // a ping nobody answers
      await page.clock.runFor(20000);      // the next one finds it unanswered: the page gives up
      await waitConn(page, 'offline');
    } finally {
      server.proc.kill('SIGCONT');
    }
    // Time flows again from here, so the page's backoff (and a retry should the server not yet
    // have let go of the old connection's name) runs as it would for a person.
    await page.clock.resume();
    await waitConn(page, 'online', RECONNECT_MS);
    await waitMembers(page, ['erin']);
  });

  step('no script errors on any page', async () => {
    for (const page of pages) {
      if (page.errors.length) throw new Error('page errors: ' + page.errors.join(' | '));
      if (page.dialogs.length) throw new Error('dialogs: ' + page.dialogs.join(', '));
    }
  });

  let failed = false;
  try {
    for (const s of steps) {
      const started = Date.now();
      try {
        await s.fn();
        console.log('ok   ' + s.name + ' (' + (Date.now() - started) + ' ms)');
      } catch (e) {
        failed = true;
        console.log('FAIL ' + s.name + '\n     ' + (e && e.stack || e));
        break;
      }
    }
  } finally {
    if (failed) {
      for (const page of pages) {
        const shot = SCREENSHOT.replace(/(\.png)?$/i, '-failed-' + pages.indexOf(page) + '.png');
        await page.screenshot({ path: shot }).then(() => console.log('     page at failure: ' + shot), () => {});
      }
      console.log('     server output:\n       ' + server.output.slice(-40).join('\n       '));
    }
    if (carol) carol.close();
    if (browser) await browser.close().catch(() => {});
    await server.stop('SIGKILL').catch(() => {});
  }
  if (!failed) console.log('screenshots: ' + SCREENSHOT + ' ' + PHONE_SCREENSHOT);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
