#!/usr/bin/env bash
# WCF request/reply through the bridge, as a ratio to the same Mono client calling the same
# Mono service directly, in the same run:
#   direct:   Mono client → Mono service
#   relayed:  Mono client → hyrelay bridge --wcf-local → hyrelay relay → hyrelay bridge --wcf → Mono service
# Both Mono ends run with MONO_WCF_NOSLEEP=1 (tools/peers/mono-wcf/NOTES.md: the stock runtime
# sleeps 50 ms per received message, which would hide every other cost).
# Usage: tools/bench/wcf-bench.sh [N_CALLS] [BASE_PORT]     (defaults 5000, 21400)
# Prints the client's SUMMARY lines and a table of ratios. Not a test: numbers vary run to run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${1:-5000}"; BASE="${2:-21400}"
BIN="${HYRELAY_BIN:-$ROOT/target/release/hyrelay}"
PEER="$ROOT/tools/peers/mono-wcf"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p hyrelay)
[ -e "$PEER/bin/CreditCheckClient.exe" ] || "$PEER/build.sh"
export MONO_WCF_NOSLEEP=1
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "timeout waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }

"$PEER/run-service.sh" "$BASE" tcp > "$TMP/svc.log" 2>&1 & PIDS+=("$!")
"$BIN" up --data-dir "$TMP/relay" --http-port $((BASE + 10)) --https-port $((BASE + 11)) --management-port 0 > "$TMP/relay.log" 2>&1 & PIDS+=("$!")
wait_for "$TMP/svc.log" READY; wait_for "$TMP/relay.log" "hyrelay ready"
CS=$(grep -m1 "plain (ws" "$TMP/relay.log" | sed 's/.*Endpoint=/Endpoint=/')
"$BIN" hyco create cc --data-dir "$TMP/relay" > /dev/null; sleep 1.2
HYRELAY_LOG=warn "$BIN" bridge -x "$CS" --wcf "cc=net.tcp://127.0.0.1:$BASE/CreditCheck" > "$TMP/sb.log" 2>&1 & PIDS+=("$!")
HYRELAY_LOG=warn "$BIN" bridge -x "$CS" --wcf-local "127.0.0.1:$((BASE + 20))/CreditCheck=cc" > "$TMP/cb.log" 2>&1 & PIDS+=("$!")
wait_for "$TMP/sb.log" "bridge ready"; wait_for "$TMP/cb.log" "bridge ready"; sleep 0.5

run() { # label port concurrency
    local calls=$((N / $3))
    timeout 900 "$PEER/run-client.sh" 127.0.0.1 "$2" "$calls" --op check --concurrency "$3" --warmup 200 --quiet \
        | grep -E "SUMMARY|FAILED" | sed "s/^/$1 c=$3: /"
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
printf '| clients | direct calls/s | relayed calls/s | ratio | direct p50/p99 ms | relayed p50/p99 ms |\n|---:|---:|---:|---:|---|---|\n' > "$TMP/table"
# One client first: a fresh Mono service crosses its first concurrent sessions (a Mono bug,
# tools/peers/mono-wcf/NOTES.md 8.4), so the four-client pass must meet a warmed service.
for c in 1 4; do
    d=$(run direct "$BASE" "$c"); r=$(run relayed $((BASE + 20)) "$c")
    echo "$d"; echo "$r"
    dr=$(echo "$d" | field rate); rr=$(echo "$r" | field rate)
    printf '| %s | %s | %s | %.2f | %s / %s | %s / %s |\n' "$c" "$dr" "$rr" "$(echo "$rr / $dr" | bc -l)" \
        "$(echo "$d" | field p50)" "$(echo "$d" | field p99)" "$(echo "$r" | field p50)" "$(echo "$r" | field p99)" >> "$TMP/table"
done
echo; cat "$TMP/table"
