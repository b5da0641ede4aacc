// Test harness: starts a real `hyrelay up` on ephemeral ports in a fresh data directory and
// offers a few helpers. Used by every interop test in this folder.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const BIN = process.env.HYRELAY_BIN || path.join(root, 'target', 'debug', 'hyrelay');
export const PEERS = path.join(root, 'tools', 'peers', 'node', 'node_modules');
export const KEYNAME = 'RootManageSharedAccessKey';

export async function startRelay({ httpsPort = 0, httpPort = 0, env = {} } = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-test-'));
  const child = spawn(BIN, ['up', '--data-dir', dataDir, '--http-port', String(httpPort), '--https-port', String(httpsPort), '--management-port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: process.env.HYRELAY_LOG || 'warn', ...env } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; if (process.env.HYRELAY_TEST_VERBOSE) process.stderr.write(d); });
  const ready = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('relay did not start: ' + err)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/hyrelay ready: http=([^ ]+):(\d+) https=([^ ]+):(\d+)/);
      if (m) { clearTimeout(t); resolve(m); }
    });
    child.on('exit', (c) => { clearTimeout(t); reject(new Error(`relay exited ${c}: ${err}`)); });
  });
  const key = out.match(/SharedAccessKey=([^\s;]+)/)[1];
  const relay = {
    child, dataDir, key, out: () => out, err: () => err,
    host: ready[1], httpPort: Number(ready[2]), httpsPort: Number(ready[4]),
    get ns() { return `${this.host}:${this.httpPort}`; },
    get nsTls() { return `${this.host}:${this.httpsPort}`; },
    ca: path.join(dataDir, 'ca.pem'),
    connStr() { return `Endpoint=sb://${this.ns}/;SharedAccessKeyName=${KEYNAME};SharedAccessKey=${this.key}`; },
    cli(...args) {
      return execFileSync(BIN, [...args, '-x', this.connStr()], { encoding: 'utf8', env: { ...process.env, HYRELAY_LOG: 'warn' } });
    },
    createHyco(name, extra = []) { return JSON.parse(this.cli('hyco', 'create', name, ...extra)); },
    token(resource, keyName = KEYNAME, key = this.key, ttl = 3600) { return sasToken(resource, keyName, key, ttl); },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return relay;
}

