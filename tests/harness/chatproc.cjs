// What the Node tests of chat-server share (tests/web/ws_node_test.mjs, tests/irc/irc_clients_test.mjs,
// tests/browser/chat_page.test.js), as tests/harness/chatproc.py does for the Python ones: which
// program to test, a chat-server started with the test's flags whose ports are read from the lines
// it prints ("chat-server: [KIND ]listening on HOST:PORT"), stopped with SIGTERM and required to exit
// with status 0 and no sanitizer report on its stderr. Every wait has a deadline; nothing sleeps.
//
// CommonJS, so that both kinds of test load it: require('../harness/chatproc.cjs'), or
// import harness from '../harness/chatproc.cjs'.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

// The program `name` (chat-server, chat-client) to test: $TEST_PROGRAM_DIR/name when it is set (dev.sh
// runs the integration tests against the ASan and TSan programs that way), else `given` (the test's
// argument, or its environment's), else `fallback`.
function programPath(name, given, fallback) {
  if (process.env.TEST_PROGRAM_DIR) return path.join(process.env.TEST_PROGRAM_DIR, name);
  return given || fallback;
}

// True when the programs are a sanitizer build's: slower, so deadlines are longer.
function sanitized() {
  return Boolean(process.env.TEST_PROGRAM_DIR);
}

// What a sanitizer writes on stderr when it finds something (tests/integration/process.cpp and
// tests/harness/chatproc.py look for the same; any ThreadSanitizer line counts).
const SANITIZER_MARKS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'ThreadSanitizer'];

// The report from the line with the first marker on (up to 6000 characters), or ''.
function sanitizerReport(text) {
  for (const mark of SANITIZER_MARKS) {
    const at = text.indexOf(mark);
    if (at < 0) continue;
    const from = text.lastIndexOf('\n', at) + 1;
    return text.slice(from, from + 6000);
  }
  return '';
}

// A program run by a test ended: it must have exited with 0 and reported nothing. Throws otherwise.
function checkExit(what, code, signal, stderr) {
  const report = sanitizerReport(stderr);
  if (report) throw new Error(what + ' wrote a sanitizer report on stderr:\n' + report);
  if (code !== 0 || signal) {
    throw new Error(what + ' exited with ' + (signal ? 'signal ' + signal : 'status ' + code) + '; stderr:\n' +
      stderr.slice(-4000));
  }
}

// `promise`, or an Error(message) once `ms` have passed.
function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// Calls onLine with each line of `stream`; options.tail: also a last line without its newline (a
// program's last words, a sanitizer's report, may end without one).
function lines(stream, onLine, options = {}) {
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
  if (options.tail) stream.on('end', () => { if (buf) onLine(buf); buf = ''; });
}

// A loopback port nobody holds now (for a server that must keep its port across restarts, or one
// that cannot listen on port 0 and say which it got).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The flags that put every plain listener of chat-server on a free port, its history in memory.
const FREE_PORTS = ['--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--irc-port', '0', '--store', 'memory'];

// "chat-server: listening on 127.0.0.1:4000 (...)", "chat-server: http listening on [::1]:8080 ...".
const LISTENING = /^chat-server: (?:(\w+) )?listening on \S*:(\d+)\b/;

const DEFAULT_WAIT_MS = sanitized() ? 40000 : 20000;

// One chat-server process. ports.tcp (the chat port), ports.http, ports.irc, ports.tls, ... as it
// prints them; stderr and output (both streams' lines) kept for the errors.
class ChatServer {
  // options.cwd: where it starts; options.waitMs: the deadline of start() and of stop()'s wait.
  constructor(program, args, options = {}) {
    this.program = program;
    this.args = args;
    this.cwd = options.cwd;
    this.waitMs = options.waitMs || DEFAULT_WAIT_MS;
    this.ports = {};
    this.output = [];
    this.stderr = '';
    this.exited = null;
    this.stopping = null;
  }

