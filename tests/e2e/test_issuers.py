"""Several issuers in one server (issue 13), end to end through the shipped Envoy: two moto user
pools, a Cognito-shaped pool with a key of its own (served here), and a certified OpenID provider
(oidc-provider) issuing JWT access tokens for a resource, all in one cognito-authz configured with
`[[issuer]]` tables.

What moto can and cannot show: moto signs every pool's tokens with one key (`kid: dummy`). So a
token "signed with pool A's key naming pool B" is, with moto, signed with pool B's key too, and no
verifier could refuse it for its signature; it is refused for its `client_id` (pool A's app
client is not pool B's). That per-issuer keys keep one issuer's key from verifying another's
tokens is shown with the `keyed` pool, whose own key is not moto's (and, in-process, in
tests/service/issuers.rs)."""

import json
import time
import uuid
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import pytest
import requests

import harness

KEYED_POOL = f"{harness.REGION}_Keyed"
KEYED_CLIENT = "keyed-client"
API = "https://api.example.com"
OTHER_API = "https://other.example.com"
CLIENT_ID = "partner-app"
CLIENT_SECRET = "a-test-secret-made-for-this-run"
REDIRECT_URI = "https://app.example.com/callback"

def route(name, prefix, extensions):
    """An Envoy route to the app with these ext_authz context extensions, indented for envoy.yaml."""
    return f"""                        - name: {name}
                          match: {{ prefix: {prefix} }}
                          route: {{ cluster: app }}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings:
                                context_extensions: {{ {extensions} }}
"""


EXTRA_ROUTES = (route("staff-news", "/news/", 'access: public, issuers: "staff"')
                + route("loose-groups", "/loose/", 'access: authenticated, groups: "admin"')
                + route("staff-only", "/staff/", 'access: authenticated, issuers: "staff"'))


class KeyedJwks:
    """A JWKS endpoint for the `keyed` pool, with a key of its own; it can go down, and rotate."""

    def __init__(self):
        from joserfc.jwk import RSAKey

        self.keys = {"keyed-1": RSAKey.generate_key(2048, parameters={"kid": "keyed-1"}, private=True)}
        self.serving = ["keyed-1"]
        self.down = False
        self.server = harness.JsonServer(self._answer)
        self.url = f"http://127.0.0.1:{self.server.port}/jwks.json"

    def _answer(self, _path, _headers):
        if self.down:
            return 503, None
        return 200, {"keys": [{**self.keys[k].as_dict(private=False), "use": "sig", "alg": "RS256"}
                              for k in self.serving]}

    def add_key(self, kid):
        from joserfc.jwk import RSAKey

        self.keys[kid] = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)

    def sign(self, claims, kid="keyed-1"):
        from joserfc import jwt

        return jwt.encode({"alg": "RS256", "kid": kid}, claims, self.keys[kid])

    def stop(self):
        self.server.stop()


def keyed_claims(iss=None):
    now = int(time.time())
    return {"sub": str(uuid.uuid4()), "iss": iss or f"https://cognito-idp.{harness.REGION}.amazonaws.com/{KEYED_POOL}",
            "client_id": KEYED_CLIENT, "token_use": "access", "scope": "aws.cognito.signin.user.admin",
            "username": "kim", "auth_time": now, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4()),
            "origin_jti": str(uuid.uuid4())}


def start_provider(logdir, usernames=None):
    from joserfc.jwk import RSAKey

    port = harness.free_port()
    key = RSAKey.generate_key(2048, parameters={"kid": "provider-1", "alg": "RS256", "use": "sig"}, private=True)
    env = {"PORT": str(port), "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "REDIRECT_URI": REDIRECT_URI,
           "RESOURCE": API, "OTHER_RESOURCE": OTHER_API, "USERNAMES": json.dumps(usernames or {}),
           "JWKS": json.dumps({"keys": [key.as_dict(private=True)]})}
    import os

    proc = harness.Process("oidc-resource-provider", ["node", str(harness.OIDC_DIR / "resource-provider.mjs")], logdir,
                           dict(os.environ, **env))
    proc.url = f"http://127.0.0.1:{port}"
    proc.key = key
    harness.wait_until(lambda: requests.get(f"{proc.url}/.well-known/openid-configuration", timeout=1).ok,
                       what="oidc-provider")
    return proc


