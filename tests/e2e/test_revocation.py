"""Logout through Envoy revokes the token and every token of its sign-in, and no restart of
cognito-authz (a clean one or `kill -9`) brings them back: the file store is durable."""

import botocore.exceptions
import pytest
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


def test_revoke_user_from_the_command_line_refuses_every_older_session(logdir, pool):
    import subprocess

    admin_token = "an-admin-token-for-this-test-run"
    authz = harness.start_authz(logdir, pool, name="authz-revoke-user",
                                env_extra={"COGNITO_AUTHZ_ADMIN_TOKEN": admin_token})
    try:
        signed_in = pool.sign_in("alice")
        token = signed_in["AccessToken"]
        assert harness.check_cli(authz.grpc_port, token, "mfa") == "allow"
        # Positive control: the refresh token works at Cognito before the revocation.
        assert pool.refresh_with(signed_in["RefreshToken"])
        argv = [str(harness.BINARY), "revoke", "--user", pool.subs["alice"], "--username", "alice",
                "--admin-url", f"http://127.0.0.1:{authz.admin_port}"]
        wrong = subprocess.run(argv + ["--admin-token", "not-the-admin-token-at-all"], capture_output=True, text=True,
                               timeout=30)
        assert wrong.returncode == 1 and wrong.stdout.startswith("401")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env={**__import__("os").environ, "COGNITO_AUTHZ_ADMIN_TOKEN": admin_token})
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"signed_out_at_cognito":true' in done.stdout
        assert harness.check_cli(authz.grpc_port, token, "authenticated") == "deny 401"
        # Signed out at Cognito too: the old refresh token no longer works there.
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            pool.refresh_with(signed_in["RefreshToken"])
        assert refused.value.response["Error"]["Code"] == "NotAuthorizedException", refused.value.response
        # Positive control: the revocation the admin token allowed is in the log, the token is not.
        assert "user revoked by an administrator" in authz.output()
        assert admin_token not in authz.output()
    finally:
        authz.stop()
