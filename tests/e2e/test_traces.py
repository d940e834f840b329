"""OpenTelemetry traces with real parts: Envoy 1.40 with its OpenTelemetry tracer and cognito-authz
both exporting to one OTLP receiver (tests/e2e/otlp.py, from PyPI's opentelemetry-proto and
grpcio). A request through Envoy is one trace: Envoy's spans and this service's decision span,
linked parent to child, with the decision's why and its calls out (the MFA lookup, a JWKS fetch) as
children; nothing secret in any attribute. OTLP/HTTP and a proxy's `traceparent` on the HTTP
authorization listener; a dead collector costs decisions nothing and shutdown does not wait on it;
a collector behind mTLS with an API key header, on both protocols."""

import json
import re
import signal
import time

import pytest
import requests
from joserfc import jwt

import harness
import pki
from otlp import OtlpReceiver


@pytest.fixture(scope="module")
def receiver():
    r = OtlpReceiver()
    yield r
    r.stop()


def with_tracer(port):
    """The shipped Envoy configuration with Envoy's OpenTelemetry tracer sending to `port`."""
    tracer = """                stat_prefix: ingress
                tracing:
                  random_sampling: { value: 100 }
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      grpc_service:
                        envoy_grpc: { cluster_name: otlp }
                        timeout: 1s
                      service_name: envoy
"""
    cluster = f"""  clusters:
    - name: otlp
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {{}}
      load_assignment:
        cluster_name: otlp
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"""

    def transform(text):
        assert text.count("                stat_prefix: ingress\n") == 1 and text.count("  clusters:\n") == 1
        return text.replace("                stat_prefix: ingress\n", tracer).replace("  clusters:\n", cluster)
    return transform


def traced(logdir, pool, name, endpoint, protocol, extra_env=None):
    port = harness.free_port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "cognito-authz", **(extra_env or {})}
    authz = harness.start_authz(logdir, pool, ["--authz-http-listen", f"127.0.0.1:{port}"], env_extra=env, name=name)
    authz.authz_http_port = port
    return authz