def oidc_access_token(provider_url, user, resource=API):
    return oidc_tokens(provider_url, user, resource)["access_token"]


def oidc_tokens(provider_url, user, resource=API):
    """The code flow with PKCE and a resource indicator, scripted as harness.scripted_login does."""
    verifier, challenge = harness.pkce_pair()
    session = requests.Session()
    query = urlencode({"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT_URI,
                       "scope": "openid api:read", "prompt": "consent", "state": "s-1", "resource": resource,
                       "nonce": "n-" + uuid.uuid4().hex,
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    url = f"{provider_url}/auth?{query}"
    response = session.get(url, allow_redirects=False, timeout=10)
    forms = [{"prompt": "login", "login": user, "password": "any"}, {"prompt": "consent"}]
    code = None
    for _ in range(20):
        location = response.headers.get("location")
        if location is None:
            response = session.post(url, data=forms.pop(0), allow_redirects=False, timeout=10)
            continue
        url = urljoin(url, location)
        if url.startswith(REDIRECT_URI):
            code = parse_qs(urlparse(url).query)["code"][0]
            break
        response = session.get(url, allow_redirects=False, timeout=10)
    assert code, "the scripted login reached the redirect_uri"
    token = requests.post(f"{provider_url}/token", auth=(CLIENT_ID, CLIENT_SECRET), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
        "resource": resource})
    assert token.ok, token.text
    return token.json()


def write_config(path, staff, customers, keyed_jwks, provider_url):
    tables = f"""
[[issuer]]
name = "staff"
region = "{harness.REGION}"
user-pool-id = "{staff.id}"
client-id = ["{staff.client_id}"]
jwks-url = "{staff.jwks_url}"
cognito-endpoint = "{staff.moto_url}"

[[issuer]]
name = "customers"
kind = "cognito"
region = "{harness.REGION}"
user-pool-id = "{customers.id}"
client-id = ["{customers.client_id}"]
jwks-url = "{customers.jwks_url}"
cognito-endpoint = "{customers.moto_url}"

[[issuer]]
name = "keyed"
region = "{harness.REGION}"
user-pool-id = "{KEYED_POOL}"
client-id = ["{KEYED_CLIENT}"]
jwks-url = "{keyed_jwks.url}"

[[issuer]]
name = "partners"
kind = "oidc"
issuer = "{provider_url}"
# The client id too, as Entra ID and Okta setups often accept it: then an ID token (whose `aud` is
# the client) would pass the audience check, and only its ID-token markers refuse it.
audience = ["{API}", "{CLIENT_ID}"]
mfa-amr = ["mfa", "otp"]
"""
    path.write_text(tables)


def write_policy(path):
    """The shipped envoy/policy.toml with its admin rule tied to the staff pool (with several
    issuers, a rule's groups must name their issuers), and the rules of the shadow case."""
    shipped = (harness.ROOT / "envoy" / "policy.toml").read_text()
    admin_rule = 'prefix = "/api/admin"\naccess = "mfa"\ngroups = ["admin"]\n'
    assert shipped.count(admin_rule) == 1, "the shipped policy still has its admin rule"
    tied = shipped.replace(admin_rule, admin_rule + 'issuers = ["staff"]\n')
    path.write_text(tied + """
# Rolling out /api/v2 in shadow, but purging items is enforced.
[[rule]]
path = "/api/v2/items:purge"
access = "mfa"

[[rule]]
prefix = "/api/v2"
access = "authenticated"
mode = "shadow"

[[rule]]
path = "/api/export"
access = "mfa"
groups = ["admin"]
issuers = ["staff"]

[[rule]]
methods = ["GET"]
path = "/api/report"
access = "mfa"
groups = ["admin"]
issuers = ["staff"]
""")


def with_extra_routes(text):
    app_route = "                        - name: app\n"
    assert text.count(app_route) == 1, "the shipped envoy.yaml still ends with the `app` route"
    return text.replace(app_route, EXTRA_ROUTES + app_route)


@pytest.fixture(scope="module")
def world(logdir, moto, pool, upstream):
    customers = harness.Pool(moto)
    # The same username in both pools; only in the staff pool has alice enrolled TOTP.
    customers.admin_reset_mfa("alice")
    # In the staff pool: grace, enrolled, in `admin` (the shipped policy's group); alice is
    # enrolled and in `admins` only.
    pool.with_admin()
    keyed = KeyedJwks()
    # A provider account that mints the staff alice's very `sub` and username.
    provider = start_provider(logdir, usernames={pool.subs["alice"]: "alice"})
    config = logdir / "issuers.toml"
    write_config(config, pool, customers, keyed, provider.url)
    policy = logdir / "issuers-policy.toml"
    write_policy(policy)
    ports = (harness.free_port(), harness.free_port(), harness.free_port())
    argv = [str(harness.BINARY), "serve", "--config", str(config), "--policy", str(policy),
            "--unqualified-issuer", "staff",
            "--grpc-listen", f"127.0.0.1:{ports[0]}", "--http-listen", f"127.0.0.1:{ports[1]}",
            "--admin-listen", f"127.0.0.1:{ports[2]}", "--mfa-cache-ttl", "1",
            "--jwks-fetch-wait-ms", "1000", "--jwks-cooldown-seconds", "1", "--data-dir", str(logdir / "authz-issuers-data")]
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"RUST_LOG": "info,cognito_authz=debug", "AWS_EC2_METADATA_DISABLED": "true",
                **harness.AWS_TEST_CREDENTIALS})
    authz = harness.Process("authz-issuers", argv, logdir, env)
    authz.grpc_port, authz.http_port = ports[0], ports[1]
    # SERVING only once every issuer has loaded its keys (the OIDC one through discovery).
    harness.wait_until(lambda: harness.grpc_health(ports[0], "") == "SERVING", timeout=30, what="every issuer's keys")
    envoy = harness.start_envoy(logdir, ports[0], ports[1], upstream.port, name="envoy-issuers",
                                transform=with_extra_routes)
    yield {"staff": pool, "customers": customers, "keyed": keyed, "provider": provider, "authz": authz,
           "envoy": envoy}
    envoy.stop()
    authz.stop()
    provider.stop()
    keyed.stop()
    log = authz.output()
    # Positive control: the refusals of this module's tests were logged (with their reasons).
    assert "request denied" in log and "ambiguous_route" in log, "the denials reached the log"
    assert "eyJ" not in log, "a token (or a piece of one) reached the log"


