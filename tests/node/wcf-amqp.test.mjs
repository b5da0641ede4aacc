// The WCF Relay listener plane (AMQP 1.0 over TLS, the relay's port 5671) driven by an
// independent AMQP 1.0 stack, the npm `rhea` package (pinned), playing a Microsoft.ServiceBus
// listener: SASL, the :in/:out link pair with the relay's link properties, token renewal in
// flow properties, and the relay's error conditions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { BIN, PEERS, sasToken, sleep } from './harness.mjs';
import { freePort, startConfiguredRelay, contosoNamespace } from './gateways.mjs';

const require = createRequire(import.meta.url);
const rhea = require(path.join(PEERS, 'rhea'));
const frames = require(path.join(PEERS, 'rhea', 'lib', 'frames.js'));

const KEY = 'd2NmLXJlbGF5LWxpc3RlbmVyLXBsYW5lLXRlc3Qta2V5LTA=';
let child, dir, amqpPort, httpsAddr;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-amqp-'));
  amqpPort = await freePort();
  const r = await startConfiguredRelay(dir, `
data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
[limits]
token_grace = "2s"
[wcf_relay]
amqp = "127.0.0.1:${amqpPort}"
${contosoNamespace({ host: 'contoso.relay.local', key: KEY, rules: [['SendOnly', ['send']]] })}`, /hyrelay ready: \S+ (\S+) amqps=/);
  child = r.child;
  httpsAddr = r.match[1];
});
after(async () => { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); fs.rmSync(dir, { recursive: true, force: true }); });

const token = (p, ttl = 3600, rule = 'RootManageSharedAccessKey') => sasToken(`http://contoso.relay.local/${p}`, rule, KEY, ttl);

function connect() {
  const container = rhea.create_container({ id: `RelayConnection_${crypto.randomUUID()}` });
  const conn = container.connect({
    host: '127.0.0.1', port: amqpPort, transport: 'tls', servername: 'localhost',
    ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')),
    hostname: 'contoso-relay.relay.local', username: 'anonymous', reconnect: false,
    idle_time_out: 60000,
  });
  conn.on('error', () => {});
  conn.on('disconnected', () => {});
  return conn;
}

// A listener's duplex link pair as Microsoft.ServiceBus attaches it; resolves with both
// links' outcomes: 'open' or the remote error condition.
function listenerPair(conn, p, props) {
  const base = `RelayLink_${crypto.randomUUID()}`;
  const address = `sb://contoso.relay.local/${p}/`;
  const properties = { 'com.microsoft:swt': token(p), 'com.microsoft:listener-type': 'Unicast', 'com.microsoft:dynamic-relay': true, 'com.microsoft:client-agent': 'rhea-as-listener', ...props };
  // A refused link is answered by an attach without source or target, then a detach with
  // the error (AMQP 2.6.3): an attach not followed by a detach counts as open.
  const outcome = (link, opened, closed) => new Promise((resolve) => {
    link.once(opened, () => setTimeout(() => resolve('open'), 200));
    link.once(closed, (ctx) => resolve((link.remote.detach && link.remote.detach.error && link.remote.detach.error.condition) || 'closed'));
    setTimeout(() => resolve('timeout'), 5000);
  });
  const out = conn.open_sender({ name: `${base}:out`, target: { address }, properties });
  const inn = conn.open_receiver({ name: `${base}:in`, source: { address }, properties, credit_window: 1000 });
  return {
    out, inn,
    ready: Promise.all([outcome(out, 'sendable', 'sender_close').then((x) => (x === 'open' ? 'open' : x)), outcome(inn, 'receiver_open', 'receiver_close')]),
  };
}

test('a Unicast listener registers: SASL, open on {ns}-relay host, :out and :in links accepted', async () => {
  const conn = connect();
  const pair = listenerPair(conn, 'orders');
  assert.deepEqual(await pair.ready, ['open', 'open']);
  assert.equal(conn.remote.open.container_id, 'hyrelay');
  assert.ok(conn.remote.open.idle_time_out > 0, 'the relay announces an idle time-out');
  conn.close();
});

