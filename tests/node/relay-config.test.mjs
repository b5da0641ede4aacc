// `hyrelay relay --config FILE`: entities, entity-level rules and limits from the file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, RawWs, sasToken } from './harness.mjs';
import { startConfiguredRelay, contosoNamespace } from './gateways.mjs';

const ROOTKEY = 'cm9vdC1rZXktZm9yLXRoZS1jb25maWctdGVzdC0wMDAwMA==';
const SENDKEY = 'c2VuZGVyLWtleS1mb3ItdGhlLWNvbmZpZy10ZXN0LTAwMA==';
let child, dir, addr;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-cfg-'));
  const cfg = path.join(dir, 'relay.toml');
  fs.writeFileSync(path.join(dir, 'root.key'), ROOTKEY + '\n');
  fs.writeFileSync(cfg, `
data_dir = "${dir}/data"
[listen]
http = "127.0.0.1:0"
[limits]
accept_timeout = "1s"
token_grace = "1s"
listeners_per_entity = 2
[[namespaces]]
name = "contoso"
hosts = ["127.0.0.1", "localhost"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key_file = "root.key"
  [[namespaces.hybrid_connections]]
  name = "credit-check"
    [[namespaces.hybrid_connections.rules]]
    name = "callers"
    rights = ["send"]
    primary_key = "${SENDKEY}"
`);
  assert.match(execFileSync(BIN, ['relay', '--config', cfg, '--check-config'], { encoding: 'utf8' }), /ok \(1 namespaces\)/);
  assert.match(execFileSync(BIN, ['relay', '--check-config', cfg], { encoding: 'utf8' }), /ok \(1 namespaces\)/, 'the --check-config FILE form');
  child = spawn(BIN, ['relay', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: 'warn' } });
  addr = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => { out += d; const m = out.match(/hyrelay ready: (\S+)/); if (m) resolve(m[1]); });
    child.on('exit', (c) => reject(new Error('relay exited ' + c)));
  });
});
after(async () => { child.kill('SIGTERM'); fs.rmSync(dir, { recursive: true, force: true }); });

const tok = (name, key) => sasToken(`http://127.0.0.1/credit-check`, name, key);

test('a listener that never dials the accept address: the sender gets 504 after accept_timeout', async () => {
  const l = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, { ServiceBusAuthorization: tok('RootManageSharedAccessKey', ROOTKEY) });
  assert.equal(l.status, 101);
  const t0 = Date.now();
  const s = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=connect`, { ServiceBusAuthorization: tok('callers', SENDKEY) });
  const took = Date.now() - t0;
  assert.equal(s.status, 504);
  assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
  const accept = JSON.parse((await l.next()).payload.toString()).accept;
  const late = await RawWs.connect(accept.address);
  assert.equal(late.status, 403, 'an expired accept address is refused');
  l.abort();
});

test('listeners_per_entity from the file is enforced', async () => {
  const h = { ServiceBusAuthorization: tok('RootManageSharedAccessKey', ROOTKEY) };
  const a = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, h);
  const b = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, h);
  const c = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, h);
  assert.deepEqual([a.status, b.status, c.status], [101, 101, 403]);
  [a, b, c].forEach((x) => x.abort());
});

test('the entity-level Send rule cannot listen; a configured entity cannot be deleted at run time', async () => {
  const w = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, { ServiceBusAuthorization: tok('callers', SENDKEY) });
  assert.equal(w.status, 403);
  const cs = `Endpoint=sb://${addr}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${ROOTKEY}`;
  let err = '';
  try { execFileSync(BIN, ['hyco', 'delete', 'credit-check', '-x', cs], { encoding: 'utf8', stdio: 'pipe' }); } catch (e) { err = String(e.stderr); }
  assert.match(err, /409.*configuration file/);
  // Run-time entities can be added next to the configured ones.
  execFileSync(BIN, ['hyco', 'create', 'extra', '-x', cs]);
  assert.match(execFileSync(BIN, ['hyco', 'list', '-x', cs], { encoding: 'utf8' }), /"extra"/);
});

test('an expired listener token is tolerated for token_grace, then the channel is closed with 1008; renewal keeps it', { timeout: 20000 }, async () => {
  const short = (ttl) => sasToken(`http://127.0.0.1/credit-check`, 'RootManageSharedAccessKey', ROOTKEY, ttl);
  const dies = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, { ServiceBusAuthorization: short(2) });
  const lives = await RawWs.connect(`ws://${addr}/$hc/credit-check?sb-hc-action=listen`, { ServiceBusAuthorization: short(2) });
  assert.deepEqual([dies.status, lives.status], [101, 101]);
  lives.text(JSON.stringify({ renewToken: { token: short(3600) } }));
  const t0 = Date.now();
  const c = await dies.next(10000);
  assert.equal(c.op, 8);
  assert.equal(c.payload.readUInt16BE(0), 1008);
  assert.match(c.payload.subarray(2).toString(), /expired/);
  assert.ok(Date.now() - t0 >= 1500, 'not closed before expiry + grace');
  lives.send(9, 'still there?');
  const pong = await lives.next(3000);
  assert.equal(pong.op, 10, 'the renewed channel stays open');
  lives.abort();
});

