"""What operators expect, through the shipped envoy.yaml against moto: claims passed upstream as
headers, shadow mode, the decision log read from a real run's JSON output, the log level, exit
statuses, and a liveness endpoint that depends on nothing external."""

import json
import subprocess

import pytest
import requests

import harness

# moto's access tokens carry `scope`, `auth_time` and `cognito:groups`: a string, a number, an array.
MAPPING = """
[[header]]
name = "x-token-scope"
claim = "scope"

[[header]]
name = "x-auth-time"
claim = "auth_time"

[[header]]
name = "x-cognito-groups"
claim = "cognito:groups"
"""


def get(envoy, path, token=None, headers=None):
    h = dict(headers or {})
    if token:
        h["authorization"] = f"Bearer {token}"
    return requests.get(envoy.url + path, headers=h, timeout=10)


def metrics(authz):
    return requests.get(f"http://127.0.0.1:{authz.admin_port}/metrics", timeout=5).text


@pytest.fixture(scope="module")
def mapped(logdir, pool, upstream, tmp_path_factory):
    config = tmp_path_factory.mktemp("mapping") / "cognito-authz.toml"
    config.write_text(MAPPING)
    authz = harness.start_authz(logdir, pool, ["--config", str(config), "--log-format", "json",
                                               "--log-allow-sample-rate", "1"], name="authz-mapped")
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-mapped")
    yield authz, envoy
    envoy.stop()
    authz.stop()


def test_mapped_claims_reach_the_upstream_and_client_values_never_do(mapped, pool):
    authz, envoy = mapped
    token = pool.sign_in("alice")["AccessToken"]
    forged = {"x-token-scope": "admin:all", "x-auth-time": "0", "x-cognito-groups": "root"}
    seen = get(envoy, "/api/items", token, forged).json()["headers"]
    assert seen["x-token-scope"] == ["aws.cognito.signin.user.admin"]
    assert int(seen["x-auth-time"][0]) > 1_700_000_000
    assert sorted(seen["x-cognito-groups"][0].split(",")) == ["admins", "team%20a%2Cb"]
    # bob is in no group: the client's x-cognito-groups is removed, not passed on.
    bob = get(envoy, "/api/mfa/status", pool.sign_in("bob")["AccessToken"], forged).json()["headers"]
    assert bob["x-token-scope"] == ["aws.cognito.signin.user.admin"]
    assert "x-cognito-groups" not in bob


def test_a_mapped_header_under_another_spelling_is_refused(logdir, mapped, pool, upstream):
    authz, _ = mapped

    def istio_like(text):
        start = text.index("                  - name: envoy.filters.http.header_mutation")
        end = text.index("                  - name: envoy.filters.http.ext_authz")
        text = text[:start] + text[end:]
        return text.replace("headers_with_underscores_action: REJECT_REQUEST", "headers_with_underscores_action: ALLOW")

    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-mapped-underscores",
                                transform=istio_like)
    try:
        token = pool.sign_in("alice")["AccessToken"]
        assert get(envoy, "/api/items", token, {"x_trace": "1"}).status_code == 200, "a harmless one passes"
        assert get(envoy, "/api/items", token, {"x_token_scope": "admin:all"}).status_code == 400
    finally:
        envoy.stop()


def log_lines(authz, message):
    lines = []
    for line in authz.output().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["fields"].get("message") == message:
                lines.append(entry["fields"])
    return lines


def test_the_decision_log_has_its_documented_fields(mapped, pool, upstream):
    authz, envoy = mapped
    alice, bob = pool.sign_in("alice")["AccessToken"], pool.sign_in("bob")["AccessToken"]
    allowed = get(envoy, "/api/items?code=secret-in-query", alice)
    assert allowed.status_code == 200
    request_id = allowed.json()["headers"]["x-request-id"][0]
    assert get(envoy, "/api/items", bob).status_code == 403
    allow = [f for f in log_lines(authz, "request allowed") if f.get("request_id") == request_id]
    assert allow, "the sampled allow was logged with the request id the upstream saw"
    a = allow[-1]
    assert (a["method"], a["path"], a["query"]) == ("GET", "/api/items", True)
    assert (a["level"], a["level_source"], a["mode"]) == ("mfa", "envoy", "enforce")
    assert (a["issuer"], a["sub"], a["outcome"], a["reason"]) == ("default", pool.subs["alice"], "allow", "none")
    assert isinstance(a["latency_us"], int) and a["latency_us"] >= 0
    deny = [f for f in log_lines(authz, "request denied") if f.get("sub") == pool.subs["bob"]]
    assert deny, "the denial was logged"
    d = deny[-1]
    assert (d["outcome"], d["reason"], d["level"], d["query"]) == ("forbidden", "mfa_required", "mfa", False)
    assert d["request_id"] and d["suppressed"] == 0
    text = authz.output()
    assert "secret-in-query" not in text and "eyJ" not in text, "no query value, no token"


