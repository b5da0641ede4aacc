// `hyrelay bridge` -L/-T end to end through `hyrelay up`, against real TCP/Unix servers and
// unmodified hyco-ws on the other end; relay restart with listener reconnect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { startRelay, BIN, PEERS, KEYNAME, sleep, freePort } from './harness.mjs';
import http from 'node:http';
import { execFile as execFileCb } from 'node:child_process';
import { promisify } from 'node:util';
const execFileP = promisify(execFileCb);

const require = createRequire(import.meta.url);
const WS = require(path.join(PEERS, 'hyco-ws'));
let relay, echo, echoPort, children = [], tmp;

function echoServer() {
  return net.createServer((s) => {
    const h = crypto.createHash('sha256'); let n = 0;
    s.on('data', (d) => { h.update(d); n += d.length; s.write(d); });
    s.on('end', () => s.end(`|${n}|${h.digest('hex')}`));   // answers after the client's half-close
    s.on('error', () => {});
  });
}

async function bridge(...args) {
  const creds = args.includes('-x') ? [] : ['-x', relay.connStr()];
  const c = spawn(BIN, ['bridge', ...args, ...creds], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: 'info' } });
  children.push(c);
  let err = '';
  c.stderr.on('data', (d) => { err += d; });
  await new Promise((resolve, reject) => {
    c.stdout.on('data', (d) => { if (String(d).includes('hyrelay bridge ready')) resolve(); });
    c.on('exit', (code) => reject(new Error(`bridge exited ${code}: ${err}`)));
  });
  c.log = () => err;
  return c;
}

// `hyrelay bridge -f FILE` (credentials from the file), ready.
async function bridgeFile(cfg) {
  const c = spawn(BIN, ['bridge', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: 'info' } });
  children.push(c);
  let err = '';
  c.stderr.on('data', (d) => { err += d; });
  await new Promise((resolve, reject) => {
    c.stdout.on('data', (d) => { if (String(d).includes('hyrelay bridge ready')) resolve(); });
    c.on('exit', (code) => reject(new Error(`bridge exited ${code}: ${err}`)));
  });
  return c;
}

function transfer(connectOpts, payload) {
  return new Promise((resolve, reject) => {
    const s = net.connect(connectOpts, () => { s.end(payload); });
    const parts = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

// An unmodified hyco-ws listener on hybrid connection `name`, listening; `onWs` gets each sender.
async function hycoListener(name, onWs) {
  WS.createRelayBaseUri = (ns, p) => `ws://${ns}/$hc/${p}`;
  const listenUri = WS.createRelayListenUri(relay.ns, name);
  const server = WS.createRelayedServer({ server: listenUri, token: () => WS.createRelayToken(listenUri, KEYNAME, relay.key) }, onWs);
  await new Promise((r) => server.on('listening', r));
  return server;
}

// Connects to 127.0.0.1:port, writes `data`, resolves with all it reads until the end.
function exchange(port, data) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(data));
    const parts = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts).toString()));
    s.on('error', reject);
  });
}

