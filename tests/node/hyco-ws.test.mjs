// Unmodified npm hyco-ws listener and sender against `hyrelay up`, over ws:// and wss://.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { startRelay, PEERS, root } from './harness.mjs';

let relay;
before(async () => { relay = await startRelay(); relay.createHyco('echo'); });
after(async () => { await relay.stop(); });

function runEcho(env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'tests/node/scripts/hyco-ws-echo.cjs')],
      { env: { ...process.env, PEERS, HC: 'echo', KEY: relay.key, ...env }, timeout: 30000 },
      (err, stdout, stderr) => resolve({ err, out: stdout.trim().split('\n').pop(), stderr }));
  });
}

function checkEcho(r) {
  assert.equal(r.err, null, r.stderr + r.out);
  const { got, error } = JSON.parse(r.out);
  assert.equal(error, undefined);
  assert.deepEqual(got.slice(0, 4).map((g) => [g.kind, g.len, g.ok]), [['text', 5, true], ['text', 1000, true], ['text', 70000, true], ['text', 1 << 20, true]]);
  assert.deepEqual([got[4].kind, got[4].len, got[4].sum], ['binary', 64, 2016]);
}

test('hyco-ws echo over ws://', async () => {
  checkEcho(await runEcho({ NS: relay.ns, SCHEME: 'ws' }));
});

test('hyco-ws echo over wss:// trusting the dev CA (NODE_EXTRA_CA_CERTS)', async () => {
  checkEcho(await runEcho({ NS: `localhost:${relay.httpsPort}`, SCHEME: 'wss', NODE_EXTRA_CA_CERTS: relay.ca }));
});

test('hyco-ws echo over wss:// with NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
  checkEcho(await runEcho({ NS: relay.nsTls, SCHEME: 'wss', NODE_TLS_REJECT_UNAUTHORIZED: '0' }));
});
