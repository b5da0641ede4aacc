// Protocol details the client libraries cannot show, with a raw RFC 6455 client:
// accept JSON, sub-protocols, reject (both spellings), half-close, abort, single-use accept
// addresses, status codes, renewToken, quotas, deletion, keep-alive and rate limiting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRelay, RawWs, KEYNAME, sleep } from './harness.mjs';

let relay;
before(async () => {
  relay = await startRelay();
  for (const n of ['proto', 'quota', 'doomed', 'renew', 'storm', 'calm']) relay.createHyco(n);
  relay.cli('policy', 'create', 'sendonly', '--rights', 'send');
});
after(async () => { await relay.stop(); });

const base = () => `ws://${relay.ns}`;
const listenTok = (hc) => relay.token(`http://${relay.ns}/${hc}`);

async function listener(hc, extra = {}) {
  const l = await RawWs.connect(`${base()}/$hc/${hc}?sb-hc-action=listen&sb-hc-id=L-${Math.random()}`, { ServiceBusAuthorization: listenTok(hc), ...extra });
  assert.equal(l.status, 101, `listen refused: ${l.status} ${l.reason}`);
  return l;
}

async function nextJson(ws) {
  for (;;) {
    const f = await ws.next();
    assert.ok(f, 'control channel ended');
    if (f.op === 1) return JSON.parse(f.payload.toString());
  }
}

test('accept JSON carries address, id, every sender header and the remote endpoint', async () => {
  const l = await listener('proto');
  const senderP = RawWs.connect(`${base()}/$hc/proto/sfx/more?x=1&&y=%2B&sb-hc-action=connect&sb-hc-id=myid`,
    { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`), 'X-Custom': 'abc', 'Sec-WebSocket-Protocol': 'chat, superchat' });
  const { accept } = await nextJson(l);
  assert.equal(accept.id, 'myid');
  assert.match(accept.address, new RegExp(`^ws://${relay.ns.replace(/\./g, '\\.')}/\\$hc/proto/sfx/more\\?x=1&&y=%2B&sb-hc-action=accept&sb-hc-id=myid&sb-hc-nonce=[0-9a-f]{32}$`));
  assert.equal(accept.connectHeaders['X-Custom'], 'abc');
  assert.ok(accept.connectHeaders['Sec-WebSocket-Key']);
  assert.equal(accept.connectHeaders['Sec-WebSocket-Protocol'], 'chat, superchat');
  assert.equal(accept.connectHeaders.ServiceBusAuthorization, undefined);
  assert.equal(accept.remoteEndpoint.address, '127.0.0.1');
  assert.equal(typeof accept.remoteEndpoint.port, 'number');
  // The listener picks a sub-protocol: both legs get it.
  const a = await RawWs.connect(accept.address, { 'Sec-WebSocket-Protocol': 'chat' });
  const s = await senderP;
  assert.equal(a.status, 101);
  assert.equal(s.status, 101);
  assert.equal(a.headers['sec-websocket-protocol'], 'chat');
  assert.equal(s.headers['sec-websocket-protocol'], 'chat');
  assert.equal(s.headers['sec-websocket-extensions'], undefined);
  // Frames pass unchanged, fragmented messages stay fragmented, text stays text.
  s.send(1, 'frag-', false); s.send(0, 'mented', true);
  const f1 = await a.next(); const f2 = await a.next();
  assert.deepEqual([f1.op, f1.fin, f1.masked, f1.payload.toString()], [1, false, false, 'frag-']);
  assert.deepEqual([f2.op, f2.fin, f2.payload.toString()], [0, true, 'mented']);
  const bin = Buffer.alloc(200000, 7);
  a.binary(bin);
  const back = await s.next();
  assert.equal(back.op, 2);
  assert.equal(back.payload.length, 200000);
  // A used accept address is refused.
  const again = await RawWs.connect(accept.address);
  assert.equal(again.status, 403);
  s.abort(); a.abort(); l.abort();
});

test('half-close: a Close from one leg does not stop the other direction', async () => {
  const l = await listener('proto');
  const sp = RawWs.connect(`${base()}/$hc/proto?sb-hc-action=connect`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`) });
  const { accept } = await nextJson(l);
  const a = await RawWs.connect(accept.address);
  const s = await sp;
  s.close(1000, 'Shutdown');            // .NET HybridConnectionStream.Shutdown()
  const c = await a.next();
  assert.equal(c.op, 8);
  assert.equal(c.payload.readUInt16BE(0), 1000);
  assert.equal(c.payload.subarray(2).toString(), 'Shutdown');
  a.text('still flowing');              // the listener keeps writing after the sender's Close
  const d = await s.next();
  assert.deepEqual([d.op, d.payload.toString()], [1, 'still flowing']);
  a.close(1000, 'done');
  const c2 = await s.next();
  assert.equal(c2.op, 8);
  assert.equal(c2.payload.subarray(2).toString(), 'done');
  assert.equal(await s.next(), null, 'the relay closes the TCP connection after both Closes');
  l.abort();
});

test('abort: a reset on one leg resets the other, no clean Close', async () => {
  const l = await listener('proto');
  const sp = RawWs.connect(`${base()}/$hc/proto?sb-hc-action=connect`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`) });
  const { accept } = await nextJson(l);
  const a = await RawWs.connect(accept.address);
  const s = await sp;
  s.text('x');
  assert.equal((await a.next()).payload.toString(), 'x');
  s.abort();
  let f;
  try { f = await a.next(); } catch (e) { f = { error: e.code }; }
  assert.equal(f && f.error, 'ECONNRESET', `expected a reset, got ${JSON.stringify(f)}`);
  l.abort();
});

