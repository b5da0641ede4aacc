// A clean-room NetTcpRelay client and listener, written from the project's protocol notes
// (known.md 5.2: the `connect` preamble, the security flag byte, length-prefixed msbin1
// envelopes, RelayedConnect/RelayedAccept) and nothing of the relay's code. Listeners
// register with the npm rhea AMQP 1.0 stack; envelopes are written as text and turned into
// binary XML by the project's codec (`hyrelay nbfx encode|decode`).
import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { BIN, PEERS } from './harness.mjs';

const require = createRequire(import.meta.url);
const rhea = require(path.join(PEERS, 'rhea'));

export const CONNECT_NS = 'http://schemas.microsoft.com/netservices/2009/05/servicebus/connect';
const SOAP = 'http://www.w3.org/2003/05/soap-envelope';
const WSA = 'http://www.w3.org/2005/08/addressing';
const WSSE = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
const ANON = 'http://schemas.microsoft.com/2005/12/ServiceModel/Addressing/Anonymous';

export const encode = (xml) => execFileSync(BIN, ['nbfx', 'encode'], { input: xml });
export const decode = (buf) => execFileSync(BIN, ['nbfx', 'decode'], { input: buf }).toString();
const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32LE(n); return b; };
const text = (xml, name) => { const m = xml.match(new RegExp(`<(?:\\w+:)?${name}(?:\\s[^>]*)?>([^<]*)<`)); return m ? m[1] : undefined; };

// Buffered exact reads on a socket until the handshake is over; `release()` returns the
// bytes read past it, stops listening and leaves the socket paused (the caller attaches its
// own 'data' handler and calls resume()).
export class Reader {
  constructor(sock) {
    this.sock = sock; this.buf = Buffer.alloc(0); this.want = null; this.ended = null;
    this.onData = (d) => { this.buf = Buffer.concat([this.buf, d]); this.poke(); };
    this.onEnd = () => { this.ended = new Error('connection ended during the handshake'); this.poke(); };
    this.onError = (e) => { this.ended = e; this.poke(); };
    sock.on('data', this.onData); sock.on('end', this.onEnd); sock.on('error', this.onError);
  }
  poke() {
    if (!this.want) return;
    const { n, resolve, reject } = this.want;
    if (this.buf.length >= n) { this.want = null; const b = this.buf.subarray(0, n); this.buf = this.buf.subarray(n); resolve(b); }
    else if (this.ended) { this.want = null; reject(this.ended); }
  }
  take(n) { return new Promise((resolve, reject) => { this.want = { n, resolve, reject }; this.poke(); }); }
  release() {
    this.sock.off('data', this.onData); this.sock.off('end', this.onEnd); this.sock.off('error', this.onError);
    this.sock.pause();
    return this.buf;
  }
}

export const preamble = (type, via, flag) => Buffer.concat([
  int32(type.length), Buffer.from(type),
  ...(via === undefined ? [] : [int32(Buffer.byteLength(via)), Buffer.from(via), Buffer.from([flag])]),
]);

function dialRaw(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => { s.setNoDelay(true); resolve(s); });
    s.once('error', reject);
  });
}

