// Scale-out: three `hyrelay relay --config` gateways on one real redis-server; unmodified
// hyco-ws and hyco-https listeners and senders on different gateways; a gateway killed and
// restarted; Redis stopped and started again; bad store configuration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import path from 'node:path';
import { createRequire } from 'node:module';
import { PEERS, sleep } from './harness.mjs';
import { startRedis, startGateway, balancer, relayFails, tok, ROOTKEY, SENDKEY, freePort, gatewayConfig } from './gateways.mjs';

const require = createRequire(import.meta.url);
const WS = require(path.join(PEERS, 'hyco-ws'));
const hyco = require(path.join(PEERS, 'hyco-https'));
WS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
hyco.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;

let redis, gw = {};
const listeners = [];

before(async () => {
  redis = await startRedis();
  for (const id of ['gw-a', 'gw-b', 'gw-c']) gw[id] = await startGateway({ id, redis: redis.url });
});
after(async () => {
  for (const l of listeners) { try { l.close(); } catch { /* already closed */ } }
  for (const g of Object.values(gw)) { await g.stop(); g.cleanup(); }
  await redis.stop();
});

// An unmodified hyco-ws listener at `ns` that answers every message with "<tag>:<message>".
async function listen(ns, tag, hc = 'credit-check') {
  const uri = WS.createRelayListenUri(ns, hc);
  const server = WS.createRelayedServer({ server: uri, token: () => WS.createRelayToken(uri, 'RootManageSharedAccessKey', ROOTKEY) },
    (ws) => ws.on('message', (m) => ws.send(`${tag}:${m}`)));
  server.on('error', () => {});
  listeners.push(server);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`hyco-ws listener '${tag}' on ${ns} not listening after 15 s`)), 15000);
    server.once('listening', () => { clearTimeout(t); resolve(); });
  });
  return server;
}

// One hyco-ws sender through gateway `ns`: the reply, or the error it got.
function ask(ns, msg, hc = 'credit-check', ms = 10000) {
  return new Promise((resolve) => {
    const uri = WS.createRelaySendUri(ns, hc);
    const t0 = Date.now();
    const timer = setTimeout(() => resolve({ error: 'timeout', ms: Date.now() - t0 }), ms);
    let c;
    try {
      c = WS.relayedConnect(uri, WS.createRelayToken(uri, 'callers', SENDKEY), (sock) => {
        sock.once('message', (m) => { clearTimeout(timer); sock.close(); resolve({ reply: String(m), ms: Date.now() - t0 }); });
        sock.send(msg);
      });
    } catch (e) { clearTimeout(timer); resolve({ error: e.message, ms: Date.now() - t0 }); return; }
    c.on('error', (e) => { clearTimeout(timer); resolve({ error: String(e && e.message), ms: Date.now() - t0 }); });
  });
}

async function untilRegistered(g, hc, n, ms = 8000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const members = redis.cli('ZRANGEBYSCORE', `hyrelay:v1:reg:contoso/${hc}`, String(Date.now()), '+inf');
    if (members.split('\n').filter(Boolean).length >= n) return;
    await sleep(50);
  }
  throw new Error(`${hc}: fewer than ${n} listeners registered`);
}

test('nine steps: a hyco-ws listener on gw-a serves senders that land on gw-b and gw-c', async () => {
  const l = await listen(gw['gw-a'].ns, 'A');
  await untilRegistered(gw['gw-a'], 'credit-check', 1);
  for (const via of ['gw-b', 'gw-c', 'gw-a']) {
    const r = await ask(gw[via].ns, `hello via ${via}`);
    assert.equal(r.reply, `A:hello via ${via}`, JSON.stringify(r));
  }
  // The listener's registration names its gateway and instance in the store.
  const members = redis.cli('ZRANGE', 'hyrelay:v1:reg:contoso/credit-check', '0', '-1');
  assert.match(members, /^gw-a\|[0-9a-f]{16}\|\d+\|/m);
  l.close();
  await sleep(300);
  assert.equal(redis.cli('ZCARD', 'hyrelay:v1:reg:contoso/credit-check'), '0', 'a closed listener is withdrawn at once');
  const none = await ask(gw['gw-b'].ns, 'anyone?');
  assert.match(none.error, /404/, JSON.stringify(none));
});

test('listeners spread over gateways are load-balanced across all of them from any gateway', async () => {
  const a = await listen(gw['gw-a'].ns, 'A');
  const c = await listen(gw['gw-c'].ns, 'C');
  await untilRegistered(gw['gw-a'], 'credit-check', 2);
  const seen = { A: 0, C: 0 };
  for (let i = 0; i < 30; i++) {
    const r = await ask(gw['gw-b'].ns, `m${i}`);
    assert.ok(r.reply, JSON.stringify(r));
    const [tag, body] = r.reply.split(':');
    assert.equal(body, `m${i}`);
    seen[tag]++;
  }
  assert.ok(seen.A >= 5 && seen.C >= 5, JSON.stringify(seen));
  a.close(); c.close();
  await sleep(300);
});