async function waitFor(fn, ms = 15000) {
  const t = Date.now() + ms;
  for (;;) { try { return await fn(); } catch (e) { if (Date.now() > t) throw e; await sleep(200); } }
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hyrelay-bridge-'));
  relay = await startRelay();
  for (const n of ['fwd', 'tlsfwd', 'wsl', 'wsl2', 'wst', 'unixfwd', 'udpfwd']) relay.createHyco(n);
  echo = echoServer().listen(0, '127.0.0.1');
  await new Promise((r) => echo.on('listening', r));
  echoPort = echo.address().port;
});
after(async () => {
  children.forEach((c) => c.kill('SIGKILL'));
  echo.close();
  await relay.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('TCP forward: 8 MiB each way with half-close, byte-exact (SHA-256)', { timeout: 60000 }, async () => {
  const lp = await freePort();
  await bridge('-T', `fwd:echo/127.0.0.1:${echoPort}`);
  await bridge('-L', `127.0.0.1:${lp}/echo:fwd`);
  const payload = crypto.randomBytes(8 << 20);
  const got = await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, payload));
  const trailer = `|${payload.length}|${crypto.createHash('sha256').update(payload).digest('hex')}`;
  assert.equal(got.length, payload.length + trailer.length);
  assert.ok(got.subarray(0, payload.length).equals(payload), 'echoed bytes differ');
  assert.equal(got.subarray(payload.length).toString(), trailer);
  // Several connections at once.
  const many = await Promise.all(Array.from({ length: 8 }, (_, i) => transfer({ port: lp, host: '127.0.0.1' }, Buffer.from(`conn ${i}`))));
  many.forEach((b, i) => assert.ok(b.toString().startsWith(`conn ${i}|`)));
});

// Both bridges on the relay's TLS port (it speaks nothing else, so success means TLS): the
// payload stays on the copying path, sent with the zero masking key hyrelay's client uses
// inside TLS; every byte must still arrive.
test('TCP forward over TLS legs (wss): 8 MiB each way byte-exact', { timeout: 60000 }, async () => {
  const lp = await freePort();
  const tlsCs = `Endpoint=sb://${relay.nsTls}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${relay.key}`;
  await bridge('-T', `tlsfwd:echo/127.0.0.1:${echoPort}`, '-x', tlsCs, '--ca', relay.ca);
  await bridge('-L', `127.0.0.1:${lp}/echo:tlsfwd`, '-x', tlsCs, '--ca', relay.ca);
  const payload = crypto.randomBytes(8 << 20);
  const got = await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, payload));
  const trailer = `|${payload.length}|${crypto.createHash('sha256').update(payload).digest('hex')}`;
  assert.ok(got.subarray(0, payload.length).equals(payload), 'echoed bytes differ');
  assert.equal(got.subarray(payload.length).toString(), trailer);
  // Later connections start on TLS connections both bridges dialled ahead (sender and
  // rendezvous side); each must carry its own bytes and nobody else's.
  for (let i = 0; i < 4; i++) {
    const small = crypto.randomBytes(1000 + i);
    const back = await transfer({ port: lp, host: '127.0.0.1' }, small);
    assert.ok(back.subarray(0, small.length).equals(small), `connection ${i + 2}: echoed bytes differ`);
    assert.equal(back.subarray(small.length).toString(), `|${small.length}|${crypto.createHash('sha256').update(small).digest('hex')}`);
  }
});

test('1 GiB through -L → relay → -T arrives with the same SHA-256', { timeout: 240000 }, async () => {
  const sink = net.createServer((sock) => {
    const h = crypto.createHash('sha256'); let n = 0;
    sock.on('data', (d) => { h.update(d); n += d.length; });
    sock.on('end', () => sock.end(`${n} ${h.digest('hex')}`));
  }).listen(0, '127.0.0.1');
  await new Promise((r) => sink.on('listening', r));
  relay.createHyco('bulk');
  const lp = await freePort();
  await bridge('-T', `bulk:s/127.0.0.1:${sink.address().port}`);
  await bridge('-L', `127.0.0.1:${lp}/s:bulk`);
  await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('x')));
  const block = crypto.randomBytes(1 << 20);
  const total = 1024;
  const want = crypto.createHash('sha256');
  for (let i = 0; i < total; i++) want.update(block);
  const t0 = Date.now();
  const answer = await new Promise((resolve, reject) => {
    const s = net.connect(lp, '127.0.0.1');
    let i = 0;
    const pump = () => { while (i < total) { i++; if (!s.write(block)) { s.once('drain', pump); return; } } s.end(); };
    s.on('connect', pump);
    const parts = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts).toString()));
    s.on('error', reject);
  });
  const secs = (Date.now() - t0) / 1000;
  console.log(`1 GiB through the bridge pair in ${secs.toFixed(1)} s (${(1024 / secs).toFixed(0)} MiB/s)`);
  assert.equal(answer, `${total << 20} ${want.digest('hex')}`);
  sink.close();
});

