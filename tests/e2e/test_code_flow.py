"""The authorization-code exchange against a real, certified OAuth 2.0 / OpenID server
(oidc-provider) with a scripted login and PKCE: sign-in, refresh (with rotation) and refresh-token
revocation through the companion HTTP module. Its access tokens are opaque, not Cognito-shaped, so
`/auth/me` and the verifier are tested against the fake Cognito in tests/http_module.rs."""

import pytest
import requests

import harness

CLIENT_ID = "web-app"
CLIENT_SECRET = "a-test-secret-made-for-this-run"
REDIRECT_URI = "https://app.example.com/callback"
ORIGIN = "https://app.example.com"


@pytest.fixture
def code_flow(logdir, pool):
    provider = harness.start_oidc_provider(logdir, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    authz = harness.start_authz(logdir, pool, [
        "--token-url", f"{provider.url}/token",
        "--userinfo-url", f"{provider.url}/me",
        "--revoke-url", f"{provider.url}/token/revocation",
        "--oauth-client-id", CLIENT_ID,
        "--redirect-uri", REDIRECT_URI,
        "--allowed-origin", ORIGIN,
    ], name="authz-code-flow", env_extra={"COGNITO_AUTHZ_CLIENT_SECRET": CLIENT_SECRET})
    yield provider, authz
    authz.stop()
    provider.stop()
    log = authz.output()
    # Positive control: the calls that carried the secret (as HTTP basic auth) are in the log.
    exchanged = [line for line in log.splitlines() if "token endpoint answered" in line
                 and 'grant="authorization_code"' in line and "status=200" in line]
    assert exchanged, log
    assert "revocation endpoint answered" in log
    assert CLIENT_SECRET not in log, "the client secret never reaches a log"


def cookie_value(set_cookie):
    name, _, rest = set_cookie.partition("=")
    assert name == "cognito_refresh"
    return rest.split(";", 1)[0]


def test_sign_in_refresh_and_logout_against_a_certified_provider(code_flow):
    provider, authz = code_flow
    base = f"http://127.0.0.1:{authz.http_port}"
    _, challenge = harness.pkce_pair()
    redirect = harness.scripted_login(provider.url, CLIENT_ID, REDIRECT_URI, challenge)
    assert redirect["state"] == "s-123" and "code" in redirect

    # The exchange needs the PKCE verifier: without it the provider refuses the code.
    refused = requests.post(f"{base}/auth/sign-in", json={"code": redirect["code"]}, timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Authorization code exchange failed"}

    verifier2, challenge2 = harness.pkce_pair()
    redirect = harness.scripted_login(provider.url, CLIENT_ID, REDIRECT_URI, challenge2)
    signed_in = requests.post(f"{base}/auth/sign-in", json={"code": redirect["code"], "code_verifier": verifier2},
                              timeout=10)
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert set(body) == {"access_token", "expires_in", "token_type"} and body["token_type"] == "Bearer"
    assert "HttpOnly" in signed_in.headers["set-cookie"] and "SameSite=Strict" in signed_in.headers["set-cookie"]
    refresh_1 = cookie_value(signed_in.headers["set-cookie"])

    headers = {"origin": ORIGIN, "cookie": f"cognito_refresh={refresh_1}"}
    refreshed = requests.post(f"{base}/auth/refresh", headers=headers, timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["access_token"] != body["access_token"]
    refresh_2 = cookie_value(refreshed.headers["set-cookie"])
    assert refresh_2 != refresh_1, "the provider rotates refresh tokens; the cookie follows"
    assert requests.post(f"{base}/auth/refresh", headers={"cookie": f"cognito_refresh={refresh_2}"},
                         timeout=10).status_code == 403, "no Origin, no cookie-only refresh"
    # The rotated cookie works (once: the provider rotates it again), so a refusal after the logout
    # below is the logout's doing, not a cookie that never worked.
    again = requests.post(f"{base}/auth/refresh", headers={"origin": ORIGIN, "cookie": f"cognito_refresh={refresh_2}"},
                          timeout=10)
    assert again.status_code == 200, again.text
    refresh_3 = cookie_value(again.headers["set-cookie"])

    logout = requests.post(f"{base}/auth/logout", headers={"origin": ORIGIN, "cookie": f"cognito_refresh={refresh_3}"},
                           timeout=10)
    assert logout.status_code == 200, logout.text
    assert "Max-Age=0" in logout.headers["set-cookie"]
    after = requests.post(f"{base}/auth/refresh", headers={"origin": ORIGIN, "cookie": f"cognito_refresh={refresh_3}"},
                          timeout=10)
    assert after.status_code == 401, "the revoked refresh token no longer refreshes"

    # A code works once; a replay is refused.
    replay = requests.post(f"{base}/auth/sign-in", json={"code": redirect["code"], "code_verifier": verifier2},
                           timeout=10)
    assert replay.status_code == 401