test('SIGHUP re-reads the file: kept entities keep their listeners, removed ones are closed, added ones and new keys work; a broken file is refused and the relay runs on', { timeout: 30000 }, async () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-hup-'));
  const cfg = path.join(d, 'relay.toml');
  const KEY2 = 'bmV3LXNlbmRlci1rZXktYWZ0ZXItc2lnaHVwLTAwMDAwMA==';
  const file = ({ hcs, sendKey, port = 0 }) => `data_dir = "${d}/data"\n[listen]\nhttp = "127.0.0.1:${port}"\n`
    + contosoNamespace({ key: ROOTKEY, rules: [['callers', ['send'], sendKey]], hcs });
  const started = await startConfiguredRelay(d, file({ hcs: ['keep', 'drop'], sendKey: SENDKEY }), /hyrelay ready: (\S+)/);
  const relay = started.child;
  const a = started.match[1];
  let err = '';
  relay.stderr.on('data', (x) => { err += x; });
  const port = a.split(':').pop();
  const t = (hc, name, key) => ({ ServiceBusAuthorization: sasToken(`http://127.0.0.1/${hc}`, name, key) });
  const listen = (hc) => RawWs.connect(`ws://${a}/$hc/${hc}?sb-hc-action=listen`, t(hc, 'RootManageSharedAccessKey', ROOTKEY));
  const waitLog = async (re, ms = 5000) => {
    const end = Date.now() + ms;
    while (!re.test(err)) { if (Date.now() > end) throw new Error(`no ${re} in the relay log:\n${err}`); await new Promise((r) => setTimeout(r, 50)); }
  };
  try {
    const keep = await listen('keep');
    const drop = await listen('drop');
    assert.deepEqual([keep.status, drop.status], [101, 101]);
    assert.equal((await listen('added')).status, 404, 'not configured yet');

    // A broken file: refused, logged, nothing changes.
    fs.writeFileSync(cfg, file({ hcs: ['keep'], sendKey: SENDKEY }) + '\n[limits]\naccept_timeout = "soon"\n');
    relay.kill('SIGHUP');
    await waitLog(/SIGHUP: the file was not applied, the running configuration stays: [\s\S]*accept_timeout = "soon"[\s\S]*not a duration/);
    assert.equal(relay.exitCode, null, 'the relay must not die on SIGHUP');
    assert.equal((await listen('drop')).status, 101, 'the broken file was not applied');

    // The real change: 'drop' removed, 'added' added, the callers key rotated, and a
    // [listen] change that needs a restart.
    fs.writeFileSync(cfg, file({ hcs: ['keep', 'added'], sendKey: KEY2, port: Number(port) + 1 }));
    relay.kill('SIGHUP');
    await waitLog(/SIGHUP: configuration re-read/);
    await waitLog(/SIGHUP: \[listen\] changed in .* only take effect after a restart/);
    const closed = await drop.next(5000);
    assert.ok(closed && closed.op === 8, 'the listener of the removed hybrid connection gets a Close frame');
    assert.equal(closed.payload.readUInt16BE(0), 1001);
    const added = await listen('added');
    assert.equal(added.status, 101, 'the added hybrid connection serves listeners');
    // The kept listener is still the same connection: a sender reaches it.
    const sending = RawWs.connect(`ws://${a}/$hc/keep?sb-hc-action=connect`, t('keep', 'callers', KEY2));
    const accept = await keep.next(5000);
    assert.ok(accept && JSON.parse(accept.payload.toString()).accept, 'the kept listener got the accept');
    const rendezvous = await RawWs.connect(JSON.parse(accept.payload.toString()).accept.address);
    const s = await sending;
    assert.deepEqual([rendezvous.status, s.status], [101, 101], 'the sender with the new key is relayed');
    rendezvous.abort(); s.abort();
    const old = await RawWs.connect(`ws://${a}/$hc/keep?sb-hc-action=connect`, t('keep', 'callers', SENDKEY));
    assert.equal(old.status, 401, 'the rotated-out key is refused');
    [keep, drop, added, old].forEach((x) => x.abort());
  } finally {
    relay.kill('SIGTERM');
    fs.rmSync(d, { recursive: true, force: true });
  }
});
