'use strict';
// Comparison peer: a Node.js broadcast server written the way the `ws` README shows it
// ("Multiple servers sharing a single HTTP/S server" + "Server broadcast"):
// `new WebSocketServer({ noServer: true })`, the http server's 'upgrade' event, and a broadcast
// that iterates `wss.clients` and calls `client.send(data)`. No tuning beyond that.
//
//   GET  /ws (query ignored)     WebSocket; subscribes to the single broadcast topic
//   POST /publish[/<anything>]   broadcasts the body as one text message; 200 {"seq":N}
//   GET  /echo                   WebSocket; echoes every text/binary message
//   GET  /healthz                200 "ok"
//
// Usage: node server.js PORT   (listens on 127.0.0.1; PORT also from $PORT, default 9003)

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 9003);
const host = process.env.HOST || '127.0.0.1';
const MAX_BODY = 1024 * 1024;

const wss = new WebSocketServer({ noServer: true });
const echo = new WebSocketServer({ noServer: true, clientTracking: false });
let seq = 0;

function pathOf(url) {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function broadcast(data) {
  // The ws README idiom; `binary: false` sends the body bytes unchanged as a text frame.
  wss.clients.forEach((client) => {
    if (client.readyState === WebSocket.OPEN) {
      client.send(data, { binary: false });
    }
  });
}

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  // Subscribers only receive; anything they send is ignored.
});

echo.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

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
      broadcast(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
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

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  const path = pathOf(req.url);
  const target = path === '/ws' ? wss : path === '/echo' ? echo : null;
  if (target === null) {
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    return;
  }
  target.handleUpgrade(req, socket, head, (ws) => {
    target.emit('connection', ws, req);
  });
});

// Node's defaults close an idle keep-alive connection after 5 s; the publisher may pause.
server.keepAliveTimeout = 120_000;
server.listen(port, host, 1024, () => {
  console.log(`node-ws peer (node ${process.version}, ws ${require('ws/package.json').version}) listening on ${host}:${port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