def test_shadow_mode_lets_requests_through_and_counts_what_it_would_have_done(logdir, pool, upstream):
    authz = harness.start_authz(logdir, pool, ["--shadow"], name="authz-shadow")
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-shadow")
    try:
        bob = pool.sign_in("bob")["AccessToken"]
        through = get(envoy, "/api/items", bob)
        assert through.status_code == 200, "bob has not enrolled: refused when enforced, observed here"
        assert through.json()["headers"]["x-user-id"] == [pool.subs["bob"]]
        invalid = get(envoy, "/api/items", "not-a-token", {"x-user-id": "forged"})
        assert invalid.status_code == 200 and "x-user-id" not in invalid.json()["headers"], "no identity from a bad token"
        text = metrics(authz)
        assert 'cognito_authz_decisions_total{outcome="forbidden",reason="mfa_required",mode="shadow",transport="grpc"} 1' in text
        assert 'cognito_authz_decisions_total{outcome="unauthenticated",reason="malformed",mode="shadow",transport="grpc"} 1' in text
    finally:
        envoy.stop()
        authz.stop()


def serve(*args, env=None):
    argv = [str(harness.BINARY), "serve", "--region", harness.REGION, "--user-pool-id", "us-east-1_Abc123",
            "--client-id", "c", "--jwks-url", "http://127.0.0.1:9/jwks", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_exit_statuses_say_what_went_wrong(logdir):
    taken = harness.free_port()
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        runtime = serve("--grpc-listen", f"127.0.0.1:{taken}", "--http-listen", "127.0.0.1:0", "--admin-listen",
                        "127.0.0.1:0")
    assert runtime.returncode == 1 and "--grpc-listen" in runtime.stderr, runtime.stderr
    setting = serve("--mfa-lookups-per-second", "0")
    assert setting.returncode == 78, setting.stderr
    assert "--mfa-lookups-per-second (COGNITO_AUTHZ_MFA_LOOKUPS_PER_SECOND)" in setting.stderr
    usage = serve("--no-such-flag")
    assert usage.returncode == 2, usage.stderr


def test_log_level_sets_the_level_unless_rust_log_does(logdir, pool):
    # An empty RUST_LOG counts as unset; the harness otherwise sets it.
    quiet = harness.start_authz(logdir, pool, ["--log-level", "warn", "--enforce-mfa=false"], name="authz-warn",
                                env_extra={"RUST_LOG": ""})
    quiet.stop()
    log = quiet.output()
    assert "MFA is NOT enforced" in log, "a warning is written"
    assert " INFO " not in log and "listening" not in log, "info is not"
    loud = harness.start_authz(logdir, pool, ["--log-level", "warn"], name="authz-rust-log",
                               env_extra={"RUST_LOG": "info"})
    loud.stop()
    assert "listening" in loud.output(), "RUST_LOG wins over --log-level"


def test_livez_answers_while_keys_cannot_be_fetched(logdir, pool):
    class NoKeys:
        id, client_id, moto_url = pool.id, pool.client_id, pool.moto_url
        jwks_url = f"http://127.0.0.1:{harness.free_port()}/jwks"

    ports = (harness.free_port(), harness.free_port(), harness.free_port())
    livez = f"http://127.0.0.1:{ports[2]}/livez"
    authz = harness.start_authz(logdir, NoKeys(), name="authz-no-keys", ports=ports,
                                ready=lambda: requests.get(livez, timeout=1).ok)
    try:
        assert requests.get(livez, timeout=5).text == "ok\n"
        assert requests.get(f"http://127.0.0.1:{authz.http_port}/healthz", timeout=5).status_code == 503
        assert harness.grpc_health(authz.grpc_port, "") == "NOT_SERVING"
    finally:
        authz.stop()
