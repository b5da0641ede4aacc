// NetEvent throughput through hyrelay's WCF Relay face: the Mono one-way sender
// (tools/peers/mono-wcf/src/OnewaySender.cs, Mono's WCF without its 50 ms receive sleep) sends N
// messages to [wcf_relay] oneway; 1 and then 3 rhea subscribers receive them over AMQP.
// Reports messages/s at the sender (each acknowledged by the relay) and at the subscribers.
// Usage: node tools/bench/wcf-relay-bench.mjs [N]     (default 20000). Not a test.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const rhea = require(path.join(root, 'tools/peers/node/node_modules/rhea'));
const BIN = process.env.HYRELAY_BIN || path.join(root, 'target/release/hyrelay');
const MONO = path.join(root, 'tools/peers/mono-wcf');
const N = Number(process.argv[2] || 20000);
const KEY = 'YmVuY2gta2V5LWZvci10aGUtd2NmLXJlbGF5LWJlbmNoLTA=';
const free = () => new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function sas(resource, ttl = 3600) {
  const se = Math.floor(Date.now() / 1000) + ttl, sr = encodeURIComponent(resource);
  const sig = crypto.createHmac('sha256', KEY).update(sr + '\n' + se).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=RootManageSharedAccessKey`;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-wcfrelay-bench-'));
const [amqp, oneway] = [await free(), await free()];
fs.writeFileSync(path.join(dir, 'relay.toml'), `data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:${amqp}"
oneway = "127.0.0.1:${oneway}"
[[namespaces]]
name = "bench"
hosts = ["127.0.0.1"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "${KEY}"
`);
const relay = spawn(BIN, ['relay', '--config', path.join(dir, 'relay.toml')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HYRELAY_LOG: 'warn' } });
await new Promise((r) => { let o = ''; relay.stdout.on('data', (d) => { o += d; if (/oneway=/.test(o)) r(); }); });

async function subscriber(p) {
  const c = rhea.create_container().connect({ host: '127.0.0.1', port: amqp, transport: 'tls', servername: 'localhost', ca: fs.readFileSync(path.join(dir, 'data/ca.pem')), hostname: 'bench-relay.127.0.0.1', username: 'anonymous', reconnect: false });
  c.on('error', () => {}); c.on('disconnected', () => {});
  const props = { 'com.microsoft:swt': sas(`http://127.0.0.1/${p}`), 'com.microsoft:listener-type': 'Multicast' };
  const inn = c.open_receiver({ name: `RelayLink_${crypto.randomUUID()}:in`, source: { address: `sb://127.0.0.1/${p}/` }, properties: props, credit_window: 1000 });
  const s = { c, n: 0, first: 0, last: 0 };
  inn.on('message', () => { const t = performance.now(); if (!s.n) s.first = t; s.n++; s.last = t; });
  await new Promise((r) => inn.once('receiver_open', r));
  return s;
}

console.log(`| subscribers | messages | sender msgs/s (acknowledged) | slowest subscriber msgs/s |\n|---:|---:|---:|---:|`);
for (const k of [1, 3]) {
  const p = `events${k}`;
  const subs = [];
  for (let i = 0; i < k; i++) subs.push(await subscriber(p));
  await sleep(300);
  const t0 = performance.now();
  const r = await new Promise((resolve) => execFile('mono', [path.join(MONO, 'bin/OnewaySender.exe'), `127.0.0.1:${oneway}`, `sb://127.0.0.1/${p}`, sas(`http://127.0.0.1/${p}`), String(N)],
    { env: { ...process.env, MONO_PATH: path.join(MONO, 'bin/nosleep') }, maxBuffer: 1 << 26 }, (e, out) => resolve({ e, out })));
  const sendSecs = (performance.now() - t0) / 1000;
  if (r.e) { console.error(r.out.split('\n').slice(-3).join('\n')); process.exit(1); }
  const end = Date.now() + 30000;
  while (subs.some((s) => s.n < N) && Date.now() < end) await sleep(50);
  const slowest = Math.min(...subs.map((s) => s.n / ((s.last - s.first) / 1000 || 1)));
  console.log(`| ${k} | ${N} | ${(N / sendSecs).toFixed(0)} | ${slowest.toFixed(0)} (${subs.map((s) => s.n).join('/')} received) |`);
  subs.forEach((s) => s.c.close());
}
relay.kill('SIGTERM');
fs.rmSync(dir, { recursive: true, force: true });
