#!/usr/bin/env bash
# Load benchmark, in ONE run with alternating rounds, on this machine:
#   A. Envoy, no auth (the ceiling)                B. Envoy + jwt_authn (the peer)
#   C. Envoy + jwt_authn with jwt_cache_config     D. Envoy + ext_authz -> cognito-authz (MFA gate on, warm)
#   E. h2load straight at Check (warm)             F. h2load at a trivial tonic server that answers OK
#   D'. Envoy + ext_authz -> that trivial server (the ceiling of any ext_authz server)
#   D+m. D with --emit-claims-metadata        D+s. D with --envoy-strips-identity-headers
#   P. pinned: Envoy alone on core 0 (taskset), wrk and the servers on core 1; Envoy's own CPU per
#      request (utime+stime from /proc) for A, B, C, D', D, D+m, D+s, and the ext_authz server's
#      own CPU per request for D', D, D+m, D+s (issue 31: cognito-authz against the trivial server)
#   G. cold path: wrk through D rotating 10,000 distinct tokens (server CPU per request)
#   H. memory: resident set with 100,000 cached tokens (through real Checks) + 100,000 revocations
# Same Envoy build (--concurrency 1), same RS256 key, same Cognito-shaped token, direct_response
# routes (no upstream limits the figures). Prints a markdown report; see BENCHMARKS.md.
#
#   bench/run.sh                 # defaults: ROUNDS=3 DURATION=10 CONNS=16 PINNED=1
#   ROUNDS=5 DURATION=20 bench/run.sh
#   PINNED=0 bench/run.sh        # without P (it needs two cores and taskset)
#   ENVOY_WORKERS=2 CONNS=64 bench/run.sh   # at scale (issue 31): two Envoy workers, 64 connections
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
H2_REQUESTS=${H2_REQUESTS:-200000}
PINNED=${PINNED:-1}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need h2load; then
  apt-get update -qq && apt-get install -y -qq wrk nghttp2-client >/dev/null
fi
ENVOY=$(envoy_binary)
cargo build --release --locked --features bench-tools --bin cognito-authz --example check_body --example ok_server >&2
BIN=target/release/cognito-authz


# --- cognito-authz (dev issuer: an RS256 key of its own, Cognito-shaped tokens) ---------------
GRPC=$(free_port); HTTP=$(free_port); ADMIN=$(free_port)
DEV="$WORK/dev"
"$BIN" dev --data-dir "$DEV" users >/dev/null            # creates the key and users
# 100,000 revocations on file before start (what a busy logout history looks like).
python3 - "$DEV/revocations.jsonl" <<'PY'
import json, sys, time, uuid
until = int(time.time()) + 30 * 86400
with open(sys.argv[1], "w") as f:
    for i in range(50_000):
        f.write(json.dumps({"kind": "jti", "id": str(uuid.uuid4()), "until": until}) + "\n")
        f.write(json.dumps({"kind": "origin", "id": str(uuid.uuid4()), "until": until}) + "\n")
PY
RUST_LOG=warn "$BIN" dev --data-dir "$DEV" --grpc-listen 127.0.0.1:$GRPC --http-listen 127.0.0.1:$HTTP \
  --admin-listen 127.0.0.1:$ADMIN 2>"$WORK/authz.log" &
AUTHZ_PID=$!; PIDS+=($AUTHZ_PID)
wait_http "http://127.0.0.1:$HTTP/healthz"
JWKS=$(curl -s "http://127.0.0.1:$HTTP/.well-known/jwks.json")
TOKEN=$("$BIN" dev --data-dir "$DEV" token alice)
# The same server with each answer setting, on copies of the data dir (same key, same users).
declare -A FLAGGED=([metadata]=--emit-claims-metadata [strips]=--envoy-strips-identity-headers)
declare -A FPORT FPID
for f in metadata strips; do
  cp -r "$DEV" "$WORK/dev-$f"
  FPORT[$f]=$(free_port); fhttp=$(free_port); fadmin=$(free_port)
  RUST_LOG=warn "$BIN" dev --data-dir "$WORK/dev-$f" --grpc-listen 127.0.0.1:${FPORT[$f]} \
    --http-listen 127.0.0.1:$fhttp --admin-listen 127.0.0.1:$fadmin "${FLAGGED[$f]}" 2>"$WORK/authz-$f.log" &
  FPID[$f]=$!; PIDS+=($!)
  wait_http "http://127.0.0.1:$fhttp/healthz"
