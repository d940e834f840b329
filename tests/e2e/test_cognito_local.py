"""cognito-local, the Cognito emulator many teams already run beside their API, with the settings the
README gives for it (region, pool id, client id and the emulator's endpoint; the issuer and JWKS URL
follow from those), through the shipped envoy.yaml.

What cognito-local does differently from moto, and what the service does about each:
- pool ids are `local_…`, without a region: accepted only while `--cognito-endpoint` is on loopback
  (an AWS pool id must still look like `{region}_{id}` anywhere else);
- its issuer is plain http on its own address (`http://127.0.0.1:PORT/local_…`): accepted only on
  loopback with a loopback endpoint, and derived from the endpoint when `--issuer` is not given;
  the JWKS must then be on loopback too; a warning line at start-up says that rules were relaxed;
- pools use email addresses as usernames, and tokens carry `username` = the `sub`: `x-username` is
  the sub, and `AdminGetUser` by that username finds the user (cognito-local accepts either);
- tokens have no `origin_jti` (only `jti`): logout revokes the token itself; nothing else changes;
- tokens live 24 h, not 1 h.
"""

import boto3
import pytest
import requests

import harness

PASSWORD = "Correct-Horse-9-Battery"


class LocalPool:
    """A cognito-local user pool, as a team's set-up script makes one through the AWS SDK."""

    def __init__(self, url, name):
        self.moto_url = url  # the Cognito endpoint, as the harness calls it
        self.jwks_url = None  # derived by the service from the issuer
        self.idp = boto3.client("cognito-idp", region_name=harness.REGION, endpoint_url=url,
                                aws_access_key_id="local", aws_secret_access_key="local")
        self.id = self.idp.create_user_pool(PoolName=name)["UserPool"]["Id"]
        self.client_id = self.idp.create_user_pool_client(UserPoolId=self.id, ClientName="app")["UserPoolClient"][
            "ClientId"]
        self.subs = {}

    def add_user(self, email, groups=()):
        created = self.idp.admin_create_user(UserPoolId=self.id, Username=email, MessageAction="SUPPRESS",
                                             TemporaryPassword="Temporary-Pass-1")
        self.subs[email] = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
        self.idp.admin_set_user_password(UserPoolId=self.id, Username=email, Password=PASSWORD, Permanent=True)
        for group in groups:
            self.idp.admin_add_user_to_group(UserPoolId=self.id, Username=email, GroupName=group)
        return self.subs[email]

    def sign_in(self, email):
        result = self.idp.initiate_auth(ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                        AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD})
        return result["AuthenticationResult"]

    def enrol_totp(self, email):
        token = self.sign_in(email)["AccessToken"]
        secret = self.idp.associate_software_token(AccessToken=token)["SecretCode"]
        assert self.idp.verify_software_token(AccessToken=token, UserCode=harness.totp(secret))["Status"] == "SUCCESS"
        self.idp.set_user_mfa_preference(AccessToken=token,
                                         SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})


@pytest.fixture(scope="module")
def local(logdir, upstream):
    emulator = harness.start_cognito_local(logdir)
    pool, other = LocalPool(emulator.url, "team"), LocalPool(emulator.url, "other-team")
    pool.idp.create_group(GroupName="admin", UserPoolId=pool.id)
    authz = harness.start_authz(logdir, pool, name="authz-cognito-local")
    envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-cognito-local")
    yield pool, other, authz, envoy
    envoy.stop()
    authz.stop()
    emulator.stop()


