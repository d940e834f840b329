#!/usr/bin/env bash
# Before/after for the service's own bill: two builds of cognito-authz and the trivial OK server,
# each behind its own Envoy (the same config as bench/run.sh's ext_authz variants), rounds
# alternating. Envoy alone on core 0, servers and wrk on core 1; each server's own CPU per request
# (utime + stime of every thread, from /proc). Prints a markdown table.
#
#   bench/ab.sh OLD NEW          # two cognito-authz binaries, e.g. a copy of
#                                # target/release/cognito-authz built at the old commit, and today's
#   ROUNDS=3 DURATION=8 CONNS=16 bench/ab.sh OLD NEW
set -euo pipefail
[ $# = 2 ] && [ -x "$1" ] && [ -x "$2" ] || { echo "usage: bench/ab.sh OLD-BINARY NEW-BINARY" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null || { echo "needs two cores and taskset" >&2; exit 2; }
DURATION=${DURATION:-8}   # shorter rounds than bench/lib.sh's default: three servers alternate
. bench/lib.sh
ENVOY=$(envoy_binary)
cargo build --release --locked --features bench-tools --example ok_server >&2
declare -A BINARY=([old]=$OLD [new]=$NEW) SPID
# One dev data dir (key and users), a copy for each build.
"$NEW" dev --data-dir "$WORK/dev" users >/dev/null
TOKEN=$("$NEW" dev --data-dir "$WORK/dev" token alice)
GRPC=
. bench/envoy.sh
for v in old new; do
  cp -r "$WORK/dev" "$WORK/dev-$v"
  port=$(free_port); http=$(free_port); admin=$(free_port)
  RUST_LOG=warn "${BINARY[$v]}" dev --data-dir "$WORK/dev-$v" --grpc-listen 127.0.0.1:$port \
    --http-listen 127.0.0.1:$http --admin-listen 127.0.0.1:$admin 2>"$WORK/authz-$v.log" &
  SPID[$v]=$!; PIDS+=($!)
  wait_http "http://127.0.0.1:$http/healthz"
  start_envoy "$v" "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE" "$port"
done
okport=$(free_port)
target/release/examples/ok_server 127.0.0.1:$okport & SPID[ok]=$!; PIDS+=($!)
start_envoy ok "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE" "$okport"
# Every variant allows the token (and warms the caches); both builds refuse a forged one.
for v in old new ok; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/")
  [ "$code" = 200 ] || { echo "$v answered $code to a valid token" >&2; exit 1; }
done
for v in old new; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer ${TOKEN}x" "http://127.0.0.1:${PORT[$v]}/")
  [ "$code" = 401 ] || { echo "$v answered $code to a forged token" >&2; exit 1; }
done

for v in old new ok; do taskset -a -p -c 0 "${EPID[$v]}" >/dev/null; taskset -a -p -c 1 "${SPID[$v]}" >/dev/null; done
RESULTS="$WORK/ab.tsv"   # variant round rps server_us envoy_us
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
  for v in old new ok; do
    e0=$(cpu_ticks "${EPID[$v]}"); s0=$(cpu_ticks "${SPID[$v]}")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/")
    e1=$(cpu_ticks "${EPID[$v]}"); s1=$(cpu_ticks "${SPID[$v]}")
    echo "$out" | grep -q Non-2xx && { echo "$v: non-2xx answers" >&2; exit 1; }
    echo "$out" | awk -v v="$v" -v r="$r" -v e=$((e1 - e0)) -v s=$((s1 - s0)) -v hz="$HZ" '
      /requests in/ {n=$1} /Requests\/sec/ {rps=$2}
      END {printf "%s\t%s\t%.0f\t%.2f\t%.2f\n", v, r, rps, s / hz / n * 1e6, e / hz / n * 1e6}' >>"$RESULTS"
  done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNS" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(dict)
for line in open(sys.argv[1]):
    v, r, rps, server, envoy = line.rstrip("\n").split("\t")
    rows[v][r] = (float(rps), float(server), float(envoy))
med = statistics.median
print(f"rounds={sys.argv[2]} duration={sys.argv[3]}s wrk -t1 -c{sys.argv[4]}; pinned; medians over rounds\n")
print("| build | req/s | server CPU µs/request | per round | Envoy CPU µs/request |")
print("|---|---:|---:|---|---:|")
for v, label in (("old", "old cognito-authz"), ("new", "new cognito-authz"), ("ok", "trivial OK server")):
    xs = rows[v].values()
    print(f"| {label} | {med([x[0] for x in xs]):.0f} | {med([x[1] for x in xs]):.2f} | "
          f"{', '.join(f'{x[1]:.1f}' for x in xs)} | {med([x[2] for x in xs]):.1f} |")
print("\n| server CPU per request, per round then median | ratio | µs | rounds |")
print("|---|---:|---:|---|")
for a, b in (("new", "old"), ("old", "ok"), ("new", "ok")):
    both = [(rows[a][r][1], rows[b][r][1]) for r in rows[a] if r in rows[b]]
    print(f"| {a} / {b} | {med([x / y for x, y in both]):.2f} | {med([x - y for x, y in both]):+.2f} | "
          f"{', '.join(f'{x / y:.2f}' for x, y in both)} |")
PY