done
ISSUER=https://cognito-authz.invalid/dev-pool
OKPORT=$(free_port)
target/release/examples/ok_server 127.0.0.1:$OKPORT & OK_PID=$!; PIDS+=($!)
target/release/examples/check_body "$TOKEN" mfa "$WORK/check.bin"

# --- the four Envoys --------------------------------------------------------------------------
. bench/envoy.sh
jwt_filter() { # cache-yaml
  cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                cognito:
                  issuer: $ISSUER
                  local_jwks: { inline_string: '$JWKS' }
                  forward: true
                  claim_to_headers: [{ header_name: x-user-id, claim_name: sub }, { header_name: x-username, claim_name: username }]
$1
              rules: [{ match: { prefix: / }, requires: { provider_name: cognito } }]
YAML
}
start_envoy noauth "" ""
start_envoy jwt_authn "$(jwt_filter '')" ""
start_envoy jwt_authn_cached "$(jwt_filter '                  jwt_cache_config: { jwt_cache_size: 1000 }')" ""
start_envoy cognito_authz "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE"
start_envoy ok_server_ext_authz "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE" "$OKPORT"
start_envoy cognito_authz_metadata "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE" "${FPORT[metadata]}"
start_envoy cognito_authz_strips "$EXTAUTHZ_FILTER" "$EXTAUTHZ_ROUTE" "${FPORT[strips]}"

# Sanity: every variant allows the token, and the authenticated ones refuse a forged one.
for v in noauth jwt_authn jwt_authn_cached cognito_authz cognito_authz_metadata cognito_authz_strips; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/")
  [ "$code" = 200 ] || { echo "$v answered $code to a valid token" >&2; exit 1; }
done
for v in jwt_authn jwt_authn_cached cognito_authz cognito_authz_metadata cognito_authz_strips; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer ${TOKEN}x" "http://127.0.0.1:${PORT[$v]}/")
  [ "$code" = 401 ] || { echo "$v answered $code to a forged token" >&2; exit 1; }
done

