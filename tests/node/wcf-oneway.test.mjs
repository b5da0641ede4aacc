// WCF Relay one-way and event relaying: a NetOneway/NetEvent sender built from Mono's stock WCF
// (CustomBinding of BinaryMessageEncoding + TcpTransport, tools/peers/mono-wcf/src/OnewaySender.cs)
// sends to the relay's port 9350 (here a free port); listeners are the independent npm rhea AMQP
// stack registered as Microsoft.ServiceBus listeners do. NetEvent fans every message out to every
// subscriber in order; NetOneway gives each message to one listener.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { BIN, PEERS, root, sasToken, sleep } from './harness.mjs';
import { freePort, startConfiguredRelay, contosoNamespace } from './gateways.mjs';
import * as peerMod from './nettcp-peer.mjs';

const require = createRequire(import.meta.url);
const rhea = require(path.join(PEERS, 'rhea'));
const MONO = path.join(root, 'tools', 'peers', 'mono-wcf');
const KEY = 'd2NmLXJlbGF5LW9uZXdheS1hbmQtZXZlbnQtdGVzdC1rZXk=';
let child, dir, amqpPort, onewayPort, onewayTlsPort, sbmpPort, httpAddr, httpsAddr, relayErr = '';

before(async () => {
  if (!fs.existsSync(path.join(MONO, 'bin', 'OnewaySender.exe'))) execFileSync(path.join(MONO, 'build.sh'), { stdio: 'ignore' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-oneway-'));
  amqpPort = await freePort();
  onewayPort = await freePort();
  onewayTlsPort = await freePort();
  sbmpPort = await freePort();
  const r = await startConfiguredRelay(dir, `
data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:${amqpPort}"
oneway = "127.0.0.1:${onewayPort}"
oneway_tls = "127.0.0.1:${onewayTlsPort}"
sbmp = "127.0.0.1:${sbmpPort}"
${contosoNamespace({ host: 'contoso.relay.local', key: KEY, rules: [['ListenOnly', ['listen']]], hcs: ['audit-hc'] })}`, /hyrelay ready: (\S+) (\S+) .*oneway=/);
  child = r.child;
  httpAddr = r.match[1];
  httpsAddr = r.match[2];
  relayErr = r.err;
  r.child.stderr.on('data', (d) => { relayErr += d; });
});
after(async () => { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); fs.rmSync(dir, { recursive: true, force: true }); });

const token = (p, rule = 'RootManageSharedAccessKey') => sasToken(`http://contoso.relay.local/${p}`, rule, KEY);

// A rhea listener registered for `p` with `type`; collects the wrapped messages it gets.
async function subscribe(p, type) {
  const container = rhea.create_container({ id: `RelayConnection_${crypto.randomUUID()}` });
  const conn = container.connect({ host: '127.0.0.1', port: amqpPort, transport: 'tls', servername: 'localhost', ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')), hostname: 'contoso-relay.relay.local', username: 'anonymous', reconnect: false });
  conn.on('error', () => {});
  conn.on('disconnected', () => {});
  const base = `RelayLink_${crypto.randomUUID()}`;
  const address = `sb://contoso.relay.local/${p}/`;
  const properties = { 'com.microsoft:swt': token(p), 'com.microsoft:listener-type': type };
  conn.open_sender({ name: `${base}:out`, target: { address }, properties });
  const inn = conn.open_receiver({ name: `${base}:in`, source: { address }, properties, credit_window: 1000 });
  const got = [];
  inn.on('message', (ctx) => {
    const b = ctx.message.body;
    got.push(Buffer.from(b && b.content !== undefined ? b.content : b));
    if (process.env.DUMP_ONEWAY && got.length === 1) fs.writeFileSync(process.env.DUMP_ONEWAY, got[0]);
  });
  await new Promise((r) => inn.once('receiver_open', r));
  await sleep(200);
  return { conn, got };
}

function send(p, n, { tag = 'A', size = 16, tok = token(p) } = {}) {
  return new Promise((resolve) => {
    execFile('mono', [path.join(MONO, 'bin', 'OnewaySender.exe'), `127.0.0.1:${onewayPort}`, `sb://contoso.relay.local/${p}`, tok, String(n), '--tag', tag, '--size', String(size)],
      { env: { ...process.env, MONO_PATH: path.join(MONO, 'bin', 'nosleep') }, timeout: 120000, maxBuffer: 64 << 20 },
      (err, stdout) => resolve({ code: err ? err.code : 0, out: stdout }));
  });
}

// The inner message's sequence tags ("A#17"), from the wrapper's base64 payload (the
// longest base64 run in the wrapper).
function tagsOf(buffers) {
  return buffers.map((b) => {
    const runs = b.toString('latin1').match(/[A-Za-z0-9+/]{40,}={0,2}/g) || [];
    const b64 = runs.reduce((x, y) => (y.length > x.length ? y : x), '');
    // The Sender element's text: a Chars8TextWithEndElement record (0x99, length, text);
    // the length check keeps random bytes (a binary MessageID) from matching.
    const inner = Buffer.from(b64, 'base64').toString('latin1');
    const m = [...inner.matchAll(/\x99([\s\S])([A-Z]#\d+)/g)].filter((x) => x[1].charCodeAt(0) === x[2].length);
    assert.equal(m.length, 1, 'one inner message per wrapper');
    return m[0][2];
  });
}

test('NetEvent: 10,000 messages from a Mono sender reach each of 3 subscribers, in order, none lost or duplicated', async () => {
  const subs = [await subscribe('events', 'Multicast'), await subscribe('events', 'Multicast'), await subscribe('events', 'Multicast')];
  const n = 10000;
  const r = await send('events', n);
  assert.equal(r.code, 0, r.out.split('\n').slice(-5).join('\n'));
  assert.match(r.out, /CONNECTED/);
  assert.match(r.out, new RegExp(`SUMMARY sent=${n}`));
  const end = Date.now() + 30000;
  while (subs.some((s) => s.got.length < n) && Date.now() < end) await sleep(100);
  const expected = Array.from({ length: n }, (_, i) => `A#${i}`);
  for (const s of subs) assert.deepEqual(tagsOf(s.got), expected);
  // The wrapper decodes as the relay's OnewaySend envelope with RelayVia, and its payload
  // is the sender's message.
  const outer = execFileSync(BIN, ['nbfx', 'decode'], { input: subs[0].got[0] }).toString();
  assert.match(outer, /<a:Action s:mustUnderstand="1">http:\/\/schemas\.microsoft\.com\/netservices\/2009\/05\/servicebus\/connect\/OnewaySend<\/a:Action>/);
  assert.match(outer, /<RelayVia xmlns="http:\/\/schemas\.microsoft\.com\/netservices\/2009\/05\/servicebus\/connect">sb:\/\/contoso\.relay\.local\/events<\/RelayVia>/);
  const b64 = outer.match(/<OnewaySend[^>]*>([A-Za-z0-9+/=]+)</)[1];
  const inner = execFileSync(BIN, ['nbfx', 'decode'], { input: Buffer.from(b64, 'base64') }).toString();
  assert.match(inner, /http:\/\/contoso\.example\/audit\/Record/);
  assert.match(inner, /<Sender>A#0<\/Sender>/);
  subs.forEach((s) => s.conn.close());
});

test('NetOneway: each message goes to exactly one of two listeners', async () => {
  const a = await subscribe('orders', 'Unicast');
  const b = await subscribe('orders', 'Unicast');
  const n = 200;
  const r = await send('orders', n, { tag: 'U' });
  assert.equal(r.code, 0, r.out.split('\n').slice(-5).join('\n'));
  const end = Date.now() + 10000;
  while (a.got.length + b.got.length < n && Date.now() < end) await sleep(50);
  const all = [...tagsOf(a.got), ...tagsOf(b.got)].sort();
  assert.deepEqual(all, Array.from({ length: n }, (_, i) => `U#${i}`).sort());
  assert.ok(a.got.length > 0 && b.got.length > 0, `${a.got.length} / ${b.got.length}`);
  a.conn.close(); b.conn.close();
});

test('senders without Send rights, to nobody, or over 64 KB get the relay faults', async () => {
  let r = await send('events-x', 1, { tok: token('events-x', 'ListenOnly') });
  assert.match(r.out, /FAULT AuthorizationFailedFault .*send is required/);
  r = await send('nobody-listens', 1);
  assert.match(r.out, /FAULT EndpointNotFoundFault no listener is connected for 'nobody-listens'/);
  const s = await subscribe('big', 'Unicast');
  r = await send('big', 1, { size: 70000 });
  assert.match(r.out, /FAULT QuotaExceededFault .*65536/);
  assert.equal(s.got.length, 0);
  r = await send('big', 1, { size: 1000 });
  assert.equal(r.code, 0, r.out);
  s.conn.close();
});

test('port 9354 (SBMP) is not relay: a stock Mono NetTcp client gets the EndpointNotFound framing fault and the log says why', async () => {
  const r = await new Promise((resolve) => {
    execFile(path.join(MONO, 'run-client.sh'), ['127.0.0.1', '18100', '1', '--via', `127.0.0.1:${sbmpPort}`],
      { timeout: 60000 }, (err, stdout) => resolve({ code: err ? err.code : 0, out: stdout }));
  });
  assert.notEqual(r.code, 0);
  // Mono reports the framing fault as a FaultException naming the fault URI.
  assert.match(r.out, /ERROR System.ServiceModel.FaultException: http:\/\/schemas.microsoft.com\/ws\/2006\/05\/framing\/faults\/EndpointNotFound/);
  await sleep(200);
  assert.match(relayErr, /SBMP\/NetMessaging \(port 9354\) is not served by hyrelay/);
});

test('hyrelay up --wcf-relay: the real ports 5671 and 9350–9354 are served; a one-way message end to end', async (t) => {
  const net = await import('node:net');
  const busy = async (port) => new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(true));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
  for (const p of [5671, 9350, 9351, 9352, 9353, 9354]) {
    if (await busy(p)) { t.skip(`port ${p} is in use on this machine`); return; }
  }
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-up-wcf-'));
  const up = spawn(BIN, ['up', '--data-dir', d, '--http-port', '0', '--https-port', '0', '--management-port', '0', '--wcf-relay'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const out = await new Promise((resolve, reject) => {
      let o = '';
      up.stdout.on('data', (x) => { o += x; if (/hyrelay ready/.test(o)) resolve(o); });
      up.on('exit', (c) => reject(new Error('up exited ' + c)));
    });
    assert.match(out, /WCF Relay: +amqps=127\.0\.0\.1:5671 oneway=127\.0\.0\.1:9350 oneway_tls=127\.0\.0\.1:9351 nettcp=127\.0\.0\.1:9352 probe=127\.0\.0\.1:9353 sbmp=127\.0\.0\.1:9354/);
    const key = out.match(/SharedAccessKey=([^\s;]+)/)[1];
    const tok = (p) => sasToken(`http://127.0.0.1/${p}`, 'RootManageSharedAccessKey', key);
    const container = rhea.create_container();
    const conn = container.connect({ host: '127.0.0.1', port: 5671, transport: 'tls', servername: '127.0.0.1', ca: fs.readFileSync(path.join(d, 'ca.pem')), hostname: 'hyrelay-relay.127.0.0.1', username: 'anonymous', reconnect: false });
    conn.on('error', () => {});
    conn.on('disconnected', () => {});
    const props = { 'com.microsoft:swt': tok('audit'), 'com.microsoft:listener-type': 'Unicast' };
    const inn = conn.open_receiver({ name: 'RelayLink_up:in', source: { address: 'sb://127.0.0.1/audit/' }, properties: props });
    const got = [];
    inn.on('message', (ctx) => got.push(ctx.message.body));
    await new Promise((r) => inn.once('receiver_open', r));
    await sleep(200);
    const r = await new Promise((resolve) => execFile('mono', [path.join(MONO, 'bin', 'OnewaySender.exe'), '127.0.0.1:9350', 'sb://127.0.0.1/audit', tok('audit'), '3'],
      { env: { ...process.env, MONO_PATH: path.join(MONO, 'bin', 'nosleep') }, timeout: 60000 }, (err, stdout) => resolve({ code: err ? err.code : 0, out: stdout })));
    assert.equal(r.code, 0, r.out);
    const end = Date.now() + 5000;
    while (got.length < 3 && Date.now() < end) await sleep(50);
    assert.equal(got.length, 3);
    conn.close();
  } finally {
    up.kill('SIGTERM');
    await new Promise((r) => up.once('exit', r));
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('both faces: a legacy one-way sender reaches a Hybrid Connections HTTP listener (npm hyco-https) as SOAP 1.2 POSTs', async () => {
  const hyco = require(path.join(PEERS, 'hyco-https'));
  hyco.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
  const uri = hyco.createRelayListenUri(httpAddr, 'audit-hc');
  const seen = [];
  let status = 202;
  const server = hyco.createRelayedServer({ server: uri, token: () => hyco.createRelayToken(uri, 'RootManageSharedAccessKey', KEY) }, (req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => { seen.push({ method: req.method, ct: req.headers['content-type'], via: req.headers['x-relay-via'], body }); res.statusCode = status; res.end(); });
  });
  server.listen();
  await new Promise((r) => server.on('listening', r));
  let r = await send('audit-hc', 5, { tag: 'H' });
  assert.equal(r.code, 0, r.out);
  assert.equal(seen.length, 5);
  assert.deepEqual(seen.map((x) => x.body.match(/<Sender>(H#\d+)<\/Sender>/)[1]), ['H#0', 'H#1', 'H#2', 'H#3', 'H#4']);
  assert.ok(seen.every((x) => x.method === 'POST' && /^application\/soap\+xml; charset=utf-8; action="http:\/\/contoso\.example\/audit\/Record"$/.test(x.ct)), JSON.stringify(seen[0]));
  assert.equal(seen[0].via, 'sb://contoso.relay.local/audit-hc');
  // The listener refuses: the legacy sender gets a fault, not a silent loss.
  status = 500;
  r = await send('audit-hc', 1, { tag: 'H' });
  assert.match(r.out, /FAULT InvalidRequestFault the Hybrid Connections listener of 'audit-hc' answered HTTP 500/);
  server.close();
});

// The clean-room NMF one-way sender lives in nettcp-peer.mjs (onewaySession).
const preambleStart = (via) => peerMod.onewayPreamble(via);
async function onewaySession(sock, r, p, tag) {
  const reply = await peerMod.onewaySession(sock, r, `sb://contoso.relay.local/${p}`, token(p), tag);
  assert.doesNotMatch(reply, /Fault/);
}

test('the 64 KB one-way limit to the byte: a 65,536-byte message is delivered, 65,537 bytes get QuotaExceededFault', async () => {
  const s = await subscribe('edge', 'Unicast');
  const net = await import('node:net');
  const session = async (payloadBytes) => {
    const sock = net.connect(onewayPort, '127.0.0.1');
    await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
    const r = new peerMod.Reader(sock);
    sock.write(preambleStart('sb://contoso.relay.local/edge'));
    const reply = await peerMod.onewaySession(sock, r, 'sb://contoso.relay.local/edge', token('edge'), `E#${payloadBytes}`, { payloadBytes });
    sock.destroy();
    return reply;
  };
  assert.doesNotMatch(await session(65536), /Fault/);
  const end = Date.now() + 5000;
  while (s.got.length < 1 && Date.now() < end) await sleep(50);
  assert.deepEqual(tagsOf(s.got), ['E#65536']);
  assert.match(await session(65537), /QuotaExceededFault/);
  await sleep(300);
  assert.equal(s.got.length, 1, 'the oversize message is not delivered');
  s.conn.close();
});

// Port 9351: the same one-way session after the NMF `application/ssl-tls` upgrade. Mono has no
// TLS upgrade, so the sender here is the clean-room one above.
test('port 9351: a sender upgrades to TLS inside the framing preamble, connects and sends; the listener gets the message', async () => {
  const tls = await import('node:tls');
  const net = await import('node:net');
  const { Reader } = await import('./nettcp-peer.mjs');
  const sub = await subscribe('secure-audit', 'Unicast');
  const raw = net.connect(onewayTlsPort, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  raw.write(Buffer.concat([preambleStart('sb://contoso.relay.local/secure-audit'), peerMod.nmfString(9, 'application/ssl-tls')]));
  const r0 = new Reader(raw);
  assert.deepEqual([...(await r0.take(1))], [0x0a], 'UpgradeResponse');
  r0.release();
  const ca = fs.readFileSync(path.join(dir, 'data', 'ca.pem'));
  const sock = await new Promise((resolve, reject) => { const t = tls.connect({ socket: raw, servername: 'localhost', ca }, () => resolve(t)); t.once('error', reject); });
  const r = new Reader(sock);
  sock.resume();
  await onewaySession(sock, r, 'secure-audit', 'T#1');
  const end = Date.now() + 5000;
  while (sub.got.length < 1 && Date.now() < end) await sleep(50);
  assert.deepEqual(tagsOf(sub.got), ['T#1']);
  sock.destroy();
  sub.conn.close();
});

test('wsrelayedoneway: the one-way session inside a WebSocket on the HTTPS port', async () => {
  const { Reader } = await import('./nettcp-peer.mjs');
  const WebSocket = require(path.join(PEERS, 'ws'));
  const sub = await subscribe('ws-audit', 'Unicast');
  const w = new WebSocket(`wss://${httpsAddr}/$servicebus/websocket`, ['wsrelayedoneway'], { ca: fs.readFileSync(path.join(dir, 'data', 'ca.pem')), servername: 'localhost' });
  await new Promise((resolve, reject) => { w.once('open', resolve); w.once('error', reject); });
  assert.equal(w.protocol, 'wsrelayedoneway');
  const sock = WebSocket.createWebSocketStream(w);
  const r = new Reader(sock);
  sock.resume();
  sock.write(preambleStart('sb://contoso.relay.local/ws-audit'));
  await onewaySession(sock, r, 'ws-audit', 'W#1');
  const end = Date.now() + 5000;
  while (sub.got.length < 1 && Date.now() < end) await sleep(50);
  assert.deepEqual(tagsOf(sub.got), ['W#1']);
  sock.destroy();
  sub.conn.close();
});
