// hyco-ws reconnects without delay after a refused handshake (~13 000 attempts in 6 s
// against a 401). The relay must throttle that source and keep serving everyone else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import path from 'node:path';
import { startRelay, PEERS, root, sleep } from './harness.mjs';

let relay;
before(async () => { relay = await startRelay(); relay.createHyco('victim'); relay.createHyco('echo'); });
after(async () => { await relay.stop(); });

test('a hyco-ws listener with a wrong key is throttled while other tenants are served', { timeout: 60000 }, async () => {
  const script = `
    const WS = require(${JSON.stringify(path.join(PEERS, 'hyco-ws'))});
    WS.createRelayBaseUri = (ns, p) => 'ws://' + ns + '/$hc/' + p;
    const uri = WS.createRelayListenUri(${JSON.stringify(relay.ns)}, 'victim');
    const s = WS.createRelayedServer({ server: uri, token: () => WS.createRelayToken(uri, 'RootManageSharedAccessKey', 'wrong-key') }, () => {});
    s.on('error', () => {});`;
  const storm = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  await sleep(3000);
  // Meanwhile an unrelated tenant still works end to end.
  const r = await new Promise((resolve) => execFile(process.execPath, [path.join(root, 'tests/node/scripts/hyco-ws-echo.cjs')],
    { env: { ...process.env, PEERS, NS: relay.ns, SCHEME: 'ws', HC: 'echo', KEY: relay.key }, timeout: 30000 },
    (err, stdout) => resolve({ err, out: stdout })));
  storm.kill('SIGKILL');
  assert.equal(r.err, null, r.out);
  assert.ok(JSON.parse(r.out.trim().split('\n').pop()).got.length === 5);
  const status = JSON.parse(relay.cli('hyco', 'show', 'victim'));
  assert.equal(status.listener_count, 0);
  const counters = await (await fetch(`http://${relay.ns}/$hyrelay/status`, { headers: { Authorization: relay.token(`http://${relay.host}/`) } })).json();
  assert.ok(counters.counters.throttled > 100, `throttled ${counters.counters.throttled}`);
  assert.ok(counters.counters.refused < counters.counters.throttled, 'most storm attempts are answered 429 without checking the token');
  console.log(`storm: ${counters.counters.refused} refused with 401, ${counters.counters.throttled} throttled with 429`);
});
