"""Processes the end-to-end tests run for real on 127.0.0.1: moto_server as Cognito, an echo
upstream, cognito-authz, and Envoy from the shipped envoy/envoy.yaml (ports swapped only).

Every process is started on a free port, its PID recorded, and exactly that process stopped."""

import gzip
import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("COGNITO_AUTHZ_BIN", ROOT / "target" / "debug" / "cognito-authz"))
REGION = "us-east-1"


def _load_demo():
    """demo/run.py, the browser demo: standard library only, so the tests can share its pieces."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_run", ROOT / "demo" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()
# One source of ports for the tests and the demo they start, so neither hands out the other's.
free_port = demo.free_port


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """The demo's `wait_until`, polling faster: the last exception is reported on a timeout."""
    return demo.wait_until(predicate, timeout=timeout, what=what, interval=interval)


class Process(demo.Child):
    """A child process whose output goes to a log file, stopped by PID (the demo's), and
    remembered: what a failed test or fixture left running is stopped when the session ends
    (`stop_left_running`), so no Redis or replica outlives the run."""

    started = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Process.started.append(self)


def stop_left_running():
    """Stops every process the session started that still runs; returns their names."""
    left = [proc for proc in Process.started if proc.alive()]
    for proc in left:
        proc.stop(timeout=5)
    return [proc.name for proc in left]


class JsonServer:
    """A loopback HTTP server answering every GET (and HEAD and POST, a body read and dropped)
    with `answer(path, headers)`: a status and a JSON document, or None for an empty body."""

    def __init__(self, answer):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self, head=False):
                status, document = answer(self.path, self.headers)
                body = b"" if document is None else json.dumps(document).encode()
                self.send_response(status)
                if document is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.do_GET()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class EchoUpstream(JsonServer):
    """The application behind Envoy: answers every request with the headers it received."""

    def __init__(self):
        self.requests = []
        super().__init__(self._echo)

    def _echo(self, path, received):
        headers = {}
        for key, value in received.items():
            headers.setdefault(key.lower(), []).append(value)
        self.requests.append({"path": path, "headers": headers})
        return 200, {"path": path, "headers": headers}


