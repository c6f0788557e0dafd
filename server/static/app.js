// tickcast demo page: a live ticker board and news list over WebSocket, SSE, long-polling or
// polling (docs/protocol.md). No build step, no dependencies.
//
// URL parameters:
//   transport=ws|sse|longpoll|poll  force one transport (no fallback)
//   interval=ms                     poll period for transport=poll (default 1000)
//   ws_url=ws://host:port/path      WebSocket endpoint instead of this host's /ws (a test hook:
//                                   pointing it at a closed port exercises the fallback)
'use strict';
(() => {
  const SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'AVGO',
    'JPM', 'LLY', 'V', 'UNH', 'XOM', 'MA', 'JNJ', 'PG'];
  const TOPICS = ['markets', 'tech', 'world', 'energy', 'science', 'sports'];
  // An explicit list rather than `ticker.*`: patterns only work on ws/sse.
  const CHANNELS = [...SYMBOLS.map((s) => `ticker.${s}`), ...TOPICS.map((t) => `news.${t}`)];
  const KNOWN = new Set(CHANNELS);
  const TRANSPORTS = ['ws', 'sse', 'longpoll', 'poll'];
  const AUTO_ORDER = ['ws', 'sse', 'longpoll'];
  const ACK_TIMEOUT_MS = 4000; // ws/sse must say `subscribed` by then, else the attempt failed
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const WINDOW_MS = 5000; // rate and latency are shown over this window
  const LATENCY_CAP = 4096; // samples kept (a ring): bounded memory whatever the rate
  const NEWS_MAX = 30;
  const SPARK_POINTS = 40;

  const params = new URLSearchParams(location.search);
  const forced = TRANSPORTS.includes(params.get('transport')) ? params.get('transport') : null;
  const pollInterval = clamp(parseInt(params.get('interval'), 10) || 1000, 100, 60000);
  const wsOverride = params.get('ws_url');
  const wsBase = wsOverride && /^wss?:\/\//.test(wsOverride)
    ? wsOverride
    : `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $('conn'), connText: $('conn-text'), transport: $('st-transport'), rate: $('st-rate'),
    p50: $('st-p50'), p99: $('st-p99'), total: $('st-total'), gaps: $('st-gaps'),
    board: $('board'), news: $('news'),
  };

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }
  function parse(text) { try { return JSON.parse(text); } catch { return null; } }
  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

  // ---- delivery state: what lets a reconnect resume with `since` ----

  const lastSeq = new Map(); // channel -> last seq delivered (or skipped by a gap)
  const epochOf = new Map(); // channel -> the epoch (history) lastSeq belongs to
  let total = 0;
  let gaps = 0;
  let resets = 0;

  // Positions with their epoch (`a:12@k3x9m2q7`): after a server restart, the server answers
  // them with a `reset` instead of passing its new seqs off as the old ones.
  function sinceParam() {
    return [...lastSeq].map(([ch, seq]) => {
      const epoch = epochOf.get(ch);
      return `${ch}:${seq}${epoch ? `@${epoch}` : ''}`;
    }).join(',');
  }

  function adoptEpochs(epochs) {
    if (!isObj(epochs)) return;
    for (const [ch, epoch] of Object.entries(epochs)) {
      if (KNOWN.has(ch) && typeof epoch === 'string') epochOf.set(ch, epoch);
    }
  }

  function query() {
    const since = sinceParam();
    return `channels=${CHANNELS.join(',')}${since ? `&since=${since}` : ''}`;
  }

  // `subscribed.seq`: where live delivery continues; adopt it for channels we know nothing
  // about (a restart is not guessed from seqs: the server says so with a `reset`).
  function adoptAck(m) {
    if (!isObj(m) || !isObj(m.seq)) return;
    for (const [ch, seq] of Object.entries(m.seq)) {
      if (KNOWN.has(ch) && typeof seq === 'number' && !lastSeq.has(ch)) lastSeq.set(ch, seq);
    }
    adoptEpochs(m.epoch);
  }

  // A poll answer's `next` (with `epoch`) is authoritative: it is the `since` for the next
  // request.
  function adoptNext(body) {
    if (!isObj(body.next)) return;
    for (const [ch, seq] of Object.entries(body.next)) {
      if (KNOWN.has(ch) && typeof seq === 'number') lastSeq.set(ch, seq);
    }
    adoptEpochs(body.epoch);
  }

  // Our position belonged to a history that is gone (the server restarted): what we built
  // from it is stale. Reload: the channel's messages start again from the new history's
  // beginning (the news list is rebuilt from it; board rows take the new prices as they come).
  function onReset(r) {
    if (!isObj(r) || !KNOWN.has(r.channel) || typeof r.epoch !== 'string') return;
    resets++;
    document.body.dataset.resets = resets;
    lastSeq.set(r.channel, 0);
    epochOf.set(r.channel, r.epoch);
    if (!r.channel.startsWith('ticker.')) news.clear();
  }

  function onGap(g) {
    if (!isObj(g) || !KNOWN.has(g.channel) || typeof g.to !== 'number') return;
    gaps++;
    ui.gaps.textContent = gaps;
    lastSeq.set(g.channel, Math.max(lastSeq.get(g.channel) ?? 0, g.to));
  }

  function onEnvelope(env) {
    if (!isObj(env) || !KNOWN.has(env.channel) || typeof env.seq !== 'number') return;
    const last = lastSeq.get(env.channel);
    if (last !== undefined && env.seq <= last) return; // already seen (overlap after a reconnect)
    lastSeq.set(env.channel, env.seq);
    const now = Date.now();
    total++;
    document.body.dataset.messages = total;
    countArrival(now);
    if (typeof env.ts === 'number') addLatency(now, now - env.ts / 1000);
    if (!isObj(env.data)) return;
    if (env.channel.startsWith('ticker.')) board.update(env.data, now);
    else news.add(env.data, env.ts);
  }

  // ---- statistics, bounded: per-second counts and a ring of latency samples ----

  const perSecond = new Map(); // unix second -> envelopes received in it
  const latAt = new Float64Array(LATENCY_CAP);
  const latMs = new Float64Array(LATENCY_CAP);
  let latNext = 0;

  function countArrival(now) {
    const s = Math.floor(now / 1000);
    perSecond.set(s, (perSecond.get(s) || 0) + 1);
  }

  function addLatency(now, ms) {
    latAt[latNext] = now;
    latMs[latNext] = ms;
    latNext = (latNext + 1) % LATENCY_CAP;
  }

  function latencyPercentiles(now) {
    const recent = [];
    for (let i = 0; i < LATENCY_CAP; i++) if (latAt[i] > now - WINDOW_MS) recent.push(latMs[i]);
    if (!recent.length) return null;
    recent.sort((a, b) => a - b);
    const at = (q) => recent[Math.min(recent.length - 1, Math.floor(q * recent.length))];
    return { p50: at(0.5), p99: at(0.99) };
  }

  const startedAt = Date.now();

  function rate(now) {
    // The last five complete seconds (the current one is still filling), or the time since
    // the page opened if shorter, so the first figures are not understated.
    const cur = Math.floor(now / 1000);
    const from = Math.max(startedAt, (cur - 5) * 1000);
    let n = 0;
    for (const [s, c] of perSecond) {
      if (s < cur - 6) perSecond.delete(s);
      else if (s < cur && s >= cur - 5) n += c;
    }
    return cur * 1000 > from ? n / ((cur * 1000 - from) / 1000) : 0;
  }

  // Date.now() has a 1 ms resolution (and `ts` is truncated to µs): below that, say so.
  function fmtMs(ms) { return ms < 1 ? '<1 ms' : ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`; }

  // ---- the ticker board ----

  const board = (() => {
    const SVG = 'http://www.w3.org/2000/svg';
    const rows = new Map();
    for (const sym of SYMBOLS) {
      const tr = document.createElement('tr');
      tr.dataset.symbol = sym;
      const cell = (cls, text = '–') => {
        const td = document.createElement('td');
        td.className = cls;
        td.textContent = text;
        tr.append(td);
        return td;
      };
      cell('sym', sym);
      const row = { tr, price: cell('num price'), chg: cell('num chg'), pct: cell('num pct'), at: 0, hist: [] };
      const trend = cell('trend', '');
      const svg = document.createElementNS(SVG, 'svg');
      svg.setAttribute('viewBox', '0 0 100 20');
      svg.setAttribute('preserveAspectRatio', 'none');
      row.line = document.createElementNS(SVG, 'polyline');
      row.line.setAttribute('vector-effect', 'non-scaling-stroke');
      svg.append(row.line);
      trend.append(svg);
      row.age = cell('num age');
      rows.set(sym, row);
      ui.board.append(tr);
    }

    // Messages only record the latest quote; the DOM is written once per frame, so a burst (a
    // poll answer, a replay, a fast feed) costs one repaint per row, and a hidden tab none.
    const dirty = new Set();
    let frame = 0;

    function update(d, now) {
      const row = rows.get(d.symbol);
      if (!row || typeof d.price !== 'number' || !Number.isFinite(d.price)) return;
      row.quote = { price: d.price, change: typeof d.change === 'number' ? d.change : 0 };
      row.at = now;
      row.hist.push(d.price);
      if (row.hist.length > SPARK_POINTS) row.hist.shift();
      dirty.add(row);
      if (!frame) frame = requestAnimationFrame(flush);
    }

    function flush() {
      frame = 0;
      for (const row of dirty) {
        const { price, change } = row.quote;
        const prev = price - change;
        const sign = change > 0 ? '+' : '';
        row.price.textContent = price.toFixed(2);
        row.chg.textContent = `${sign}${change.toFixed(2)}`;
        row.pct.textContent = prev > 0 ? `${sign}${((change / prev) * 100).toFixed(2)}%` : '–';
        row.tr.classList.toggle('up', change > 0);
        row.tr.classList.toggle('down', change < 0);
        if (change !== 0 && row.price.animate) {
          const color = change > 0 ? 'rgba(34,197,94,.35)' : 'rgba(239,68,68,.35)';
          row.price.animate([{ backgroundColor: color }, { backgroundColor: 'transparent' }],
            { duration: 700, easing: 'ease-out' });
        }
        drawSpark(row);
      }
      dirty.clear();
    }

    function drawSpark(row) {
      const h = row.hist;
      const lo = Math.min(...h);
      const span = Math.max(...h) - lo || 1;
      const step = 100 / (SPARK_POINTS - 1);
      const x0 = 100 - (h.length - 1) * step; // newest point at the right edge
      row.line.setAttribute('points',
        h.map((p, i) => `${(x0 + i * step).toFixed(1)},${(18 - ((p - lo) / span) * 16).toFixed(1)}`).join(' '));
    }

    function tick(now) {
      for (const row of rows.values()) {
        if (!row.at) continue;
        const age = (now - row.at) / 1000;
        row.age.textContent = age < 10 ? `${age.toFixed(1)}s` : `${Math.round(age)}s`;
        row.age.classList.toggle('stale', age >= 10);
      }
    }

    return { update, tick };
  })();

  // ---- the news list, newest first ----

  const news = (() => {
    const fmtTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

    function add(d, ts) {
      if (typeof d.headline !== 'string') return;
      const topic = typeof d.topic === 'string' ? d.topic : '';
      const li = document.createElement('li');
      li.className = 'fresh';
      const tag = document.createElement('span');
      tag.className = TOPICS.includes(topic) ? `tag ${topic}` : 'tag';
      tag.textContent = topic || 'news';
      const text = document.createElement('span');
      text.textContent = d.headline; // textContent: headlines are data, never markup
      const time = document.createElement('time');
      const when = new Date(typeof ts === 'number' ? ts / 1000 : Date.now());
      time.dateTime = when.toISOString();
      time.textContent = fmtTime.format(when);
      li.append(tag, text, time);
      ui.news.querySelector('.empty')?.remove();
      ui.news.prepend(li);
      while (ui.news.children.length > NEWS_MAX) ui.news.lastElementChild.remove();
    }

    // After a reset: the headlines came from a history that is gone; the new one refills it.
    function clear() {
      ui.news.querySelectorAll('li:not(.empty)').forEach((li) => li.remove());
    }

    return { add, clear };
  })();

  // ---- transports: each opens one connection and reports through `h` ----
  // h.ack(m)      subscribed (ws/sse; null for polling's first answer): the connection works
  // h.next(body)  a poll answer (its `next` and `epoch`)
  // h.envelope(e), h.gap(g), h.reset(r)
  // h.fail(why)   the connection is over (closed, error, timeout); called at most once

  // WebSocket and SSE carry the same JSON; control messages have a `type`, envelopes do not.
  function dispatch(m, h) {
    if (!isObj(m)) return;
    if (typeof m.type !== 'string') h.envelope(m);
    else if (m.type === 'subscribed') h.ack(m);
    else if (m.type === 'gap') h.gap(m);
    else if (m.type === 'reset') h.reset(m);
    // `error` and unknown control types: nothing the page can act on.
  }

  function openWs(h) {
    const ws = new WebSocket(`${wsBase}?${query()}`);
    ws.onmessage = (e) => dispatch(parse(e.data), h);
    ws.onerror = () => h.fail('websocket error');
    ws.onclose = () => h.fail('websocket closed');
    return () => {
      ws.onmessage = ws.onerror = ws.onclose = null;
      ws.close();
    };
  }

  function openSse(h) {
    // EventSource's own reconnect (its last event id resumes every channel) would do, but the
    // manager reconnects on the transport it proved with `since` for every channel, so that
    // backoff and fallback work the same for every transport: errors end the connection here.
    const es = new EventSource(`/sse?${query()}`);
    es.addEventListener('subscribed', (e) => { const m = parse(e.data); if (isObj(m)) h.ack(m); });
    es.addEventListener('gap', (e) => h.gap(parse(e.data)));
    es.addEventListener('reset', (e) => h.reset(parse(e.data)));
    es.onmessage = (e) => h.envelope(parse(e.data));
    es.onerror = () => h.fail('event stream error');
    return () => es.close();
  }

  function openPolling(h, long) {
    let stopped = false;
    let timer = 0;
    let ctrl = null;
    async function request() {
      ctrl = new AbortController();
      // Bounded even if the server never answers: longer than the long-poll's own timeout.
      const abort = setTimeout(() => ctrl.abort(), long ? 35000 : 10000);
      try {
        const url = long ? `/longpoll?${query()}&timeout=25` : `/poll?${query()}`;
        const res = await fetch(url, { signal: ctrl.signal, cache: 'no-store' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const body = await res.json();
        if (stopped) return;
        if (!isObj(body)) throw new Error('bad answer');
        // Resets first: the messages that follow belong to the new history.
        if (Array.isArray(body.resets)) body.resets.forEach(h.reset);
        if (Array.isArray(body.messages)) body.messages.forEach(h.envelope);
        if (Array.isArray(body.gaps)) body.gaps.forEach(h.gap);
        h.next(body);
        h.ack(null);
      } catch (err) {
        if (!stopped) h.fail(err && err.message ? err.message : 'request failed');
        return;
      } finally {
        clearTimeout(abort);
      }
      // Long-polling asks again at once; polling waits its period.
      if (!stopped) timer = setTimeout(request, long ? 0 : pollInterval);
    }
    request();
    return () => {
      stopped = true;
      clearTimeout(timer);
      if (ctrl) ctrl.abort();
    };
  }

  const OPEN = {
    ws: openWs,
    sse: openSse,
    longpoll: (h) => openPolling(h, true),
    poll: (h) => openPolling(h, false),
  };

  // ---- connection manager: fallback, reconnect with backoff ----
  // Auto mode tries ws, then sse, then long-polling. Once a transport has worked it is kept:
  // later drops are the server's or the network's, not the transport's, so it reconnects on
  // the same one with backoff. When every transport failed, it starts over after a backoff.

  const order = forced ? [forced] : AUTO_ORDER;
  let orderIdx = 0;
  let proven = null;
  let backoff = BACKOFF_MIN_MS;

  function setState(state, text) {
    ui.conn.dataset.state = state;
    ui.connText.textContent = text || state;
    document.body.dataset.state = state;
  }

  function connect() {
    const name = proven || order[orderIdx];
    document.body.dataset.transport = name;
    ui.transport.textContent = forced ? `${name} (forced)` : name;
    setState('connecting', `connecting (${name})`);

    let acked = false;
    let over = false;
    let close = null;
    let ackTimer = 0;
    const h = {
      ack(m) {
        if (over) return;
        adoptAck(m);
        if (acked) return;
        acked = true;
        clearTimeout(ackTimer);
        proven = name;
        backoff = BACKOFF_MIN_MS;
        setState('live');
      },
      next(next) { if (!over) adoptNext(next); },
      envelope(e) { if (!over) onEnvelope(e); },
      gap(g) { if (!over) onGap(g); },
      reset(r) { if (!over) onReset(r); },
      fail(why) {
        if (over) return;
        over = true;
        clearTimeout(ackTimer);
        if (close) close();
        retry(name, acked, why);
      },
    };
    if (name === 'ws' || name === 'sse') {
      ackTimer = setTimeout(() => h.fail('no subscribed ack in time'), ACK_TIMEOUT_MS);
    }
    try {
      close = OPEN[name](h);
      if (over) close(); // failed while opening
    } catch (err) {
      // e.g. an unusable URL: a failed attempt like any other, reported asynchronously.
      setTimeout(() => h.fail(String(err)), 0);
    }
  }

  function retry(name, acked, why) {
    if (!acked && !proven && orderIdx + 1 < order.length) {
      orderIdx++;
      setState('connecting', `${name} failed (${why}), trying ${order[orderIdx]}`);
      setTimeout(connect, 100);
      return;
    }
    if (!proven) orderIdx = 0;
    const delay = backoff * (0.75 + Math.random() * 0.5); // jitter: clients do not return in step
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    setState('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)}s`);
    setTimeout(connect, delay);
  }

  // ---- periodic UI refresh (ages, rate, latency) ----

  function refresh() {
    const now = Date.now();
    board.tick(now);
    ui.rate.textContent = rate(now).toFixed(1);
    const lat = latencyPercentiles(now);
    ui.p50.textContent = lat ? fmtMs(lat.p50) : '–';
    ui.p99.textContent = lat ? fmtMs(lat.p99) : '–';
    ui.total.textContent = total.toLocaleString();
  }

  document.body.dataset.messages = '0';
  setInterval(refresh, 500);
  connect();
})();