def spans_of(receiver, trace_id, within=15.0, want=lambda spans: bool(spans)):
    deadline = time.monotonic() + within
    while True:
        spans = [s for s in receiver.received() if s.trace_id == trace_id]
        if want(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def decision_spans(receiver, since):
    return [s for s in receiver.received()[since:] if s.service == "cognito-authz" and s.name == "authorize"]


def test_a_request_through_envoy_is_one_trace_with_the_decision_a_child_of_envoys_span(
        logdir, pool, upstream, receiver):
    authz = traced(logdir, pool, "authz-traced", f"http://127.0.0.1:{receiver.grpc_port}", "grpc")
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-traced",
                                transform=with_tracer(receiver.grpc_port))
    try:
        token = pool.sign_in("alice")["AccessToken"]
        since = len(receiver.received())
        allowed = requests.get(envoy.url + "/api/items", headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert allowed.status_code == 200
        harness.wait_until(lambda: decision_spans(receiver, since), what="the decision's span", timeout=15)
        [decision] = decision_spans(receiver, since)
        trace = spans_of(receiver, decision.trace_id, want=lambda spans: any(s.service == "envoy" for s in spans))
        envoy_spans = {s.span_id: s for s in trace if s.service == "envoy"}
        assert envoy_spans, f"Envoy's spans are in the same trace: {trace}"
        assert decision.parent_id in envoy_spans, "the decision is a child of Envoy's span"
        assert envoy_spans[decision.parent_id].name.endswith("Authorization.Check egress"), "Envoy's ext_authz call"
        assert decision.attributes["outcome"] == "allow" and decision.attributes["route.level"] == "mfa"
        assert decision.attributes["issuer"] == "default" and decision.attributes["transport"] == "grpc"
        assert decision.attributes["cache.hit"] is False and decision.attributes["shadow"] is False
        lookups = [s for s in trace if s.name == "mfa lookup" and s.parent_id == decision.span_id]
        assert lookups and lookups[0].attributes["factors"] == "totp", "the cold MFA lookup is the decision's child"

        # A denial's span says why.
        since = len(receiver.received())
        assert requests.get(envoy.url + "/api/items", timeout=10).status_code == 401
        harness.wait_until(lambda: decision_spans(receiver, since), what="the denial's span", timeout=15)
        [denied] = decision_spans(receiver, since)
        assert (denied.attributes["outcome"], denied.attributes["reason"]) == ("unauthenticated", "missing_token")

        # A key nobody has seen: the decision fetches the keys again, a child span.
        claims = jwt.decode(token, harness.moto_signing_key()).claims
        unknown = jwt.encode({"alg": "RS256", "kid": "a-kid-nobody-has"}, claims, harness.moto_signing_key())
        since = len(receiver.received())
        assert requests.get(envoy.url + "/api/items", headers={"authorization": f"Bearer {unknown}"},
                            timeout=10).status_code == 401
        harness.wait_until(lambda: decision_spans(receiver, since), what="the cold decision's span", timeout=15)
        [cold] = decision_spans(receiver, since)
        fetch = spans_of(receiver, cold.trace_id, want=lambda s: any(x.name == "jwks fetch" for x in s))
        assert [s for s in fetch if s.name == "jwks fetch" and s.parent_id == cold.span_id], fetch
        assert cold.attributes["reason"] == "unknown_key"

        # Nothing secret anywhere, while what should be there is.
        ours = [s for s in receiver.received() if s.service == "cognito-authz"]
        text = json.dumps([s.attributes for s in ours])
        assert "outcome" in text, "positive control: the attributes were read"
        for secret in (token, token.split(".")[1][:20], token.split(".")[2][:20], "eyJ", "authorization"):
            assert secret not in text
    finally:
        envoy.stop()
        authz.stop()


def test_otlp_http_set_by_flags_and_a_proxys_traceparent_on_the_http_listener(logdir, pool, receiver):
    # The flags that mirror the standard variables (none of those set here).
    port = harness.free_port()
    authz = harness.start_authz(logdir, pool, [
        "--authz-http-listen", f"127.0.0.1:{port}", "--otlp-endpoint", f"http://127.0.0.1:{receiver.http_port}",
        "--otlp-protocol", "http/protobuf", "--otel-service-name", "authz-by-flags",
        "--otel-traces-sampler", "parentbased_always_on"], env_extra={"OTEL_BSP_SCHEDULE_DELAY": "200"},
        name="authz-traced-http")
    authz.authz_http_port = port
    try:
        token = pool.sign_in("alice")["AccessToken"]
        trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        answer = requests.get(f"http://127.0.0.1:{authz.authz_http_port}/envoy/api/orders?x=secret-query",
                              headers={"authorization": f"Bearer {token}",
                                       "traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "vendor=1"},
                              timeout=5)
        assert answer.status_code == 200
        trace = spans_of(receiver, trace_id, want=lambda s: any(x.name == "authorize" for x in s))
        [span] = [s for s in trace if s.name == "authorize"]
        assert (span.parent_id, span.attributes["transport"], span.attributes["outcome"]) == (parent, "http", "allow")
        assert span.service == "authz-by-flags"
        assert "secret-query" not in json.dumps(span.attributes)
        # An unsampled caller (flags 00) is followed: no span.
        unsampled = "4bf92f3577b34da6a3ce929d0e0e4737"
        requests.get(f"http://127.0.0.1:{authz.authz_http_port}/envoy/api/orders",
                     headers={"authorization": f"Bearer {token}", "traceparent": f"00-{unsampled}-{parent}-00"},
                     timeout=5)
        time.sleep(1.5)
        assert not spans_of(receiver, unsampled, within=0.5), "parent-based sampling follows the caller"
    finally:
        authz.stop()


def test_the_companion_modules_call_to_the_token_endpoint_is_a_child_of_its_request(logdir, pool, receiver):
    # The token endpoint here is only somewhere to call (the receiver answers it 415): the OAuth
    # flows themselves are tested against oidc-provider in test_code_flow.py.
    origin = "https://app.example.com"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.http_port}",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    authz = harness.start_authz(logdir, pool, [
        "--token-url", f"http://127.0.0.1:{receiver.http_port}/token", "--oauth-client-id", pool.client_id,
        "--allowed-origin", origin], env_extra=env, name="authz-traced-companion")
    try:
        trace_id, parent = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
        answer = requests.post(f"http://127.0.0.1:{authz.http_port}/auth/refresh",
                               headers={"origin": origin, "cookie": "cognito_refresh=a-refresh-token-value",
                                        "traceparent": f"00-{trace_id}-{parent}-01"}, timeout=10)
        assert answer.status_code == 502
        trace = spans_of(receiver, trace_id, want=lambda s: any(x.name == "oauth token" for x in s))
        [request] = [s for s in trace if s.name == "auth request"]
        [call] = [s for s in trace if s.name == "oauth token"]
        assert (request.parent_id, request.attributes["http.route"]) == (parent, "refresh")
        assert request.attributes["http.response.status_code"] == 502
        assert (call.parent_id, call.attributes["grant_type"]) == (request.span_id, "refresh_token")
        assert "a-refresh-token-value" not in json.dumps([s.attributes for s in trace]), "no cookie value"
    finally:
        authz.stop()


def timed(authz, token, n):
    started = time.monotonic()
    for _ in range(n):
        assert requests.get(f"http://127.0.0.1:{authz.authz_http_port}/envoy/api/orders",
                            headers={"authorization": f"Bearer {token}"}, timeout=5).status_code == 200
    return time.monotonic() - started


