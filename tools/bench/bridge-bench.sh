#!/usr/bin/env bash
# TCP forwarding through `hyrelay bridge -L → relay → -T`, next to a direct loopback
# connection, rathole and bore, all in one run on this machine, with the same client
# (hyrelay-tcpbench): throughput with 1 and 8 streams, 64-byte round trip p50/p99, new
# connections per second, and the tunnel processes' CPU seconds per GB.
# rathole and bore-cli are installed from crates.io into a scratch directory (not the repo).
# Usage: tools/bench/bridge-bench.sh [MIB_PER_STREAM] [SCRATCH]     (defaults 512, /tmp/hyrelay-bench-tunnels)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MIB="${1:-512}"; SCRATCH="${2:-/tmp/hyrelay-bench-tunnels}"
cd "$ROOT"
cargo build --quiet --release -p hyrelay -p hyrelay-bench
BIN="$ROOT/target/release/hyrelay"; TB="$ROOT/target/release/hyrelay-tcpbench"
mkdir -p "$SCRATCH"
[ -x "$SCRATCH/bin/rathole" ] || cargo install --quiet --root "$SCRATCH" rathole
[ -x "$SCRATCH/bin/bore" ] || cargo install --quiet --root "$SCRATCH" bore-cli
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout: $2 in $1" >&2; cat "$1" >&2; exit 1; }
run() { "$TB" run --addr "$1" --mib "$MIB" --label "$2" ${3:+--pids "$3"} | tee -a "$TMP/results.jsonl"; }

SINK=$(port)
"$TB" sink --listen "127.0.0.1:$SINK" > "$TMP/sink.log" 2>&1 & PIDS+=("$!")
wait_for "$TMP/sink.log" "sink ready"
run "127.0.0.1:$SINK" direct

# hyrelay: both ends dial out to the relay. Run twice: default runtime (one worker thread per
# core), then HYRELAY_WORKERS=1 for the three processes (fewer cross-thread wake-ups).
for W in "" 1; do
LABEL=hyrelay; [ -n "$W" ] && LABEL="hyrelay-workers-$W"
export HYRELAY_WORKERS=$W
"$BIN" up --data-dir "$TMP/relay" --http-port 0 --https-port 0 --management-port 0 > "$TMP/relay.log" 2>&1 & RELAY=$!; PIDS+=("$RELAY")
wait_for "$TMP/relay.log" "hyrelay ready"
CS=$(grep -m1 "plain (ws" "$TMP/relay.log" | sed 's/.*Endpoint=/Endpoint=/')
"$BIN" hyco create bench --data-dir "$TMP/relay" > /dev/null; sleep 1.2
LP=$(port)
HYRELAY_LOG=warn "$BIN" bridge -T "bench:p/127.0.0.1:$SINK" -x "$CS" > "$TMP/t.log" 2>&1 & T=$!; PIDS+=("$T")
HYRELAY_LOG=warn "$BIN" bridge -L "127.0.0.1:$LP/p:bench" -x "$CS" > "$TMP/l.log" 2>&1 & L=$!; PIDS+=("$L")
wait_for "$TMP/t.log" "bridge ready"; wait_for "$TMP/l.log" "bridge ready"; sleep 0.5
run "127.0.0.1:$LP" "$LABEL" "$RELAY,$T,$L"
kill "$L" "$T" "$RELAY" 2>/dev/null || true; wait "$L" "$T" "$RELAY" 2>/dev/null || true
rm -rf "$TMP/relay"
done
unset HYRELAY_WORKERS

# rathole: server (public side) + client (next to the service)
RC=$(port); RS=$(port)
cat > "$TMP/rs.toml" <<EOF
[server]
bind_addr = "127.0.0.1:$RC"
[server.services.bench]
token = "bench-token"
bind_addr = "127.0.0.1:$RS"
EOF
cat > "$TMP/rc.toml" <<EOF
[client]
remote_addr = "127.0.0.1:$RC"
[client.services.bench]
token = "bench-token"
local_addr = "127.0.0.1:$SINK"
EOF
"$SCRATCH/bin/rathole" "$TMP/rs.toml" > "$TMP/rs.log" 2>&1 & RSP=$!; PIDS+=("$RSP")
sleep 0.3
"$SCRATCH/bin/rathole" "$TMP/rc.toml" > "$TMP/rc.log" 2>&1 & RCP=$!; PIDS+=("$RCP")
sleep 1
run "127.0.0.1:$RS" rathole "$RSP,$RCP"

# bore: server (control port 7835) + local
BP=$(port)
"$SCRATCH/bin/bore" server --min-port "$BP" --max-port "$BP" > "$TMP/bs.log" 2>&1 & BSP=$!; PIDS+=("$BSP")
sleep 0.5
"$SCRATCH/bin/bore" local "$SINK" --to 127.0.0.1 --port "$BP" > "$TMP/bl.log" 2>&1 & BLP=$!; PIDS+=("$BLP")
sleep 1
run "127.0.0.1:$BP" bore "$BSP,$BLP"

python3 - "$TMP/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
d = next(r for r in rows if r["label"] == "direct")
print("\n| path | 1 stream GB/s (× direct) | 8 streams GB/s (× direct) | RTT p50 / p99 µs | conn/s (16 clients) | setup p50 µs (1 client) | tunnel CPU-s/GB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    cpu = "-" if r["cpu_s_per_gb"] is None else "%.2f" % r["cpu_s_per_gb"]
    print("| %s | %.2f (%.2f×) | %.2f (%.2f×) | %.0f / %.0f | %.0f | %.0f | %s |" % (
        r["label"], r["gbps_1"], r["gbps_1"] / d["gbps_1"], r["gbps_8"], r["gbps_8"] / d["gbps_8"],
        r["rtt_p50_us"], r["rtt_p99_us"], r["conn_per_s"], r["setup_p50_us"], cpu))
EOF
