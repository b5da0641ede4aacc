// Unmodified hyco-ws listener and sender: echo N messages of different sizes and kinds.
// Env: NS (host:port), SCHEME (ws|wss), HC, KEY, KEYNAME. Prints one JSON line with results.
const path = require('path');
const WS = require(path.join(process.env.PEERS, 'hyco-ws'));
const { NS, SCHEME, HC, KEY } = process.env;
const KEYNAME = process.env.KEYNAME || 'RootManageSharedAccessKey';
WS.createRelayBaseUri = (ns, p) => `${SCHEME}://${ns}/$hc/${p}`;   // the one-line redirect from Azure to us
const listenUri = WS.createRelayListenUri(NS, HC);
const server = WS.createRelayedServer({ server: listenUri, token: () => WS.createRelayToken(listenUri, KEYNAME, KEY) },
  (ws) => { ws.on('message', (m) => ws.send(m)); });
const sizes = [5, 1000, 70000, 1 << 20];
server.on('error', (e) => { console.log(JSON.stringify({ error: 'listener: ' + (e && e.message) })); process.exit(2); });
server.on('listening', () => {
  const sendUri = WS.createRelaySendUri(NS, HC);
  WS.relayedConnect(sendUri, WS.createRelayToken(sendUri, KEYNAME, KEY), (c) => {
    const got = [];
    c.on('message', (m) => {
      got.push(typeof m === 'string' ? { kind: 'text', len: m.length, ok: m === 'x'.repeat(m.length) } : { kind: 'binary', len: m.length, sum: [...m.subarray(0, 64)].reduce((a, b) => a + b, 0) });
      if (got.length === sizes.length + 1) {
        console.log(JSON.stringify({ got }));
        c.close(); setTimeout(() => process.exit(0), 100);
      }
    });
    for (const s of sizes) c.send('x'.repeat(s));
    c.send(Buffer.from(Array.from({ length: 64 }, (_, i) => i)), { binary: true });
  });
});
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(1); }, 20000);
