// Several relay gateways on one real redis-server, for the scale-out tests: start and
// stop redis-server and `hyrelay relay --config` processes on loopback ports.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { BIN, sasToken, sleep, freePort } from './harness.mjs';

export const ROOTKEY = 'c2NhbGUtb3V0LXJvb3Qta2V5LWZvci10aGUtdGVzdHMtMDA=';
export const SENDKEY = 'c2NhbGUtb3V0LXNlbmRlci1rZXktZm9yLXRoZS10ZXN0cy0=';

export function redisServerPath() {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (fs.existsSync(p)) return p;
  throw new Error('redis-server is not installed: tools/test installs the Debian package redis-server');
}

export { freePort };

async function waitPort(port, host = '127.0.0.1', ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, host, () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

// A redis-server with no persistence on a loopback port (or `bind`/`port` given).
export async function startRedis({ port, bind = '127.0.0.1', also = [], args = [], netns } = {}) {
  port = port || await freePort();
  const cmd = [redisServerPath(), '--port', String(port), '--bind', bind, ...also, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...args];
  const child = netns ? spawn('ip', ['netns', 'exec', netns, ...cmd], { stdio: 'ignore' }) : spawn(cmd[0], cmd.slice(1), { stdio: 'ignore' });
  if (!netns) await waitPort(port, bind);
  else await sleep(300);
  return {
    child, port, url: `redis://${bind}:${port}`,
    cli(...a) { return execFileSync('redis-cli', ['-h', bind, '-p', String(port), ...a], { encoding: 'utf8' }).trim(); },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); }
    },
  };
}

// The relay configuration of one gateway.
export function gatewayConfig({ dir, id, host = '127.0.0.1', port, mgmt, redis, ttl = '3s', extraHc = '' }) {
  return `
data_dir = "${dir}"
[listen]
http = "${host}:${port}"
${mgmt ? `management = "${host}:${mgmt}"` : ''}
[gateway]
id = "${id}"
public_address = "ws://${host}:${port}"
[store]
redis = "${redis}"
registration_ttl = "${ttl}"
[limits]
accept_timeout = "5s"
[[namespaces]]
name = "contoso"
hosts = [${[...new Set([host, "localhost", "127.0.0.1", "10.77.0.1", "10.77.0.2"])].map((h) => `"${h}"`).join(", ")}]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "${ROOTKEY}"
  [[namespaces.hybrid_connections]]
  name = "credit-check"
    [[namespaces.hybrid_connections.rules]]
    name = "callers"
    rights = ["send"]
    primary_key = "${SENDKEY}"
  [[namespaces.hybrid_connections]]
  name = "web"
${extraHc}
`;
}