// Dials the relay's NetTcpRelay socket, sends the preamble (and TLS after flag 01) and one
// envelope; resolves with the reply's text XML and the socket, ready for the data stream.
async function exchange({ port, via, useTls, ca, xml, raw, wsUrl }) {
  let sock;
  if (wsUrl) {
    // wsrelayedconnection: the WebSocket is the byte stream; no preamble (known.md 5.2).
    const WebSocket = require(path.join(PEERS, 'ws'));
    const w = new WebSocket(wsUrl, ['wsrelayedconnection'], { ca, servername: 'localhost' });
    await new Promise((resolve, reject) => { w.once('open', resolve); w.once('error', reject); w.once('unexpected-response', (_q, r) => reject(new Error(`HTTP ${r.statusCode}`))); });
    sock = WebSocket.createWebSocketStream(w);
  } else {
    sock = await dialRaw(port);
    sock.write(preamble('connect', via, useTls ? 1 : 0));
  }
  if (useTls && !wsUrl) {
    sock = await new Promise((resolve, reject) => {
      const t = tls.connect({ socket: sock, servername: 'localhost', ca }, () => resolve(t));
      t.once('error', reject);
    });
    sock.setNoDelay?.(true);
  }
  const body = raw || encode(xml);
  sock.write(int32(body.length));
  sock.write(body);
  const r = new Reader(sock);
  const len = (await r.take(4)).readInt32LE(0);
  const reply = decode(await r.take(len));
  const leftover = r.release();
  const fault = reply.match(/<s:Fault>[\s\S]*?<s:Value[^>]*>(?:\w+:)?(\w+)<\/s:Value>[\s\S]*?<s:Text[^>]*>([^<]*)</);
  if (fault) { sock.destroy(); const e = new Error(`${fault[1]}: ${fault[2]}`); e.code = fault[1]; e.reply = reply; throw e; }
  if (leftover.length) sock.unshift(leftover);
  return { sock, reply };
}

export function relayedConnectXml(uri, token, messageId = `urn:uuid:${crypto.randomUUID()}`) {
  const tok = token === undefined ? '' : `<RelayAccessToken xmlns="${CONNECT_NS}"><wsse:BinarySecurityToken xmlns:wsse="${WSSE}" ValueType="http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">${Buffer.from(token).toString('base64')}</wsse:BinarySecurityToken></RelayAccessToken>`;
  return `<s:Envelope xmlns:s="${SOAP}" xmlns:a="${WSA}"><s:Header><a:Action s:mustUnderstand="1">RelayedConnect</a:Action>${tok}<a:MessageID>${messageId}</a:MessageID><a:To s:mustUnderstand="1">${uri}</a:To></s:Header><s:Body><Connect xmlns="${CONNECT_NS}"><Uri>${uri}</Uri></Connect></s:Body></s:Envelope>`;
}

export function relayedAcceptXml(id) {
  return `<s:Envelope xmlns:s="${SOAP}" xmlns:a="${WSA}"><s:Header><a:Action s:mustUnderstand="1">RelayedAccept</a:Action><a:MessageID>urn:uuid:${crypto.randomUUID()}</a:MessageID><a:To s:mustUnderstand="1">${ANON}</a:To></s:Header><s:Body><RelayedAccept xmlns="${CONNECT_NS}"><Id>${id}</Id></RelayedAccept></s:Body></s:Envelope>`;
}

// The NetTcpRelay client: `connect` to `uri` through the relay at `port`.
export function connect({ port, uri, token, useTls = true, ca, wsUrl }) {
  return exchange({ port, via: uri, useTls, ca, xml: relayedConnectXml(uri, token), wsUrl });
}

// .NET's IPAddress(long): first octet in the lowest byte.
export const ipOfLong = (n) => { const v = BigInt(n); return [0n, 8n, 16n, 24n].map((s) => Number((v >> s) & 255n)).join('.'); };

// The notification a listener received: the OnewaySend wrapper's base64 body holds the
// RelayedConnect envelope.
export function parseNotification(buf) {
  const outer = decode(buf);
  const b64 = outer.match(/<OnewaySend[^>]*>([A-Za-z0-9+/=]+)</)[1];
  const inner = decode(Buffer.from(b64, 'base64'));
  return {
    outer, inner,
    id: text(inner, 'Id'), ip: ipOfLong(text(inner, 'IpAddress')), port: Number(text(inner, 'IpPort')),
    httpsPort: Number(text(inner, 'HttpsPort')), dns: text(inner, 'InstanceDnsAddress'),
  };
}

// The listener's half of a rendezvous: dial where the notification says, RelayedAccept{id}.
export function acceptRendezvous(n, { useTls = true, ca, xml, wsUrl } = {}) {
  return exchange({ port: n.port, via: `sb://${n.ip}:${n.port}/`, useTls, ca, xml: xml || relayedAcceptXml(n.id), wsUrl });
}

