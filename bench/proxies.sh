#!/usr/bin/env bash
# The HTTP authorization path under load, in ONE run with alternating rounds, on this machine:
#   N0. nginx alone (a `return 200` location: the ceiling)
#   N1. nginx + auth_request to a trivial 200 endpoint (the ceiling of any auth_request server)
#   N2. nginx + auth_request to cognito-authz's /auth-request (MFA gate on, token cache warm)
#   C0. Caddy alone                          C2. Caddy + forward_auth to cognito-authz
#   E1. the shipped Envoy (ext_authz over gRPC) in front of N0's file   E2. the same Envoy with
#       envoy/ext-authz-http.yaml spliced in (ext_authz over HTTP, http_service)
# One nginx worker, one Caddy, wrk -t1; the same RS256 dev token every request (a warm decision).
# Prints a markdown table; see BENCHMARKS.md.
#
#   bench/proxies.sh                         # defaults: ROUNDS=3 DURATION=10 CONNS=16
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -x /usr/sbin/nginx ] && command -v caddy >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx caddy >/dev/null; pkill -x nginx || true; pkill -x caddy || true; }
cargo build --release --locked --bin cognito-authz >&2
BIN=target/release/cognito-authz


GRPC=$(free_port); HTTP=$(free_port); ADMIN=$(free_port); AUTHZ=$(free_port)
"$BIN" dev --data-dir "$WORK/dev" users >/dev/null
RUST_LOG=warn "$BIN" dev --data-dir "$WORK/dev" --grpc-listen 127.0.0.1:$GRPC --http-listen 127.0.0.1:$HTTP \
  --admin-listen 127.0.0.1:$ADMIN --authz-http-listen 127.0.0.1:$AUTHZ 2>"$WORK/authz.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$HTTP/healthz"