def get(world, path, token):
    return requests.get(world["envoy"].url + path, headers={"authorization": f"Bearer {token}"}, timeout=10)


def seen(response):
    assert response.status_code == 200, response.text
    return response.json()["headers"]


def test_every_issuers_tokens_pass_through_envoy_naming_their_issuer(world):
    staff = seen(get(world, "/api/mfa/status", world["staff"].sign_in("alice")["AccessToken"]))
    # `--unqualified-issuer staff`: the staff pool keeps the single-pool headers.
    assert staff["x-user-issuer"] == ["staff"] and staff["x-user-id"] == [world["staff"].subs["alice"]]
    assert staff["x-username"] == ["alice"]
    customers = seen(get(world, "/api/mfa/status", world["customers"].sign_in("alice")["AccessToken"]))
    assert customers["x-user-issuer"] == ["customers"]
    # The same username, the other pool's user: qualified by its issuer.
    assert customers["x-user-id"] == ["customers:" + world["customers"].subs["alice"]]
    assert customers["x-username"] == ["customers:alice"]
    assert seen(get(world, "/api/mfa/status", world["keyed"].sign(keyed_claims())))["x-user-issuer"] == ["keyed"]
    partner = seen(get(world, "/api/mfa/status", oidc_access_token(world["provider"].url, "pat")))
    assert partner["x-user-issuer"] == ["partners"]
    assert partner["x-user-id"] == ["partners:pat"] and partner["x-username"] == ["partners:pat"]


def test_a_token_is_refused_unless_the_issuer_it_names_signed_it(world):
    keyed_claims_ = keyed_claims()
    assert get(world, "/api/mfa/status", world["keyed"].sign(keyed_claims_)).status_code == 200, "its own key"
    # The same claims signed with moto's key (the staff pool's): the keyed pool does not know it.
    forged = harness.resign(world["staff"].sign_in("alice")["AccessToken"], **keyed_claims_)
    refused = get(world, "/api/mfa/status", forged)
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # moto's pools share one key, so a staff token renamed to the customers pool is refused for
    # its app client, not its signature; with the customers' client it would pass (moto's limit).
    staff_token = world["staff"].sign_in("alice")["AccessToken"]
    renamed = harness.resign(staff_token, iss=world["customers"].issuer)
    assert get(world, "/api/mfa/status", renamed).status_code == 401
    both = harness.resign(staff_token, iss=world["customers"].issuer, client_id=world["customers"].client_id)
    assert get(world, "/api/mfa/status", both).status_code == 200