// A NetTcpRelay listener: the AMQP link pair with listener-type RelayedConnection; each
// notification calls `onNotification(n)` (default: accept and hand the socket to `onStream`).
export async function listen({ amqpPort, ca, host, path: p, token, onStream, onNotification, useTls = true, listenerType = 'RelayedConnection', dynamic = true, wsUrl }) {
  const container = rhea.create_container({ id: `RelayConnection_${crypto.randomUUID()}` });
  const conn = container.connect({ host: '127.0.0.1', port: amqpPort, transport: 'tls', servername: 'localhost', ca, hostname: host.replace(/^([^.]+)\./, '$1-relay.'), username: 'anonymous', reconnect: false });
  conn.on('error', () => {});
  conn.on('disconnected', () => {});
  const base = `RelayLink_${crypto.randomUUID()}`;
  const address = `sb://${host}/${p}/`;
  const properties = { 'com.microsoft:swt': token, 'com.microsoft:listener-type': listenerType, 'com.microsoft:dynamic-relay': dynamic };
  const out = conn.open_sender({ name: `${base}:out`, target: { address }, properties });
  const inn = conn.open_receiver({ name: `${base}:in`, source: { address }, properties, credit_window: 1000 });
  const state = { conn, notifications: [], errors: [] };
  inn.on('message', (ctx) => {
    const b = ctx.message.body;
    const n = parseNotification(Buffer.from(b && b.content !== undefined ? b.content : b));
    state.notifications.push(n);
    if (onNotification) { onNotification(n); return; }
    // Over WebSocket the 2.4 client dials wss://{HttpsAddress}:{HttpsPort}/$servicebus/websocket.
    const url = wsUrl && wsUrl(n);
    acceptRendezvous(n, { useTls, ca, wsUrl: url }).then(({ sock }) => onStream(sock, n), (e) => state.errors.push(e));
  });
  // A refused link is an attach without source, then a detach with the error condition.
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, 300);
    inn.once('receiver_open', () => { clearTimeout(t); setTimeout(resolve, 200); });
    const refused = (link) => () => {
      clearTimeout(t);
      const err = link.remote.detach?.error;
      const e = new Error(`listener refused: ${JSON.stringify(err)}`);
      e.condition = err?.condition;
      conn.close();
      reject(e);
    };
    inn.once('receiver_close', refused(inn));
    out.once('sender_close', refused(out));
    inn.once('receiver_error', () => {});
    out.once('sender_error', () => {});
  });
  return state;
}

// The NAT probe: 12 bytes back, int64 LE IPv4 + int32 LE port.
export async function probe(port, type) {
  const s = await dialRaw(port);
  s.write(Buffer.concat([preamble('probe'), int32(type)]));
  const r = new Reader(s);
  const local = s.localPort;
  const b = await r.take(12);
  s.destroy();
  return { ip: ipOfLong(b.readBigInt64LE(0)), port: b.readInt32LE(8), local };
}

const mb31 = (n) => { const o = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return Buffer.from(o); };
async function readMb31(r) { let v = 0; for (let s = 0; ; s += 7) { const b = (await r.take(1))[0]; v |= (b & 0x7f) << s; if (!(b & 0x80)) return v; } }

// The server side of one NMF singleton-unsized session ([MC-NMF] 2.2: preamble, PreambleAck,
// an unsized envelope of chunks ending in a zero size, End): `answer(requestXml)` returns the
// response envelope's text XML. Resolves with the request's text XML and the preamble seen.
export async function serveSingletonUnsized(sock, answer) {
  const r = new Reader(sock);
  sock.resume();
  const head = await r.take(5); // Version 00 01 00, Mode 01 xx
  if (head[0] !== 0 || head[3] !== 1) throw new Error(`not an NMF preamble: ${head.toString('hex')}`);
  if ((await r.take(1))[0] !== 2) throw new Error('no Via');
  const via = (await r.take(await readMb31(r))).toString();
  const enc = await r.take(2);
  if ((await r.take(1))[0] !== 0x0c) throw new Error('no PreambleEnd');
  sock.write(Buffer.from([0x0b]));
  if ((await r.take(1))[0] !== 0x05) throw new Error('no unsized envelope');
  const chunks = [];
  for (;;) { const n = await readMb31(r); if (!n) break; chunks.push(await r.take(n)); }
  const request = decode(Buffer.concat(chunks));
  const reply = encode(await answer(request));
  sock.write(Buffer.concat([Buffer.from([0x05]), mb31(reply.length), reply, Buffer.from([0x00])]));
  const end = await r.take(1);
  sock.end(Buffer.from([0x07]));
  return { request, via, mode: head[4], encoding: enc[1], end: end[0] };
}

