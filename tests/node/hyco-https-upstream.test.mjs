// The hyco-https package's own upstream jest suite, unmodified, against `hyrelay up` on
// 127.0.0.1:443 with TLS (the suite hard-codes port 443 and wss/https).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startRelay, PEERS, KEYNAME } from './harness.mjs';

let relay;
before(async () => {
  relay = await startRelay({ httpsPort: 443 });
  relay.createHyco('a2');
});
after(async () => { if (relay) await relay.stop(); });

test('hyco-https upstream jest suite passes unmodified', { timeout: 300000 }, async () => {
  // jest ignores files under node_modules, so run a pristine copy of the package.
  const copy = path.join(PEERS, '..', '.upstream', 'hyco-https');
  fs.rmSync(copy, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  fs.cpSync(path.join(PEERS, 'hyco-https'), copy, { recursive: true });
  const jest = path.join(PEERS, 'jest', 'bin', 'jest.js');
  const r = await new Promise((resolve) => {
    execFile(process.execPath, [jest, '--rootDir', '.', '--runInBand', '--forceExit', '--ci'], {
      cwd: copy,
      timeout: 280000,
      maxBuffer: 64 << 20,
      env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0', SB_HC_NAMESPACE: '127.0.0.1', SB_HC_PATH: 'a2', SB_HC_KEYRULE: KEYNAME, SB_HC_KEY: relay.key },
    }, (err, stdout, stderr) => resolve({ err, out: stdout + stderr }));
  });
  const summary = r.out.split('\n').filter((l) => /^(Tests|Test Suites):/.test(l)).join('\n');
  console.log(summary);
  assert.match(summary, /Test Suites:\s+4 passed, 4 total/, r.out.slice(-4000));
  assert.match(summary, /Tests:\s+39 passed, 39 total/, r.out.slice(-4000));
  assert.equal(r.err, null, r.out.slice(-4000));
});
