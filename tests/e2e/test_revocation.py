"""Logout through Envoy revokes the token and every token of its sign-in, and no restart of
cognito-authz (a clean one or `kill -9`) brings them back: the file store is durable."""

import requests

import harness


def get(proxy, path, token):
    return requests.get(proxy.url + path, headers={"authorization": f"Bearer {token}"}, timeout=10)


def assert_revoked(proxy, token):
    response = get(proxy, "/api/items", token)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Token has been revoked"}


def test_logout_revokes_the_token_and_its_sibling_and_survives_restarts(logdir, pool, upstream):
    authz = harness.start_authz(logdir, pool, name="authz-revocation")
    proxy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-revocation")
    try:
        signed_in = pool.sign_in("alice")
        token = signed_in["AccessToken"]
        sibling = pool.refresh_with(signed_in["RefreshToken"])
        assert token != sibling
        assert get(proxy, "/api/items", token).status_code == 200
        assert get(proxy, "/api/items", sibling).status_code == 200

        logout = get(proxy, "/auth/logout", token)
        assert logout.status_code == 200, logout.text
        assert logout.json()["message"] == "Logout successful"
        assert logout.headers["cache-control"] == "no-store"
        assert_revoked(proxy, token)
        assert_revoked(proxy, sibling)

        # A clean restart.
        authz.stop()
        authz = harness.start_authz(logdir, pool, name="authz-revocation", ports=authz.ports, data_dir=authz.data_dir)
        assert_revoked(proxy, token)
        assert_revoked(proxy, sibling)

        # kill -9 right after a logout was acknowledged.
        second = pool.sign_in("alice")["AccessToken"]
        assert get(proxy, "/api/items", second).status_code == 200
        assert get(proxy, "/auth/logout", second).status_code == 200
        authz.kill9()
        authz = harness.start_authz(logdir, pool, name="authz-revocation", ports=authz.ports, data_dir=authz.data_dir)
        assert_revoked(proxy, second)
        assert_revoked(proxy, token)
        assert get(proxy, "/api/items", pool.sign_in("alice")["AccessToken"]).status_code == 200, "a new sign-in passes"
    finally:
        proxy.stop()
        authz.stop()


def test_me_through_envoy_answers_from_cognito(envoy, pool):
    token = pool.sign_in("alice")["AccessToken"]
    response = get(envoy, "/auth/me", token)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["sub"] == pool.subs["alice"] and me["username"] == "alice"
    assert me["source"] == "get_user", "moto's tokens carry aws.cognito.signin.user.admin"
    no_token = requests.get(envoy.url + "/auth/me", timeout=10)
    assert no_token.status_code == 403 and no_token.json() == {"detail": "Not authenticated"}