def test_a_route_restricted_to_one_issuer_through_envoy(world):
    staff = world["staff"].sign_in("alice")["AccessToken"]
    assert seen(get(world, "/staff/reports", staff))["x-user-issuer"] == ["staff"]
    for token in (world["customers"].sign_in("alice")["AccessToken"],
                  oidc_access_token(world["provider"].url, "pat")):
        refused = get(world, "/staff/reports", token)
        assert refused.status_code == 403, refused.text
        assert refused.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", error_description="Token issuer is not accepted on this route"')
        assert refused.json() == {"detail": "Token issuer is not accepted on this route"}


def test_mfa_is_asked_of_the_tokens_own_pool(world):
    # alice enrolled TOTP in the staff pool only: asking the wrong pool would let both in, or neither.
    assert get(world, "/reports", world["staff"].sign_in("alice")["AccessToken"]).status_code == 200
    refused = get(world, "/reports", world["customers"].sign_in("alice")["AccessToken"])
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "MFA enrolment required (totp)"}


def test_oidc_jwt_access_tokens_with_audience_and_step_up(world):
    url = world["provider"].url
    one_factor = oidc_access_token(url, "pat")
    assert get(world, "/api/mfa/status", one_factor).status_code == 200, "authenticated route: one factor is enough"
    step_up = get(world, "/reports", one_factor)
    assert step_up.status_code == 401, step_up.text
    assert step_up.headers["www-authenticate"] == (
        'Bearer error="insufficient_user_authentication", error_description="Multi-factor authentication required"')
    assert step_up.json() == {"detail": "Multi-factor authentication required"}
    assert seen(get(world, "/reports", oidc_access_token(url, "pat-otp")))["x-user-issuer"] == ["partners"]
    other_audience = get(world, "/api/mfa/status", oidc_access_token(url, "pat", resource=OTHER_API))
    assert other_audience.status_code == 401, other_audience.text
    assert other_audience.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_one_issuers_keys_down_makes_only_its_tokens_503(world):
    keyed = world["keyed"]
    keyed.add_key("keyed-2")
    keyed.serving = ["keyed-1", "keyed-2"]
    keyed.down = True
    # Past the unknown-kid cooldown (1 s here) an earlier test's forged `kid` may have started: a
    # new `kid` is then fetched for, not refused as unknown.
    time.sleep(1.2)
    rotated = keyed.sign(keyed_claims(), kid="keyed-2")
    down = get(world, "/api/mfa/status", rotated)
    assert down.status_code == 503, down.text
    # Every other issuer's tokens are decided as before, fresh sign-ins included.
    # (bob: he has no TOTP to answer, so his sign-ins need no fresh code.)
    assert get(world, "/api/mfa/status", world["staff"].sign_in("bob")["AccessToken"]).status_code == 200
    assert get(world, "/api/mfa/status", world["customers"].sign_in("bob")["AccessToken"]).status_code == 200
    assert get(world, "/api/mfa/status", oidc_access_token(world["provider"].url, "pat")).status_code == 200
    # And the keyed pool's own token passes once its keys can be fetched again.
    keyed.down = False
    harness.wait_until(lambda: get(world, "/api/mfa/status", rotated).status_code == 200, timeout=15,
                       what="the keyed pool's keys back")


# Issue 24: issuers are trust boundaries, through the shipped Envoy and policy.

def test_a_providers_admin_group_is_not_the_staff_pools(world):
    grace = world["staff"].sign_in("grace")["AccessToken"]
    assert seen(get(world, "/api/admin/users", grace))["x-user-groups"] == ["admin"], "the staff pool's admin"
    partner = oidc_access_token(world["provider"].url, "pat-admin-otp")
    refused = get(world, "/api/admin/users", partner)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "Token issuer is not accepted on this route"}
    # Where the groups come along on an authenticated route, they are the provider's own, qualified.
    assert seen(get(world, "/api/mfa/status", partner))["x-user-groups"] == ["partners:admin"]


