// Comparison peer: Bun's WebSocket server (uWebSockets inside), written the way the Bun docs
// show pub/sub: `Bun.serve({ websocket: { open(ws) { ws.subscribe(topic) } } })` and
// `server.publish(topic, message)`. A uWS-grade peer with nothing to build.
//
//   GET  /ws (query ignored)     WebSocket; subscribes to the single topic "t"
//   POST /publish[/<anything>]   publishes the body as one text message; 200 {"seq":N}
//   GET  /echo                   WebSocket; echoes every text/binary message
//   GET  /healthz                200 "ok"
//
// Usage: bun server.ts PORT   (listens on 127.0.0.1; PORT also from $PORT, default 9004)

const TOPIC = "t";
const port = Number(process.argv[2] || process.env.PORT || 9004);
const hostname = process.env.HOST || "127.0.0.1";

type Data = { echo: boolean };

let seq = 0;

function pathOf(url: string): string {
  // req.url is absolute: "http://host:port/path?query".
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  const q = url.indexOf("?", start);
  return q === -1 ? url.slice(start) : url.slice(start, q);
}

const server = Bun.serve<Data, undefined>({
  hostname,
  port,
  development: false,
  // Seconds an idle HTTP keep-alive connection is kept (the publisher may pause).
  idleTimeout: 120,
  async fetch(req, server) {
    const path = pathOf(req.url);
    if (path === "/ws" || path === "/echo") {
      if (server.upgrade(req, { data: { echo: path === "/echo" } })) return undefined;
      return new Response("expected a WebSocket upgrade\n", { status: 426 });
    }
    if (req.method === "POST" && (path === "/publish" || path.startsWith("/publish/"))) {
      const body = await req.text();
      seq += 1;
      // A string is published as a text frame, built once for every subscriber of the topic.
      server.publish(TOPIC, body);
      return new Response(`{"seq":${seq}}`, { headers: { "content-type": "application/json" } });
    }
    if (path === "/healthz") return new Response("ok");
    return new Response(null, { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      if (!ws.data.echo) ws.subscribe(TOPIC);
    },
    message(ws, message) {
      // Subscribers' messages are ignored; /echo sends them back as they came (text or binary).
      if (ws.data.echo) ws.send(message);
    },
  },
});

console.log(`bun peer (bun ${Bun.version}) listening on ${server.hostname}:${server.port}`);

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => process.exit(0));
}