  // Starts it; resolves once it has said the ports of every listener `wanted` names ('tcp', 'http',
  // 'irc', 'tls', 'https', 'ircs'). A server that does not is killed, and the error carries its output.
  start(wanted = ['tcp']) {
    if (!this.program || !fs.existsSync(this.program)) {
      return Promise.reject(new Error('no chat-server at ' + this.program + ' (give its path, or set CHAT_SERVER)'));
    }
    this.proc = spawn(this.program, this.args, { cwd: this.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    ChatServer.all.push(this);
    this.exitedPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => { this.exited = { code, signal }; resolve(this.exited); });
    });
    // 'close' comes once its output has been read to the end, unlike 'exit'.
    this.closedPromise = new Promise((resolve) => this.proc.on('close', resolve));
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => fail(new Error('chat-server did not print the ports of ' + wanted.join(', ') +
        ' within ' + this.waitMs + ' ms')), this.waitMs);
      const fail = (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        err.message += ' (' + this.program + ' ' + this.args.join(' ') + '); its output:\n       ' +
          this.output.slice(-20).join('\n       ');
        if (!this.exited) this.proc.kill('SIGKILL');
        this.stopping = this.exitedPromise.then(() => null);  // nothing more to check: it failed here
        reject(err);
      };
      const onLine = (line, stream) => {
        this.output.push(stream + ': ' + line);
        const m = LISTENING.exec(line);
        if (m) this.ports[m[1] || 'tcp'] = Number(m[2]);
        if (!done && wanted.every((k) => this.ports[k] !== undefined)) {
          done = true;
          clearTimeout(timer);
          resolve(this);
        }
      };
      lines(this.proc.stdout, (l) => onLine(l, 'stdout'), { tail: true });
      lines(this.proc.stderr, (l) => { this.stderr += l + '\n'; onLine(l, 'stderr'); }, { tail: true });
      this.proc.on('exit', (code, signal) => fail(new Error('chat-server exited early: ' + (signal || code))));
      this.proc.on('error', fail);
    });
  }

  // SIGCONT (should a test have left it stopped), then SIGTERM: exit status 0, and no sanitizer
  // report in what it wrote on stderr (throws otherwise). Once: later calls get the same result.
  // Never SIGCONT after SIGTERM: a process already exiting under LeakSanitizer is being stopped by
  // its checker, and a SIGCONT then cancels that stop and hangs the checker for good.
  stop() {
    if (!this.proc) return Promise.resolve(null);
    if (!this.stopping) {
      this.stopping = (async () => {
        const what = 'chat-server (pid ' + this.proc.pid + ')';
        if (!this.exited) {
          this.proc.kill('SIGCONT');
          this.proc.kill('SIGTERM');
        }
        let exit;
        try {
          exit = await withTimeout(this.exitedPromise, this.waitMs,
            what + ' did not exit within ' + this.waitMs + ' ms of SIGTERM');
        } catch (e) {
          this.proc.kill('SIGKILL');
          await this.exitedPromise;
          throw new Error(e.message + '; stderr:\n' + this.stderr.slice(-4000));
        }
        // Its output read to the end, a sanitizer's report at exit included.
        await withTimeout(this.closedPromise, this.waitMs, what + ': its output did not end');
        checkExit(what + ', stopped with SIGTERM,', exit.code, exit.signal, this.stderr);
        return exit;
      })();
    }
    return this.stopping;
  }
}
ChatServer.all = [];  // every server started, for stopAll()

// Stops (SIGTERM, see ChatServer.stop) every server not stopped yet; their errors, as one.
async function stopAll() {
  const problems = [];
  for (const s of ChatServer.all) {
    if (s.stopping) continue;
    await s.stop().catch((e) => problems.push(e.message));
  }
  if (problems.length) throw new Error(problems.join('\n'));
}

// A test that ends on an uncaught error leaves no server behind.
process.on('exit', () => {
  for (const s of ChatServer.all) {
    if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
  }
});

module.exports = {
  programPath, sanitized, SANITIZER_MARKS, sanitizerReport, checkExit, withTimeout, lines, freePort, FREE_PORTS,
  LISTENING, ChatServer, stopAll,
};