test('UDP forward keeps datagram boundaries (azbridge length-prefixed datagram mode)', { timeout: 30000 }, async () => {
  const srv = dgram.createSocket('udp4');
  srv.on('message', (m, r) => srv.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  await new Promise((r) => srv.bind(0, '127.0.0.1', r));
  const lp = await freePort();
  await bridge('-T', `udpfwd:dns/127.0.0.1:${srv.address().port}U`);
  await bridge('-L', `127.0.0.1:${lp}U/dns:udpfwd`);
  const cli = dgram.createSocket('udp4');
  await new Promise((r) => cli.bind(0, '127.0.0.1', r));
  const sizes = [1, 0, 100, 1400, 9000, 3, 60000];
  const got = [];
  cli.on('message', (m) => got.push(m));
  // The route is set up by the first datagram; resend until the first echo shows up.
  await waitFor(async () => { cli.send(Buffer.from('warmup'), lp, '127.0.0.1'); await sleep(300); if (!got.length) throw new Error('no echo yet'); });
  got.length = 0;
  const sent = sizes.map((n, i) => Buffer.alloc(n, 65 + i));
  for (const d of sent) cli.send(d, lp, '127.0.0.1');
  await waitFor(async () => { if (got.length < sent.length) throw new Error(`${got.length} echoes`); }, 10000);
  assert.deepEqual(got.map((g) => g.length), sizes.map((n) => n + 5));
  got.forEach((g, i) => assert.ok(g.subarray(5).equals(sent[i])));
  cli.close(); srv.close();
});

test('Unix socket forward to a Unix socket server', { timeout: 30000 }, async () => {
  const srvPath = path.join(tmp, 'server.sock');
  const cliPath = path.join(tmp, 'client.sock');
  const srv = echoServer().listen(srvPath);
  await new Promise((r) => srv.on('listening', r));
  await bridge('-T', `unixfwd:u/${srvPath.replace(/^\//, '')}`);
  await bridge('-L', `${cliPath}/u:unixfwd`);
  const got = await waitFor(() => transfer({ path: cliPath }, Buffer.from('over unix')));
  assert.match(got.toString(), /^over unix\|9\|/);
  srv.close();
});

test('our -T listener serves an unmodified hyco-ws sender speaking the azbridge preamble', { timeout: 30000 }, async () => {
  await bridge('-T', `wst:svc/127.0.0.1:${echoPort}`);
  const uri = `ws://${relay.ns}/$hc/wst?sb-hc-action=connect`;
  const got = await waitFor(() => new Promise((resolve, reject) => {
    const c = WS.relayedConnect(uri, WS.createRelayToken(`http://${relay.ns}/wst`, KEYNAME, relay.key), () => {
      c.send(Buffer.from([1, 0, 0, 3, ...Buffer.from('svc')]), { binary: true });
    });
    const msgs = [];
    c.on('message', (m) => {
      msgs.push(Buffer.from(m));
      if (msgs.length === 1) c.send(Buffer.from('hello from hyco-ws'), { binary: true });
      if (msgs.length === 2) { c.close(); resolve(msgs); }
    });
    c.on('error', reject);
  }));
  assert.deepEqual([...got[0]], [1, 0, 0], 'preamble answer');
  assert.equal(got[1].toString(), 'hello from hyco-ws');
});

test('an unmodified hyco-ws listener serves our -L side', { timeout: 30000 }, async () => {
  let preambleSeen = null;
  const server = await hycoListener('wsl', (ws) => {
    let first = true;
    ws.on('message', (m) => {
      if (first) { first = false; preambleSeen = [...Buffer.from(m)]; ws.send(Buffer.from([1, 0, 0])); return; }
      ws.send(Buffer.concat([Buffer.from('hyco-ws says: '), Buffer.from(m)]));
      ws.close();
    });
  });
  const lp = await freePort();
  const l = await bridge('-L', `127.0.0.1:${lp}/app:wsl`);
  const got = await exchange(lp, 'ping').catch((e) => `client error ${e.code}`);
  server.close();
  // (Failed once in ~12 full runs, not reproduced since: the -L log says what it saw.)
  assert.deepEqual(preambleSeen, [1, 0, 0, 3, ...Buffer.from('app')], `-L log: ${l.log()}`);
  assert.equal(got, 'hyco-ws says: ping', `-L log: ${l.log()}`);
});

test('-L carries the client\'s first bytes before the preamble answer (one round trip less per connection)', { timeout: 30000 }, async () => {
  // An unmodified hyco-ws listener that answers the preamble only once the client's bytes
  // are there: an -L that waited for the answer first would never get a reply.
  const server = await hycoListener('wsl2', (ws) => {
    const msgs = [];
    ws.on('message', (m) => {
      msgs.push(Buffer.from(m));
      if (msgs.length === 2) {
        ws.send(Buffer.from([1, 0, 0]));
        ws.send(Buffer.concat([Buffer.from('early: '), msgs[1]]));
        ws.close();
      }
    });
  });
  const lp = await freePort();
  await bridge('-L', `127.0.0.1:${lp}/app:wsl2`);
  const got = await exchange(lp, 'first bytes');
  server.close();
  assert.equal(got, 'early: first bytes', 'the answer itself never reaches the local client');
});

test('-L to a port the remote forwarder does not have: the client gets a reset, the log names the port', { timeout: 30000 }, async () => {
  await bridge('-T', `wst:svc/127.0.0.1:${echoPort}`).catch(() => {});
  const lp = await freePort();
  const l = await bridge('-L', `127.0.0.1:${lp}/nosuch:wst`);
  const ev = await new Promise((resolve) => {
    const s = net.connect(lp, '127.0.0.1', () => s.write('data the remote end will never take'));
    const parts = [];
    s.on('data', (d) => parts.push(d));
    s.on('error', (e) => resolve(`error:${e.code}`));
    s.on('close', () => resolve(`close:${Buffer.concat(parts).length}`));
  });
  assert.match(ev, /^(error:ECONNRESET|close:0)$/, `client saw ${ev}`);
  await waitFor(async () => { if (!/has no port 'nosuch'/.test(l.log())) throw new Error(l.log()); });
});

test('relay restart: the -T listener reconnects and serves new connections', { timeout: 90000 }, async () => {
  const lp = await freePort();
  relay.createHyco('restart');
  const t = await bridge('-T', `restart:e/127.0.0.1:${echoPort}`);
  await bridge('-L', `127.0.0.1:${lp}/e:restart`);
  assert.match((await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('before')))).toString(), /^before\|/);
  // Restart the relay on the same ports and data directory.
  const { httpPort, httpsPort, dataDir } = relay;
  relay.child.kill('SIGKILL');
  await new Promise((r) => relay.child.once('exit', r));
  const failed = await transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('during')).then((b) => b.length, () => -1);
  assert.ok(failed <= 0, 'no data may arrive while the relay is down');
  const again = spawn(BIN, ['up', '--data-dir', dataDir, '--http-port', String(httpPort), '--https-port', String(httpsPort), '--management-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HYRELAY_LOG: 'warn' } });
  children.push(again);
  relay.child = again;
  const t0 = Date.now();
  const got = await waitFor(async () => {
    const b = await transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('after'));
    if (!b.toString().startsWith('after|')) throw new Error('not yet');
    return b;
  }, 45000);
  console.log(`listener back after ${Date.now() - t0} ms`);
  assert.match(got.toString(), /^after\|5\|/);
  assert.match(t.log(), /reconnecting/);
});

