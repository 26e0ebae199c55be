// A Node.js echo server for the benchmark: libuv's reactor (epoll) under the `net` module, the
// article's example of the pattern in production. Usage: node bench/node_echo.js [PORT] [HOST]
// PORT 0 picks a free port. Prints "node-echo: listening on HOST:PORT" when ready.
'use strict';
const net = require('net');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '127.0.0.1';

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('error', () => socket.destroy());  // a client's reset is not the server's problem
});
server.maxConnections = 0x7fffffff;
server.on('error', (err) => {
  console.error(`node-echo: ${err.message}`);
  process.exit(1);
});
server.listen({ port, host, backlog: 4096 }, () => {
  const a = server.address();
  console.log(`node-echo: listening on ${a.address}:${a.port} (model node, libuv)`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
