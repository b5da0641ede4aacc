// Operators' view: Prometheus /metrics and the live status page on the management address of
// two gateways sharing a redis-server, with real hyco-ws traffic; the page is driven in
// headless Chromium (Debian's) by the pinned playwright-core, and screenshotted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { PEERS, root, sleep, RawWs } from './harness.mjs';
import { startRedis, startGateway, ROOTKEY, SENDKEY, tok } from './gateways.mjs';

const require = createRequire(import.meta.url);
const WS = require(path.join(PEERS, 'hyco-ws'));
WS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;

let redis, a, b, server;

before(async () => {
  redis = await startRedis();
  a = await startGateway({ id: 'obs-a', redis: redis.url });
  b = await startGateway({ id: 'obs-b', redis: redis.url });
  const uri = WS.createRelayListenUri(a.ns, 'credit-check');
  server = WS.createRelayedServer({ server: uri, token: () => WS.createRelayToken(uri, 'RootManageSharedAccessKey', ROOTKEY) },
    (ws) => ws.on('message', (m) => ws.send(m)));
  await new Promise((r) => server.once('listening', r));
  const end = Date.now() + 8000;
  while (redis.cli('ZCARD', 'hyrelay:v1:reg:contoso/credit-check') !== '1' && Date.now() < end) await sleep(50);
});
after(async () => { server.close(); for (const g of [a, b]) { await g.stop(); g.cleanup(); } await redis.stop(); });

// `n` hyco-ws round trips of `size` bytes each through gateway `g`.
async function traffic(g, n, size) {
  for (let i = 0; i < n; i++) {
    const uri = WS.createRelaySendUri(g.ns, 'credit-check');
    await new Promise((resolve, reject) => {
      WS.relayedConnect(uri, WS.createRelayToken(uri, 'callers', SENDKEY), (s) => {
        s.once('message', () => { s.close(); resolve(); });
        s.send(Buffer.alloc(size, 7));
      }).on('error', reject);
    });
  }
}

function sample(text, name, labels) {
  const line = text.split('\n').find((l) => l.startsWith(name + '{') && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  assert.ok(line, `${name} ${JSON.stringify(labels)} missing in:\n${text}`);
  return Number(line.split(' ').pop());
}

test('Prometheus /metrics counts listeners, connections, bytes each way, auth failures and the store, per gateway', async () => {
  await traffic(b, 5, 1000);
  // A sender with a bad signature and one with an expired token.
  const bad = await RawWs.connect(`ws://${b.ns}/$hc/credit-check?sb-hc-action=connect`, { ServiceBusAuthorization: tok('127.0.0.1', 'credit-check', 'callers', 'd3Jvbmcta2V5') });
  assert.equal(bad.status, 401);
  const expired = WS.createRelayToken(`http://127.0.0.1/credit-check`, 'callers', SENDKEY, -120);
  const old = await RawWs.connect(`ws://${b.ns}/$hc/credit-check?sb-hc-action=connect`, { ServiceBusAuthorization: expired });
  assert.equal(old.status, 401);
  await sleep(200);
  const mb = await b.metrics();
  const ma = await a.metrics();
  assert.match(mb, /# TYPE hyrelay_connects_total counter/);
  const hc = { gateway: 'obs-b', namespace: 'contoso', hybrid_connection: 'credit-check' };
  assert.equal(sample(mb, 'hyrelay_connects_total', hc), 5, 'the sender gateway splices');
  assert.equal(sample(mb, 'hyrelay_bytes_total', { ...hc, direction: 'to_listener' }) >= 5000, true);
  assert.equal(sample(mb, 'hyrelay_bytes_total', { ...hc, direction: 'to_sender' }) >= 5000, true);
  assert.equal(sample(mb, 'hyrelay_listeners', hc), 0, 'the listener is on the other gateway');
  assert.equal(sample(ma, 'hyrelay_listeners', { ...hc, gateway: 'obs-a' }), 1);
  assert.equal(sample(mb, 'hyrelay_auth_failures_total', { gateway: 'obs-b', reason: 'invalid_signature' }), 1);
  assert.equal(sample(mb, 'hyrelay_auth_failures_total', { gateway: 'obs-b', reason: 'expired' }), 1);
  assert.equal(sample(mb, 'hyrelay_store_up', { gateway: 'obs-b', store: 'redis' }), 1);
  assert.ok(sample(mb, 'hyrelay_store_round_trip_seconds_count', { gateway: 'obs-b' }) > 0);
  // No secret in the exposition or in any log line.
  for (const text of [mb, ma, a.err(), b.err()]) {
    assert.ok(!text.includes(ROOTKEY) && !text.includes(SENDKEY), 'a key leaked');
    assert.ok(!/sig=[A-Za-z0-9%]{20,}/.test(text), 'a token signature leaked');
  }
});

test('the status page shows namespaces, hybrid connections, listeners with their gateway and live throughput, refreshed without reloading', async () => {
  const { chromium } = require(path.join(PEERS, 'playwright-core'));
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 520 } });
    await page.goto(`http://${b.host}:${b.mgmt}/`);
    await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 1, null, { timeout: 10000 });
    assert.equal(await page.textContent('#gateway'), 'obs-b');
    assert.match(await page.textContent('#store'), /redis up/);
    const row = page.locator('tr[data-hc="credit-check"]');
    assert.equal(await row.locator('td.count').textContent(), '1');
    assert.equal(await row.locator('.listener').getAttribute('data-gateway'), 'obs-a', 'the listener is shown on its own gateway');
    // Traffic while the page is open: the page updates itself and shows throughput.
    const updates = Number(await page.evaluate(() => document.body.dataset.updates));
    let stop = false;
    const busy = (async () => { let n = 0; while (!stop) { await traffic(b, 1, 256 * 1024); n++; } return n; })();
    await page.waitForFunction((u) => Number(document.body.dataset.updates) >= u + 2, updates, { timeout: 15000 });
    // Live figures while the traffic flows: connects per second and bytes per second.
    await page.waitForFunction(() => Number(document.getElementById('t-cps').textContent) > 0
      && !/^0 /.test(document.getElementById('t-tput').textContent), null, { timeout: 10000 });
    const out = path.join(root, 'target', 'status-page.png');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const png = await page.screenshot({ path: out });
    stop = true;
    const sent = await busy;
    await page.waitForFunction((n) => Number(document.querySelector('tr[data-hc="credit-check"] td:nth-child(5)').textContent) >= n,
      5 + sent, { timeout: 5000 });
    assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation').length), 1, 'no reload happened');
    // Look at the picture: the dark page with its light text, not a blank or error page.
    const { width, height, colours } = pngStats(png);
    assert.deepEqual([width, height], [1100, 520]);
    assert.ok(colours > 50, `only ${colours} distinct colours: the page did not render`);
  } finally {
    await browser.close();
  }
});

