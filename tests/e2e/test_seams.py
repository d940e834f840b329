"""Seams, through the shipped envoy/envoy.yaml and envoy/policy.toml together: a rule of the policy
file holds under Envoy's per-route level, every spelling of a path gets at least its rule's
requirement, and identity headers cannot be smuggled under another spelling."""

import pytest
import requests

import harness

POLICY = str(harness.ROOT / "envoy" / "policy.toml")
SMUGGLED = ("x_user_id", "x-user_id", "x_username", "x_user_groups", "x_client_id")


@pytest.fixture(scope="module")
def users(pool):
    """grace: enrolled, in `admin` (the shipped policy's group). alice: enrolled, in `admins` only."""
    return pool.with_admin()


@pytest.fixture(scope="module")
def shipped(logdir, users, upstream):
    authz = harness.start_authz(logdir, users, ["--policy", POLICY], name="authz-shipped-policy")
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-shipped-policy")
    yield authz, envoy
    envoy.stop()
    authz.stop()


def get(envoy, path, token, headers=None):
    return requests.get(envoy.url + path, headers={"authorization": f"Bearer {token}", **(headers or {})}, timeout=10)


def test_the_policy_files_admin_group_holds_under_envoys_mfa_route(shipped, users):
    authz, envoy = shipped
    alice, grace = users.sign_in("alice")["AccessToken"], users.sign_in("grace")["AccessToken"]
    assert get(envoy, "/api/items", alice).status_code == 200, "alice passes the mfa catch-all"
    refused = get(envoy, "/api/admin/users", alice)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "Insufficient scope"}
    allowed = get(envoy, "/api/admin/users", grace)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["headers"]["x-user-id"] == [users.subs["grace"]]


@pytest.mark.parametrize("path", ["/API/Admin/users", "/api/ADMIN/users", "/Api/admin", "/api/%61dmin/users"])
def test_other_spellings_of_the_admin_path_need_the_admin_group_too(shipped, users, path):
    authz, envoy = shipped
    alice, grace = users.sign_in("alice")["AccessToken"], users.sign_in("grace")["AccessToken"]
    assert get(envoy, path, alice).status_code == 403
    assert get(envoy, path, grace).status_code == 200


def test_a_double_encoded_path_is_refused(shipped, users, upstream):
    authz, envoy = shipped
    grace = users.sign_in("grace")["AccessToken"]
    assert get(envoy, "/api/mfa/status", grace).status_code == 200, "the bootstrap route itself passes"
    before = len(upstream.requests)
    for path in ("/api/mfa/..%252fadmin/users", "/api/mfa/%2561dmin"):
        refused = get(envoy, path, grace)
        assert refused.status_code == 400, (path, refused.status_code)
        assert refused.json() == {"detail": "Request path is ambiguous"}
    assert len(upstream.requests) == before


def underscores_allowed(text):
    old = "headers_with_underscores_action: REJECT_REQUEST"
    assert text.count(old) == 1
    return text.replace(old, "headers_with_underscores_action: ALLOW")


def without_header_mutation(text):
    """As an Istio sidecar is: no filter of ours strips identity headers before ext_authz."""
    start = text.index("                  - name: envoy.filters.http.header_mutation")
    end = text.index("                  - name: envoy.filters.http.ext_authz")
    return underscores_allowed(text[:start] + text[end:])


def test_smuggled_identity_spellings_are_refused_on_every_checked_route(logdir, shipped, users, upstream):
    authz, _ = shipped
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-underscores",
                                transform=without_header_mutation)
    try:
        grace = users.sign_in("grace")["AccessToken"]
        harmless = get(envoy, "/api/items", grace, {"x_trace_id": "t-1"})
        assert harmless.status_code == 200, "this Envoy lets underscores through"
        assert harmless.json()["headers"]["x_trace_id"] == ["t-1"]
        before = len(upstream.requests)
        for name in SMUGGLED:
            for path in ("/api/items", "/api/mfa/status"):
                assert get(envoy, path, grace, {name: "admin"}).status_code == 400, (name, path)
            public = requests.post(f"{envoy.url}/auth/refresh", headers={name: "admin"}, timeout=10)
            assert public.status_code == 400, (name, "public route")
        assert len(upstream.requests) == before
    finally:
        envoy.stop()


def test_smuggled_spellings_are_stripped_on_routes_without_ext_authz(logdir, shipped, upstream):
    authz, _ = shipped
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-underscores-2",
                                transform=underscores_allowed)
    try:
        for name in SMUGGLED:
            response = requests.get(f"{envoy.url}/public/logo.svg", headers={name: "admin", "x_trace_id": "t"},
                                    timeout=10)
            assert response.status_code == 200
            seen = response.json()["headers"]
            assert seen["x_trace_id"] == ["t"], "a harmless underscore header arrives"
            assert name not in seen, name
    finally:
        envoy.stop()
