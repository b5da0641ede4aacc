#!/usr/bin/env python3
"""Optional: write a copy of Mono's System.ServiceModel.dll without its 50 ms receive sleep.

Mono 6.8's WCF has fixed sleeps that dominate any timing measurement:
  receive: TcpDuplexSessionChannel.TryReceive() begins with Thread.Sleep(50) (a workaround noted
           in Mono's source). Every message received on a buffered net.tcp connection waits
           ~50 ms, capping one connection at ~20 request/reply calls per second (both the
           client and the service side do this).
  accept:  ListenerLoopManager.LoopCore() sleeps 100 ms before accepting each new channel, so
           a Mono service accepts at most ~10 new connections per second per endpoint.
By default only the receive sleep is patched. Patching the accept sleep as well
(--sites receive,accept) makes the service hang when several clients connect at once, so
it is not recommended.
The patch rewrites the IL constant (`ldc.i4.s 50` -> `ldc.i4.s 0`) in that one method (same
byte length, nothing else moves) and writes OUT_DIR/System.ServiceModel.dll.
Run service/client with MONO_PATH=OUT_DIR to use it (Mono does not verify strong-name
signatures; MONO_PATH is searched before the GAC). Wire format is unchanged; only timing.
Usage: patch_mono_sleep.py [--sites receive[,accept]] [SRC_DLL] OUT_DIR
"""
import os, re, sys

args = sys.argv[1:]
want = {"receive"}
if "--sites" in args:
    i = args.index("--sites"); want = set(args[i + 1].split(",")); del args[i:i + 2]
if not args:
    sys.exit(__doc__)
src = args[0] if len(args) == 2 else "/usr/lib/mono/4.5/System.ServiceModel.dll"
out_dir = args[-1]
data = bytearray(open(src, "rb").read())
sites = [
    # ldarg.0; call ThrowIfDisposedOrNotOpen; ldc.i4.s 50; call Thread.Sleep; ldarg.1; ldsfld TimeSpan.Zero
    ("receive", "TcpDuplexSessionChannel.TryReceive Sleep(50)",
     re.compile(rb"\x02\x28...[\x06\x0a]\x1f(\x32)\x28...\x0a\x03\x7e...\x0a", re.S)),
    # ldc.i4.s 100; call Thread.Sleep; ldarg.0; ldfld channel_acceptor; callvirt Invoke; pop;
    # ldarg.0; ldfld creator_handle; callvirt WaitOne; pop
    ("accept", "ListenerLoopManager.LoopCore Sleep(100)",
     re.compile(rb"\x1f(\x64)\x28...\x0a\x02\x7b...\x04\x6f...\x0a\x26\x02\x7b...\x04\x6f...\x0a\x26", re.S)),
]
for key, name, pat in sites:
    if key not in want:
        continue
    hits = [m.start(1) for m in pat.finditer(data)]
    if len(hits) != 1:
        sys.exit("%s: expected exactly one match, found %d: not patching" % (name, len(hits)))
    data[hits[0]] = 0
    print("patched %s -> Sleep(0) at file offset 0x%x" % (name, hits[0]))
os.makedirs(out_dir, exist_ok=True)
dst = os.path.join(out_dir, "System.ServiceModel.dll")
open(dst + ".tmp", "wb").write(data)
os.replace(dst + ".tmp", dst)   # atomic: a running process keeps the file it mapped
print("wrote", dst)