# --- rounds -----------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"   # variant round rps p50_ms p99_ms
wrk_run() { # variant round
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$1]}/")
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$1: $non2xx non-2xx answers" >&2; exit 1; }
  echo "$out" | awk -v v="$1" -v r="$2" '
    function ms(x) { if (x ~ /us$/) return x/1000; if (x ~ /ms$/) return x+0; if (x ~ /s$/) return x*1000; return x }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} /Requests\/sec/ {rps=$2}
    END {printf "%s\t%s\t%.0f\t%.3f\t%.3f\n", v, r, rps, p50, p99}' >>"$RESULTS"
}
H2_CPU="$WORK/h2cpu.tsv"   # variant round server_us_per_request
: >"$H2_CPU"
h2_run() { # variant round port server-pid
  local out before after; before=$(cpu_ticks "$4")
  out=$(h2load -n "$H2_REQUESTS" -c1 -m64 -t1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/check.bin" "http://127.0.0.1:$3/envoy.service.auth.v3.Authorization/Check")
  after=$(cpu_ticks "$4")
  awk -v v="$1" -v r="$2" -v t=$((after - before)) -v hz="$HZ" -v n="$H2_REQUESTS" \
    'BEGIN {printf "%s\t%s\t%.2f\n", v, r, t / hz / n * 1e6}' >>"$H2_CPU"
  echo "$out" | awk -v v="$1" -v r="$2" '
    function ms(x) { if (x ~ /us$/) return x/1000; if (x ~ /ms$/) return x+0; if (x ~ /s$/) return x*1000; return x }
    /^finished in/ {rps=$4} /^time for request:/ {mean=ms($6)} /2xx/ {ok=$0}
    END {printf "%s\t%s\t%.0f\t%.3f\t-\n", v, r, rps, mean}' >>"$RESULTS"
}
# Warm the caches (token cache, MFA cache) once.
for v in cognito_authz cognito_authz_metadata cognito_authz_strips; do
  curl -s -o /dev/null -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/"
done
for r in $(seq "$ROUNDS"); do
  for v in noauth jwt_authn cognito_authz jwt_authn_cached ok_server_ext_authz cognito_authz_metadata \
    cognito_authz_strips; do wrk_run "$v" "$r"; done
  h2_run check_cognito_authz "$r" "$GRPC" "$AUTHZ_PID"
  h2_run check_ok_server "$r" "$OKPORT" "$OK_PID"
done

# --- P. pinned: Envoy alone on core 0, everything else on core 1; Envoy's CPU per request, and
# the ext_authz server's own (utime + stime of every thread, from /proc) ---------------------------
PINNED_TSV="$WORK/pinned.tsv"   # variant round rps envoy_us_per_request server_us_per_request
: >"$PINNED_TSV"
PINNED_VARIANTS="noauth jwt_authn jwt_authn_cached ok_server_ext_authz cognito_authz cognito_authz_metadata cognito_authz_strips"
declare -A SERVER_PID=([ok_server_ext_authz]=$OK_PID [cognito_authz]=$AUTHZ_PID
  [cognito_authz_metadata]=${FPID[metadata]} [cognito_authz_strips]=${FPID[strips]})
if [ "$PINNED" = 1 ] && [ "$(nproc)" -ge 2 ] && need taskset; then
  for v in $PINNED_VARIANTS; do taskset -a -p -c 0 "${EPID[$v]}" >/dev/null; done
  for p in $AUTHZ_PID $OK_PID "${FPID[@]}"; do taskset -a -p -c 1 "$p" >/dev/null; done
  for r in $(seq "$ROUNDS"); do
    for v in $PINNED_VARIANTS; do
      server=${SERVER_PID[$v]:-}
      before=$(cpu_ticks "${EPID[$v]}"); sbefore=$([ -n "$server" ] && cpu_ticks "$server" || echo 0)
      out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/")
      after=$(cpu_ticks "${EPID[$v]}"); safter=$([ -n "$server" ] && cpu_ticks "$server" || echo 0)
      echo "$out" | grep -q Non-2xx && { echo "pinned $v: non-2xx answers" >&2; exit 1; }
      echo "$out" | awk -v v="$v" -v r="$r" -v t=$((after - before)) -v st=$((safter - sbefore)) -v hz="$HZ" \
        -v has="${server:+1}" '
        /requests in/ {n=$1} /Requests\/sec/ {rps=$2}
        END {printf "%s\t%s\t%.0f\t%.2f\t%s\n", v, r, rps, t / hz / n * 1e6, has ? sprintf("%.2f", st / hz / n * 1e6) : "-"}' >>"$PINNED_TSV"
    done
  done
  for p in "${EPID[@]}" $AUTHZ_PID $OK_PID "${FPID[@]}"; do taskset -a -p -c "0-$(($(nproc) - 1))" "$p" >/dev/null; done
fi

# Direct Check answers really are allows (h2load cannot read grpc-status): one call through the
# service's own client.
"$BIN" check --addr "http://127.0.0.1:$GRPC" --access mfa --token "$TOKEN" | head -1 >"$WORK/check.txt"
grep -qx allow "$WORK/check.txt" || { echo "direct Check did not allow" >&2; exit 1; }

# --- cold path: distinct tokens through Envoy, server CPU per request ---------------------------
# 100,000 tokens, signed on both cores (RSA signing is the slow part of this script).
"$BIN" dev --data-dir "$DEV" token alice --count 50000 >"$WORK/tokens-a.txt" &
SIGNER=$!
"$BIN" dev --data-dir "$DEV" token alice --count 50000 >"$WORK/tokens-b.txt"
wait $SIGNER
cat "$WORK/tokens-a.txt" "$WORK/tokens-b.txt" >"$WORK/tokens100k.txt"
head -10000 "$WORK/tokens100k.txt" >"$WORK/tokens10k.txt"
cat >"$WORK/rotate.lua" <<'LUA'
local tokens, i = {}, 0
function init(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", "/", { ["authorization"] = "Bearer " .. tokens[i] })
end
LUA
cold_run() { # label pid port tokens seconds
  local before after out reqs
  before=$(cpu_ticks "$2")
  out=$(wrk -t1 -c"$CONNS" -d"${5}s" -s "$WORK/rotate.lua" "http://127.0.0.1:$3/" -- "$4")
  after=$(cpu_ticks "$2")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$out" | grep -q Non-2xx && { echo "$1: non-2xx answers" >&2; exit 1; }
  awk -v l="$1" -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%s\t%d\t%.1f\n", l, n, t / hz / n * 1e6}'
}
COLD="$WORK/cold.tsv"
# A fresh server: every one of the 10,000 tokens is verified once (RS256), then hits.
kill $AUTHZ_PID; wait $AUTHZ_PID 2>/dev/null || true
RUST_LOG=warn "$BIN" dev --data-dir "$DEV" --grpc-listen 127.0.0.1:$GRPC --http-listen 127.0.0.1:$HTTP \
  --admin-listen 127.0.0.1:$ADMIN 2>>"$WORK/authz.log" &
AUTHZ_PID=$!; PIDS+=($AUTHZ_PID)
wait_http "http://127.0.0.1:$HTTP/healthz"
# Cold: the tail of the 100,000 (never seen) for 3 s, so every request verifies RS256.
tail -50000 "$WORK/tokens100k.txt" >"$WORK/cold.txt"
cold_run "cognito_authz: distinct never-seen tokens (cold, RS256 each)" $AUTHZ_PID "${PORT[cognito_authz]}" "$WORK/cold.txt" 3 >>"$COLD"
cold_run "trivial OK server, same traffic" "$OK_PID" "${PORT[ok_server_ext_authz]}" "$WORK/cold.txt" 3 >>"$COLD"
cold_run "cognito_authz: 10,000 tokens rotating, first pass" $AUTHZ_PID "${PORT[cognito_authz]}" "$WORK/tokens10k.txt" 2 >>"$COLD"
cold_run "cognito_authz: 10,000 tokens rotating, cached" $AUTHZ_PID "${PORT[cognito_authz]}" "$WORK/tokens10k.txt" 5 >>"$COLD"

# --- memory: 100,000 cached tokens + 100,000 revocations --------------------------------------
wrk -t1 -c"$CONNS" -d60s -s "$WORK/rotate.lua" "http://127.0.0.1:${PORT[cognito_authz]}/" -- "$WORK/tokens100k.txt" >/dev/null &
WRK=$!
# Stop once every token has been seen once (the cache metric counts them).
for _ in $(seq 120); do
  n=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^cognito_authz_decisions_total\{outcome="allow",reason="none",mode="enforce",transport="grpc"\}/ {print $2}')
  [ "${n:-0}" -ge 110000 ] && break; sleep 0.5
done
kill $WRK 2>/dev/null || true; wait $WRK 2>/dev/null || true
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$AUTHZ_PID/status")

# --- report -----------------------------------------------------------------------------------
python3 - "$RESULTS" "$COLD" "$RSS_KB" "$ROUNDS" "$DURATION" "$CONNS" "$PINNED_TSV" "$H2_CPU" "$ENVOY_WORKERS" <<'PY'
import statistics, sys
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = defaultdict(list)
for v, r, rps, p50, p99 in rows:
    by[v].append((int(r), float(rps), float(p50), None if p99 == "-" else float(p99)))
med = lambda xs: statistics.median(xs)
print(f"rounds={sys.argv[4]} duration={sys.argv[5]}s wrk -t1 -c{sys.argv[6]}; Envoy --concurrency {sys.argv[9]}; "
      "h2load -c1 -m64; medians over rounds\n")
print("| variant | req/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
for v in ["noauth", "jwt_authn", "jwt_authn_cached", "cognito_authz", "ok_server_ext_authz", "cognito_authz_metadata",
          "cognito_authz_strips", "check_cognito_authz", "check_ok_server"]:
    xs = by[v]
    p99 = [x[3] for x in xs if x[3] is not None]
    print(f"| {v} | {med([x[1] for x in xs]):.0f} | {med([x[2] for x in xs]):.3f} | {med(p99):.3f} |" if p99 else
          f"| {v} | {med([x[1] for x in xs]):.0f} | {med([x[2] for x in xs]):.3f} (mean) | - |")
def ratios(a, b):
    pairs = {r: rps for r, rps, *_ in by[b]}
    return [rps / pairs[r] for r, rps, *_ in by[a] if r in pairs]
def p99ratios(a, b):
    pairs = {r: p for r, _, _, p in by[b]}
    return [p / pairs[r] for r, _, _, p in by[a] if r in pairs]
print("\n| ratio (per round, then median) | value | rounds |")
print("|---|---:|---|")
for label, a, b in [("cognito_authz / jwt_authn req/s", "cognito_authz", "jwt_authn"),
                    ("cognito_authz / jwt_authn_cached req/s", "cognito_authz", "jwt_authn_cached"),
                    ("check_cognito_authz / check_ok_server req/s", "check_cognito_authz", "check_ok_server"),
                    ("cognito_authz / ok_server_ext_authz req/s", "cognito_authz", "ok_server_ext_authz"),
                    ("cognito_authz_metadata / cognito_authz req/s", "cognito_authz_metadata", "cognito_authz"),
                    ("cognito_authz_strips / cognito_authz req/s", "cognito_authz_strips", "cognito_authz"),
                    ("ok_server_ext_authz / jwt_authn req/s", "ok_server_ext_authz", "jwt_authn"),
                    ("jwt_authn / noauth req/s", "jwt_authn", "noauth"),
                    ("cognito_authz / noauth req/s", "cognito_authz", "noauth")]:
    rs = ratios(a, b)
    print(f"| {label} | {med(rs):.2f} | {', '.join(f'{x:.2f}' for x in rs)} |")
for a, b in [("cognito_authz", "jwt_authn"), ("cognito_authz", "ok_server_ext_authz")]:
    rs = p99ratios(a, b)
    print(f"| {a} / {b} p99 | {med(rs):.2f} | {', '.join(f'{x:.2f}' for x in rs)} |")
h2 = defaultdict(dict)
for l in open(sys.argv[8]):
    v, r, us = l.rstrip("\n").split("\t")
    h2[v][r] = float(us)
if h2:
    print("\n| HTTP/2 streams multiplexed on one connection (h2load straight at Check) | server CPU µs/request | per round |")
    print("|---|---:|---|")
    for v, rounds in h2.items():
        print(f"| {v} | {med(list(rounds.values())):.1f} | {', '.join(f'{x:.1f}' for x in rounds.values())} |")
    both = [(h2["check_cognito_authz"][r], h2["check_ok_server"][r]) for r in h2["check_cognito_authz"]
            if r in h2["check_ok_server"]]
    if both:
        rs = [x / y for x, y in both]
        print(f"| ratio, per round then median | **{med(rs):.2f}** | {', '.join(f'{x:.2f}' for x in rs)} |")
pinned = defaultdict(dict)
for l in open(sys.argv[7]):
    v, r, rps, us, server = l.rstrip("\n").split("\t")
    pinned[v][r] = (float(rps), float(us), None if server == "-" else float(server))
if pinned:
    print("\n| pinned (Envoy alone on core 0) | req/s | Envoy CPU µs/request | per round | server CPU µs/request | per round |")
    print("|---|---:|---:|---|---:|---|")
    for v, rounds in pinned.items():
        us = [x[1] for x in rounds.values()]
        srv = [x[2] for x in rounds.values() if x[2] is not None]
        server = f"{med(srv):.1f} | {', '.join(f'{x:.1f}' for x in srv)}" if srv else "- | -"
        print(f"| {v} | {med([x[0] for x in rounds.values()]):.0f} | {med(us):.1f} | {', '.join(f'{x:.1f}' for x in us)} | {server} |")
    print("\n| pinned: the server's own CPU per request, per round, then median | ratio | µs more | rounds (ratio) |")
    print("|---|---:|---:|---|")
    for a, b in [("cognito_authz", "ok_server_ext_authz"), ("cognito_authz_metadata", "ok_server_ext_authz"),
                 ("cognito_authz_strips", "ok_server_ext_authz")]:
        both = [(pinned[a][r][2], pinned[b][r][2]) for r in pinned[a] if r in pinned[b]]
        if both:
            rs = [x / y for x, y in both]
            print(f"| {a} / {b} | {med(rs):.2f} | {med([x - y for x, y in both]):.1f} | {', '.join(f'{x:.2f}' for x in rs)} |")
    print("\n| pinned ratio (Envoy CPU per request, per round, then median) | value | rounds |")
    print("|---|---:|---|")
    for a, b in [("cognito_authz", "ok_server_ext_authz"), ("ok_server_ext_authz", "jwt_authn"),
                 ("cognito_authz", "jwt_authn"), ("cognito_authz", "jwt_authn_cached"),
                 ("cognito_authz_metadata", "cognito_authz"), ("cognito_authz_strips", "cognito_authz")]:
        rs = [pinned[a][r][1] / pinned[b][r][1] for r in pinned[a] if r in pinned[b]]
        if rs:
            print(f"| {a} / {b} | {med(rs):.2f} | {', '.join(f'{x:.2f}' for x in rs)} |")
print("\n| cold path (through Envoy) | requests | server CPU µs/request |")
print("|---|---:|---:|")
for l in open(sys.argv[2]):
    label, n, us = l.rstrip("\n").split("\t")
    print(f"| {label} | {n} | {us} |")
print(f"\nresident memory with 100,000 cached tokens + 100,000 revocations: {int(sys.argv[3]) / 1024:.1f} MiB")
PY
