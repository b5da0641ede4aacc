// Unmodified npm hyco-https listener with plain Node http/https senders against `hyrelay up`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { startRelay, PEERS, KEYNAME, sleep } from './harness.mjs';

const require = createRequire(import.meta.url);
const hyco = require(path.join(PEERS, 'hyco-https'));

let relay, server, seen = [];
const big = crypto.randomBytes(300 * 1024);

before(async () => {
  relay = await startRelay();
  relay.createHyco('web');
  relay.createHyco('open', ['--no-client-auth']);
  hyco.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
  const uri = hyco.createRelayListenUri(relay.ns, 'web');
  server = hyco.createRelayedServer({ server: uri, token: () => hyco.createRelayToken(uri, KEYNAME, relay.key) }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(Buffer.from(c)));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method, url: req.url, headers: req.headers, len: body.length, sha: crypto.createHash('sha256').update(body).digest('hex') });
      const u = req.url;
      if (u.startsWith('/web/big')) { res.setHeader('Content-Type', 'application/octet-stream'); res.end(big); return; }
      if (u.startsWith('/web/stream')) {
        res.setHeader('Content-Type', 'text/plain');
        let i = 0;
        const tick = () => { if (i < 5) { res.write(`part${i++};`); setTimeout(tick, 30); } else res.end('done'); };
        tick();
        return;
      }
      if (u.startsWith('/web/teapot')) { res.statusCode = 418; res.statusMessage = 'I am a teapot'; res.setHeader('X-Multi', ['a', 'b']); res.end('short and stout'); return; }
      if (u.startsWith('/web/nocontent')) { res.statusCode = 204; res.end(); return; }
      res.setHeader('Content-Type', 'text/plain');
      res.setHeader('X-Echo', 'yes');
      res.end(`${req.method} ${u} ${body.length} ${seen.at(-1).sha}`);
    });
  });
  server.listen();
  await new Promise((r) => server.on('listening', r));
});
after(async () => { server.close(); await relay.stop(); });

function send({ method = 'GET', p = '/web', body, headers = {}, chunks, tls = false, token = true }) {
  const lib = tls ? https : http;
  const h = { ...headers };
  if (token) h.ServiceBusAuthorization = relay.token(`http://${relay.host}/web`);
  return new Promise((resolve, reject) => {
    const req = lib.request({ host: relay.host, port: tls ? relay.httpsPort : relay.httpPort, method, path: p, headers: h, ca: tls ? fs.readFileSync(relay.ca) : undefined, servername: tls ? 'localhost' : undefined }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, message: res.statusMessage, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunks) {
      (async () => { for (const c of chunks) { req.write(c); await sleep(20); } req.end(); })();
    } else req.end(body);
  });
}

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

test('GET with suffix and app query: sb-hc-* pairs stripped, custom headers and Via passed', async () => {
  const r = await send({ p: '/web/sub/path?a=1&sb-hc-id=abc&b=%2B+&sb-hc-x', headers: { Custom: 'Hello' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-echo'], 'yes');
  assert.match(r.headers.via, /1\.1 127\.0\.0\.1/);
  const s = seen.at(-1);
  assert.equal(s.url, '/web/sub/path?a=1&b=%2B+&sb-hc-x');
  assert.equal(s.headers.custom, 'Hello');
  assert.equal(s.headers.servicebusauthorization, undefined, 'the token must not reach the listener');
  assert.match(s.headers.via, /^1\.1 127\.0\.0\.1$/);
});

test('HEAD and 204 carry no body', async () => {
  const h = await send({ method: 'HEAD' });
  assert.equal(h.status, 200);
  assert.equal(h.body.length, 0);
  const n = await send({ p: '/web/nocontent' });
  assert.equal(n.status, 204);
  assert.equal(n.body.length, 0);
});

test('small POST goes over the control channel, body intact', async () => {
  const body = crypto.randomBytes(1000);
  const r = await send({ method: 'POST', body });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), `POST /web 1000 ${sha(body)}`);
});

test('POST larger than 64 kB goes over a rendezvous socket, body intact', async () => {
  const body = crypto.randomBytes(200 * 1024);
  const r = await send({ method: 'POST', body });
  assert.equal(r.body.toString(), `POST /web ${body.length} ${sha(body)}`);
});

test('chunked streaming POST arrives whole', async () => {
  const chunks = Array.from({ length: 20 }, () => crypto.randomBytes(8000));
  const r = await send({ method: 'POST', p: '/web/chunked', chunks });
  const all = Buffer.concat(chunks);
  assert.equal(r.body.toString(), `POST /web/chunked ${all.length} ${sha(all)}`);
});

test('response larger than 64 kB (listener-initiated rendezvous) arrives intact', async () => {
  const r = await send({ p: '/web/big' });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, big.length);
  assert.equal(sha(r.body), sha(big));
});

test('streamed response arrives in order', async () => {
  const r = await send({ p: '/web/stream' });
  assert.equal(r.body.toString(), 'part0;part1;part2;part3;part4;done');
});

test('status code, reason phrase and repeated request headers pass through', async () => {
  // hyco-https itself sends only the first value of a multi-valued response header
  // (_writeResponsePreamble), so repetition is checked on the request side.
  const r = await send({ p: '/web/teapot', headers: { 'X-Multi': ['a', 'b'] } });
  assert.equal(r.status, 418);
  assert.equal(r.message, 'I am a teapot');
  assert.equal(r.body.toString(), 'short and stout');
  assert.equal(r.headers['x-multi'], 'a');
  assert.equal(seen.at(-1).headers['x-multi'], 'a, b');
});

test('the same over https with the development CA', async () => {
  const body = crypto.randomBytes(100 * 1024);
  const r = await send({ method: 'POST', body, tls: true });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), `POST /web ${body.length} ${sha(body)}`);
});

test('token in the Authorization header or sb-hc-token query is accepted and stripped', async () => {
  const tok = relay.token(`http://${relay.host}/web`);
  const a = await send({ headers: { Authorization: tok }, token: false, p: '/web/auth' });
  assert.equal(a.status, 200);
  assert.equal(seen.at(-1).headers.authorization, undefined);
  const q = await send({ token: false, p: `/web/q?sb-hc-token=${encodeURIComponent(tok)}&z=1` });
  assert.equal(q.status, 200);
  assert.equal(seen.at(-1).url, '/web/q?z=1');
});

test('no token: 401 naming the token and the entity; bad signature: 401', async () => {
  const r = await send({ token: false });
  assert.equal(r.status, 401);
  assert.match(r.message, /token/i);
  assert.match(r.message, /web/);
  const bad = await send({ token: false, headers: { ServiceBusAuthorization: relay.token(`http://${relay.host}/web`, KEYNAME, 'wrong-key') } });
  assert.equal(bad.status, 401);
  assert.match(bad.message, /invalid signature/);
});

test('unknown hybrid connection: 404; known one without listener: 404 no listeners', async () => {
  const r = await send({ p: '/nothing-here' });
  assert.equal(r.status, 404);
  assert.match(r.message, /Endpoint does not exist/);
  const o = await send({ p: '/open', token: false });
  assert.equal(o.status, 404);
  assert.match(o.message, /no listeners/);
});