def start_moto(logdir):
    port = free_port()
    env = dict(os.environ, MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP="true")
    moto_server = pathlib.Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "moto_server"
    proc = Process("moto", [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], logdir, env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/moto-api/data.json", timeout=1).ok, what="moto_server")
    return proc, url


def cognito_client(moto_url):
    import boto3

    return boto3.client(
        "cognito-idp",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


PASSWORD = "Correct-Horse-9-Battery"


class Pool:
    """A user pool made through moto's Cognito API: two app clients, alice (in groups) and bob."""

    def __init__(self, moto_url):
        self.idp = cognito_client(moto_url)
        self.moto_url = moto_url
        self.id = self.idp.create_user_pool(PoolName="e2e")["UserPool"]["Id"]
        flows = ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
        self.client_id = self.idp.create_user_pool_client(UserPoolId=self.id, ClientName="app", ExplicitAuthFlows=flows)[
            "UserPoolClient"
        ]["ClientId"]
        self.other_client_id = self.idp.create_user_pool_client(
            UserPoolId=self.id, ClientName="other", ExplicitAuthFlows=flows
        )["UserPoolClient"]["ClientId"]
        for group in ("admins", "team a,b"):
            self.idp.create_group(GroupName=group, UserPoolId=self.id)
        self.subs = {}
        self.totp_secrets = {}
        self.add_user("alice", ["admins", "team a,b"])
        self.enrol_totp("alice")
        self.add_user("bob")

    def add_user(self, user, groups=()):
        created = self.idp.admin_create_user(UserPoolId=self.id, Username=user, MessageAction="SUPPRESS")
        self.subs[user] = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
        self.idp.admin_set_user_password(UserPoolId=self.id, Username=user, Password=PASSWORD, Permanent=True)
        for group in groups:
            self.idp.admin_add_user_to_group(UserPoolId=self.id, Username=user, GroupName=group)

    def with_admin(self):
        """grace: enrolled, in `admin` (the shipped policy's group), made once for the pool; alice is
        enrolled and in `admins` only, bob enrolled nothing."""
        if "grace" not in self.subs:
            self.idp.create_group(GroupName="admin", UserPoolId=self.id)
            self.add_user("grace", ["admin"])
            self.enrol_totp("grace")
        return self

    def enrol_totp(self, user):
        """What a user does in an authenticator app: associate, verify a code, prefer TOTP."""
        token = self.sign_in(user)["AccessToken"]
        secret = self.idp.associate_software_token(AccessToken=token)["SecretCode"]
        self.totp_secrets[user] = secret
        result = self.idp.verify_software_token(AccessToken=token, UserCode=totp(secret))
        assert result["Status"] == "SUCCESS", result
        self.idp.set_user_mfa_preference(
            AccessToken=token, SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
        )

    def admin_reset_mfa(self, user):
        self.idp.admin_set_user_mfa_preference(
            UserPoolId=self.id, Username=user, SoftwareTokenMfaSettings={"Enabled": False, "PreferredMfa": False}
        )

    def refresh_with(self, refresh_token):
        """REFRESH_TOKEN_AUTH: a new access token from the same sign-in (same origin_jti)."""
        result = self.idp.initiate_auth(
            ClientId=self.client_id, AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": refresh_token}
        )
        return result["AuthenticationResult"]["AccessToken"]

    @property
    def issuer(self):
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.id}"

    @property
    def jwks_url(self):
        return f"{self.moto_url}/{self.id}/.well-known/jwks.json"

    def sign_in(self, user, client_id=None):
        result = self.idp.admin_initiate_auth(
            UserPoolId=self.id,
            ClientId=client_id or self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user, "PASSWORD": PASSWORD},
        )
        if result.get("ChallengeName") == "SOFTWARE_TOKEN_MFA":
            # The pool challenges users with TOTP; answer as the authenticator app would.
            result = self.idp.admin_respond_to_auth_challenge(
                UserPoolId=self.id,
                ClientId=client_id or self.client_id,
                ChallengeName="SOFTWARE_TOKEN_MFA",
                Session=result["Session"],
                ChallengeResponses={"USERNAME": user, "SOFTWARE_TOKEN_MFA_CODE": totp(self.totp_secrets[user])},
            )
        return result["AuthenticationResult"]


TOTP_STEP_SECONDS = 30
# moto checks a code against the current step only (no window), so a code computed in the last
# moments of a step can reach it in the next one and be refused ("MFA Code Mismatch"; seen once in
# CI). A code for "now" is computed only with at least this much of its step left.
TOTP_MARGIN_SECONDS = 3


