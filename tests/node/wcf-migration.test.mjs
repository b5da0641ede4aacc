// The migration story between the two relay faces, with real WCF on both ends: an unmodified
// Mono WCF client speaks net.tcp to a legacy NetTcpRelay client shim (the clean-room peer of
// tests/node/nettcp-peer.mjs: it does the relay's 9352 handshake over TLS and then carries the
// client's bytes, adding a keep-alive `Ping` the way Microsoft's relay client does); the relay
// finds no NetTcpRelay listener but a hybrid connection of that name, whose listener is the
// WCF bridge (`hyrelay bridge --wcf`) in front of an unmodified Mono NetTcpBinding service.
// The bridge drops the Ping (a plain WCF service would fault on it) and rewrites Via and To.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile as execFileCb } from 'node:child_process';
import { promisify } from 'node:util';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { BIN, root, sasToken, sleep } from './harness.mjs';
import { freePort, startConfiguredRelay, contosoNamespace } from './gateways.mjs';
import * as peer from './nettcp-peer.mjs';

const execFile = promisify(execFileCb);
const PEER = path.join(root, 'tools', 'peers', 'mono-wcf');
const haveMono = fs.existsSync(path.join(PEER, 'bin', 'CreditCheckClient.exe'));
const skip = haveMono ? false : 'Mono WCF peer not built (tools/test builds it: tools/peers/mono-wcf/build.sh)';
const KEY = 'd2NmLW1pZ3JhdGlvbi1iZXR3ZWVuLXRoZS1mYWNlcy0wMDA=';
const HOST = 'contoso.relay.local';
const children = [];
let relay, dir, ca, nettcpPort, httpAddr, svcBridge, shim, shimPort, relayErr = '';
const shimStats = { sessions: 0, pings: 0 };

function spawnReady(cmd, args, marker, opts = {}) {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(c);
  let out = '', err = '';
  c.stderr.on('data', (d) => { err += d; });
  c.log = () => out + err;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} not ready: ${out}${err}`)), 60000);
    c.stdout.on('data', (d) => { out += d; if (out.includes(marker)) { clearTimeout(t); resolve(c); } });
    c.on('exit', (code) => { clearTimeout(t); reject(new Error(`${cmd} exited ${code}: ${out}${err}`)); });
  });
}

// The keep-alive a legacy client sends into its session: Action `Ping`, body `Ping` in the
// connect namespace (known.md 5.2), as a sized envelope with an empty string table.
function pingRecord() {
  const xml = `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">Ping</a:Action></s:Header><s:Body><Ping xmlns="${peer.CONNECT_NS}"/></s:Body></s:Envelope>`;
  const payload = Buffer.concat([Buffer.from([0]), peer.encode(xml)]);
  assert.ok(payload.length < 128);
  return Buffer.concat([Buffer.from([0x06, payload.length]), payload]);
}

// A legacy NetTcpRelay client in front of the Mono client: each accepted net.tcp connection
// becomes a RelayedConnect to sb://HOST/cc; after the client's preamble (up to PreambleEnd,
// 0x0C) one Ping goes in, then everything passes.
async function startShim() {
  const srv = net.createServer(async (local) => {
    local.pause();
    local.on('error', () => {});
    let remote;
    try {
      ({ sock: remote } = await peer.connect({ port: nettcpPort, uri: `sb://${HOST}/cc/`, token: sasToken(`http://${HOST}/cc`, 'RootManageSharedAccessKey', KEY), ca }));
    } catch (e) { local.destroy(); return; }
    shimStats.sessions++;
    remote.on('error', () => local.destroy());
    let pre = Buffer.alloc(0), injected = false;
    local.on('data', (d) => {
      if (injected) { remote.write(d); return; }
      pre = Buffer.concat([pre, d]);
      const end = pre.indexOf(0x0c);
      if (end < 0) return;
      remote.write(pre.subarray(0, end + 1));
      remote.write(pingRecord());
      shimStats.pings++;
      remote.write(pre.subarray(end + 1));
      injected = true;
    });
    local.on('end', () => remote.end());
    remote.on('data', (d) => local.write(d));
    remote.on('end', () => local.end());
    remote.resume();
    local.resume();
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return srv;
}

before(async () => {
  if (!haveMono) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-migration-'));
  const amqpPort = await freePort();
  nettcpPort = await freePort();
  const r = await startConfiguredRelay(dir, `
data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:${amqpPort}"
nettcp = "127.0.0.1:${nettcpPort}"
${contosoNamespace({ host: HOST, key: KEY, hcs: ['cc'] })}`, /hyrelay ready: (\S+) .*nettcp=/);
  relay = r.child;
  httpAddr = r.match[1];
  relayErr = r.err;
  relay.stderr.on('data', (d) => { relayErr += d; });
  ca = fs.readFileSync(path.join(dir, 'data', 'ca.pem'));
  const S = await freePort();
  await spawnReady(path.join(PEER, 'run-service.sh'), [String(S), 'tcp'], 'READY');
  svcBridge = await spawnReady(BIN, ['bridge', '-x', `Endpoint=sb://${httpAddr}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${KEY}`,
    '--wcf', `cc=net.tcp://127.0.0.1:${S}/CreditCheck`], 'hyrelay bridge ready',
  { env: { ...process.env, HYRELAY_LOG: 'info,hyrelay::wcf=debug' } });
  shim = await startShim();
  shimPort = shim.address().port;
});

after(async () => {
  if (shim) shim.close();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await sleep(500);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (relay) { relay.kill('SIGTERM'); await new Promise((r) => relay.once('exit', r)); }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a legacy NetTcpRelay client reaches a plain NetTcpBinding service through a hybrid connection and the WCF bridge; its Ping is filtered', { skip, timeout: 120000 }, async () => {
  // The Mono client dials the shim as if it were the service (Via and To say so); the
  // service-side bridge rewrites both to the service's address.
  let out;
  try {
    ({ stdout: out } = await execFile(path.join(PEER, 'run-client.sh'), ['127.0.0.1', String(shimPort), '12', '--op', 'mixed', '--warmup', '0'], { timeout: 120000, maxBuffer: 16 << 20 }));
  } catch (e) { assert.fail(`client failed: ${(e.stdout || '') + (e.stderr || '')}\nbridge: ${svcBridge.log()}\nrelay: ${relayErr}`); }
  // What the service computed (Scoring.Decide is deterministic), not only that replies came.
  assert.match(out, /CheckCredit\(CUST-0000, 1000\.00\) -> Approved=False Score=533 Reason=LOW_SCORE/);
  assert.equal((out.match(/Ping\(\) -> pong /g) || []).length, 4);
  assert.match(out, /SUMMARY variant=tcp op=mixed calls=12 /);
  // (Mono may open more than one connection for a run; each got a Ping.)
  assert.ok(shimStats.sessions >= 1);
  assert.equal(shimStats.pings, shimStats.sessions);
  assert.match(relayErr, /NetTcpRelay client joined a Hybrid Connections listener/);
  assert.match(svcBridge.log(), /dropped a WCF Relay keep-alive Ping/);
  assert.match(svcBridge.log(), /client_via=net\.tcp:\/\/127\.0\.0\.1:\d+\/CreditCheck/);
});
