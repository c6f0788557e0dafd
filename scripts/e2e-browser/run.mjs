// Drives headless Chromium (Debian's, through playwright-core) against a running tickcast and
// checks the demo page on each transport, then the automatic fallback from WebSocket to SSE.
//
//   node run.mjs --base http://127.0.0.1:PORT --out DIR [--chromium /usr/bin/chromium] [case...]
//
// Cases: ws sse longpoll poll fallback (default: all). Prints one PASS/FAIL line per case and
// exits 1 if any failed. Every wait is bounded.
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ALL_CASES = ['ws', 'sse', 'longpoll', 'poll', 'fallback'];
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

async function runCase(browser, opts, name) {
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