test('bad tokens, wrong rights, persistent relays that do not exist and type conflicts get the relay error conditions', async () => {
  const conn = connect();
  const bad = listenerPair(conn, 'orders-bad', { 'com.microsoft:swt': token('orders-bad').replace(/sig=[^&]+/, 'sig=AAAA') });
  assert.deepEqual(await bad.ready, ['com.microsoft:auth-failed', 'com.microsoft:auth-failed']);
  const send = listenerPair(conn, 'orders-send', { 'com.microsoft:swt': token('orders-send', 3600, 'SendOnly') });
  assert.deepEqual(await send.ready, ['com.microsoft:auth-failed', 'com.microsoft:auth-failed']);
  const none = listenerPair(conn, 'orders-none', { 'com.microsoft:swt': undefined });
  assert.deepEqual(await none.ready, ['com.microsoft:auth-failed', 'com.microsoft:auth-failed']);
  const persistent = listenerPair(conn, 'no-such-relay', { 'com.microsoft:dynamic-relay': false });
  assert.deepEqual(await persistent.ready, ['com.microsoft:relay-not-found', 'com.microsoft:relay-not-found']);
  const uni = listenerPair(conn, 'mixed');
  assert.deepEqual(await uni.ready, ['open', 'open']);
  const multi = listenerPair(conn, 'mixed', { 'com.microsoft:listener-type': 'Multicast' });
  assert.deepEqual(await multi.ready, ['com.microsoft:address-already-in-use', 'com.microsoft:address-already-in-use']);
  conn.close();
});

test('25 listeners per endpoint; the 26th is refused with amqp:resource-limit-exceeded; one leaving makes room', async () => {
  const conns = [];
  const pairs = [];
  for (let i = 0; i < 26; i++) {
    const c = connect();
    conns.push(c);
    const p = listenerPair(c, 'busy');
    pairs.push(p);
    const r = await p.ready;
    if (i < 25) assert.deepEqual(r, ['open', 'open'], `listener ${i + 1}`);
    else assert.deepEqual(r, ['amqp:resource-limit-exceeded', 'amqp:resource-limit-exceeded']);
  }
  conns[0].close();
  await sleep(300);
  const again = listenerPair(conns[25], 'busy');
  assert.deepEqual(await again.ready, ['open', 'open']);
  conns.forEach((c) => c.close());
});

test('token renewal in flow properties keeps a listener past its expiry; without it the listener is detached after the grace period', async () => {
  const conn = connect();
  const renewed = listenerPair(conn, 'renew', { 'com.microsoft:swt': token('renew', 2) });
  const lapsed = listenerPair(conn, 'lapse', { 'com.microsoft:swt': token('lapse', 2) });
  assert.deepEqual(await renewed.ready, ['open', 'open']);
  assert.deepEqual(await lapsed.ready, ['open', 'open']);
  let lapsedError = null;
  lapsed.inn.once('receiver_close', () => { lapsedError = lapsed.inn.remote.detach.error.condition; });
  let renewedClosed = false;
  renewed.inn.once('receiver_close', () => { renewedClosed = true; });
  // As Microsoft.ServiceBus does: a flow on the link whose properties carry the new token,
  // sent 10 s after expiry in real life; here 2.5 s, inside the 2 s grace.
  await sleep(2500);
  const s = renewed.inn.session;
  s.output(frames.flow({
    next_incoming_id: s.incoming.next_transfer_id >>> 0, incoming_window: s.incoming.window,
    next_outgoing_id: s.outgoing.next_transfer_id >>> 0, outgoing_window: s.outgoing.window,
    handle: renewed.inn.local.handle, delivery_count: 0, link_credit: 1000,
    properties: { 'com.microsoft:swt': token('renew', 3600) },
  }));
  await sleep(4000);
  assert.equal(lapsedError, 'com.microsoft:auth-failed', 'the listener that never renewed is detached');
  assert.equal(renewedClosed, false, 'the renewed listener stays');
  // A renewal with a bad token detaches the pair.
  s.output(frames.flow({
    next_incoming_id: s.incoming.next_transfer_id >>> 0, incoming_window: s.incoming.window,
    next_outgoing_id: s.outgoing.next_transfer_id >>> 0, outgoing_window: s.outgoing.window,
    handle: renewed.inn.local.handle, delivery_count: 0, link_credit: 1000,
    properties: { 'com.microsoft:swt': token('renew', 3600, 'SendOnly') },
  }));
  await new Promise((r) => renewed.inn.once('receiver_close', r));
  assert.equal(renewed.inn.remote.detach.error.condition, 'com.microsoft:auth-failed');
  conn.close();
});

