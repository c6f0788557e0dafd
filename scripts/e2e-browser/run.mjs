// Drives headless Chromium (Debian's, through playwright-core) against a running tickcast and
// checks the demo page on each transport, then the automatic fallback from WebSocket to SSE,
// then a bare EventSource on two channels across a dropped connection.
//
//   node run.mjs --base http://127.0.0.1:PORT --out DIR [--chromium /usr/bin/chromium] [case...]
//
// Cases: ws sse longpoll poll fallback sse-resume reset (default: all). Prints one PASS/FAIL line per
// case and exits 1 if any failed. Every wait is bounded.
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ALL_CASES = ['ws', 'sse', 'longpoll', 'poll', 'fallback', 'sse-resume', 'reset'];
const RESUME_MS = 15000; // EventSource reconnects after the stream's `retry:` (2 s)
const READY_MS = 15000; // first messages, rows and headlines on screen
const GROW_MS = 6000; // the count must keep growing (poll answers once a second)
const MIN_ROWS = 8; // board rows with a price (16 symbols at ~4 updates/s each: all fill fast)

function parseArgs(argv) {
  const opts = { chromium: '/usr/bin/chromium', cases: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--base') opts.base = argv[++i];
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--chromium') opts.chromium = argv[++i];
    else if (ALL_CASES.includes(a)) opts.cases.push(a);
    else throw new Error(`unknown argument ${a} (cases: ${ALL_CASES.join(' ')})`);
  }
  if (!opts.base || !opts.out) throw new Error('--base URL and --out DIR are required');
  if (!opts.cases.length) opts.cases = ALL_CASES;
  return opts;
}

// A loopback port nobody listens on: the WebSocket URL that must fail in the fallback case.
function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// What the page shows, read in the page.
function snapshot(page) {
  return page.evaluate(() => ({
    transport: document.body.dataset.transport || '',
    state: document.body.dataset.state || '',
    messages: Number(document.body.dataset.messages || 0),
    rows: document.querySelectorAll('#board tr[data-symbol]').length,
    priced: [...document.querySelectorAll('#board tr[data-symbol] td.price')]
      .filter((td) => /^\d+\.\d\d$/.test(td.textContent)).length,
    headlines: document.querySelectorAll('#news li:not(.empty)').length,
    p50: document.getElementById('st-p50').textContent,
    rate: document.getElementById('st-rate').textContent,
  }));
}

// A loopback TCP proxy to the server whose connections the test can cut: the browser's view
// of a dropped stream (a proxy restart, a network change). Records each request head.
function cuttableProxy(base) {
  const target = new URL(base);
  const sockets = new Set();
  const heads = [];
  const srv = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let head = '';
    client.on('data', (d) => { if (head.length < 8192) { head += d.toString('latin1'); if (head.includes('\r\n\r\n')) heads.push(head); } });
    client.pipe(upstream).pipe(client);
    const done = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    base: `http://127.0.0.1:${srv.address().port}`,
    heads,
    cut() { for (const s of sockets) s.destroy(); sockets.clear(); },
    close() { this.cut(); srv.close(); },
  })));
}

async function publish(base, channel, data) {
  const res = await fetch(`${base}/publish/${channel}`, { method: 'POST', body: JSON.stringify(data) });
  if (!res.ok) throw new Error(`publish ${channel}: HTTP ${res.status}`);
  return (await res.json()).seq;
}

// A bare EventSource (no page logic) on two channels: events a:1 and b:1 arrive, the
// connection drops, a:2 and b:2 are published, and the browser reconnects by itself with the
// id of the last event it saw. Every message must arrive exactly once, with no gap or reset.
async function runSseResume(browser, opts) {
  const proxy = await cuttableProxy(opts.base);
  const context = await browser.newContext();
  const page = await context.newPage();
  const run = Date.now().toString(36);
  const [a, b] = [`resume.${run}.a`, `resume.${run}.b`];
  try {
    await page.goto(`${proxy.base}/healthz`, { timeout: 10000 });
    await page.evaluate(([a, b]) => {
      window.got = []; window.notices = []; window.opens = 0;
      const es = new EventSource(`/sse?channels=${a},${b}`);
      es.onopen = () => { window.opens++; };
      es.onmessage = (e) => { const m = JSON.parse(e.data); window.got.push(`${m.channel}:${m.seq}`); };
      for (const kind of ['gap', 'reset', 'resume_limited']) {
        es.addEventListener(kind, (e) => window.notices.push(`${kind} ${e.data}`));
      }
      window.es = es;
    }, [a, b]);
    const waitFor = async (what, fn, arg) => {
      try {
        await page.waitForFunction(fn, arg, { timeout: RESUME_MS, polling: 50 });
      } catch {
        const state = await page.evaluate(() => ({ got: window.got, notices: window.notices, opens: window.opens }));
        throw new Error(`${what}: ${JSON.stringify(state)}`);
      }
    };
    await waitFor('stream not open', () => window.opens === 1);
    await publish(opts.base, a, { n: 1 });
    await publish(opts.base, b, { n: 1 });
    await waitFor('first two messages', () => window.got.length === 2);
    proxy.cut();
    await publish(opts.base, a, { n: 2 });
    await publish(opts.base, b, { n: 2 });
    await waitFor('the reconnect and the two messages published meanwhile',
      () => window.opens >= 2 && window.got.length >= 4);
    await page.waitForTimeout(300); // anything duplicated would arrive now
    const state = await page.evaluate(() => ({ got: window.got, notices: window.notices, opens: window.opens }));
    const want = [`${a}:1`, `${b}:1`, `${a}:2`, `${b}:2`];
    const sorted = (xs) => [...xs].sort().join(' ');
    if (sorted(state.got) !== sorted(want)) throw new Error(`expected ${want.join(' ')} once each, got ${state.got.join(' ')}`);
    if (state.notices.length) throw new Error(`unexpected notices: ${state.notices.join('; ')}`);
    const resumed = proxy.heads.find((h) => /^last-event-id:/im.test(h));
    if (!resumed) throw new Error('the browser did not send Last-Event-ID');
    const id = resumed.match(/^last-event-id: *(.*)$/im)[1].trim();
    if (!id.includes(`${a}:1@`) || !id.includes(`${b}:1@`)) throw new Error(`Last-Event-ID ${id} does not name both channels`);
    return `reconnected by itself with Last-Event-ID ${id}; got ${state.got.join(' ')}`;
  } finally {
    await context.close();
    proxy.close();
  }
}