test('-H: curl reaches a local HTTP server through the relay (small, >64 kB request, >64 kB response)', { timeout: 60000 }, async () => {
  relay.createHyco('web');
  const big = crypto.randomBytes(500 * 1024);
  const srv = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      if (req.url.startsWith('/big')) { res.setHeader('content-type', 'application/octet-stream'); res.end(big); return; }
      res.setHeader('x-seen-host', String(req.headers.host));
      res.end(`${req.method} ${req.url} ${body.length} ${crypto.createHash('sha256').update(body).digest('hex')}`);
    });
  }).listen(0, '127.0.0.1');
  await new Promise((r) => srv.on('listening', r));
  await bridge('-H', `web:http/127.0.0.1:${srv.address().port}`);
  const tok = relay.token(`http://${relay.host}/web`);
  // curl runs asynchronously: the HTTP server lives in this process's event loop.
  const curl = async (...args) => (await execFileP('curl', ['-sS', '-H', `ServiceBusAuthorization: ${tok}`, ...args], { maxBuffer: 16 << 20, encoding: 'buffer' })).stdout;
  const url = `http://${relay.ns}/web`;
  const small = await waitFor(async () => (await curl('-f', `${url}/api/items?id=7`)).toString());
  assert.equal(small, `GET /api/items?id=7 0 ${crypto.createHash('sha256').update(Buffer.alloc(0)).digest('hex')}`);
  const post = crypto.randomBytes(200 * 1024);
  const file = path.join(tmp, 'post.bin'); fs.writeFileSync(file, post);
  assert.equal((await curl('-f', '--data-binary', `@${file}`, `${url}/upload`)).toString(), `POST /upload ${post.length} ${crypto.createHash('sha256').update(post).digest('hex')}`);
  const got = await curl('-f', `${url}/big`);
  assert.ok(got.equals(big), `big response: ${got.length} bytes`);
  srv.close();
});