test('garbage and unknown namespaces: the AMQP answer, a log line, and nothing else disturbed', async () => {
  // Not AMQP at all (an HTTP request over TLS): the relay answers with its protocol header and closes.
  const reply = await new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: amqpPort, servername: 'localhost', ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')) }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    let got = Buffer.alloc(0);
    s.on('data', (d) => { got = Buffer.concat([got, d]); });
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
  assert.equal(reply.toString('latin1'), 'AMQP\x03\x01\x00\x00');
  // An open for a namespace this relay does not serve.
  const container = rhea.create_container();
  const conn = container.connect({ host: '127.0.0.1', port: amqpPort, transport: 'tls', servername: 'localhost', ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')), hostname: 'fabrikam-relay.relay.local', username: 'anonymous', reconnect: false });
  conn.on('disconnected', () => {});
  const cond = await new Promise((resolve) => conn.on('connection_error', (ctx) => resolve(ctx.connection.remote.close.error.condition)));
  assert.equal(cond, 'amqp:not-found');
  // The plane still serves.
  const ok = connect();
  assert.deepEqual(await listenerPair(ok, 'after-garbage').ready, ['open', 'open']);
  ok.close();
});

test('listeners without port 5671: AMQP over wss://…/$servicebus/websocket, sub-protocol wsrelayedamqp', async () => {
  const WebSocket = require(path.join(PEERS, 'ws'));
  const ca = fs.readFileSync(path.join(dir, 'data', 'ca.pem'));
  class CaWebSocket extends WebSocket {
    constructor(url, protocols, options) { super(url, protocols, { ...options, ca, servername: 'localhost' }); }
  }
  const container = rhea.create_container({ id: `RelayConnection_${crypto.randomUUID()}` });
  const details = container.websocket_connect(CaWebSocket)(`wss://${httpsAddr}/$servicebus/websocket`, ['wsrelayedamqp'], {});
  const conn = container.connect({ connection_details: details, hostname: 'contoso-relay.relay.local', username: 'anonymous', reconnect: false });
  conn.on('error', () => {});
  conn.on('disconnected', () => {});
  const pair = listenerPair(conn, 'over-websocket');
  assert.deepEqual(await pair.ready, ['open', 'open']);
  conn.close();
  // Other sub-protocols are refused with a reason.
  const res = await new Promise((resolve) => {
    const w = new CaWebSocket(`wss://${httpsAddr}/$servicebus/websocket`, ['wsrelayedsomething']);
    w.on('unexpected-response', (req, r) => { let b = ''; r.on('data', (d) => { b += d; }); r.on('end', () => resolve({ status: r.statusCode, b })); });
    w.on('error', () => {});
  });
  assert.equal(res.status, 400);
  assert.match(res.b + '', /wsrelayedamqp \(listener registration\), wsrelayedconnection \(NetTcpRelay\) and wsrelayedoneway \(one-way senders\) are/);
});

test('a reconnect storm from one address is refused at once; listeners from other addresses are not hurt', async () => {
  const net = await import('node:net');
  // 160 connections at once from 127.0.0.1 (the relay closes refused ones without a TLS handshake).
  const socks = [];
  for (let i = 0; i < 160; i++) socks.push(net.connect({ host: '127.0.0.1', port: amqpPort }));
  const closedFast = await Promise.all(socks.map((s) => new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 1500);
    s.on('close', () => { clearTimeout(t); resolve(true); });
    s.on('error', () => {});
  })));
  const refused = closedFast.filter(Boolean).length;
  assert.ok(refused >= 40 && refused <= 120, `${refused} of 160 refused`);
  socks.forEach((s) => s.destroy());
  // Another tenant, from another address, registers as usual.
  const container = rhea.create_container();
  const conn = container.connect({ host: '127.0.0.1', port: amqpPort, transport: 'tls', servername: 'localhost', localAddress: '127.0.0.2', ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')), hostname: 'contoso-relay.relay.local', username: 'anonymous', reconnect: false });
  conn.on('error', () => {});
  conn.on('disconnected', () => {});
  assert.deepEqual(await listenerPair(conn, 'other-tenant').ready, ['open', 'open']);
  conn.close();
  // After the storm the first address gets its turn again (10/s).
  await sleep(1500);
  const again = connect();
  assert.deepEqual(await listenerPair(again, 'after-storm').ready, ['open', 'open']);
  again.close();
});