TOKEN=$("$BIN" dev --data-dir "$WORK/dev" token alice)
# The token's decision, as the proxies will ask it (an allow; checked before timing anything).
ANSWER=$(curl -s -o /dev/null -w '%{http_code}' -H "x-original-method: GET" -H "x-original-uri: /bench" \
  -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$AUTHZ/auth-request")
[ "$ANSWER" = 200 ] || { echo "the benchmark token is not allowed ($ANSWER)" >&2; exit 1; }

mkdir -p "$WORK/www"; echo ok > "$WORK/www/bench"
# nginx workers run as nobody: they must be able to read the file.
chmod a+rx "$WORK" "$WORK/www"; chmod a+r "$WORK/www/bench"
N0=$(free_port); N1=$(free_port); N2=$(free_port); OK=$(free_port); C0=$(free_port); C2=$(free_port)
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
events { worker_connections 1024; }
http {
  access_log off;
  upstream authz { server 127.0.0.1:$AUTHZ; keepalive 32; }
  upstream trivial { server 127.0.0.1:$OK; keepalive 32; }
  server { listen 127.0.0.1:$OK; location / { return 200; } }
  # Every variant serves the same static file (a return directive would answer before auth_request runs).
  server { listen 127.0.0.1:$N0; root $WORK/www; }
  server {
    listen 127.0.0.1:$N1;
    root $WORK/www;
    location = /_auth { internal; proxy_pass http://trivial; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length ""; }
    location / { auth_request /_auth; }
  }
  server {
    listen 127.0.0.1:$N2;
    location = /_auth { internal; proxy_pass http://authz/auth-request; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri; proxy_set_header X-Original-Method \$request_method; }
    root $WORK/www;
    location / {
      auth_request /_auth;
      auth_request_set \$uid \$upstream_http_x_user_id;
      add_header X-Seen-User \$uid;
    }
  }
}
NGINX
/usr/sbin/nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" -g "daemon off; pid $WORK/nginx.pid;" &
PIDS+=($!)
cat > "$WORK/Caddyfile" <<CADDY
{
	admin off
	auto_https off
}
http://127.0.0.1:$C0 {
	respond "ok" 200
}
http://127.0.0.1:$C2 {
	route {
		forward_auth 127.0.0.1:$AUTHZ {
			uri /forward-auth
			copy_headers X-User-Id
		}
		respond "ok" 200
	}
}
CADDY
HOME="$WORK" XDG_DATA_HOME="$WORK" XDG_CONFIG_HOME="$WORK" caddy run --config "$WORK/Caddyfile" --adapter caddyfile \
  2>"$WORK/caddy.log" &
PIDS+=($!)
# --- Envoy: the shipped envoy.yaml, its app cluster at N0's static file; gRPC, and http_service ---
ENVOY=$(envoy_binary)
E1=$(free_port); E2=$(free_port); EA1=$(free_port); EA2=$(free_port)
envoy_yaml() { # listen admin authz-port http-service(0|1) -> the shipped config, ports changed
  .venv/bin/python - "$@" "$HTTP" "$N0" <<'PY'
import pathlib, sys
listen, admin, authz, http_service, module, app = sys.argv[1:7]
text = pathlib.Path("envoy/envoy.yaml").read_text()
for old, new in (("address: 0.0.0.0, port_value: 10000", f"address: 127.0.0.1, port_value: {listen}"),
                 ("port_value: 9901", f"port_value: {admin}"), ("port_value: 9001", f"port_value: {authz}"),
                 ("port_value: 8080", f"port_value: {module}"), ("port_value: 8000", f"port_value: {app}")):
    assert text.count(old) == 1, old
    text = text.replace(old, new)
if http_service == "1":
    block = "".join(l + "\n" for l in pathlib.Path("envoy/ext-authz-http.yaml").read_text().splitlines()
                    if not l.startswith("#"))
    start = text.index("                      grpc_service:\n")
    end = text.index("                        timeout: 2s\n", start) + len("                        timeout: 2s\n")
    text = text[:start] + block + text[end:]
    start = text.index("      typed_extension_protocol_options:\n")
    end = text.index("            http2_protocol_options: {}\n", start) + len("            http2_protocol_options: {}\n")
    text = text[:start] + text[end:]
print(text)
PY
}
envoy_yaml "$E1" "$EA1" "$GRPC" 0 > "$WORK/envoy-grpc.yaml"
envoy_yaml "$E2" "$EA2" "$AUTHZ" 1 > "$WORK/envoy-http.yaml"
"$ENVOY" -c "$WORK/envoy-grpc.yaml" --concurrency 1 --base-id 71 -l warn 2>"$WORK/envoy-grpc.log" & PIDS+=($!)
"$ENVOY" -c "$WORK/envoy-http.yaml" --concurrency 1 --base-id 72 -l warn 2>"$WORK/envoy-http.log" & PIDS+=($!)
for a in $EA1 $EA2; do
  for _ in $(seq 100); do [ "$(curl -s "http://127.0.0.1:$a/ready")" = LIVE ] && break; sleep 0.1; done
done
for p in $N0 $N1 $N2 $C0 $C2 $E1 $E2; do wait_http "http://127.0.0.1:$p/bench" any; done
# Every variant must answer 200 through the proxy with the token (N2 and C2 decided by cognito-authz).
for p in $N0 $N1 $N2 $C0 $C2 $E1 $E2; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$p/bench")
  [ "$code" = 200 ] || { echo "port $p answered $code" >&2; exit 1; }
done
# Positive and negative control: without the token, the trivial endpoint still allows, the service refuses.
for pair in "$N1 200" "$N2 401" "$C2 401" "$E1 401" "$E2 401"; do
  set -- $pair
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/bench")
  [ "$code" = "$2" ] || { echo "without a token, port $1 answered $code, not $2" >&2; exit 1; }
done
seen=$(curl -s -D - -o /dev/null -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$N2/bench" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-seen-user" {print $2}')
[ -n "$seen" ] || { echo "nginx did not receive the identity header" >&2; exit 1; }

rps() { # port -> requests/s (wrk, the token header)
  wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$1/bench" \
    | awk '/Requests\/sec/ {print $2}'
}
declare -A SUM
NAMES=(N0 N1 N2 C0 C2 E1 E2)
declare -A PORT=([N0]=$N0 [N1]=$N1 [N2]=$N2 [C0]=$C0 [C2]=$C2 [E1]=$E1 [E2]=$E2)
for r in $(seq "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    v=$(rps "${PORT[$n]}"); echo "round $r $n $v req/s" >&2
    SUM[$n]=$(python3 -c "print(${SUM[$n]:-0} + $v)")
  done
done
avg() { python3 -c "print(round(${SUM[$1]} / $ROUNDS))"; }
ratio() { python3 -c "print(f'{${SUM[$1]} / ${SUM[$2]}:.2f}')"; }
echo "| variant | req/s (mean of $ROUNDS rounds, ${DURATION}s, wrk -t1 -c$CONNS) | vs alone | vs trivial auth |"
echo "|---|---|---|---|"
echo "| N0 nginx alone | $(avg N0) | 1.00 | |"
echo "| N1 nginx + auth_request to a trivial 200 | $(avg N1) | $(ratio N1 N0) | 1.00 |"
echo "| N2 nginx + auth_request to cognito-authz | $(avg N2) | $(ratio N2 N0) | $(ratio N2 N1) |"
echo "| C0 Caddy alone | $(avg C0) | 1.00 | |"
echo "| C2 Caddy + forward_auth to cognito-authz | $(avg C2) | $(ratio C2 C0) | |"
echo "| E1 Envoy + ext_authz over gRPC to cognito-authz | $(avg E1) | | 1.00 (vs E1) |"
echo "| E2 Envoy + ext_authz over HTTP (http_service) to cognito-authz | $(avg E2) | | $(ratio E2 E1) (vs E1) |"