test('-f azbridge YAML: several forwards (local and remote) in one process', { timeout: 30000 }, async () => {
  relay.createHyco('yaml');
  const lp = await freePort();
  const cfg = path.join(tmp, 'azbridge.yml');
  fs.writeFileSync(cfg, [
    `AzureRelayConnectionString: "${relay.connStr()}"`,
    'KeepAliveInterval: 10',
    'LocalForward:',
    '  - RelayName: yaml',
    '    BindAddress: 127.0.0.1',
    `    BindPort: ${lp}`,
    '    PortName: svc',
    'RemoteForward:',
    '  - RelayName: yaml',
    '    Bindings:',
    '      - PortName: svc',
    '        Host: 127.0.0.1',
    `        HostPort: ${echoPort}`,
  ].join('\n') + '\n');
  await bridgeFile(cfg);
  const got = await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('yaml!')));
  assert.match(got.toString(), /^yaml!\|5\|/);
  // A typo in a key is refused with the key's name.
  fs.writeFileSync(cfg, 'LocalForwards: []\n');
  let err = '';
  try { execFileP && await execFileP(BIN, ['bridge', '-f', cfg]); } catch (e) { err = String(e.stderr); }
  assert.match(err, /LocalForwards/);
});

test('-f: each forward may carry its own ConnectionString (least privilege: Listen for -T, Send for -L)', { timeout: 30000 }, async () => {
  relay.createHyco('own');
  relay.cli('policy', 'create', 'own-listen', '--rights', 'listen', '--hyco', 'own');
  relay.cli('policy', 'create', 'own-send', '--rights', 'send', '--hyco', 'own');
  const cs = (p) => relay.cli('connection-string', '--policy', p, '--hyco', 'own').trim();
  const lp = await freePort();
  const cfg = path.join(tmp, 'own.yml');
  fs.writeFileSync(cfg, [
    'LocalForward:',
    '  - RelayName: own',
    `    ConnectionString: "${cs('own-send')}"`,
    `    BindPort: ${lp}`,
    '    PortName: svc',
    'RemoteForward:',
    '  - RelayName: own',
    `    ConnectionString: "${cs('own-listen')}"`,
    '    PortName: svc',
    '    Host: 127.0.0.1',
    `    HostPort: ${echoPort}`,
  ].join('\n') + '\n');
  const c = await bridgeFile(cfg);
  const got = await waitFor(() => transfer({ port: lp, host: '127.0.0.1' }, Buffer.from('own!')));
  assert.match(got.toString(), /^own!\|4\|/);
  c.kill('SIGTERM');
});