def totp(secret, at=None):
    """RFC 6238: HMAC-SHA1 over the 30 s step, 6 digits. Written out because moto's secret is
    shorter than some TOTP libraries accept."""
    import base64
    import hashlib
    import hmac
    import struct

    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    if at is None:
        left = TOTP_STEP_SECONDS - time.time() % TOTP_STEP_SECONDS
        if left < TOTP_MARGIN_SECONDS:
            time.sleep(left + 0.05)
        at = time.time()
    step = int(at // TOTP_STEP_SECONDS)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def moto_signing_key():
    """moto signs every pool's tokens with one RSA key shipped inside the moto package. Tests that
    need a token moto cannot issue (an expired one: moto's tokens always live an hour) re-sign a
    moto token's claims with that same key, read from the installed package at run time."""
    import moto.cognitoidp
    from joserfc import jwk

    path = pathlib.Path(moto.cognitoidp.__file__).parent / "resources" / "jwks-private.json.gz"
    return jwk.RSAKey.import_key(json.loads(gzip.decompress(path.read_bytes())))


def resign(token, **changes):
    from joserfc import jwt

    claims = jwt.decode(token, moto_signing_key()).claims
    claims.update(changes)
    return jwt.encode({"alg": "RS256", "kid": "dummy"}, claims, moto_signing_key())


AWS_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def start_authz(logdir, pool, extra_args=(), env_extra=None, name="cognito-authz", cognito_endpoint=None,
                credentials=True, ports=None, data_dir=None, ready=None):
    """cognito-authz serve for the pool: keys and MFA state from moto (or `cognito_endpoint`),
    a 1 s MFA cache so the tests can watch it expire. `ports` and `data_dir` let a test restart
    the same instance."""
    grpc_port, http_port, admin_port = ports or (free_port(), free_port(), free_port())
    data_dir = data_dir or pathlib.Path(logdir) / f"{name}-data"
    argv = [
        str(BINARY),
        "serve",
        "--region", REGION,
        "--user-pool-id", pool.id,
        "--client-id", pool.client_id,
        *(["--jwks-url", pool.jwks_url] if pool.jwks_url else []),
        "--grpc-listen", f"127.0.0.1:{grpc_port}",
        "--http-listen", f"127.0.0.1:{http_port}",
        "--admin-listen", f"127.0.0.1:{admin_port}",
        "--cognito-endpoint", cognito_endpoint or pool.moto_url,
        "--mfa-cache-ttl", "1",
        "--data-dir", str(data_dir),
        *extra_args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"RUST_LOG": "info,cognito_authz=debug", "AWS_EC2_METADATA_DISABLED": "true", **(env_extra or {})})
    if credentials:
        env.update(AWS_TEST_CREDENTIALS)
    proc = Process(name, argv, logdir, env)
    proc.grpc_port, proc.http_port, proc.admin_port = grpc_port, http_port, admin_port
    proc.ports, proc.data_dir = (grpc_port, http_port, admin_port), data_dir
    ready = ready or (lambda: requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).ok)
    wait_until(ready, what="cognito-authz ready")
    return proc


envoy_binary = demo.envoy_binary
SHIPPED_CONFIG = demo.SHIPPED_CONFIG


def envoy_config(listen, admin, authz, authz_http, app):
    """The shipped configuration with only its ports changed (and listening on loopback)."""
    return demo.envoy_config(listen, admin, authz, authz_http, app, demo_route=False)