def test_envoy_groups_that_name_no_issuer_are_refused_for_everyone(world):
    grace = world["staff"].sign_in("grace")["AccessToken"]
    for token in (grace, oidc_access_token(world["provider"].url, "pat-admin")):
        refused = get(world, "/loose/x", token)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {"detail": "Route names groups or scopes without their issuer"}
    # Positive control: the same token on a route that says nothing of groups.
    assert get(world, "/api/mfa/status", grace).status_code == 200
    assert "ambiguous_route" in world["authz"].output(), "the decision log names the reason"


def test_a_provider_minting_a_staff_users_sub_and_name_is_another_user(world):
    alice_sub = world["staff"].subs["alice"]
    staff = seen(get(world, "/api/mfa/status", world["staff"].sign_in("alice")["AccessToken"]))
    mimic = seen(get(world, "/api/mfa/status", oidc_access_token(world["provider"].url, alice_sub)))
    assert mimic["x-user-issuer"] == ["partners"]
    assert mimic["x-user-id"] == ["partners:" + alice_sub] and mimic["x-username"] == ["partners:alice"]
    assert (staff["x-user-id"], staff["x-username"]) == ([alice_sub], ["alice"])
    assert mimic["x-user-id"] != staff["x-user-id"] and mimic["x-username"] != staff["x-username"]


def test_another_issuers_token_on_a_staff_public_route_is_anonymous(world):
    staff = seen(get(world, "/news/today", world["staff"].sign_in("alice")["AccessToken"]))
    assert staff["x-user-issuer"] == ["staff"], "positive control: the staff token is seen"
    partner = seen(get(world, "/news/today", oidc_access_token(world["provider"].url, "pat")))
    for header in ("x-user-id", "x-username", "x-user-groups", "x-user-issuer"):
        assert header not in partner, (header, partner)


def stamped(provider, token, **header):
    """The provider's own token with its header changed, signed again with the provider's key: an
    ID token as Auth0, Okta or Entra ID issue theirs (`typ: JWT`)."""
    from joserfc import jwt

    claims = jwt.decode(token, provider.key).claims
    return jwt.encode({"alg": "RS256", "kid": "provider-1", **header}, claims, provider.key)


def test_an_oidc_id_token_is_refused_whatever_its_typ(world):
    provider = world["provider"]
    tokens = oidc_tokens(provider.url, "pat")
    access = stamped(provider, tokens["access_token"], typ="JWT")
    assert get(world, "/api/mfa/status", access).status_code == 200, "an access token stamped typ JWT passes"
    for id_token in (tokens["id_token"], stamped(provider, tokens["id_token"], typ="JWT")):
        refused = get(world, "/api/mfa/status", id_token)
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"detail": "Not an access token"}


def test_one_enforced_spelling_wins_over_a_shadowed_prefix(world):
    observed = requests.post(world["envoy"].url + "/api/v2/items", timeout=10)
    assert observed.status_code == 200, "the shadowed prefix only observes: " + observed.text
    for path in ("/api/v2/items:purge", "/api/v2/items%3Apurge", "/api/v2/items%3apurge"):
        refused = requests.post(world["envoy"].url + path, timeout=10)
        assert refused.status_code == 401, (path, refused.text)


def test_spellings_an_upstream_router_treats_alike_need_the_rules_groups(world):
    alice = world["staff"].sign_in("alice")["AccessToken"]
    grace = world["staff"].sign_in("grace")["AccessToken"]
    cases = [("GET", "/api/admin.json"), ("GET", "/api/export/"), ("GET", "/api/export.csv"), ("HEAD", "/api/report")]
    for method, path in cases:
        headers = {"authorization": f"Bearer {grace}"}
        allowed = requests.request(method, world["envoy"].url + path, headers=headers, timeout=10)
        assert allowed.status_code == 200, (method, path, "an admin passes", allowed.text)
        headers = {"authorization": f"Bearer {alice}"}
        refused = requests.request(method, world["envoy"].url + path, headers=headers, timeout=10)
        assert refused.status_code == 403, (method, path, refused.text)
