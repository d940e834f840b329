#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (Python peers into ./.venv),
# builds, runs the Rust unit and integration tests, then the end-to-end tests against a real
# Envoy and a real Cognito emulator (moto), and the demo in a real browser (Chromium), one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests write to a temporary directory (Rust's `temp_dir`, pytest's `tmp_path`, the peers'
# logs and data) goes under one directory of this run: removed when the run passes, kept (and named)
# when it fails, for its logs. Runs left in /tmp once filled a disk and failed CI.
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/cognito-authz-run.XXXXXX")"
export TMPDIR="$run_tmp"
trap 'status=$?; if [ "$status" -eq 0 ]; then rm -rf "$run_tmp"; else echo "test state kept in $run_tmp" >&2; fi' EXIT

venv=.venv
if ! [ -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt

# Redis for the replica tests, and its sentinel for the failover tests (Debian's packages; CI runs
# as root). Installing them may start their system services: stopped at once, since each test runs
# its own on loopback.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v redis-sentinel >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-sentinel >/dev/null
  pkill -x redis-server || true
  pkill -x redis-sentinel || true
fi

# nginx and Caddy for the HTTP authorization tests (Debian's packages). Installing them may start
# their system services on port 80: stopped at once, since each test runs its own on loopback.
if ! [ -x /usr/sbin/nginx ] || ! command -v caddy >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx caddy >/dev/null
  pkill -x nginx || true
  pkill -x caddy || true
fi

# Chromium for the browser test (Debian's package: no test tool may download a browser).
if ! [ -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

# oidc-provider (a certified OpenID provider) for the authorization-code tests, and cognito-local
# (the Cognito emulator many teams run) for the emulator tests.
(cd tests/e2e/oidc && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/e2e/cognito-local && npm ci --no-audit --no-fund --loglevel=error)
# playwright-core drives that Chromium through the demo; it ships and downloads no browser.
(cd tests/e2e/browser && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked
cargo test --locked
# Nothing rots unseen. The benchmarks are built and each run once (`--test`), so the outcome each
# asserts before timing it (an "allow" allows) is checked too; in the dev profile `cargo test` just
# built, not a release build of every dependency (minutes, for the same compile errors). The fuzz
# targets (their own crate and lock file) are compiled: `cargo check` needs no nightly, no cargo-fuzz.
cargo bench --locked --profile dev --bench '*' -- --test
cargo check --locked --manifest-path fuzz/Cargo.toml
# The benchmark helpers in examples/ are not built by `cargo test` (they need `bench-tools`):
# compile them here so they cannot rot.
cargo check --locked --features bench-tools --examples

cd tests/e2e
# -ra lists every skip and expected failure in the summary, so one added later cannot pass unseen.
VIRTUAL_ENV="$PWD/../../$venv" "../../$venv/bin/python" -m pytest -p no:cacheprovider -q -ra
