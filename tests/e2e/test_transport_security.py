"""Transport security with certificates made per run: a real Envoy reaches cognito-authz over mTLS
(the block in envoy/ext-authz-mtls.yaml spliced into the shipped configuration), an Envoy without
the client certificate gets no decision (503, never an allow), and revocations kept in a Redis that
speaks only TLS (`rediss://`)."""

import pathlib
import subprocess

import grpc
import pytest
import requests

import harness
import pki

SNIPPET = harness.ROOT / "envoy" / "ext-authz-mtls.yaml"
CLUSTER = "    - name: cognito_authz\n      type: STATIC\n"


def mtls_cluster(paths, client_certificate=True):
    """A transform for start_envoy: the shipped snippet, with this run's files, in the ext_authz cluster."""
    block = "".join(line for line in SNIPPET.read_text().splitlines(keepends=True) if not line.startswith("#"))
    for name in ("client.pem", "client.key", "ca.pem"):
        block = block.replace(f"/etc/cognito-authz/tls/{name}", str(pathlib.Path(paths["ca"]).parent / name))
    if not client_certificate:
        start = block.index("            tls_certificates:")
        end = block.index("            validation_context:")
        block = block[:start] + block[end:]

    def transform(text):
        assert text.count(CLUSTER) == 1, "the shipped envoy.yaml no longer has the cognito_authz cluster as expected"
        return text.replace(CLUSTER, CLUSTER + block)

    return transform


@pytest.fixture(scope="module")
def tls_files(logdir):
    return pki.write_pki(pathlib.Path(logdir) / "pki")


@pytest.fixture(scope="module")
def authz_mtls(logdir, pool, tls_files):
    args = ["--tls-cert", str(tls_files["server_cert"]), "--tls-key", str(tls_files["server_key"]),
            "--tls-client-ca", str(tls_files["ca"])]
    ports = (harness.free_port(), harness.free_port(), harness.free_port())

    def ready():
        # HTTPS, trusting only the test CA, by the name in the server certificate.
        return requests.get(f"https://localhost:{ports[1]}/healthz", verify=str(tls_files["ca"]), timeout=1).ok

    proc = harness.start_authz(logdir, pool, args, name="authz-mtls", ports=ports, ready=ready)
    yield proc
    proc.stop()


def test_envoy_with_the_client_certificate_gets_decisions_over_mtls(logdir, pool, upstream, authz_mtls, tls_files):
    envoy = harness.start_envoy(logdir, authz_mtls.grpc_port, authz_mtls.http_port, upstream.port,
                                name="envoy-mtls", transform=mtls_cluster(tls_files))
    try:
        token = pool.sign_in("alice")["AccessToken"]
        allowed = requests.get(envoy.url + "/api/items", headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["headers"]["x-user-id"] == [pool.subs["alice"]]
        refused = requests.get(envoy.url + "/api/items", headers={"authorization": "Bearer x.y.z"}, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer ")
    finally:
        envoy.stop()


def test_envoy_without_the_client_certificate_gets_503_never_an_allow(logdir, pool, upstream, authz_mtls, tls_files):
    envoy = harness.start_envoy(logdir, authz_mtls.grpc_port, authz_mtls.http_port, upstream.port,
                                name="envoy-no-client-cert", transform=mtls_cluster(tls_files, client_certificate=False))
    try:
        token = pool.sign_in("alice")["AccessToken"]
        before = len(upstream.requests)
        response = requests.get(envoy.url + "/api/items", headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 503, response.text
        assert len(upstream.requests) == before, "nothing reached the upstream"
    finally:
        envoy.stop()


def test_plaintext_clients_get_nothing_from_the_tls_listeners(authz_mtls, tls_files):
    # Positive control: over TLS, by the certificate's name, the same listener answers.
    https = requests.get(f"https://localhost:{authz_mtls.http_port}/healthz", verify=str(tls_files["ca"]), timeout=2)
    assert https.ok, https.text
    with pytest.raises(grpc.RpcError) as failed:
        harness.grpc_health(authz_mtls.grpc_port, "")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{authz_mtls.http_port}/healthz", timeout=2)


def test_revocations_in_a_redis_that_speaks_only_tls(logdir, pool, tls_files):
    port = harness.free_port()
    data = pathlib.Path(logdir) / "redis-tls-data"
    data.mkdir(exist_ok=True)
    redis = harness.Process("redis-tls", [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(tls_files["server_cert"]), "--tls-key-file", str(tls_files["server_key"]),
        "--tls-ca-cert-file", str(tls_files["ca"]), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "yes", "--dir", str(data), "--daemonize", "no"], logdir)
    cli = ["redis-cli", "--tls", "--cacert", str(tls_files["ca"]), "-h", "localhost", "-p", str(port)]
    harness.wait_until(lambda: subprocess.run(cli + ["PING"], capture_output=True, text=True).stdout.strip() == "PONG",
                       what="redis with TLS")
    # rustls reads the trusted roots from SSL_CERT_FILE, so the test CA is trusted and nothing else.
    authz = harness.start_authz(logdir, pool, ["--revocation-store", f"rediss://localhost:{port}/0"],
                                name="authz-rediss", env_extra={"SSL_CERT_FILE": str(tls_files["ca"])})
    try:
        harness.wait_until(lambda: harness.grpc_health(authz.grpc_port, "") == "SERVING", what="serving on rediss")
        token = pool.sign_in("alice")["AccessToken"]
        assert harness.check_cli(authz.grpc_port, token, "authenticated") == "allow"
        response = requests.get(f"http://127.0.0.1:{authz.http_port}/auth/logout",
                                headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200, response.text
        assert harness.check_cli(authz.grpc_port, token, "authenticated") == "deny 401"
        keys = subprocess.run(cli + ["--scan"], capture_output=True, text=True).stdout.split()
        assert any(k.startswith("cognito-authz:") for k in keys), keys
    finally:
        authz.stop()
        redis.stop()