for (const [name, q] of [['sb-hc- prefixed', 'sb-hc-statusCode=418&sb-hc-statusDescription=Not%20today'], ['unprefixed (Node)', 'statusCode=418&statusDescription=Not%20today']]) {
  test(`reject with ${name} parameters: listener gets 410, sender the status`, async () => {
    const l = await listener('proto');
    const sp = RawWs.connect(`${base()}/$hc/proto?sb-hc-action=connect`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`) });
    const { accept } = await nextJson(l);
    const rj = await RawWs.connect(`${accept.address}&${q}`);
    assert.equal(rj.status, 410);
    const s = await sp;
    assert.equal(s.status, 418);
    assert.equal(s.reason, 'Not today');
    l.abort();
  });
}

test('listen: unknown entity 404, missing token 401, wrong right 403, expired 401, wrong key 401', async () => {
  const u = await RawWs.connect(`${base()}/$hc/nope?sb-hc-action=listen`, { ServiceBusAuthorization: listenTok('nope') });
  assert.equal(u.status, 404);
  assert.match(u.reason, /Endpoint does not exist/);
  const m = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`);
  assert.equal(m.status, 401);
  assert.match(m.reason, /token/);
  const keys = JSON.parse(relay.cli('keys', 'show', 'sendonly'));
  const w = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`, 'sendonly', keys.primary_key) });
  assert.equal(w.status, 403);
  assert.match(w.reason, /listen/);
  const e = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`, KEYNAME, relay.key, -3600) });
  assert.equal(e.status, 401);
  assert.match(e.reason, /expired/);
  const k = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`, KEYNAME, 'bad') });
  assert.equal(k.status, 401);
  assert.match(k.reason, /invalid signature/);
  // The secondary key works too; a token for another entity is 403.
  const sec = JSON.parse(relay.cli('keys', 'show', KEYNAME)).secondary_key;
  const s2 = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/proto`, KEYNAME, sec) });
  assert.equal(s2.status, 101);
  s2.abort();
  const other = await RawWs.connect(`${base()}/$hc/proto?sb-hc-action=listen`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/quota`) });
  assert.equal(other.status, 403);
});

test('the 26th listener is refused; 25 are served', async () => {
  const ls = [];
  for (let i = 0; i < 25; i++) ls.push(await listener('quota'));
  const extra = await RawWs.connect(`${base()}/$hc/quota?sb-hc-action=listen`, { ServiceBusAuthorization: listenTok('quota') });
  assert.equal(extra.status, 403);
  assert.match(extra.reason, /25/);
  ls.forEach((l) => l.abort());
});

test('connects are spread over several listeners', async () => {
  const ls = [await listener('calm'), await listener('calm'), await listener('calm')];
  const counts = [0, 0, 0];
  ls.forEach((l, i) => { l.sock.on('data', () => { counts[i]++; }); });
  const senders = [];
  for (let i = 0; i < 30; i++) senders.push(RawWs.connect(`${base()}/$hc/calm?sb-hc-action=connect`, { ServiceBusAuthorization: relay.token(`http://${relay.ns}/calm`) }).catch(() => null));
  await sleep(500);
  assert.ok(counts.every((c) => c > 0), `every listener should get accepts: ${counts}`);
  ls.forEach((l) => l.abort());
  await Promise.all(senders);
});

test('renewToken: a good token keeps the channel, a bad one closes it with 1008', async () => {
  const l = await listener('renew');
  l.text(JSON.stringify({ renewToken: { token: listenTok('renew') } }));
  l.send(9, 'ping!');
  const pong = await l.next();
  assert.deepEqual([pong.op, pong.payload.toString()], [10, 'ping!']);
  l.send(10, 'unsolicited');           // ignored
  l.text(JSON.stringify({ renewToken: { token: relay.token(`http://${relay.ns}/renew`, KEYNAME, 'forged') } }));
  const c = await l.next();
  assert.equal(c.op, 8);
  assert.equal(c.payload.readUInt16BE(0), 1008);
  assert.match(c.payload.subarray(2).toString(), /signature/);
});

test('deleting a hybrid connection closes its listeners with 1001', async () => {
  const l = await listener('doomed');
  relay.cli('hyco', 'delete', 'doomed');
  const c = await l.next();
  assert.equal(c.op, 8);
  assert.equal(c.payload.readUInt16BE(0), 1001);
});

test('a storm of failing handshakes is throttled per source and path; others are served', async () => {
  let throttled = 0;
  const bad = relay.token(`http://${relay.ns}/storm`, KEYNAME, 'wrong');
  for (let i = 0; i < 60; i++) {
    const r = await RawWs.connect(`${base()}/$hc/storm?sb-hc-action=listen`, { ServiceBusAuthorization: bad });
    if (r.status === 429) throttled++;
    else assert.equal(r.status, 401);
    r.sock.destroy();
  }
  assert.ok(throttled > 20, `expected throttling, got ${throttled} 429s`);
  const ok = await listener('calm');
  ok.abort();
});

test('an oversize request header block is refused with 431 and the relay keeps serving', async () => {
  const { default: net } = await import('node:net');
  const raw = (headerBytes) => new Promise((resolve, reject) => {
    const s = net.connect(relay.httpPort, relay.host, () => {
      s.write(`GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ${'x'.repeat(headerBytes)}\r\n\r\n`);
    });
    let got = '';
    s.on('data', (d) => { got += d; if (got.includes('\r\n')) { s.destroy(); resolve(got.split('\r\n')[0]); } });
    s.on('error', (e) => (got ? resolve(got.split('\r\n')[0]) : reject(e)));
  });
  assert.equal(await raw(200_000), 'HTTP/1.1 431 Request Header Fields Too Large');
  // a normal-sized one still gets the relay's own answer (no such hybrid connection: 404)
  assert.match(await raw(1000), /^HTTP\/1\.1 404 Endpoint does not exist/);
});
