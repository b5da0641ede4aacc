// NetTcpRelay through the relay's port 9352 (here free ports): a clean-room client and
// listener (tests/node/nettcp-peer.mjs, written from the protocol notes; listeners register
// with the independent npm rhea AMQP stack) rendezvous through the relay, then exchange bytes
// end to end: integrity of a 4 MiB transfer, half-close, reset, faults, load balancing, probe.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { BIN, PEERS, sasToken, sleep } from './harness.mjs';
import { freePort, startConfiguredRelay, contosoNamespace } from './gateways.mjs';
import * as peer from './nettcp-peer.mjs';

const require = createRequire(import.meta.url);
const HycoWS = require(path.join(PEERS, 'hyco-ws'));
const KEY = 'd2NmLXJlbGF5LW5ldHRjcC1yZWxheS10ZXN0LWtleS0wMDA=';
const HOST = 'contoso.relay.local';
let child, dir, ca, amqpPort, nettcpPort, probePort, httpAddr, httpsAddr, relayErr = '';

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-nettcp-'));
  [amqpPort, nettcpPort, probePort] = [await freePort(), await freePort(), await freePort()];
  const r = await startConfiguredRelay(dir, `
data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
[limits]
accept_timeout = "2s"
[wcf_relay]
amqp = "127.0.0.1:${amqpPort}"
nettcp = "127.0.0.1:${nettcpPort}"
probe = "127.0.0.1:${probePort}"
${contosoNamespace({ host: HOST, key: KEY, rules: [['ListenOnly', ['listen']]], hcs: ['migrated'] })}`, /hyrelay ready: (\S+) (\S+) .*nettcp=/);
  child = r.child;
  httpAddr = r.match[1];
  httpsAddr = r.match[2];
  relayErr = r.err;
  child.stderr.on('data', (d) => { relayErr += d; });
  ca = fs.readFileSync(path.join(dir, 'data', 'ca.pem'));
});
after(async () => { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); fs.rmSync(dir, { recursive: true, force: true }); });

const token = (p, rule = 'RootManageSharedAccessKey', ttl = 3600) => sasToken(`http://${HOST}/${p}`, rule, KEY, ttl);
const uri = (p) => `sb://${HOST}/${p}/`;
const listen = (p, opts) => peer.listen({ amqpPort, ca, host: HOST, path: p, token: token(p), ...opts });
const connect = (p, opts = {}) => peer.connect({ port: nettcpPort, uri: uri(p), token: token(p), ca, ...opts });
const echo = (sock) => { sock.on('data', (d) => sock.write(d)); sock.on('end', () => sock.end()); sock.on('error', () => {}); sock.resume(); };

function collect(sock) {
  const chunks = [];
  return new Promise((resolve, reject) => {
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => resolve(Buffer.concat(chunks)));
    sock.on('error', reject);
    sock.resume();
  });
}