test('hyco-https listener on gw-c answers plain HTTP requests sent to gw-a, small and 300 KB bodies', async () => {
  const uri = hyco.createRelayListenUri(gw['gw-c'].ns, 'web');
  const server = hyco.createRelayedServer({ server: uri, token: () => hyco.createRelayToken(uri, 'RootManageSharedAccessKey', ROOTKEY) }, (req, res) => {
    const h = crypto.createHash('sha256');
    let n = 0;
    req.on('data', (d) => { h.update(d); n += d.length; });
    req.on('end', () => { res.setHeader('X-Gateway-Test', 'yes'); res.statusCode = 201; res.end(`${req.method} ${req.url} ${n} ${h.digest('hex')}`); });
  });
  server.listen();
  listeners.push(server);
  await new Promise((r) => server.on('listening', r));
  await untilRegistered(gw['gw-c'], 'web', 1);
  const g = gw['gw-a'];
  const responses = async () => Number((await g.metrics()).match(/hyrelay_gateway_notices_total\{gateway="gw-a",kind="response"\} (\d+)/)[1]);
  const before = await responses();
  // 0 and 11 bytes travel on the listener's control channel (through gw-c, which sends the
  // response back to gw-a); 300 KB over a rendezvous socket straight to gw-a.
  for (const size of [0, 11, 300 * 1024]) {
    const body = crypto.randomBytes(size);
    const res = await new Promise((resolve, reject) => {
      const req = http.request({ host: g.host, port: g.port, method: 'POST', path: '/web/check?x=1', headers: { ServiceBusAuthorization: tok(g.host, 'web'), 'Content-Length': size } }, (r) => {
        let t = ''; r.on('data', (d) => { t += d; }); r.on('end', () => resolve({ status: r.statusCode, text: t, h: r.headers }));
      });
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.h['x-gateway-test'], 'yes');
    assert.equal(res.text, `POST /web/check?x=1 ${size} ${crypto.createHash('sha256').update(body).digest('hex')}`);
  }
  assert.equal(await responses() - before, 2, 'two responses came back from gw-c as notices');
  server.close();
  await sleep(200);
});

test('a hybrid connection created at run time on gw-a is served at once by gw-b and gw-c', async () => {
  const name = `made-${Date.now()}`;
  const made = JSON.parse(gw['gw-a'].cli('hyco', 'create', name));
  assert.equal(made.name, name);
  const listed = JSON.parse(gw['gw-c'].cli('hyco', 'list'));
  assert.ok(listed.some((h) => h.name === name), JSON.stringify(listed));
  // The namespace rule reaches it; a listener on gw-b, a sender on gw-c.
  const uri = WS.createRelayListenUri(gw['gw-b'].ns, name);
  const server = WS.createRelayedServer({ server: uri, token: () => WS.createRelayToken(uri, 'RootManageSharedAccessKey', ROOTKEY) }, (ws) => ws.on('message', (m) => ws.send(`B:${m}`)));
  listeners.push(server);
  await new Promise((r) => server.once('listening', r));
  await untilRegistered(gw['gw-b'], name, 1);
  const sendUri = WS.createRelaySendUri(gw['gw-c'].ns, name);
  const reply = await new Promise((resolve, reject) => {
    WS.relayedConnect(sendUri, WS.createRelayToken(sendUri, 'RootManageSharedAccessKey', ROOTKEY), (s) => {
      s.once('message', (m) => { s.close(); resolve(String(m)); });
      s.send('new');
    }).on('error', reject);
  });
  assert.equal(reply, 'B:new');
  server.close();
  gw['gw-b'].cli('hyco', 'delete', name);
  await sleep(300);
  assert.ok(!JSON.parse(gw['gw-a'].cli('hyco', 'list')).some((h) => h.name === name));
});

test('a killed gateway: its listener reconnects through the load balancer to another gateway and senders never wait on the dead one', async () => {
  const order = () => ['gw-c', 'gw-a', 'gw-b'].filter((id) => gw[id].child.exitCode === null && gw[id].child.signalCode === null).map((id) => gw[id].port);
  const lb = await balancer(order);
  const l = await listen(`127.0.0.1:${lb.port}`, 'L');
  await untilRegistered(gw['gw-c'], 'credit-check', 1);
  assert.match(redis.cli('ZRANGE', 'hyrelay:v1:reg:contoso/credit-check', '0', '-1'), /^gw-c\|/m, 'the balancer put the listener on gw-c');
  assert.equal((await ask(gw['gw-b'].ns, 'before')).reply, 'L:before');
  const cPort = gw['gw-c'].port, cMgmt = gw['gw-c'].mgmt;
  await gw['gw-c'].stop('SIGKILL');
  const t0 = Date.now();
  let served = null;
  const attempts = [];
  while (Date.now() - t0 < 15000) {
    const r = await ask(gw['gw-b'].ns, 'after');
    attempts.push(r);
    if (r.reply) { served = r; break; }
    await sleep(100);
  }
  assert.ok(served, JSON.stringify(attempts));
  assert.equal(served.reply, 'L:after');
  // No attempt hung on the dead gateway: each either failed fast or succeeded.
  assert.ok(attempts.every((a) => a.ms < 4000), JSON.stringify(attempts));
  assert.match(redis.cli('ZRANGE', 'hyrelay:v1:reg:contoso/credit-check', '0', '-1'), /^gw-a\|/m, 'the listener now lives on gw-a');
  // The killed gateway restarts with the same id (nobody holds it any more).
  gw['gw-c'].cleanup();
  gw['gw-c'] = await startGateway({ id: 'gw-c', redis: redis.url, port: cPort, mgmt: cMgmt });
  const l2 = await listen(gw['gw-c'].ns, 'C2');
  await untilRegistered(gw['gw-c'], 'credit-check', 2);
  const tags = new Set();
  for (let i = 0; i < 20 && tags.size < 2; i++) tags.add((await ask(gw['gw-b'].ns, 'x')).reply);
  assert.deepEqual([...tags].sort(), ['C2:x', 'L:x']);
  l.close(); l2.close();
  await lb.close();
  await sleep(300);
});

test('two gateways with the same id: the second refuses to start and says why', async () => {
  const port = await freePort();
  const r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-a', port, redis: redis.url }));
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /\[gateway\] id = "gw-a" is already used by a running gateway/);
});