// The demo page told its positions belong to another history (as after a server restart):
// one long-poll's `since` is rewritten to a stale epoch, the server answers with `reset`s, and
// the page must reload those channels and stay live.
async function runReset(browser, opts) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${opts.base}/?transport=longpoll`, { timeout: 10000 });
    await page.waitForFunction(() => document.body.dataset.state === 'live' && Number(document.body.dataset.messages) > 20,
      null, { timeout: READY_MS, polling: 100 });
    let rewritten = '';
    await page.route('**/longpoll?*', (route) => {
      const url = route.request().url();
      if (rewritten || !/%40|@/.test(url)) return route.continue();
      rewritten = url.replace(/(%40|@)[0-9a-z]+/g, '$1stale');
      return route.continue({ url: rewritten });
    });
    try {
      await page.waitForFunction(() => Number(document.body.dataset.resets || 0) > 0, null, { timeout: READY_MS, polling: 100 });
    } catch {
      throw new Error(`no reset handled (rewrote: ${rewritten || 'nothing'})`);
    }
    const after = Number(await page.evaluate(() => document.body.dataset.messages));
    await page.waitForFunction((n) => Number(document.body.dataset.messages) > n + 5 && document.body.dataset.state === 'live',
      after, { timeout: GROW_MS, polling: 100 });
    const resets = await page.evaluate(() => document.body.dataset.resets);
    return `${resets} channel reset(s) handled, still live`;
  } finally {
    await context.close();
  }
}

async function runCase(browser, opts, name) {
  if (name === 'sse-resume') return runSseResume(browser, opts);
  if (name === 'reset') return runReset(browser, opts);
  const expect = name === 'fallback' ? 'sse' : name;
  const url = name === 'fallback'
    ? `${opts.base}/?ws_url=${encodeURIComponent(`ws://127.0.0.1:${await closedPort()}/ws`)}`
    : `${opts.base}/?transport=${name}`;
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // The fallback case makes the WebSocket fail on purpose; Chromium logs that itself.
    if (name === 'fallback' && /WebSocket connection to .* failed/.test(msg.text())) return;
    problems.push(`console error: ${msg.text()}`);
  });
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 10000 });
    try {
      await page.waitForFunction(([t, minRows]) => {
        const b = document.body.dataset;
        const priced = [...document.querySelectorAll('#board td.price')]
          .filter((td) => /^\d+\.\d\d$/.test(td.textContent)).length;
        return b.transport === t && b.state === 'live' && Number(b.messages) > 0 && priced >= minRows
          && document.querySelectorAll('#news li:not(.empty)').length > 0;
      }, [expect, MIN_ROWS], { timeout: READY_MS, polling: 100 });
    } catch {
      const s = await snapshot(page);
      throw new Error(`not live on ${expect} within ${READY_MS / 1000}s: ${JSON.stringify(s)}`);
    }
    const before = (await snapshot(page)).messages;
    try {
      await page.waitForFunction((n) => Number(document.body.dataset.messages) > n + 5, before,
        { timeout: GROW_MS, polling: 100 });
    } catch {
      throw new Error(`message count stuck at ${before} for ${GROW_MS / 1000}s`);
    }
    // Let the rate and latency windows fill a little, for a representative screenshot.
    await page.waitForTimeout(1500);
    const s = await snapshot(page);
    if (s.rows !== 16) throw new Error(`expected 16 board rows, saw ${s.rows}`);
    if (s.transport !== expect) throw new Error(`transport changed to ${s.transport}`);
    await page.screenshot({ path: path.join(opts.out, `${name}.png`), fullPage: true });
    if (name === 'ws') {
      // The same page on a phone-sized screen: the layout must hold up.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(opts.out, 'ws-narrow.png') });
    }
    if (problems.length) throw new Error(problems.join('; '));
    return `${s.messages} messages, ${s.priced}/16 symbols priced, ${s.headlines} headlines, ${s.rate} msg/s, p50 ${s.p50}`;
  } finally {
    await context.close();
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(opts.out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: opts.chromium,
    timeout: 30000,
    // As root in a sandbox-less container, offline: no sandbox, no GPU, no calls home.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let failed = 0;
  try {
    for (const name of opts.cases) {
      const started = Date.now();
      try {
        const detail = await runCase(browser, opts, name);
        console.log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)}s): ${detail}`);
      } catch (err) {
        failed++;
        // First line only: Playwright appends its whole call log to some errors.
        const why = String(err && err.message).split('\n')[0];
        console.log(`FAIL ${name} (${((Date.now() - started) / 1000).toFixed(1)}s): ${why}`);
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`e2e-browser: ${opts.cases.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(`e2e-browser: ${err.message}`);
  process.exit(2);
});
