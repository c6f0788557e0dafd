'use strict';
// Smoke test and frame capture for the Socket.IO peer, with the stack's own client.
//
//   node smoke.js PORT [CLIENTS] [MESSAGES]
//       CLIENTS socket.io-client clients (all but two on transport "websocket", one on
//       "polling" only, one that starts on polling and upgrades) join; MESSAGES stamped bodies
//       are POSTed to /publish; every client must receive every one, in order, unchanged.
//       Exit 0 on success, 1 otherwise; bounded by a 20 s timer.
//   node smoke.js capture PORT [SECONDS]
//       One raw WebSocket (the `ws` package) on /socket.io/?EIO=4&transport=websocket: prints
//       every frame both ways (what a load generator must speak), publishes two messages,
//       answers pings, for SECONDS (default 27: the first ping comes after pingInterval, 25 s).

const http = require('node:http');

function post(port, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: keepAlive,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
    (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function smoke(port, clients, messages) {
  const { io } = require('socket.io-client');
  const url = `http://127.0.0.1:${port}`;
  const timer = setTimeout(() => { console.error('smoke: timed out after 20 s'); process.exit(1); }, 20_000);
  const sockets = [];
  const got = [];
  for (let i = 0; i < clients; i++) {
    const transports = i === 0 ? ['polling'] : i === 1 ? ['polling', 'websocket'] : ['websocket'];
    const s = io(url, { transports, reconnection: false, forceNew: true });
    got.push([]);
    s.on('msg', (data) => got[i].push(data));
    s.on('connect_error', (e) => { console.error(`smoke: client ${i}: ${e.message}`); process.exit(1); });
    sockets.push(s);
  }
  await Promise.all(sockets.map((s) => (s.connected ? null : new Promise((r) => s.once('connect', r)))));
  // The upgrading client must have left polling before we count on websocket delivery.
  await new Promise((r) => setTimeout(r, 300));
  const kinds = sockets.map((s) => s.io.engine.transport.name);
  const sent = [];
  for (let k = 1; k <= messages; k++) {
    const body = JSON.stringify({ lg: [k, Date.now() * 1e6, 0], pad: 'x"\\é'.repeat(k % 3) });
    sent.push(body);
    const answer = await post(port, `/publish/bench`, body);
    if (!/^\{"seq":\d+\}$/.test(answer)) throw new Error(`unexpected publish answer ${answer}`);
  }
  const deadline = Date.now() + 5000;
  while (got.some((g) => g.length < messages) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  let bad = 0;
  got.forEach((g, i) => {
    const ok = g.length === messages && g.every((m, k) => m === sent[k]);
    if (!ok) {
      bad += 1;
      console.error(`smoke: client ${i} (${kinds[i]}) got ${g.length} of ${messages} messages${g.length === messages ? ' (changed or reordered)' : ''}`);
    }
  });
  sockets.forEach((s) => s.close());
  keepAlive.destroy();
  clearTimeout(timer);
  const byKind = kinds.reduce((m, k) => ({ ...m, [k]: (m[k] || 0) + 1 }), {});
  console.log(`socketio smoke: ${clients - bad} of ${clients} clients (${JSON.stringify(byKind)}) got all ${messages} messages in order, unchanged`);
  process.exit(bad === 0 ? 0 : 1);
}

async function capture(port, seconds) {
  const WebSocket = require('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  const t0 = Date.now();
  const show = (dir, data) => console.log(`${((Date.now() - t0) / 1000).toFixed(3)}s ${dir} ${data}`);
  const send = (data) => { show('client>', data); ws.send(data); };
  ws.on('upgrade', (res) => {
    console.log(`HTTP/1.1 ${res.statusCode} ${res.statusMessage}`);
    for (let i = 0; i < res.rawHeaders.length; i += 2) console.log(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
  });
  ws.on('message', async (data, isBinary) => {
    const text = isBinary ? `<binary ${data.length} bytes>` : data.toString();
    show('server>', text);
    if (text.startsWith('0{')) send('40');
    else if (text.startsWith('40')) {
      await post(port, '/publish', '{"lg":[1,1764000000000000000,0],"pad":"xxxx"}');
      await post(port, '/publish/bench', 'plain "text" \\ é');
    } else if (text === '2') send('3');
  });
  ws.on('close', (code) => show('closed', code));
  setTimeout(() => { ws.close(); keepAlive.destroy(); }, seconds * 1000);
}

const [a, b, c, d] = process.argv.slice(2);
if (a === 'capture') {
  capture(Number(b), Number(c || 27));
} else if (a) {
  smoke(Number(a), Number(b || 20), Number(c || 20)).catch((e) => { console.error(`smoke: ${e.message}`); process.exit(1); });
} else {
  console.error('usage: node smoke.js PORT [CLIENTS] [MESSAGES] | node smoke.js capture PORT [SECONDS]');
  process.exit(2);
}
void d;