def start_envoy(logdir, authz_port, authz_http_port, app_port, name="envoy", transform=None):
    """Envoy on the shipped configuration; `transform` may change its text (a test's one addition)."""
    listen, admin = free_port(), free_port()
    path = pathlib.Path(logdir) / f"{name}.yaml"
    text = envoy_config(listen, admin, authz_port, authz_http_port, app_port)
    path.write_text(transform(text) if transform else text)
    argv = [envoy_binary(), "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "-l", "warn"]
    proc = Process(name, argv, logdir)
    proc.url = f"http://127.0.0.1:{listen}"
    wait_until(lambda: requests.get(f"http://127.0.0.1:{admin}/ready", timeout=1).text.strip() == "LIVE", what="envoy")
    return proc


def grpc_health(port, service):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def headers_with_underscore(url, path, headers):
    """requests/urllib3 refuse nothing, but send raw to be sure the underscore survives."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def logout(authz, token):
    """GET /auth/logout on a cognito-authz's own HTTP listener, with the token as bearer."""
    return requests.get(f"http://127.0.0.1:{authz.http_port}/auth/logout",
                        headers={"authorization": f"Bearer {token}"}, timeout=10)


def authenticated_decision(authz, token):
    """The decision for `token` on an `authenticated` route, as `check` prints it."""
    return check_cli(authz.grpc_port, token, "authenticated")


def check_cli(port, token, access):
    """The service's own `check` client: one Check with the given `access` context extension."""
    argv = [str(BINARY), "check", "--addr", f"http://127.0.0.1:{port}", "--access", access, "--token", token]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return result.stdout.split("\n")[0].strip()


def start_redis(logdir, port=None, name="redis", password=None):
    """Our own redis-server on loopback, persisting to a file (AOF) in the log directory; with
    `password`, clients must authenticate (`--requirepass`)."""
    port = port or free_port()
    data = pathlib.Path(logdir) / f"{name}-data"
    data.mkdir(exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(data), "--daemonize", "no"]
    if password:
        argv += ["--requirepass", password]
    proc = Process(name, argv, logdir)
    proc.port = port
    wait_until(lambda: redis_cli(port, "PING", password=password) == "PONG", what="redis")
    return proc


# The codes a Redis error reply starts with (redis-cli prints the reply as is when not at a terminal).
REDIS_ERRORS = ("ERR", "NOAUTH", "WRONGPASS", "WRONGTYPE", "NOPERM", "NOSCRIPT", "BUSY", "LOADING", "READONLY",
                "MOVED", "ASK", "CROSSSLOT", "CLUSTERDOWN", "MASTERDOWN", "EXECABORT")


def redis_cli_argv(port, tls=None):
    """`redis-cli` for the node at `port`; over TLS with the test CA and client pair `tls` (`pki.write_pki`'s paths)."""
    argv = ["redis-cli", "-p", str(port)]
    if tls:
        argv += ["--tls", "--cacert", str(tls["ca"]), "--cert", str(tls["client_cert"]), "--key", str(tls["client_key"])]
    return argv


def redis_cli(port, *args, password=None, error_ok=False, tls=None, stdin=None):
    """A `redis-cli` command's reply (or of the commands in `stdin`); an error reply fails the test
    unless `error_ok`, so a command that did nothing cannot pass for one that did."""
    env = dict(os.environ, REDISCLI_AUTH=password) if password else None
    result = subprocess.run([*redis_cli_argv(port, tls), *args], capture_output=True, text=True, timeout=10,
                            env=env, input=stdin)
    reply = result.stdout.strip()
    if not error_ok and reply.split(" ", 1)[0] in REDIS_ERRORS:
        raise AssertionError(f"redis-cli {' '.join(args)}: {reply}")
    return reply


COGNITO_LOCAL = ROOT / "tests" / "e2e" / "cognito-local" / "node_modules" / "cognito-local" / "lib" / "bin" / "start.js"


def start_cognito_local(logdir, name="cognito-local"):
    """cognito-local (npm) on a free port, keeping its state in a directory of its own."""
    port = free_port()
    workdir = pathlib.Path(logdir) / f"{name}-data"
    workdir.mkdir(exist_ok=True)
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    proc = Process(name, ["node", str(COGNITO_LOCAL)], logdir, env, cwd=workdir)
    proc.url = f"http://127.0.0.1:{port}"

    def listening():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, timeout=30, what="cognito-local")
    return proc


OIDC_DIR = ROOT / "tests" / "e2e" / "oidc"


def start_oidc_provider(logdir, client_id, client_secret, redirect_uri):
    port = free_port()
    env = dict(os.environ, PORT=str(port), CLIENT_ID=client_id, CLIENT_SECRET=client_secret, REDIRECT_URI=redirect_uri)
    proc = Process("oidc-provider", ["node", str(OIDC_DIR / "provider.mjs")], logdir, env)
    proc.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{proc.url}/.well-known/openid-configuration", timeout=1).ok, what="oidc-provider")
    return proc


def pkce_pair():
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def scripted_login(provider_url, client_id, redirect_uri, challenge, user="alice"):
    """The browser's part of the code flow against oidc-provider's dev interactions: follow the
    redirects with a cookie jar, post the login form, then the consent form, and stop at the
    redirect to the client. Returns the query of that redirect."""
    from urllib.parse import parse_qs, urljoin, urlencode, urlparse

    session = requests.Session()
    query = urlencode({"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri,
                       "scope": "openid email offline_access", "prompt": "consent", "state": "s-123",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    url = f"{provider_url}/auth?{query}"
    response = session.get(url, allow_redirects=False, timeout=10)
    forms = [{"prompt": "login", "login": user, "password": "any"}, {"prompt": "consent"}]
    for _ in range(20):
        location = response.headers.get("location")
        if location is None:
            # An interaction page: submit the next form to it.
            response = session.post(url, data=forms.pop(0), allow_redirects=False, timeout=10)
            continue
        url = urljoin(url, location)
        if url.startswith(redirect_uri):
            return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
        response = session.get(url, allow_redirects=False, timeout=10)
    raise AssertionError("the scripted login did not reach the redirect_uri")
