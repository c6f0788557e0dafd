'use strict';
// Comparison peer: a Socket.IO 4.8 broadcast server written the way the Socket.IO docs show it
// ("Rooms": `socket.join(room)` and `io.to(room).emit(event, ...args)`; "Server initialization
// with an HTTP server"; "Performance tuning": discard the initial HTTP request of each
// connection to save memory). Clients speak Engine.IO v4 / Socket.IO v5 on
// `/socket.io/?EIO=4&transport=websocket` (or start with long-polling,
// `/socket.io/?EIO=4&transport=polling`, and upgrade); there is no plain-WebSocket route.
//
//   /socket.io/ (Engine.IO)      every client joins the room "t" of the main namespace "/"
//   POST /publish[/<anything>]   emits the body, as one string argument, to the room:
//                                every subscriber gets the text frame 42["msg","<body, JSON-escaped>"];
//                                200 {"seq":N}
//   GET  /healthz                200 "ok"
//
// Usage: node server.js PORT   (listens on 127.0.0.1; PORT also from $PORT, default 9005)

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 9005);
const host = process.env.HOST || '127.0.0.1';
const ROOM = 't';
const EVENT = 'msg';
const MAX_BODY = 1024 * 1024;
let seq = 0;

function pathOf(url) {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

const server = http.createServer((req, res) => {
  const path = pathOf(req.url);
  if (req.method === 'POST' && (path === '/publish' || path.startsWith('/publish/'))) {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY) {
        res.writeHead(413, { 'content-type': 'application/json' });
        res.end('{"error":"body too large"}');
        return;
      }
      seq += 1;
      // A string argument: a Buffer would go out as a binary attachment (a second frame).
      // The packet is encoded once for the whole room by the in-memory adapter.
      io.to(ROOM).emit(EVENT, Buffer.concat(chunks).toString('utf8'));
      const body = `{"seq":${seq}}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
    return;
  }
  if (req.method === 'GET' && path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
    return;
  }
  res.writeHead(404, { 'content-length': 0 });
  res.end();
});

// Defaults otherwise: transports ["polling", "websocket"], pingInterval 25 s, pingTimeout 20 s,
// no per-message deflate, the in-memory adapter (one process). The client bundle is not served.
// Tests only: SOCKETIO_PING_INTERVAL_MS / SOCKETIO_PING_TIMEOUT_MS shorten the heartbeat, so a
// client that does not answer the server's pings is disconnected within a second (the load
// generator's end-to-end test); measurements keep the defaults.
const heartbeat = {};
if (process.env.SOCKETIO_PING_INTERVAL_MS) heartbeat.pingInterval = Number(process.env.SOCKETIO_PING_INTERVAL_MS);
if (process.env.SOCKETIO_PING_TIMEOUT_MS) heartbeat.pingTimeout = Number(process.env.SOCKETIO_PING_TIMEOUT_MS);
const io = new Server(server, { serveClient: false, ...heartbeat });

// "Performance tuning": the handshake request is kept by every connection unless discarded.
io.engine.on('connection', (rawSocket) => {
  rawSocket.request = null;
});

io.on('connection', (socket) => {
  socket.join(ROOM);
  // Subscribers only receive; their events are ignored.
});

// Node's defaults close an idle keep-alive connection after 5 s; the publisher may pause.
server.keepAliveTimeout = 120_000;
server.listen(port, host, 1024, () => {
  console.log(`socketio peer (node ${process.version}, socket.io ${require('socket.io/package.json').version}) listening on ${host}:${port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