def test_a_dead_collector_costs_decisions_nothing_and_shutdown_does_not_wait_for_it(logdir, pool):
    dead = f"http://127.0.0.1:{harness.free_port()}"
    # One runtime worker: an exporter that blocked a worker would stall every decision here.
    slow_env = {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_EXPORT_TIMEOUT": "500", "TOKIO_WORKER_THREADS": "1"}
    traced_authz = traced(logdir, pool, "authz-dead-collector", dead, "grpc", slow_env)
    port = harness.free_port()
    plain = harness.start_authz(logdir, pool, ["--authz-http-listen", f"127.0.0.1:{port}"],
                                env_extra={"TOKIO_WORKER_THREADS": "1"}, name="authz-untraced")
    plain.authz_http_port = port
    try:
        token = pool.sign_in("alice")["AccessToken"]
        timed(plain, token, 50), timed(traced_authz, token, 50)  # warm both
        untraced = min(timed(plain, token, 300) for _ in range(2))
        with_dead = min(timed(traced_authz, token, 300) for _ in range(2))
        assert with_dead < untraced * 1.5, f"{with_dead:.2f} s against {untraced:.2f} s for 300 decisions"
        metrics = requests.get(f"http://127.0.0.1:{traced_authz.admin_port}/metrics", timeout=5).text
        dropped = [line for line in metrics.splitlines() if line.startswith("cognito_authz_trace_spans_dropped_total")]
        assert dropped and float(dropped[0].split()[-1]) > 0, dropped
        started = time.monotonic()
        traced_authz.signal(signal.SIGTERM)
        traced_authz.proc.wait(timeout=20)
        assert time.monotonic() - started < 12, "shutdown flushes within its bound, then exits"
    finally:
        plain.stop()
        traced_authz.stop()
    log = traced_authz.output()
    warnings = [line for line in log.splitlines() if "spans are dropped" in line or "could not export spans" in line]
    assert 1 <= len(warnings) <= 3, warnings


# A vendor's API key, as `OTEL_EXPORTER_OTLP_HEADERS` carries it to Honeycomb or Grafana Cloud.
API_KEY = "Hk-7d41c0e9-otlp-api-key"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_collector_over_tls_with_a_client_certificate_and_an_api_key_header(logdir, pool, tmp_path, protocol):
    paths = pki.write_pki(tmp_path / "otlp-pki")
    collector = OtlpReceiver(tls=paths)
    port = collector.grpc_port if protocol == "grpc" else collector.http_port
    tls_env = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(paths["ca"]),
               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(paths["client_cert"]),
               "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(paths["client_key"]),
               "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={API_KEY}"}
    name = protocol.replace("/", "-")
    trusting = traced(logdir, pool, f"authz-otlp-tls-{name}", f"https://127.0.0.1:{port}", protocol, tls_env)
    # The same without the CA: the system's roots do not know the test CA, so nothing is delivered.
    untrusting_env = {k: v for k, v in tls_env.items() if k != "OTEL_EXPORTER_OTLP_CERTIFICATE"}
    untrusting = traced(logdir, pool, f"authz-otlp-untrusted-{name}", f"https://127.0.0.1:{port}", protocol,
                        untrusting_env)
    try:
        token = pool.sign_in("alice")["AccessToken"]
        ids = {}
        for authz, last in ((trusting, "4736"), (untrusting, "4737")):
            ids[authz.name] = f"5bf92f3577b34da6a3ce929d0e0e{last}"
            answer = requests.get(f"http://127.0.0.1:{authz.authz_http_port}/envoy/api/orders",
                                  headers={"authorization": f"Bearer {token}",
                                           "traceparent": f"00-{ids[authz.name]}-00f067aa0ba902b7-01"}, timeout=5)
            assert answer.status_code == 200
        delivered = spans_of(collector, ids[trusting.name], want=lambda s: any(x.name == "authorize" for x in s))
        assert [s.service for s in delivered if s.name == "authorize"] == ["cognito-authz"]
        assert collector.headers and all(h.get("x-api-key") == API_KEY for h in collector.headers), \
            "every export carried the header"

        def dropped(authz):
            metrics = requests.get(f"http://127.0.0.1:{authz.admin_port}/metrics", timeout=5).text
            return float(re.search(r"^cognito_authz_trace_spans_dropped_total (\S+)", metrics, re.M).group(1))
        harness.wait_until(lambda: dropped(untrusting) > 0, what="the untrusted collector's spans dropped")
        assert not spans_of(collector, ids[untrusting.name], within=0.5), "no span without the CA"
        assert dropped(trusting) == 0
    finally:
        trusting.stop()
        untrusting.stop()
        collector.stop()
    assert "could not export spans" in untrusting.output(), "positive control: the failed export was logged"
    for authz in (trusting, untrusting):
        assert API_KEY not in authz.output()
