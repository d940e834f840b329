"""End to end: a client calls a real Envoy (the shipped envoy.yaml) which asks cognito-authz,
which verifies tokens issued by moto_server's Cognito user pool; the upstream echoes what it got."""

import subprocess

import requests

import harness

# A header no rule touches: it shows the upstream does see what the client sent.
HARMLESS = {"x-trace-id": "t-1"}
IDENTITY = ("x-user-id", "x-username", "x-user-groups", "x-client-id")
SPOOFED = {"x-user-id": "00000000-0000-0000-0000-000000000000", "x-username": "root", "x-user-groups": "admins",
           "x-client-id": "evil", "x-user-anything": "forged"}


def get(envoy, path, token=None, headers=None):
    h = dict(headers or {})
    if token:
        h["authorization"] = f"Bearer {token}"
    return requests.get(envoy.url + path, headers=h, timeout=10)


def assert_401(response, description):
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == f'Bearer error="invalid_token", error_description="{description}"'
    assert response.json() == {"detail": description}


def test_shipped_envoy_config_validates():
    result = subprocess.run([harness.envoy_binary(), "--mode", "validate", "-c", str(harness.SHIPPED_CONFIG), "-l", "warn"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_is_serving_once_moto_keys_are_loaded(authz):
    assert harness.grpc_health(authz.grpc_port, "") == "SERVING"
    assert harness.grpc_health(authz.grpc_port, "envoy.service.auth.v3.Authorization") == "SERVING"


def test_moto_access_token_is_allowed_with_trusted_identity_headers(envoy, pool, upstream):
    token = pool.sign_in("alice")["AccessToken"]
    response = get(envoy, "/api/items?x=1", token)
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["x-user-id"] == [pool.subs["alice"]]
    assert seen["x-username"] == ["alice"]
    assert sorted(seen["x-user-groups"][0].split(",")) == ["admins", "team%20a%2Cb"]
    assert "x-client-id" not in seen
    assert response.json()["path"] == "/api/items?x=1"


def test_spoofed_identity_headers_never_reach_the_upstream(envoy, pool):
    for user in ("alice", "bob"):
        token = pool.sign_in(user)["AccessToken"]
        seen = get(envoy, "/api/mfa/status", token, {**SPOOFED, **HARMLESS}).json()["headers"]
        assert seen["x-trace-id"] == ["t-1"], "positive control: a client's other headers arrive"
        assert seen["x-user-id"] == [pool.subs[user]], user
        assert seen["x-username"] == [user]
        assert "x-client-id" not in seen and "x-user-anything" not in seen
        if user == "bob":
            assert "x-user-groups" not in seen, "bob has no groups: the client's value must not survive"
        else:
            assert "admins" in seen["x-user-groups"][0] and len(seen["x-user-groups"]) == 1


def test_spoofed_identity_headers_are_stripped_on_a_route_without_ext_authz(envoy):
    response = get(envoy, "/public/logo.svg", headers={**SPOOFED, **HARMLESS})
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["x-trace-id"] == ["t-1"], "positive control: a client's other headers arrive"
    assert not [h for h in seen if h in IDENTITY or h.startswith("x-user")], seen


def test_underscored_identity_header_is_rejected_before_the_upstream(envoy, pool, upstream):
    token = pool.sign_in("alice")["AccessToken"]
    # Positive control: the same raw request without the underscored header goes through.
    before = len(upstream.requests)
    assert harness.headers_with_underscore(envoy.url, "/api/items", {"authorization": f"Bearer {token}"}) == 200
    assert len(upstream.requests) == before + 1
    status = harness.headers_with_underscore(envoy.url, "/api/items", {"authorization": f"Bearer {token}",
                                                                       "x_user_id": "00000000-0000-0000-0000-000000000000"})
    assert status == 400
    assert len(upstream.requests) == before + 1


def test_id_token_is_refused(envoy, pool):
    assert_401(get(envoy, "/api/items", pool.sign_in("alice")["IdToken"]), "Not an access token")


def test_expired_token_is_refused(envoy, pool):
    token = pool.sign_in("alice")["AccessToken"]
    expired = harness.resign(token, iat=1_700_000_000, auth_time=1_700_000_000, exp=1_700_003_600)
    assert_401(get(envoy, "/api/items", expired), "Token has expired")
    # The re-signing itself is sound: the same claims with a future exp pass.
    assert get(envoy, "/api/items", harness.resign(token)).status_code == 200


def test_token_for_another_app_client_is_refused(envoy, pool):
    token = pool.sign_in("alice", client_id=pool.other_client_id)["AccessToken"]
    assert_401(get(envoy, "/api/items", token), "Could not validate credentials")


def test_missing_and_malformed_tokens_are_refused(envoy, upstream):
    before = len(upstream.requests)
    response = get(envoy, "/api/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_401(get(envoy, "/api/items", "not-a-jwt"), "Could not validate credentials")
    assert len(upstream.requests) == before


def test_envoy_health_route_needs_no_token(envoy):
    assert get(envoy, "/healthz").status_code == 200


def test_unreachable_authz_server_is_503_not_an_allow(logdir, upstream):
    dead = harness.free_port()
    proxy = harness.start_envoy(logdir, dead, dead, upstream.port, name="envoy-no-authz")
    try:
        assert get(proxy, "/api/items", "x.y.z").status_code == 503
    finally:
        proxy.stop()


def test_check_command_output_can_be_cut_short(authz):
    """`check … | head -1` (as bench/run.sh does): the reader going away is not a crash. `true` exits
    before the Check returns, so the answer always meets a closed pipe."""
    command = f"'{harness.BINARY}' check --addr http://127.0.0.1:{authz.grpc_port} --token not-a-token | true"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, "exit status 1 (a denial), not a panic (101) or a broken pipe"
    assert "panicked" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