test('a gateway that cannot bind its port fails before joining the store, so it can be restarted at once', async () => {
  const held = net.createServer();
  await new Promise((r) => held.listen(0, '127.0.0.1', r));
  const taken = held.address().port;
  try {
    const r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-p', port: taken, redis: redis.url }));
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken}`));
    assert.doesNotMatch(r.stderr, /joined the shared store/);
    assert.equal(redis.cli('EXISTS', 'hyrelay:v1:gw:gw-p'), '0', 'the failed gateway left its id in the store');
  } finally {
    held.close();
  }
  // The same id on a free port starts straight away (before, the id stayed taken for a TTL).
  const g = await startGateway({ id: 'gw-p', redis: redis.url });
  try {
    assert.equal(redis.cli('EXISTS', 'hyrelay:v1:gw:gw-p'), '1');
  } finally {
    await g.stop();
    g.cleanup();
  }
});

test('bad store settings fail fast with a message naming the key', async () => {
  const port = await freePort();
  const dead = await freePort();
  let r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: `redis://127.0.0.1:${dead}` }));
  assert.match(r.stderr, /\[store\] redis = "redis:\/\/127\.0\.0\.1:\d+": cannot connect/);
  assert.ok(r.ms < 10000, `${r.ms} ms`);
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: 'http://127.0.0.1:6379' }));
  assert.match(r.stderr, /\[store\] redis = "http:\/\/127\.0\.0\.1:6379": expected redis:\/\/HOST:PORT/);
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw x', port, redis: redis.url }));
  assert.match(r.stderr, /\[gateway\] id = "gw x": use 1-64 letters/);
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: redis.url }).replace(/public_address = .*\n/, ''));
  assert.match(r.stderr, /\[store\] redis needs \[gateway\] public_address/);
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: redis.url }).replace('[store]', '[store]\nredis_url = "x"'));
  assert.match(r.stderr, /redis_url/);
  // A public address nobody answers on (a free port, not this gateway's).
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: redis.url }).replace(/public_address = .*\n/, `public_address = "ws://127.0.0.1:${dead}"\n`));
  assert.match(r.stderr, /\[gateway\] public_address = "ws:\/\/127\.0\.0\.1:\d+" is not reachable from this gateway/);
  // A database written by another layout version.
  redis.cli('-n', '5', 'SET', 'hyrelay:schema', '99');
  r = relayFails(gatewayConfig({ dir: '@DIR@', id: 'gw-x', port, redis: `${redis.url}/5` }));
  assert.match(r.stderr, /holds data written by an incompatible version/);
});

test('Redis stops: each gateway keeps serving its own listeners, says so loudly, and recovers when Redis is back', async () => {
  const l = await listen(gw['gw-a'].ns, 'A');
  await untilRegistered(gw['gw-a'], 'credit-check', 1);
  assert.equal((await ask(gw['gw-b'].ns, 'cross')).reply, 'A:cross');
  const port = redis.port;
  await redis.stop();
  await sleep(2500);
  assert.equal((await ask(gw['gw-a'].ns, 'local')).reply, 'A:local', 'a gateway serves its own listeners without the store');
  const cross = await ask(gw['gw-b'].ns, 'cross');
  assert.match(String(cross.error), /404/, JSON.stringify(cross));
  assert.ok(cross.ms < 4000, `${cross.ms} ms`);
  assert.match(gw['gw-a'].err(), /GATEWAY STORE UNREACHABLE/);
  redis = await startRedis({ port });
  const t0 = Date.now();
  let back = null;
  while (Date.now() - t0 < 15000) {
    const r = await ask(gw['gw-b'].ns, 'again', 'credit-check', 4000);
    if (r.reply) { back = r; break; }
    await sleep(200);
  }
  assert.equal(back && back.reply, 'A:again', 'cross-gateway routing recovers by itself');
  assert.match(gw['gw-a'].err(), /gateway store reachable again/);
  l.close();
});