test('TLS on both legs: 4 MiB arrive back intact through the splice, then both ends close cleanly', async () => {
  const l = await listen('echo', { onStream: echo });
  const { sock, reply } = await connect('echo');
  assert.match(reply, /RelayedConnectReply/);
  const data = crypto.randomBytes(4 << 20);
  const got = collect(sock);
  sock.end(data);
  const back = await got;
  assert.equal(back.length, data.length);
  assert.equal(crypto.createHash('sha256').update(back).digest('hex'), crypto.createHash('sha256').update(data).digest('hex'));
  // The notification carried what the notes say: the 9352 address as .NET's IPv4 long, a
  // GUID id, and the OnewaySend wrapper's RelayVia.
  const n = l.notifications[0];
  assert.equal(n.ip, '127.0.0.1');
  assert.equal(n.port, nettcpPort);
  assert.match(n.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(n.inner, /<a:Action s:mustUnderstand="1">http:\/\/schemas\.microsoft\.com\/netservices\/2009\/05\/servicebus\/relayedconnect\/RelayedConnect<\/a:Action>/);
  assert.match(n.outer, new RegExp(`<RelayVia[^>]*>${uri('echo').replace(/[/.]/g, '\\$&')}</RelayVia>`));
  l.conn.close();
});

test('clear legs (flag byte 00): many small round trips keep their order', async () => {
  const l = await listen('clear', { onStream: echo, useTls: false });
  const { sock } = await connect('clear', { useTls: false });
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
  sock.resume();
  for (let i = 0; i < 200; i++) {
    const msg = Buffer.from(`ping-${i}-`.padEnd(64, 'x'));
    sock.write(msg);
    const end = Date.now() + 5000;
    while (buf.length < 64 && Date.now() < end) await sleep(1);
    assert.equal(buf.subarray(0, 64).toString(), msg.toString());
    buf = buf.subarray(64);
  }
  sock.destroy();
  l.conn.close();
});

test('half-close: the client ends its side, the listener still answers, then ends', async () => {
  const l = await listen('half', {
    onStream: (s) => {
      const chunks = [];
      s.on('data', (d) => chunks.push(d));
      s.on('end', () => { s.end(`got ${Buffer.concat(chunks).length} bytes after your FIN`); });
      s.resume();
    },
  });
  const { sock } = await connect('half');
  const got = collect(sock);
  sock.end(Buffer.alloc(100000, 7));
  assert.equal((await got).toString(), 'got 100000 bytes after your FIN');
  l.conn.close();
});

test('a listener that resets its socket resets the client: an error, not an orderly end', async () => {
  const l = await listen('reset', { useTls: false, onStream: (s) => { s.on('data', () => s.resetAndDestroy()); s.resume(); } });
  const { sock } = await connect('reset', { useTls: false });
  const outcome = new Promise((resolve) => {
    sock.on('error', (e) => resolve(`error ${e.code}`));
    sock.on('end', () => resolve('end'));
    sock.resume();
  });
  sock.write('boom');
  assert.match(await outcome, /^error (ECONNRESET|EPIPE)/);
  l.conn.close();
});

test('faults: no listener, no token, a Listen-only token, an expired token (beyond the 60 s clock skew)', async () => {
  await assert.rejects(connect('nobody'), (e) => e.code === 'EndpointNotFoundFault' && /no NetTcpRelay listener/.test(e.message));
  const l = await listen('guarded', { onStream: echo });
  await assert.rejects(connect('guarded', { token: undefined }), (e) => e.code === 'AuthorizationFailedFault');
  await assert.rejects(connect('guarded', { token: token('guarded', 'ListenOnly') }), (e) => e.code === 'AuthorizationFailedFault' && /send/i.test(e.message));
  await assert.rejects(connect('guarded', { token: token('guarded', 'RootManageSharedAccessKey', -120) }), (e) => e.code === 'AuthorizationFailedFault' && /expired/i.test(e.message));
  // Token kinds of the old ACS days are named in the fault.
  await assert.rejects(connect('guarded', { token: 'WRAP access_token="net.windows.net&Issuer=owner&HMACSHA256=x"' }), (e) => e.code === 'AuthorizationFailedFault' && /SimpleWebToken \(SWT\) tokens are not supported/.test(e.message));
  await assert.rejects(connect('guarded', { token: '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion"/>' }), (e) => e.code === 'AuthorizationFailedFault' && /SAML tokens are not supported/.test(e.message));
  assert.equal(l.notifications.length, 0, 'refused clients never reach the listener');
  assert.doesNotMatch(relayErr, /SharedAccessSignature sr=/, 'no token in the log');
  l.conn.close();
});

test('listener lost mid-rendezvous: the client gets ConnectionFailedFault after the accept time-out', async () => {
  let l;
  const notified = new Promise((resolve) => {
    listen('vanishing', { onNotification: (n) => { l.conn.close(); resolve(n); } }).then((x) => { l = x; });
  });
  await sleep(300);
  const t0 = Date.now();
  await assert.rejects(connect('vanishing'), (e) => e.code === 'ConnectionFailedFault' && /did not accept/.test(e.message));
  assert.ok(Date.now() - t0 >= 1800, 'waited for the configured 2 s');
  // Its late RelayedAccept finds nothing: the id is single use and expired.
  const n = await notified;
  await assert.rejects(peer.acceptRendezvous(n, { ca }), (e) => e.code === 'EndpointNotFoundFault');
});

test('a rendezvous id is single use; an unknown one is refused', async () => {
  let first;
  const l = await listen('once', { onNotification: (n) => { first = n; peer.acceptRendezvous(n, { ca }).then(({ sock }) => echo(sock)); } });
  const { sock } = await connect('once');
  await assert.rejects(peer.acceptRendezvous(first, { ca }), (e) => e.code === 'EndpointNotFoundFault' && /unknown, expired or already used/.test(e.message));
  await assert.rejects(peer.acceptRendezvous({ ...first, id: crypto.randomUUID() }, { ca }), (e) => e.code === 'EndpointNotFoundFault');
  sock.destroy();
  l.conn.close();
});

test('several listeners share a path: connections spread over them', async () => {
  const a = await listen('farm', { onStream: echo });
  const b = await listen('farm', { onStream: echo });
  for (let i = 0; i < 24; i++) { const { sock } = await connect('farm'); sock.destroy(); }
  assert.equal(a.notifications.length + b.notifications.length, 24);
  assert.ok(a.notifications.length > 0 && b.notifications.length > 0, `${a.notifications.length}/${b.notifications.length}`);
  a.conn.close(); b.conn.close();
});

async function rawExchange(bytes) {
  const s = net.connect(nettcpPort, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write(bytes);
  const chunks = [];
  s.on('data', (d) => chunks.push(d));
  await new Promise((r) => s.once('close', r));
  return Buffer.concat(chunks);
}

test('bad input: unknown preamble type, wrong flag byte, garbage envelope, oversize envelope, wrong first action', async () => {
  assert.equal((await rawExchange(Buffer.from('GET / HTTP/1.1\r\n\r\n'))).length, 0);
  assert.equal((await rawExchange(peer.preamble('conned', undefined))).length, 0);
  assert.equal((await rawExchange(peer.preamble('connect', uri('x'), 7))).length, 0);
  const garbage = Buffer.concat([peer.preamble('connect', uri('x'), 0), Buffer.from([5, 0, 0, 0, 1, 2, 3, 4, 5])]);
  assert.match(peer.decode((await rawExchange(garbage)).subarray(4)), /InvalidRequestFault[\s\S]*not valid binary XML/);
  const huge = Buffer.concat([peer.preamble('connect', uri('x'), 0), Buffer.from([0, 0, 2, 0])]);
  assert.match(peer.decode((await rawExchange(huge)).subarray(4)), /QuotaExceededFault/);
  const ping = peer.encode(peer.relayedConnectXml(uri('x'), token('x')).replace('>RelayedConnect<', '>Ping<'));
  const wrong = Buffer.concat([peer.preamble('connect', uri('x'), 0), Buffer.from(new Int32Array([ping.length]).buffer), ping]);
  assert.match(peer.decode((await rawExchange(wrong)).subarray(4)), /InvalidRequestFault[\s\S]*must be RelayedConnect or RelayedAccept/);
  await sleep(100);
  assert.match(relayErr, /not a NetTcpRelay preamble/);
  assert.match(relayErr, /wrong security flag byte 0x07/);
  // The relay still serves after all that.
  const l = await listen('after-bad', { onStream: echo });
  const { sock } = await connect('after-bad');
  sock.destroy();
  l.conn.close();
});

test('probe on 9353 and 9352: the client address as the relay saw it, and the relay\'s own', async () => {
  for (const port of [probePort, nettcpPort]) {
    const c = await peer.probe(port, 2);
    assert.equal(c.ip, '127.0.0.1');
    assert.equal(c.port, c.local);
    const s = await peer.probe(port, 1);
    assert.deepEqual([s.ip, s.port], ['127.0.0.1', port]);
  }
});

// Both faces talk to each other (extensions: Azure keeps them apart).
function hycoListener(hc) {
  HycoWS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
  const uri = HycoWS.createRelayListenUri(httpAddr, hc);
  // hyco-ws checks the synthesized Sec-WebSocket-Key of the accept (it does not show the
  // other connect headers to the application).
  const server = HycoWS.createRelayedServer({ server: uri, token: () => HycoWS.createRelayToken(uri, 'RootManageSharedAccessKey', KEY) },
    (ws) => { ws.on('message', (m) => ws.send(m)); });
  return new Promise((resolve, reject) => { server.on('listening', () => resolve({ server })); server.on('error', reject); });
}

test('a NetTcpRelay client reaches an unmodified hyco-ws listener of a hybrid connection of the same name', async () => {
  const { server } = await hycoListener('migrated');
  const { sock, reply } = await connect('migrated');
  assert.match(reply, /RelayedConnectReply/);
  const data = crypto.randomBytes(1 << 20);
  let back = Buffer.alloc(0);
  sock.on('data', (d) => { back = Buffer.concat([back, d]); });
  sock.resume();
  sock.write(data);
  const end = Date.now() + 10000;
  while (back.length < data.length && Date.now() < end) await sleep(20);
  assert.equal(back.length, data.length);
  assert.ok(back.equals(data), 'the echo is byte-identical');
  sock.destroy();
  server.close();
});

test('an unmodified hyco-ws sender reaches a NetTcpRelay listener on a path without a hybrid connection', async () => {
  const l = await listen('legacy-svc', { onStream: echo });
  HycoWS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
  const uri = HycoWS.createRelaySendUri(httpAddr, 'legacy-svc');
  const msgs = [Buffer.from('hello legacy listener'), crypto.randomBytes(300000)];
  const got = await new Promise((resolve, reject) => {
    const c = HycoWS.relayedConnect(uri, HycoWS.createRelayToken(uri, 'RootManageSharedAccessKey', KEY), () => {
      for (const m of msgs) c.send(m, { binary: true });
    });
    let buf = Buffer.alloc(0);
    c.on('message', (m) => { buf = Buffer.concat([buf, Buffer.from(m)]); if (buf.length >= msgs[0].length + msgs[1].length) { c.close(); resolve(buf); } });
    c.on('error', reject);
  });
  assert.ok(got.equals(Buffer.concat(msgs)), 'bytes come back in order, unchanged');
  assert.equal(l.notifications.length, 1);
  assert.match(l.notifications[0].inner, /<a:To s:mustUnderstand="1">sb:\/\/127\.0\.0\.1(:\d+)?\/legacy-svc\/<\/a:To>/);
  // A sender without Send rights is refused before the listener hears of it.
  const bad = HycoWS.createRelayToken(uri, 'ListenOnly', KEY);
  const refused = await new Promise((resolve) => {
    const c = HycoWS.relayedConnect(uri, bad, () => resolve('opened'));
    c.on('error', (e) => resolve(String(e && e.message)));
    c.on('unexpected-response', (_req, res) => resolve(`status ${res.statusCode}`));
  });
  assert.match(refused, /401|403|Unexpected server response/);
  assert.equal(l.notifications.length, 1);
  l.conn.close();
});

test('persistent WCF relays: wcfrelay create/list/show/delete online; dynamic-relay = false needs one, its type and --no-client-auth apply', async () => {
  const cs = `Endpoint=sb://${httpAddr}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${KEY}`;
  const cli = (...a) => JSON.parse(execFileSync(BIN, ['wcfrelay', ...a, '-x', cs], { encoding: 'utf8', env: { ...process.env, HYRELAY_LOG: 'warn' } }));
  assert.deepEqual(cli('create', 'ledger', '--relay-type', 'nettcp', '--no-client-auth'),
    { name: 'ledger', relay_type: 'nettcp', requires_client_authorization: false, fixed: false });
  await assert.rejects(listen('not-created', { dynamic: false }), (e) => e.condition === 'com.microsoft:relay-not-found');
  await assert.rejects(listen('ledger', { listenerType: 'Unicast' }), (e) => e.condition === 'com.microsoft:address-already-in-use');
  const l = await listen('ledger', { dynamic: false, onStream: echo });
  assert.equal(cli('show', 'ledger').listener_count, 1);
  assert.deepEqual(cli('list').map((w) => w.name), ['ledger']);
  // RelayClientAuthenticationType.None: a client without a token gets through.
  const { sock } = await connect('ledger', { token: undefined });
  const back = collect(sock);
  sock.end('no token needed');
  assert.equal((await back).toString(), 'no token needed');
  l.conn.close();
  assert.match(execFileSync(BIN, ['wcfrelay', 'delete', 'ledger', '-x', cs], { encoding: 'utf8' }), /deleted WCF relay 'ledger'/);
  assert.throws(() => execFileSync(BIN, ['wcfrelay', 'show', 'ledger', '-x', cs], { stdio: 'pipe' }), /WCF relay 'ledger' does not exist/);
  // Without the relay, a client needs a token again.
  await assert.rejects(connect('ledger', { token: undefined }), (e) => e.code === 'AuthorizationFailedFault');
});

// HTTP relay bindings: plain HTTP clients (curl, fetch) reach a legacy listener registered
// as RelayedHttp (a clean-room one: AMQP via rhea, rendezvous, then the server side of an
// NMF singleton-unsized session, written from [MC-NMF] and known.md 5.5).
test('HTTP relay: curl and fetch reach a RelayedHttp listener; headers, body format, status and ServiceBusAuthorization mapped', async () => {
  const seen = [];
  const l = await listen('legacy-http', {
    listenerType: 'RelayedHttp',
    onStream: (s) => peer.serveSingletonUnsized(s, (req) => {
      seen.push(req);
      const body = req.match(/<Binary>([^<]*)<\/Binary>/);
      const text = body ? Buffer.from(body[1], 'base64').toString() : '';
      const action = req.match(/<a:Action[^>]*>([^<]*)</)[1];
      const fmt = req.match(/<BodyFormat[^>]*>([^<]*)</)[1];
      const json = Buffer.from(JSON.stringify({ action, fmt, text })).toString('base64');
      return `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">${action}Response</a:Action><StatusCode xmlns="http://schemas.microsoft.com/netservices/2009/05/servicebus/statuscode">201</StatusCode><X-Served-By xmlns="http://schemas.microsoft.com/netservices/2009/05/servicebus/web">legacy-wcf</X-Served-By><Content-Type xmlns="http://schemas.microsoft.com/netservices/2009/05/servicebus/web">application/json</Content-Type></s:Header><s:Body><Binary>${json}</Binary></s:Body></s:Envelope>`;
    }).catch(() => {}),
  });
  const url = `http://${httpAddr}/legacy-http?x=1`;
  const tok = token('legacy-http');
  // curl, knowing nothing of WCF: ServiceBusAuthorization for the relay, Authorization end to end.
  // (curl runs asynchronously: the listener lives in this process's event loop.)
  const { execFile } = await import('node:child_process');
  const out = await new Promise((resolve, reject) => execFile('curl', ['-s', '-i', '-X', 'POST', '-H', `ServiceBusAuthorization: ${tok}`, '-H', 'Authorization: Bearer app-level', '-H', 'Content-Type: text/plain', '--data-binary', 'hello legacy', url], { encoding: 'utf8' }, (e, o) => (e ? reject(e) : resolve(o))));
  assert.match(out, /^HTTP\/1\.1 201/);
  assert.match(out, /x-served-by: legacy-wcf/i);
  assert.deepEqual(JSON.parse(out.split('\r\n\r\n')[1]), { action: 'POST', fmt: 'Raw', text: 'hello legacy' });
  const req = seen[0];
  assert.match(req, /<HttpAddress xmlns="http:\/\/schemas\.microsoft\.com\/netservices\/2009\/05\/servicebus\/web">http:\/\/[^<]*\/legacy-http\?x=1<\/HttpAddress>/);
  assert.match(req, /<Authorization xmlns="[^"]*servicebus\/web">Bearer app-level<\/Authorization>/);
  assert.doesNotMatch(req, /ServiceBusAuthorization|SharedAccessSignature/, 'the relay token is not passed on');
  assert.match(req, /<a:ReplyTo><a:Address>http:\/\/www\.w3\.org\/2005\/08\/addressing\/anonymous<\/a:Address><\/a:ReplyTo>/);
  // A SOAP 1.1 client's request is wrapped as such.
  const r2 = await fetch(url, { method: 'POST', headers: { ServiceBusAuthorization: tok, 'Content-Type': 'text/xml; charset=utf-8', SOAPAction: '"urn:check"' }, body: '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>' });
  assert.equal(r2.status, 201);
  assert.equal((await r2.json()).fmt, 'WrappedSoap11');
  // A WebHttpRelayBinding service listens at its base address and dispatches on the rest:
  // a deeper path reaches the same listener, with the full URL in HttpAddress.
  const r3 = await fetch(`http://${httpAddr}/legacy-http/customers/42?x=2`, { headers: { ServiceBusAuthorization: tok } });
  assert.equal(r3.status, 201);
  assert.equal((await r3.json()).action, 'GET');
  assert.match(seen[seen.length - 1], /<HttpAddress [^>]*>http:\/\/[^<]*\/legacy-http\/customers\/42\?x=2<\/HttpAddress>/);
  // Whole segments only: a path that merely starts with the same letters is not this relay.
  const n3 = seen.length;
  assert.equal((await fetch(`http://${httpAddr}/legacy-httpx/1`, { headers: { ServiceBusAuthorization: tok } })).status, 404);
  assert.equal(seen.length, n3);
  // No token: 401, and the listener never hears of it.
  const before = seen.length;
  assert.equal((await fetch(url)).status, 401);
  assert.equal((await fetch(`http://${httpAddr}/legacy-http/customers/42`)).status, 401);
  assert.equal(seen.length, before);
  l.conn.close();
  await sleep(200);
});

test('HTTP relay: a persistent http relay without listeners answers 502 with the relay error document', async () => {
  const cs = `Endpoint=sb://${httpAddr}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${KEY}`;
  execFileSync(BIN, ['wcfrelay', 'create', 'quiet-http', '--relay-type', 'http', '-x', cs], { encoding: 'utf8' });
  const r = await fetch(`http://${httpAddr}/quiet-http`, { headers: { ServiceBusAuthorization: token('quiet-http') } });
  assert.equal(r.status, 502);
  assert.match(await r.text(), /^<Error><Code>502<\/Code><Detail>Bad Gateway\. There are no active listeners registered for endpoint: sb:\/\/[^/]+\/quiet-http\//);
});

test('wsrelayedconnection: client and listener both over wss://…/$servicebus/websocket (Https connectivity mode), 1 MiB echoed intact', async () => {
  const url = `wss://${httpsAddr}/$servicebus/websocket`;
  const l = await listen('over-ws', { onStream: echo, wsUrl: (n) => `wss://${n.ip}:${n.httpsPort}/$servicebus/websocket` });
  const { sock, reply } = await connect('over-ws', { wsUrl: url });
  assert.match(reply, /RelayedConnectReply/);
  assert.equal(l.notifications[0].httpsPort, Number(httpsAddr.split(':')[1]), 'the notification names the HTTPS port');
  const data = crypto.randomBytes(1 << 20);
  let back = Buffer.alloc(0);
  sock.on('data', (d) => { back = Buffer.concat([back, d]); });
  sock.resume();
  sock.write(data);
  const end = Date.now() + 10000;
  while (back.length < data.length && Date.now() < end) await sleep(20);
  assert.ok(back.equals(data));
  // A WebSocket client meets a 9352 listener too: the legs need not match.
  const l2 = await listen('mixed-legs', { onStream: echo });
  const { sock: s2 } = await connect('mixed-legs', { wsUrl: url });
  const got = collect(s2);
  s2.end('tcp listener, websocket client');
  assert.equal((await got).toString(), 'tcp listener, websocket client');
  sock.destroy();
  l.conn.close(); l2.conn.close();
});

test('[wcf_relay] switches: extensions = false keeps the faces apart; without_listener = "drop" acknowledges one-way messages nobody hears', async () => {
  const d2 = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-nettcp-strict-'));
  const [a2, n2, o2] = [await freePort(), await freePort(), await freePort()];
  const r2 = await startConfiguredRelay(d2, `
data_dir = "${d2}/data"
[listen]
http = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:${a2}"
nettcp = "127.0.0.1:${n2}"
oneway = "127.0.0.1:${o2}"
extensions = false
without_listener = "drop"
${contosoNamespace({ host: HOST, key: KEY, hcs: ['migrated'] })}`, /hyrelay ready: (\S+) .*nettcp=/);
  try {
    const ca2 = fs.readFileSync(path.join(d2, 'data', 'ca.pem'));
    HycoWS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
    const uri2 = HycoWS.createRelayListenUri(r2.match[1], 'migrated');
    const server = HycoWS.createRelayedServer({ server: uri2, token: () => HycoWS.createRelayToken(uri2, 'RootManageSharedAccessKey', KEY) }, (ws) => ws.on('message', (m) => ws.send(m)));
    await new Promise((resolve) => server.on('listening', resolve));
    await assert.rejects(peer.connect({ port: n2, uri: uri('migrated'), token: token('migrated'), ca: ca2 }), (e) => e.code === 'EndpointNotFoundFault');
    server.close();
    // A one-way message to a path nobody listens on: acknowledged (SendReply), dropped.
    const s = net.connect(o2, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const r = new peer.Reader(s);
    s.resume();
    s.write(peer.onewayPreamble(`sb://${HOST}/nobody-listens`));
    const reply = await peer.onewaySession(s, r, `sb://${HOST}/nobody-listens`, token('nobody-listens'), 'D#1');
    assert.match(reply, /connect\/SendReply/);
    assert.doesNotMatch(reply, /Fault/);
    s.destroy();
  } finally {
    r2.child.kill('SIGTERM');
    await new Promise((r) => r2.child.once('exit', r));
    fs.rmSync(d2, { recursive: true, force: true });
  }
});
