// A gateway on a host of its own (a network namespace with a veth link, made by this test),
// cut off from the others by taking its link down — not killed. Senders must never be routed
// into the black hole for longer than the registration TTL, and the gateway must come back by
// itself when the link does. Needs root (CI runs as root) and iproute2.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { PEERS, sleep } from './harness.mjs';
import { startRedis, startGateway, ROOTKEY, SENDKEY } from './gateways.mjs';

const require = createRequire(import.meta.url);
const WS = require(path.join(PEERS, 'hyco-ws'));
WS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;

const tag = String(process.pid % 100000);
const NS = `hyr${tag}`, VH = `hvh${tag}`, VC = `hvc${tag}`;
const HOST_IP = '10.77.0.1', C_IP = '10.77.0.2';
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8', stdio: 'pipe' });
let redis, a, b, c;
const servers = [];

before(async () => {
  try {
    ip('netns', 'add', NS);
  } catch (e) {
    throw new Error(`cannot create a network namespace (needs root and iproute2): ${e.stderr || e.message}`);
  }
  ip('link', 'add', VH, 'type', 'veth', 'peer', 'name', VC);
  ip('link', 'set', VC, 'netns', NS);
  ip('addr', 'add', `${HOST_IP}/24`, 'dev', VH);
  ip('link', 'set', VH, 'up');
  ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${C_IP}/24`, 'dev', VC);
  ip('netns', 'exec', NS, 'ip', 'link', 'set', VC, 'up');
  ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
  redis = await startRedis({ bind: HOST_IP, also: ['127.0.0.1'] });
  a = await startGateway({ id: 'ns-a', redis: redis.url });
  b = await startGateway({ id: 'ns-b', redis: redis.url });
  c = await startGateway({ id: 'ns-c', redis: redis.url, host: C_IP, netns: NS });
});

after(async () => {
  for (const s of servers) { try { s.close(); } catch { /* closed */ } }
  for (const g of [a, b, c]) if (g) { await g.stop('SIGKILL'); g.cleanup(); }
  if (redis) await redis.stop();
  try { ip('link', 'del', VH); } catch { /* gone with the namespace */ }
  try { ip('netns', 'del', NS); } catch { /* not made */ }
});

async function listen(ns, name) {
  const uri = WS.createRelayListenUri(ns, 'credit-check');
  const s = WS.createRelayedServer({ server: uri, token: () => WS.createRelayToken(uri, 'RootManageSharedAccessKey', ROOTKEY) },
    (ws) => ws.on('message', (m) => ws.send(`${name}:${m}`)));
  s.on('error', () => {});
  servers.push(s);
  await new Promise((r) => s.once('listening', r));
  return s;
}

function ask(ns, msg, ms = 8000) {
  return new Promise((resolve) => {
    const uri = WS.createRelaySendUri(ns, 'credit-check');
    const t0 = Date.now();
    const timer = setTimeout(() => resolve({ error: 'timeout', ms: Date.now() - t0 }), ms);
    WS.relayedConnect(uri, WS.createRelayToken(uri, 'callers', SENDKEY), (sock) => {
      sock.once('message', (m) => { clearTimeout(timer); sock.close(); resolve({ reply: String(m), ms: Date.now() - t0 }); });
      sock.send(msg);
    }).on('error', (e) => { clearTimeout(timer); resolve({ error: String(e.message), ms: Date.now() - t0 }); });
  });
}

test('a gateway cut off by the network is routed around within the TTL and rejoins when the link returns', async (t) => {
  await listen(a.ns, 'A');
  await listen(c.ns, 'C');
  const end = Date.now() + 8000;
  while (redis.cli('ZCARD', 'hyrelay:v1:reg:contoso/credit-check') !== '2' && Date.now() < end) await sleep(50);
  // Before the cut, senders on gw-b reach listeners on both gateways, across the veth link.
  const before = new Set();
  for (let i = 0; i < 30 && before.size < 2; i++) before.add((await ask(b.ns, 'x')).reply);
  assert.deepEqual([...before].sort(), ['A:x', 'C:x']);

  ip('link', 'set', VH, 'down');
  const cut = Date.now();
  const ttl = 3000;
  const attempts = [];
  while (Date.now() - cut < ttl + 4000) {
    const r = await ask(b.ns, 'y');
    attempts.push({ ...r, at: Date.now() - cut });
  }
  // Every sender is served (by A); none waits longer than one delivery-confirmation timeout
  // (2 s); once the TTL has passed, none waits at all.
  assert.ok(attempts.every((r) => r.reply === 'A:y'), JSON.stringify(attempts));
  assert.ok(attempts.every((r) => r.ms < 3000), JSON.stringify(attempts));
  const slow = attempts.filter((r) => r.ms >= 1000);
  t.diagnostic(`after the cut: ${attempts.length} senders, ${slow.length} waited for a delivery confirmation (max ${Math.max(...attempts.map((r) => r.ms))} ms), last slow one ${slow.length ? slow.at(-1).at : '-'} ms after the cut`);
  const late = attempts.filter((r) => r.at > ttl + 1000);
  assert.ok(late.length >= 3 && late.every((r) => r.ms < 1000), JSON.stringify(late));
  assert.match(redis.cli('ZRANGE', 'hyrelay:v1:reg:contoso/credit-check', '0', '-1'), /^ns-a\|[^\n]*$/, 'only gw-a\'s listener is registered');

  // The link returns: gw-c notices, registers its listener again and serves.
  ip('link', 'set', VH, 'up');
  let back = false;
  const t1 = Date.now();
  while (!back && Date.now() - t1 < 20000) {
    const r = await ask(b.ns, 'z', 4000);
    back = r.reply === 'C:z';
    if (!back) await sleep(100);
  }
  assert.ok(back, 'gw-c serves again after the link is back');
  t.diagnostic(`gw-c served again ${Date.now() - t1} ms after the link came back`);
  assert.match(c.err(), /GATEWAY STORE UNREACHABLE/);
  assert.match(c.err(), /gateway store reachable again/);
});
