// NetTcpRelay through hyrelay's WCF Relay face, against a direct loopback connection between
// the same peers in the same run. The peers are the clean-room NetTcpRelay client and listener
// of the tests (tests/node/nettcp-peer.mjs; the listener registers with rhea over AMQP). Once
// the rendezvous is done both ends only move bytes, so the figures are the relay's splice:
//   * 64-byte echo round trips, p50 / p99 (µs);
//   * bulk throughput, client → listener, in 1 MiB writes, the listener acknowledging the
//     last byte (GB/s);
// for clear legs (flag byte 00) against clear TCP, and TLS legs (01) against direct TLS.
// Usage: node tools/bench/nettcp-relay-bench.mjs [MiB] [round trips]   (default 1024, 5000).
// Not a test.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
process.env.HYRELAY_BIN ||= path.join(root, 'target/release/hyrelay');
const peer = await import(path.join(root, 'tests/node/nettcp-peer.mjs'));
const BIN = process.env.HYRELAY_BIN;
const MIB = Number(process.argv[2] || 1024);
const RT = Number(process.argv[3] || 5000);
const KEY = 'YmVuY2gta2V5LWZvci10aGUtbmV0dGNwLXJlbGF5LWJlbmNo';
const HOST = 'bench.relay.local';
const free = () => new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
function sas(resource, ttl = 3600) {
  const se = Math.floor(Date.now() / 1000) + ttl, sr = encodeURIComponent(resource);
  const sig = crypto.createHmac('sha256', KEY).update(sr + '\n' + se).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=RootManageSharedAccessKey`;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-nettcp-bench-'));
const [amqp, nettcp] = [await free(), await free()];
fs.writeFileSync(path.join(dir, 'relay.toml'), `data_dir = "${dir}/data"
[listen]
https = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:${amqp}"
nettcp = "127.0.0.1:${nettcp}"
[[namespaces]]
name = "bench"
hosts = ["${HOST}", "127.0.0.1"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "${KEY}"
`);
const relay = spawn(BIN, ['relay', '--config', path.join(dir, 'relay.toml')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HYRELAY_LOG: 'warn' } });
await new Promise((r) => { let o = ''; relay.stdout.on('data', (d) => { o += d; if (/nettcp=/.test(o)) r(); }); });
const ca = fs.readFileSync(path.join(dir, 'data/ca.pem'));
const cert = fs.readFileSync(path.join(dir, 'data/cert.pem'));
const key = fs.readFileSync(path.join(dir, 'data/key.pem'));

// The listener's behaviour, the same for relayed and direct streams: echo until the first
// byte of a chunk says "bulk" (0xBB), then count bytes and answer one byte at `total`.
function serveStream(sock) {
  let bulk = null;
  sock.on('data', (d) => {
    if (bulk === null && d[0] === 0xbb) bulk = { got: 0, want: d.readUInt32LE(1) * (1 << 20) + 5 };
    if (bulk) { bulk.got += d.length; if (bulk.got >= bulk.want) { sock.write(Buffer.from([1])); bulk = null; } return; }
    sock.write(d);
  });
  sock.on('error', () => {});
  sock.resume();
}

async function measure(sock) {
  sock.setNoDelay?.(true);
  let waiting = null;
  sock.on('data', (d) => { if (waiting) { waiting.got += d.length; if (waiting.got >= waiting.want) { const w = waiting; waiting = null; w.resolve(); } } });
  sock.resume();
  const rtt = [];
  const msg = Buffer.alloc(64, 0x41);
  for (let i = 0; i < RT + 200; i++) {
    const t = process.hrtime.bigint();
    await new Promise((resolve) => { waiting = { got: 0, want: 64, resolve }; sock.write(msg); });
    if (i >= 200) rtt.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  rtt.sort((a, b) => a - b);
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const head = Buffer.alloc(5); head[0] = 0xbb; head.writeUInt32LE(MIB, 1);
  const t0 = process.hrtime.bigint();
  const done = new Promise((resolve) => { waiting = { got: 0, want: 1, resolve }; });
  sock.write(head);
  for (let i = 0; i < MIB; i++) if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  await done;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  sock.destroy();
  return { p50: rtt[Math.floor(rtt.length * 0.5)], p99: rtt[Math.floor(rtt.length * 0.99)], gbs: (MIB * (1 << 20)) / secs / 1e9 };
}

async function direct(useTls) {
  const srv = useTls ? tls.createServer({ cert, key }, serveStream) : net.createServer(serveStream);
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  const sock = await new Promise((resolve) => {
    const s = useTls ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca }, () => resolve(s)) : net.connect(port, '127.0.0.1', () => resolve(s));
  });
  const r = await measure(sock);
  srv.close();
  return r;
}

async function relayed(useTls) {
  const p = `echo-${useTls ? 'tls' : 'clear'}`;
  const l = await peer.listen({ amqpPort: amqp, ca, host: HOST, path: p, token: sas(`http://${HOST}/${p}`), useTls, onStream: serveStream });
  const { sock } = await peer.connect({ port: nettcp, uri: `sb://${HOST}/${p}/`, token: sas(`http://${HOST}/${p}`), useTls, ca });
  const r = await measure(sock);
  l.conn.close();
  return r;
}

const rows = [];
for (const useTls of [false, true]) {
  const d = await direct(useTls);
  const h = await relayed(useTls);
  rows.push([useTls ? 'TLS legs vs direct TLS' : 'clear legs vs direct TCP', d, h]);
}
console.log(`NetTcpRelay bench: ${MIB} MiB bulk, ${RT} round trips of 64 B, same Node peers both ways\n`);
console.log('| path | direct GB/s | hyrelay GB/s | ratio | direct p50/p99 µs | hyrelay p50/p99 µs |\n|---|---:|---:|---:|---:|---:|');
for (const [name, d, h] of rows) {
  console.log(`| ${name} | ${d.gbs.toFixed(2)} | ${h.gbs.toFixed(2)} | ${(h.gbs / d.gbs).toFixed(2)}× | ${d.p50.toFixed(0)} / ${d.p99.toFixed(0)} | ${h.p50.toFixed(0)} / ${h.p99.toFixed(0)} |`);
}
relay.kill('SIGTERM');
fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