def get(envoy, path, token):
    return requests.get(envoy.url + path, headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_the_service_says_at_start_up_that_it_relaxed_rules_for_an_emulator(local, authz):
    pool, other, local_authz, envoy = local
    log = local_authz.output()
    assert "\x1b[" not in log, "no terminal colours in a log file"
    warnings = [line for line in log.splitlines() if "a Cognito emulator on loopback" in line]
    assert len(warnings) == 1, "one warning line"
    assert "pool_id=true" in warnings[0] and "http_issuer=true" in warnings[0]
    assert "a Cognito emulator on loopback" not in authz.output(), "moto's AWS-shaped settings relax nothing"


def test_its_access_tokens_are_allowed_with_the_identity_headers_and_groups(local):
    pool, other, authz, envoy = local
    sub = pool.add_user("ana@example.com", ["admin"])
    response = get(envoy, "/api/mfa/status", pool.sign_in("ana@example.com")["AccessToken"])
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["x-user-id"] == [sub]
    assert seen["x-username"] == [sub], "cognito-local's username is the sub"
    assert seen["x-user-groups"] == ["admin"]


def test_an_id_token_and_a_token_of_another_pool_are_refused(local):
    pool, other, authz, envoy = local
    pool.add_user("ben@example.com")
    other.add_user("ben@example.com")
    assert get(envoy, "/api/mfa/status", pool.sign_in("ben@example.com")["AccessToken"]).status_code == 200
    id_token = get(envoy, "/api/mfa/status", pool.sign_in("ben@example.com")["IdToken"])
    assert (id_token.status_code, id_token.json()) == (401, {"detail": "Not an access token"})
    foreign = get(envoy, "/api/mfa/status", other.sign_in("ben@example.com")["AccessToken"])
    assert (foreign.status_code, foreign.json()) == (401, {"detail": "Could not validate credentials"})


def test_the_mfa_gate_asks_the_emulator_and_sees_an_enrolment(local):
    pool, other, authz, envoy = local
    pool.add_user("cy@example.com")
    token = pool.sign_in("cy@example.com")["AccessToken"]
    denied = get(envoy, "/api/items", token)
    assert (denied.status_code, denied.json()) == (403, {"detail": "MFA enrolment required (totp)"})
    pool.enrol_totp("cy@example.com")
    harness.wait_until(lambda: get(envoy, "/api/items", token).status_code == 200, timeout=6, what="enrolment seen")


def test_a_disabled_user_is_refused_on_an_mfa_route(local):
    pool, other, authz, envoy = local
    pool.add_user("di@example.com")
    pool.enrol_totp("di@example.com")
    token = pool.sign_in("di@example.com")["AccessToken"]
    assert get(envoy, "/api/items", token).status_code == 200
    pool.idp.admin_disable_user(UserPoolId=pool.id, Username="di@example.com")
    harness.wait_until(lambda: get(envoy, "/api/items", token).status_code == 401, timeout=6, what="disabled seen")
    assert get(envoy, "/api/items", token).json() == {"detail": "User is disabled"}


def test_me_is_answered_from_get_user(local):
    pool, other, authz, envoy = local
    sub = pool.add_user("eve@example.com")
    token = pool.sign_in("eve@example.com")["AccessToken"]
    me = requests.get(f"http://127.0.0.1:{authz.http_port}/auth/me", headers={"authorization": f"Bearer {token}"},
                      timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["source"] == "get_user"
    assert me.json()["sub"] == sub and me.json()["email"] == "eve@example.com"


def test_the_same_settings_against_a_remote_endpoint_are_refused_at_start_up(local):
    import subprocess

    pool, other, authz, envoy = local
    argv = [str(harness.BINARY), "serve", "--region", harness.REGION, "--user-pool-id", pool.id, "--client-id",
            pool.client_id, "--grpc-listen", "127.0.0.1:1", "--http-listen", "127.0.0.1:1", "--admin-listen",
            "127.0.0.1:1"]
    for endpoint in ("https://cognito-idp.us-east-1.amazonaws.com", "http://cognito.example:19229"):
        result = subprocess.run([*argv, "--cognito-endpoint", endpoint], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert "--user-pool-id (COGNITO_AUTHZ_USER_POOL_ID)" in result.stderr, result.stderr
    # Only the endpoint differs from the accepted settings: a loopback endpoint is what lets them in.
    with_issuer = [*argv, "--cognito-endpoint", "https://cognito-idp.us-east-1.amazonaws.com",
                   "--issuer", f"{pool.moto_url}/{pool.id}"]
    result = subprocess.run(with_issuer, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--user-pool-id" in result.stderr
