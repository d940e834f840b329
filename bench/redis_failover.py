#!/usr/bin/env python3
"""The revocation store through a Redis failover, measured with the e2e tests' real parts (moto, a
primary with two replicas behind three sentinels, Debian's redis-server and redis-sentinel):

  1. a logout's latency with WAIT (`--revocation-min-replicas 1`) against without (0), p50/p99, the
     two interleaved on one Sentinel deployment;
  2. per round, on a fresh deployment: the time from the primary's SIGKILL until a logout made
     after it through one replica is refused by the other ("fresh again"), and one replica's
     decisions per second under wrk while the failover happens, against the same replica just before.

Run from the project's top after tests/run-all.sh installed the peers (and `wrk` is installed):

    cargo build --release && .venv/bin/python bench/redis_failover.py

ROUNDS (3), LOGOUTS (150) and DURATION (12 s of wrk per window) change the sizes."""

import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("COGNITO_AUTHZ_BIN", str(ROOT / "target" / "release" / "cognito-authz"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import harness  # noqa: E402
import redis_ha  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", 3))
LOGOUTS = int(os.environ.get("LOGOUTS", 150))
DURATION = int(os.environ.get("DURATION", 12))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def timed_logout(replica, token):
    started = time.perf_counter()
    status = harness.logout(replica, token).status_code
    assert status == 200, status
    return (time.perf_counter() - started) * 1000


def wrk(replica, token, seconds):
    """wrk at one replica's HTTP authorization listener: (requests per second, non-2xx answers)."""
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"authorization: Bearer {token}",
                          f"http://127.0.0.1:{replica.authz_http_port}/envoy/api/orders"],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rate, int(bad.group(1)) if bad else 0, errors.group(1) if errors else "none"


def deployment(logdir, pool, names, extra=None):
    """A fresh Sentinel deployment and one service replica per name (with its `extra` arguments)."""
    sentinel = redis_ha.Sentinel(logdir)
    replicas = [redis_ha.start_replica(logdir, pool, name, ["--revocation-store", sentinel.url(), *args])
                for name, args in zip(names, extra or [[] for _ in names])]
    for replica in replicas:
        harness.wait_until(lambda: harness.grpc_health(replica.grpc_port, "") == "SERVING", what="serving")
    return sentinel, replicas


def main():
    logdir = tempfile.mkdtemp(prefix="bench-redis-")
    moto, moto_url = harness.start_moto(logdir)
    pool = harness.Pool(moto_url)
    sign_in = lambda: pool.sign_in("alice")["AccessToken"]  # noqa: E731
    print(f"binary: {harness.BINARY}; logs: {logdir} (removed after a clean run)")
    try:
        # 1. WAIT's cost.
        sentinel, (no_wait, with_wait) = deployment(logdir, pool, ["no-wait", "with-wait"], extra=[
            ["--revocation-min-replicas", "0"], ["--revocation-min-replicas", "1"]])
        latencies = {"WAIT 0": [], "WAIT 1": []}
        for _ in range(LOGOUTS):
            latencies["WAIT 0"].append(timed_logout(no_wait, sign_in()))
            latencies["WAIT 1"].append(timed_logout(with_wait, sign_in()))
        for proc in (no_wait, with_wait):
            proc.stop()
        sentinel.stop()
        print(f"\nlogout latency, {LOGOUTS} each, interleaved (ms):")
        for name, values in latencies.items():
            print(f"  {name}: p50 {statistics.median(values):.2f}  p99 {percentile(values, 99):.2f}")
        print(f"  ratio WAIT 1 / WAIT 0: p50 {statistics.median(latencies['WAIT 1']) / statistics.median(latencies['WAIT 0']):.2f}"
              f"  p99 {percentile(latencies['WAIT 1'], 99) / percentile(latencies['WAIT 0'], 99):.2f}")

        # 2. Failovers.
        print(f"\nfailover rounds (wrk -t1 -c16 -d{DURATION}s at one replica's /envoy, a live token):")
        for round_ in range(1, ROUNDS + 1):
            sentinel, (a, b) = deployment(logdir, pool, [f"r{round_}-a", f"r{round_}-b"])
            live = sign_in()
            before = wrk(b, live, DURATION)
            result = {}

            def failover():
                time.sleep(DURATION / 4)
                killed = time.monotonic()
                sentinel.node(sentinel.primary_port()).kill9()
                token = sign_in()
                while harness.logout(a, token).status_code != 200:
                    time.sleep(0.02)
                acknowledged = time.monotonic()
                while redis_ha.forward_auth(b, token) != 401:
                    time.sleep(0.01)
                result.update(acked=acknowledged - killed, fresh=time.monotonic() - killed)

            thread = threading.Thread(target=failover)
            thread.start()
            during = wrk(b, live, DURATION)
            thread.join()
            print(f"  round {round_}: decisions/s before {before[0]:.0f} (non-2xx {before[1]}), during the failover "
                  f"{during[0]:.0f} (non-2xx {during[1]}, socket errors {during[2]}), ratio {during[0] / before[0]:.2f}; "
                  f"first logout acknowledged {result['acked']:.2f} s after the kill, refused by the other "
                  f"replica {result['fresh']:.2f} s after it")
            for proc in (a, b):
                proc.stop()
            sentinel.stop()
    finally:
        moto.stop()
    # Reached only after a clean run: a failed one keeps its logs.
    shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