// SAS token exactly as the Azure SDKs make it (encodeURIComponent of the resource).
export function sasToken(resource, keyName, key, ttlSeconds = 3600) {
  const se = Math.floor(Date.now() / 1000) + ttlSeconds;
  const sr = encodeURIComponent(resource);
  const sig = crypto.createHmac('sha256', key).update(sr + '\n' + se).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${keyName}`;
}

export function once(emitter, event, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
    emitter.once(event, (...a) => { clearTimeout(t); resolve(a); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Free loopback ports for processes the tests start. "Bind port 0, close, hand the number
// on" is racy: the number comes from the kernel's ephemeral range (32768-60999 here), and
// until the child binds it, any outgoing connection - the child's own, to Redis, say - can
// get it as its source port (CI saw exactly that: "Address already in use"). So ports are
// taken below that range, in order from a random start per test process, each checked by
// binding it, and never handed out twice by one process.
const PORT_LO = 15000, PORT_HI = 32000;
let nextPort = PORT_LO + Math.floor(Math.random() * (PORT_HI - PORT_LO));
function canBind(port, host) {
  return new Promise((r) => {
    const s = net.createServer();
    s.once('error', () => r(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => r(true)));
  });
}
// `span` consecutive free ports; returns the first.
export async function freePorts(span = 1, host = '127.0.0.1') {
  for (let tries = 0; tries < 200; tries++) {
    if (nextPort + span > PORT_HI) nextPort = PORT_LO;
    const base = nextPort;
    nextPort += span;
    let ok = true;
    for (let p = base; p < base + span && ok; p++) ok = await canBind(p, host);
    if (ok) return base;
  }
  throw new Error(`no ${span} free consecutive ports in ${PORT_LO}-${PORT_HI} on ${host}`);
}
export const freePort = (host = '127.0.0.1') => freePorts(1, host);

// A minimal raw WebSocket client (RFC 6455) for what libraries hide: sending a Close
// while still reading (half-close), resetting the TCP connection (abort), reading the
// handshake status line of a refused upgrade.
export class RawWs {
  static connect(url, headers = {}) {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const sock = net.connect(Number(u.port), u.hostname);
      const key = crypto.randomBytes(16).toString('base64');
      const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Upgrade: websocket', 'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13'];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      sock.write(lines.join('\r\n') + '\r\n\r\n');
      let buf = Buffer.alloc(0);
      const onData = (d) => {
        buf = Buffer.concat([buf, d]);
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        sock.off('data', onData);
        const head = buf.subarray(0, i).toString();
        const rest = buf.subarray(i + 4);
        const status = Number(head.split(' ')[1]);
        const reason = head.split('\r\n')[0].split(' ').slice(2).join(' ');
        const hdrs = {};
        for (const l of head.split('\r\n').slice(1)) { const j = l.indexOf(':'); hdrs[l.slice(0, j).toLowerCase()] = l.slice(j + 1).trim(); }
        resolve(new RawWs(sock, status, reason, hdrs, rest));
      };
      sock.on('data', onData);
      sock.on('error', reject);
    });
  }
  constructor(sock, status, reason, headers, rest) {
    Object.assign(this, { sock, status, reason, headers });
    this.buf = rest; this.frames = []; this.waiters = []; this.ended = false; this.error = null;
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    sock.on('end', () => { this.ended = true; this.wake(); });
    sock.on('error', (e) => { this.error = e; this.wake(); });
    sock.on('close', () => { this.ended = true; this.wake(); });
    this.parse();
  }
  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f, pos = 2;
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); pos = 4; }
      else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); pos = 10; }
      if (b[1] & 0x80) pos += 4;
      if (b.length < pos + len) break;
      this.frames.push({ fin: !!(b[0] & 0x80), op: b[0] & 0x0f, masked: !!(b[1] & 0x80), payload: b.subarray(pos, pos + len) });
      this.buf = b.subarray(pos + len);
    }
    this.wake();
  }
  wake() { const w = this.waiters; this.waiters = []; w.forEach((f) => f()); }
  async next(ms = 10000) {
    const deadline = Date.now() + ms;
    while (this.frames.length === 0) {
      if (this.error) throw this.error;
      if (this.ended) return null;
      if (Date.now() > deadline) throw new Error('timeout waiting for a frame');
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
    return this.frames.shift();
  }
  send(op, payload = Buffer.alloc(0), fin = true) {
    payload = Buffer.from(payload);
    const mask = crypto.randomBytes(4);
    let head;
    if (payload.length < 126) { head = Buffer.from([(fin ? 0x80 : 0) | op, 0x80 | payload.length]); }
    else if (payload.length < 65536) { head = Buffer.alloc(4); head[0] = (fin ? 0x80 : 0) | op; head[1] = 0x80 | 126; head.writeUInt16BE(payload.length, 2); }
    else { head = Buffer.alloc(10); head[0] = (fin ? 0x80 : 0) | op; head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(payload.length), 2); }
    const masked = Buffer.from(payload);
    for (let i = 0; i < masked.length; i++) masked[i] ^= mask[i % 4];
    this.sock.write(Buffer.concat([head, mask, masked]));
  }
  text(s) { this.send(1, Buffer.from(s)); }
  binary(b) { this.send(2, b); }
  close(code = 1000, reason = '') {
    const p = Buffer.alloc(2 + Buffer.byteLength(reason)); p.writeUInt16BE(code, 0); p.write(reason, 2); this.send(8, p);
  }
  abort() { this.sock.resetAndDestroy(); }
  end() { this.sock.end(); }
}