export const nmfString = (type, str) => { const b = Buffer.from(str); return Buffer.concat([Buffer.from([type]), mb31(b.length), b]); };
export const onewayPreamble = (via) => Buffer.concat([Buffer.from([0, 1, 0, 1, 2]), nmfString(2, via), Buffer.from([3, 8])]);

// A clean-room NMF one-way sender (from [MC-NMF] and known.md 5.4; envelopes encoded by the
// project's codec with empty session tables): after the preamble start (and any upgrade),
// PreambleEnd, Connect with the token, one message whose <Sender> is `tag`, End. Resolves with
// the text of the relay's answer to the message (the first answer, to Connect, must be
// ConnectReply).
// `payloadBytes` pads the record so its sized-envelope payload (string-table prefix + binary
// envelope) is exactly that many bytes, for limit tests.
export async function onewaySession(sock, r, via, token, tag, { payloadBytes } = {}) {
  sock.write(Buffer.from([0x0c]));
  if ((await r.take(1))[0] !== 0x0b) throw new Error('no PreambleAck');
  const wsse = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
  const env = (action, header, body) => `<s:Envelope xmlns:s="${SOAP}" xmlns:a="${WSA}"><s:Header><a:Action s:mustUnderstand="1">${action}</a:Action>${header}<a:MessageID>urn:uuid:${crypto.randomUUID()}</a:MessageID><a:To s:mustUnderstand="1">${via}</a:To></s:Header><s:Body>${body}</s:Body></s:Envelope>`;
  const tokenHeader = `<RelayAccessToken xmlns="${CONNECT_NS}"><wsse:BinarySecurityToken xmlns:wsse="${wsse}" ValueType="http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">${Buffer.from(token).toString('base64')}</wsse:BinarySecurityToken></RelayAccessToken>`;
  const send = async (xml) => {
    const payload = Buffer.concat([Buffer.from([0]), encode(xml)]);
    sock.write(Buffer.concat([Buffer.from([6]), mb31(payload.length), payload]));
    if ((await r.take(1))[0] !== 6) throw new Error('no sized envelope back');
    return r.take(await readMb31(r));
  };
  const first = await send(env(`${CONNECT_NS}/Connect`, tokenHeader, `<Connect xmlns="${CONNECT_NS}"><Uri>${via}</Uri></Connect>`));
  const connectReply = execFileSync(BIN, ['nbfx', 'decode', '--session'], { input: first }).toString();
  if (!/connect\/ConnectReply/.test(connectReply)) throw new Error(`Connect refused: ${connectReply}`);
  // Later answers use the session's strings: read them as bytes (names of faults are inline).
  const record = (pad) => env('http://contoso.example/audit/Record', '', `<Record xmlns="http://contoso.example/audit"><Sender>${tag}</Sender>${pad === undefined ? '' : `<Pad>${'p'.repeat(pad)}</Pad>`}</Record>`);
  let xml = record();
  if (payloadBytes !== undefined) {
    // One ASCII character more in a Chars16 text is one byte more in the payload; the MessageID
    // is a fresh GUID of fixed length, so measure once with a pad of the right tier and adjust.
    const probe = 1000;
    const measured = 1 + encode(record(probe)).length;
    xml = record(probe + payloadBytes - measured);
  }
  const second = await send(xml);
  sock.write(Buffer.from([7]));
  return second.toString('latin1');
}
