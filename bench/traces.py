#!/usr/bin/env python3
"""What tracing costs a decision: one cognito-authz with tracing off, one sampling 1 % and one
sampling 100 %, both exporting OTLP/gRPC to an OTLP receiver (tests/e2e/otlp.py), side by side on
the same machine. wrk (`-t1 -c16`) at each one's HTTP authorization listener with a live token,
rounds alternating; per variant the requests per second and the server's own CPU per request (utime +
stime from /proc), as ratios to tracing off.

    cargo build --release && .venv/bin/python bench/traces.py

ROUNDS (3) and DURATION (8 s) change the sizes. The receiver is Python: at 100 % it may fall
behind, and the spans it cannot take are dropped and counted, never waited for."""

import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("COGNITO_AUTHZ_BIN", str(ROOT / "target" / "release" / "cognito-authz"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import harness  # noqa: E402
from otlp import OtlpReceiver  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", 3))
DURATION = int(os.environ.get("DURATION", 8))
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def wrk(port, token):
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{DURATION}s", "-H", f"authorization: Bearer {token}",
                          f"http://127.0.0.1:{port}/envoy/api/orders"], capture_output=True, text=True, check=True).stdout
    requests_done = int(re.search(r"([0-9]+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", out)
    return requests_done, int(bad.group(1)) if bad else 0


def main():
    logdir = tempfile.mkdtemp(prefix="bench-traces-")
    moto, moto_url = harness.start_moto(logdir)
    pool = harness.Pool(moto_url)
    receiver = OtlpReceiver()
    endpoint = f"http://127.0.0.1:{receiver.grpc_port}"
    variants = {
        "off": {},
        "1 %": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
        "100 %": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                  "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    }
    servers = {}
    try:
        for name, env in variants.items():
            port = harness.free_port()
            authz = harness.start_authz(logdir, pool, ["--authz-http-listen", f"127.0.0.1:{port}"], env_extra=env,
                                        name=f"authz-{name.replace(' %', 'pct')}")
            authz.authz_http_port = port
            servers[name] = authz
        token = pool.sign_in("alice")["AccessToken"]
        results = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, authz in servers.items():
                before = cpu_seconds(authz.proc.pid)
                done, bad = wrk(authz.authz_http_port, token)
                used = cpu_seconds(authz.proc.pid) - before
                assert bad == 0, f"{name}: {bad} non-2xx answers"
                results[name].append((done / DURATION, used / done * 1e6))
        print(f"binary: {harness.BINARY}; {ROUNDS} rounds of wrk -t1 -c16 -d{DURATION}s, medians")
        base_rate = statistics.median(r for r, _ in results["off"])
        base_cpu = statistics.median(c for _, c in results["off"])
        for name, rows in results.items():
            rate = statistics.median(r for r, _ in rows)
            cpu = statistics.median(c for _, c in rows)
            print(f"  tracing {name:>5}: {rate:8.0f} decisions/s ({rate / base_rate:.2f}), "
                  f"server CPU {cpu:5.1f} µs/decision ({cpu / base_cpu:.2f})")
        spans = [s for s in receiver.received() if s.name == "authorize"]
        print(f"  spans received: {len(spans)}")
        for name, authz in servers.items():
            if name != "off":
                metrics = harness.requests.get(f"http://127.0.0.1:{authz.admin_port}/metrics", timeout=5).text
                dropped = re.search(r"cognito_authz_trace_spans_dropped_total ([0-9]+)", metrics)
                print(f"  tracing {name:>5}: spans dropped {dropped.group(1) if dropped else '?'}")
    finally:
        for authz in servers.values():
            authz.stop()
        receiver.stop()
        moto.stop()
    # Reached only after a clean run: a failed one keeps its logs.
    shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
