"""`cognito-authz dev` serves a local hosted UI with Cognito's OAuth endpoints, and its companion
module signs in through it: the whole code flow with PKCE, refresh, userinfo and logout with no
AWS, TOTP for an enrolled user, and an enrolment page. Protocol details here; the browser walk is
test_browser.py."""

import json
import re
import subprocess
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests

import harness

REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the test reads the redirect itself
ORIGIN = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def dev(logdir, tmp_path_factory):
    data = tmp_path_factory.mktemp("dev-data")
    grpc, http, admin = harness.free_port(), harness.free_port(), harness.free_port()
    argv = [str(harness.BINARY), "dev", "--data-dir", str(data), "--grpc-listen", f"127.0.0.1:{grpc}",
            "--http-listen", f"127.0.0.1:{http}", "--admin-listen", f"127.0.0.1:{admin}", "--allowed-origin", ORIGIN]
    proc = harness.Process("dev-hosted-ui", argv, logdir, dict(__import__("os").environ, RUST_LOG="info"))
    proc.url, proc.grpc_port, proc.data = f"http://127.0.0.1:{http}", grpc, data
    harness.wait_until(lambda: requests.get(f"{proc.url}/healthz", timeout=1).ok, what="dev server")
    users = subprocess.run([str(harness.BINARY), "dev", "--data-dir", str(data), "users", "--json"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    proc.users = {u["username"]: u for u in json.loads(users)}
    yield proc
    proc.stop()


def sign_in(dev, user, totp=None, verifier=None, state="s-1"):
    """The browser's part: authorize, fill the form, follow the redirect. Returns the redirect's query."""
    verifier_, challenge = harness.pkce_pair()
    verifier = verifier or verifier_
    query = urlencode({"response_type": "code", "client_id": "cognito-authz-dev-client", "redirect_uri": REDIRECT,
                       "state": state, "scope": "openid email aws.cognito.signin.user.admin",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    authorize = requests.get(f"{dev.url}/oauth2/authorize?{query}", allow_redirects=False, timeout=10)
    assert authorize.status_code in (302, 303) and authorize.headers["location"].startswith("/login?")
    form = requests.get(dev.url + authorize.headers["location"], timeout=10)
    assert 'name="password"' in form.text and 'id="signin"' in form.text
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form.text))
    fields.update(username=user["username"], password=user["password"], totp=totp or "")
    posted = requests.post(f"{dev.url}/login", data=fields, allow_redirects=False, timeout=10)
    if posted.status_code != 303 and posted.status_code != 302:
        return {"error": re.search(r'<p id="error">([^<]*)</p>', posted.text).group(1)}, verifier
    location = posted.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}, verifier


def exchange(dev, code, verifier):
    return requests.post(f"{dev.url}/auth/sign-in", json={"code": code, "redirect_uri": REDIRECT,
                                                          "code_verifier": verifier}, timeout=10)


def decide(dev, token, access="mfa"):
    return harness.check_cli(dev.grpc_port, token, access)


def test_alice_signs_in_with_her_authenticator_and_the_whole_session_works(dev):
    alice = dev.users["alice"]
    assert alice["mfa"] and alice["totp_secret"]
    refused, _ = sign_in(dev, alice, totp="000000")
    assert refused == {"error": "Invalid code received for user"}, "an enrolled user needs the right code"
    redirect, verifier = sign_in(dev, alice, totp=harness.totp(alice["totp_secret"]), state="s-42")
    assert redirect["state"] == "s-42"
    signed_in = exchange(dev, redirect["code"], verifier)
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("cognito_refresh=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert decide(dev, token) == "allow"
    claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
    assert {"origin_jti", "auth_time", "event_id", "jti"} <= claims.keys() and claims["username"] == "alice"
    assert exchange(dev, redirect["code"], verifier).status_code == 401, "a code serves once"
    refresh_cookie = cookie.split(";")[0]
    refreshed = requests.post(f"{dev.url}/auth/refresh", headers={"cookie": refresh_cookie, "origin": ORIGIN},
                              timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    new_token = refreshed.json()["access_token"]
    new_claims = json.loads(__import__("base64").urlsafe_b64decode(new_token.split(".")[1] + "=="))
    assert new_token != token and new_claims["origin_jti"] == claims["origin_jti"], "the same sign-in"
    me = requests.get(f"{dev.url}/auth/me", headers={"authorization": f"Bearer {new_token}"}, timeout=10)
    assert me.status_code == 200 and me.json()["source"] == "userinfo" and me.json()["username"] == "alice"
    out = requests.post(f"{dev.url}/auth/logout", headers={"authorization": f"Bearer {new_token}",
                                                           "cookie": refresh_cookie, "origin": ORIGIN}, timeout=10)
    assert out.status_code == 200, out.text
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert decide(dev, token) == "deny 401" and decide(dev, new_token) == "deny 401", "the whole sign-in is revoked"
    again = requests.post(f"{dev.url}/auth/refresh", headers={"cookie": refresh_cookie, "origin": ORIGIN}, timeout=10)
    assert again.status_code == 401, "the refresh token was revoked at the hosted UI"


def test_a_wrong_pkce_verifier_or_password_gets_nothing(dev):
    alice = dev.users["alice"]
    redirect, _ = sign_in(dev, alice, totp=harness.totp(alice["totp_secret"]))
    assert exchange(dev, redirect["code"], "x" * 50).status_code == 401
    wrong, _ = sign_in(dev, dict(alice, password="not-it"), totp=harness.totp(alice["totp_secret"]))
    assert wrong == {"error": "Incorrect username or password."}


def test_bob_is_refused_until_he_enrols_on_the_totp_page(dev):
    bob = dev.users["bob"]
    redirect, verifier = sign_in(dev, bob)
    token = exchange(dev, redirect["code"], verifier).json()["access_token"]
    assert decide(dev, token) == "deny 403"
    page = requests.post(f"{dev.url}/mfa/enrol", data={"username": "bob", "password": bob["password"]}, timeout=10)
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)
    assert f"otpauth://totp/cognito-authz%20dev:bob?secret={secret}" in page.text
    enrolment = re.search(r'name="enrolment" value="([^"]+)"', page.text).group(1)
    wrong = requests.post(f"{dev.url}/mfa/enrol/verify", data={"enrolment": enrolment, "code": "000000"}, timeout=10)
    assert 'id="enrolled"' not in wrong.text
    page = requests.post(f"{dev.url}/mfa/enrol", data={"username": "bob", "password": bob["password"]}, timeout=10)
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)
    enrolment = re.search(r'name="enrolment" value="([^"]+)"', page.text).group(1)
    done = requests.post(f"{dev.url}/mfa/enrol/verify", data={"enrolment": enrolment, "code": harness.totp(secret)},
                         timeout=10)
    assert 'id="enrolled"' in done.text
    harness.wait_until(lambda: decide(dev, token) == "allow", timeout=10, what="enrolment seen by the MFA gate")


def test_the_sign_in_page_escapes_what_it_echoes(dev):
    _, challenge = harness.pkce_pair()
    query = urlencode({"response_type": "code", "client_id": "cognito-authz-dev-client", "redirect_uri": REDIRECT,
                       "state": '"><script>alert(1)</script>', "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    page = requests.get(f"{dev.url}/login?{query}", timeout=10)
    assert page.status_code == 200 and 'id="signin"' in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    foreign = requests.get(f"{dev.url}/oauth2/authorize?" + query.replace("127.0.0.1%3A9", "evil.example"),
                           allow_redirects=False, timeout=10)
    assert foreign.status_code == 400 and foreign.json() == {"error": "redirect_mismatch"}


def test_serve_has_no_hosted_ui(authz):
    assert requests.get(f"http://127.0.0.1:{authz.http_port}/healthz", timeout=5).status_code == 200
    for path in ("/oauth2/authorize", "/login", "/mfa/enrol"):
        assert requests.get(f"http://127.0.0.1:{authz.http_port}{path}", timeout=5).status_code == 404, path
