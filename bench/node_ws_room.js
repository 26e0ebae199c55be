// A Node.js chat room over WebSocket, for the benchmark's comparison with chat-server's GET /ws:
// npm's `ws` package (the usual choice for a Node WebSocket server) serving one room with the part
// of docs/PROTOCOL.md that loadgen --dialect ws uses: hello -> welcome, join -> joined, message ->
// the message with the room's seq and ts to every member (the sender included), ping -> pong.
// Any room name is accepted and they all share the one room; there is no presence (chat-server
// sends none either in rooms over --presence-max-members, as in the benchmark's rooms).
//
// Usage: node bench/node_ws_room.js [PORT] [HOST]   (PORT 0 picks a free port)
// Prints "node-ws-room: listening on HOST:PORT" when ready. Install `ws` first: npm ci --prefix bench
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '127.0.0.1';

const members = new Set();
let seq = 0;

function reply(ws, obj) {
  ws.send(JSON.stringify(obj));
}

function error(ws, code, message) {
  reply(ws, { type: 'error', code, message });
}

const wss = new WebSocketServer({ host, port, path: '/ws', backlog: 4096, perMessageDeflate: false,
                                  clientTracking: false, maxPayload: 64 * 1024 });
wss.on('connection', (ws) => {
  let user = null;
  let joined = false;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003, 'binary messages are not this protocol');
    let m;
    try {
      m = JSON.parse(data.toString());
    } catch {
      return error(ws, 'bad_json', 'frame is not valid JSON');
    }
    if (m === null || typeof m !== 'object') return error(ws, 'bad_json', 'not a JSON object');
    if (user === null && m.type !== 'hello') return error(ws, 'hello_first', 'say hello first');
    switch (m.type) {
      case 'hello':
        if (typeof m.user !== 'string' || m.user.length === 0) return error(ws, 'bad_name', 'bad user name');
        user = m.user;
        return reply(ws, { type: 'welcome', user });
      case 'join':
        if (!joined) {
          joined = true;
          members.add(ws);
        }
        return reply(ws, { type: 'joined', room: m.room, count: members.size });
      case 'message': {
        if (!joined) return error(ws, 'not_in_room', 'join the room first');
        // One string for every member, framed by `ws` per member (its broadcast pattern).
        const out = JSON.stringify({ type: 'message', room: m.room, user, text: m.text, ts: Date.now(), seq: ++seq });
        for (const member of members) member.send(out);
        return;
      }
      case 'ping':
        return reply(ws, m.id === undefined ? { type: 'pong' } : { type: 'pong', id: m.id });
      default:
        return error(ws, 'bad_type', 'unknown type');
    }
  });
  ws.on('close', () => members.delete(ws));
  ws.on('error', () => members.delete(ws));  // a client's reset is not the server's problem
});
wss.on('error', (err) => {
  console.error(`node-ws-room: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`node-ws-room: listening on ${a.address}:${a.port} (ws ${require('ws/package.json').version})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