// Starts `hyrelay relay --config` for one gateway; resolves once it printed "ready".
export async function startGateway({ id, redis, port, mgmt, host = '127.0.0.1', ttl, netns, env = {} }) {
  port = port || await freePort();
  mgmt = mgmt === undefined ? await freePort() : mgmt;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hyrelay-${id}-`));
  const cfg = path.join(dir, 'relay.toml');
  fs.writeFileSync(cfg, gatewayConfig({ dir, id, host, port, mgmt, redis, ttl }));
  const full = { ...process.env, HYRELAY_LOG: process.env.HYRELAY_LOG || 'info', ...env };
  const child = netns
    ? spawn('ip', ['netns', 'exec', netns, BIN, 'relay', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: full })
    : spawn(BIN, ['relay', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: full });
  let out = '', err = '';
  child.stderr.on('data', (d) => { err += d; if (process.env.HYRELAY_TEST_VERBOSE) process.stderr.write(`[${id}] ${d}`); });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway ${id} did not start: ${err}`)), 15000);
    child.stdout.on('data', (d) => { out += d; if (/hyrelay ready/.test(out)) { clearTimeout(t); resolve(); } });
    child.on('exit', (c) => { clearTimeout(t); reject(new Error(`gateway ${id} exited ${c}: ${err}`)); });
  });
  return {
    id, child, dir, cfg, port, mgmt, host,
    ns: `${host}:${port}`,
    err: () => err,
    connStr() { return `Endpoint=sb://${host}:${port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${ROOTKEY}`; },
    cli(...a) { return execFileSync(BIN, [...a, '-x', this.connStr()], { encoding: 'utf8', env: { ...process.env, HYRELAY_LOG: 'warn' } }); },
    async metrics() { return (await fetch(`http://${host}:${mgmt}/metrics`)).text(); },
    async status() { return (await fetch(`http://${host}:${mgmt}/status.json`)).json(); },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) { child.kill(signal); await new Promise((r) => child.once('exit', r)); }
    },
    cleanup() { fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

// Runs `hyrelay relay --config` expecting it to fail; returns its stderr.
export function relayFails(cfgText, ms = 15000) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-bad-'));
  const cfg = path.join(dir, 'relay.toml');
  fs.writeFileSync(cfg, cfgText.replaceAll('@DIR@', dir));
  const t0 = Date.now();
  try {
    execFileSync(BIN, ['relay', '--config', cfg], { encoding: 'utf8', stdio: 'pipe', timeout: ms, env: { ...process.env, HYRELAY_LOG: 'warn' } });
  } catch (e) {
    return { stderr: String(e.stderr), status: e.status, ms: Date.now() - t0 };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  throw new Error('the relay started, but it should have refused');
}

export const tok = (host, hc, name = 'RootManageSharedAccessKey', key = ROOTKEY) => sasToken(`http://${host}/${hc}`, name, key);

// A TCP load balancer in front of gateways, as in Azure (many gateways behind one
// address): each connection goes to the first target in `order()` that accepts it.
export async function balancer(order) {
  const open = new Set();
  const server = net.createServer((c) => {
    open.add(c);
    c.on('close', () => open.delete(c));
    c.pause();
    const targets = order();
    const tryNext = (i) => {
      if (i >= targets.length) { c.destroy(); return; }
      const u = net.connect(targets[i], '127.0.0.1');
      u.once('connect', () => { c.pipe(u); u.pipe(c); c.resume(); });
      u.once('error', () => { if (!u.remoteAddress || u.connecting) tryNext(i + 1); else c.destroy(); });
      c.on('error', () => u.destroy());
      u.on('close', () => c.destroy());
      c.on('close', () => u.destroy());
    };
    tryNext(0);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  // close() ends the connections still open. Waiting for them could take an hour: after a
  // reset a hyco-ws listener reconnects twice (onerror and onclose both reconnect), and its
  // close() closes only the newer channel, so the orphan lives until its token expires.
  return {
    port: server.address().port,
    close: () => new Promise((r) => { server.close(r); for (const c of open) c.destroy(); }),
  };
}

// Starts `hyrelay relay --config` on `toml` (written into `dir`); resolves once its "ready"
// line matches `ready`, with the match, the process and its stderr so far.
export function startConfiguredRelay(dir, toml, ready) {
  const file = path.join(dir, 'relay.toml');
  fs.writeFileSync(file, toml);
  const child = spawn(BIN, ['relay', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: 'info' } });
  const relay = { child, err: '' };
  child.stderr.on('data', (d) => { relay.err += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => { out += d; const m = out.match(ready); if (m) resolve({ child, err: relay.err, match: m }); });
    child.on('exit', (c) => reject(new Error(`relay exited ${c}: ${relay.err}`)));
  });
}

// The `[[namespaces]]` block the WCF Relay tests share: namespace "contoso" answering to `host`,
// 127.0.0.1 and localhost; the root rule with every right, `rules` as [name, rights] pairs with
// the same key (or [name, rights, key] triples with their own), and the hybrid connections
// named in `hcs`.
export function contosoNamespace({ host = 'contoso.relay.local', key, rules = [], hcs = [] }) {
  const rule = (name, rights, k = key) => `  [[namespaces.rules]]\n  name = "${name}"\n  rights = [${rights.map((r) => `"${r}"`).join(', ')}]\n  primary_key = "${k}"\n`;
  return `[[namespaces]]\nname = "contoso"\nhosts = ["${host}", "127.0.0.1", "localhost"]\n`
    + rule('RootManageSharedAccessKey', ['listen', 'send', 'manage'])
    + rules.map(([n, r, k]) => rule(n, r, k)).join('')
    + hcs.map((h) => `  [[namespaces.hybrid_connections]]\n  name = "${h}"\n`).join('');
}