test('relay killed mid-transfer: the client side sees a reset, not a clean end', { timeout: 60000 }, async () => {
  // A relay of its own, so the other tests' relay is untouched.
  const r2 = await startRelay();
  r2.createHyco('cut');
  // The target is a Python socket server: it reports the kernel's view (FIN = read() returns
  // 0, RST = ECONNRESET). Node's socket sometimes reports 'end' for an RST that tcpdump
  // shows on the wire, so it cannot be the judge here.
  const sinkProc = spawn('python3', ['-u', '-c', `
import socket, sys
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print('PORT', s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0
try:
    while True:
        d = c.recv(1 << 20)
        if not d:
            print('FIN', n, flush=True); break
        n += len(d)
        if n >= 4 << 20 and n - len(d) < 4 << 20: print('UNDERWAY', flush=True)
except ConnectionResetError:
    print('RESET', n, flush=True)
`], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(sinkProc);
  let sinkOut = '';
  sinkProc.stdout.on('data', (d) => { sinkOut += d; });
  await waitFor(async () => { if (!/PORT \d+/.test(sinkOut)) throw new Error('sink not up'); });
  const sinkPort = Number(sinkOut.match(/PORT (\d+)/)[1]);
  const lp = await freePort();
  const spawnBridge = (args) => {
    const c = spawn(BIN, ['bridge', ...args, '-x', r2.connStr()], { stdio: ['ignore', 'pipe', process.env.BRIDGE_DEBUG ? 'inherit' : 'pipe'], env: { ...process.env, HYRELAY_LOG: process.env.BRIDGE_DEBUG ? 'debug' : 'warn' } });
    children.push(c);
    c.errText = '';
    if (c.stderr) c.stderr.on('data', (d) => { c.errText += d; });
    return new Promise((res) => c.stdout.on('data', (d) => { if (String(d).includes('ready')) res(c); }));
  };
  const tb = await spawnBridge(['-T', `cut:s/127.0.0.1:${sinkPort}`]);
  await spawnBridge(['-L', `127.0.0.1:${lp}/s:cut`]);
  await sleep(300);
  const clientEvent = new Promise((resolve) => {
    const s = net.connect(lp, '127.0.0.1');
    const block = Buffer.alloc(64 * 1024, 1);
    const pump = () => { while (s.writable && s.write(block)); if (s.writable) s.once('drain', pump); };
    s.on('connect', pump);
    s.on('error', (e) => resolve(`error:${e.code}`));
    s.on('close', () => resolve('close'));
  });
  await waitFor(async () => { if (!sinkOut.includes('UNDERWAY')) throw new Error('transfer not under way'); });
  r2.child.kill('SIGKILL');
  const ev = await clientEvent;
  await sleep(500);
  assert.match(ev, /^error:(ECONNRESET|EPIPE)$/, `client saw ${ev}`);
  // The target side must see a reset too, never a clean end of a truncated stream.
  await waitFor(async () => { if (!/FIN|RESET/.test(sinkOut)) throw new Error('target still open'); });
  assert.match(sinkOut, /RESET \d+/, `target saw: ${sinkOut}; -T bridge: ${tb.errText.trim().split('\n').pop()}`);
  await r2.stop();
});