// Width, height and the number of distinct colours of an 8-bit RGB(A) PNG (what Chromium writes).
function pngStats(buf) {
  assert.equal(buf.subarray(1, 4).toString(), 'PNG');
  let off = 8, width = 0, height = 0, type = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), kind = buf.subarray(off + 4, off + 8).toString();
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === 'IHDR') { width = data.readUInt32BE(0); height = data.readUInt32BE(4); type = data[9]; }
    if (kind === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const bpp = type === 6 ? 4 : 3;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  const prev = Buffer.alloc(stride), cur = Buffer.alloc(stride);
  const seen = new Set();
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0, b2 = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      let p = 0;
      if (f === 1) p = a; else if (f === 2) p = b2; else if (f === 3) p = (a + b2) >> 1;
      else if (f === 4) { const q = a + b2 - c, pa = Math.abs(q - a), pb = Math.abs(q - b2), pc = Math.abs(q - c); p = pa <= pb && pa <= pc ? a : pb <= pc ? b2 : c; }
      cur[i] = (line[i] + p) & 255;
    }
    for (let x = 0; x < width; x += 3) seen.add(cur.readUIntBE(x * bpp, 3));
    cur.copy(prev);
  }
  return { width, height, colours: seen.size };
}

test('hyrelay up serves the same page and metrics with its in-process store', async () => {
  const { startRelay } = await import('./harness.mjs');
  const relay = await startRelay();
  try {
    const m = relay.out().match(/status page: +http:\/\/([^/\s]+)\//);
    assert.ok(m, relay.out());
    const page = await (await fetch(`http://${m[1]}/`)).text();
    assert.match(page, /<title>hyrelay status<\/title>/);
    const s = await (await fetch(`http://${m[1]}/status.json`)).json();
    assert.equal(s.gateway.store, 'memory');
    assert.equal(s.gateway.store_up, true);
    assert.deepEqual(s.namespaces.map((n) => n.name), ['hyrelay']);
    const metrics = await (await fetch(`http://${m[1]}/metrics`)).text();
    assert.match(metrics, /hyrelay_store_up\{gateway="local",store="memory"\} 1/);
    // The relay ports themselves do not serve the page.
    const r = await fetch(`http://${relay.ns}/metrics`);
    assert.equal(r.status, 404);
  } finally {
    await relay.stop();
  }
});
