#!/usr/bin/env python3
"""Soak test: minutes of mixed traffic (allow / 401 / 403) through a real Envoy (the shipped
envoy/envoy.yaml) in front of a real cognito-authz, with moto_server as Cognito.

    .venv/bin/python tests/soak/soak.py --minutes 5            # from the repository root

Every request knows its expected outcome. A request whose status is not the expected one, or an
allow whose upstream did not see exactly the expected identity, is a WRONG DECISION; a right
status whose `www-authenticate` / body is not the documented one is a WRONG DETAIL; a timeout or
a broken connection is an ERROR (counted apart: it is not a decision). Every `--interval` seconds
it prints req/s, the counts so far, latency, and the resident memory (VmRSS) of cognito-authz and
Envoy. At the end it prints a summary and writes it as JSON to `--out`.

Exit status: 0 when there was no wrong decision, no wrong detail, cognito-authz stayed up, and its
RSS at the end is within `--rss-bound-mib` (32) of its RSS after the warm-up (the first sample).
The bound: the only state that grows with traffic is the verified-token cache (at most
`--token-cache-size` = 100,000 entries, but only *verified* tokens enter it: here about 230 distinct
valid tokens, 200 re-signed ones plus one per logout, well under 1 MiB), the MFA cache (two users)
and the revocation list (two entries per logout, one logout per interval). Garbage, tampered and
attacker-signed tokens never enter a cache. So steady traffic should not grow RSS beyond allocator
noise, and 32 MiB is far above anything the caches can hold here. A small per-request leak (under
~110 bytes per request over ~275k requests) would stay inside that bound: watch the reported slope
(KiB/min after warm-up) for it, or run longer.

The binary: `--binary`, else target/release/cognito-authz if it exists, else target/debug.
"""

import argparse
import base64
import collections
import http.client
import json
import os
import pathlib
import random
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="duration of the traffic (default 5)")
    p.add_argument("--threads", type=int, default=6, help="client threads, each with its own keep-alive connection")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--out", default="/tmp/soak.json", help="where the JSON summary goes")
    p.add_argument("--binary", help="cognito-authz binary (default: target/release if built, else target/debug)")
    p.add_argument("--rss-bound-mib", type=float, default=32.0,
                   help="fail when cognito-authz RSS at the end exceeds its post-warm-up RSS by more than this")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request client timeout in seconds")
    p.add_argument("--logdir", help="where process logs go (default: a new /tmp/soak-* directory)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the traffic mix")
    return p.parse_args()


def pick_binary(arg):
    if arg:
        return pathlib.Path(arg).resolve()
    release = ROOT / "target" / "release" / "cognito-authz"
    return release if release.exists() else ROOT / "target" / "debug" / "cognito-authz"


# --------------------------------------------------------------------------------------------
# Process metrics


def rss_kib(pid):
    """VmRSS of `pid` in KiB, or None when the process is gone."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def scrape(admin_port):
    """cognito-authz's own gauges/counters worth watching (None when the scrape fails)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except Exception:
        return None
    finally:
        conn.close()
    wanted = {"cognito_authz_token_cache_entries": "token_cache_entries", "cognito_authz_revocation_entries": "revocations",
              "cognito_authz_jwks_fetches_total": "jwks_fetches", "cognito_authz_token_cache_hits_total": "cache_hits",
              "cognito_authz_token_cache_misses_total": "cache_misses", "cognito_authz_jwks_keys": "keys"}
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


# --------------------------------------------------------------------------------------------
# Tokens


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Every credential the traffic uses, made once (and again after 45 minutes: moto's access
    tokens live an hour). Replaced as a whole, so a worker always sees one consistent set."""

    RESIGNED = 200  # distinct valid tokens (fresh jti each): exercise the verified-token cache
    ATTACKER = 50   # distinct tokens signed by a key that is not the pool's

    def __init__(self, harness, pool):
        from joserfc import jwk, jwt

        self.made = time.monotonic()
        alice_session = pool.sign_in("alice")
        self.alice = alice_session["AccessToken"]
        self.alice_id = alice_session["IdToken"]
        self.bob = pool.sign_in("bob")["AccessToken"]
        self.other_client = pool.sign_in("alice", client_id=pool.other_client_id)["AccessToken"]
        self.resigned = [harness.resign(self.alice, jti=str(uuid.uuid4())) for _ in range(self.RESIGNED)]
        self.expired = [harness.resign(self.alice, jti=str(uuid.uuid4()), iat=1_700_000_000 + i,
                                       auth_time=1_700_000_000, exp=1_700_003_600 + i) for i in range(20)]
        attacker_key = jwk.RSAKey.generate_key(2048)
        claims = jwt.decode(self.alice, harness.moto_signing_key()).claims
        self.attacker = [jwt.encode({"alg": "RS256", "kid": "dummy"}, dict(claims, jti=str(uuid.uuid4())), attacker_key)
                         for _ in range(self.ATTACKER)]
        header, payload, signature = self.alice.split(".")
        body = json.loads(unb64(payload))
        # The real signature over changed claims: an identity swap, a longer life, more groups.
        self.tampered = [
            f"{header}.{b64json(dict(body, sub=pool.subs['bob'], username='bob'))}.{signature}",
            f"{header}.{b64json(dict(body, exp=body['exp'] + 86400))}.{signature}",
            f"{header}.{b64json(dict(body, scope=body.get('scope', '') + ' admin'))}.{signature}",
            f"{header}.{payload}.{b64(bytes(b ^ 1 if i == 17 else b for i, b in enumerate(unb64(signature))))}",
            f"{b64json({'alg': 'none', 'kid': 'dummy'})}.{payload}.",
            f"{b64json({'alg': 'HS256', 'kid': 'dummy'})}.{payload}.{signature}",
            f"{header}.{b64json(dict(body, token_use='id'))}.{signature}",
        ]
        # Signed with the pool's key, but refused for what the claims say.
        self.wrong_claims = [
            ("Not an access token", harness.resign(self.alice, jti=str(uuid.uuid4()), token_use="id")),
            ("Could not validate credentials", harness.resign(self.alice, jti=str(uuid.uuid4()), iss="https://evil.example")),
            ("Token is not yet valid", harness.resign(self.alice, jti=str(uuid.uuid4()), nbf=int(time.time()) + 86400)),
        ]


# --------------------------------------------------------------------------------------------
# The traffic: each kind builds a request and knows what must come back.

BAD = 'Bearer error="invalid_token", error_description="{}"'
MFA_PATHS = ["/api/items", "/api/items/42?x=1", "/orders", "/", "/api/reports/q1"]
AUTH_PATHS = ["/api/mfa/status", "/api/mfa/enrol", "/api/mfa/x?y=2"]
SPOOF = {"x-user-id": "00000000-0000-0000-0000-000000000000", "x-username": "root", "x-user-groups": "admins",
         "x-client-id": "evil", "x-user-anything": "forged"}


class Expect:
    """status, plus for allows the identity the upstream must see, plus for denials the exact
    `www-authenticate` (None: must be absent; ANY: not checked) and the body's `detail`."""

    def __init__(self, status, user=None, auth=None, detail=None, upstream=True):
        self.status, self.user, self.auth, self.detail, self.upstream = status, user, auth, detail, upstream


def bad(description):
    return Expect(401, auth=BAD.format(description), detail=description)


class Traffic:
    def __init__(self, state, pool):
        self.state = state
        self.subs = pool.subs
        s = state
        # (name, weight, make) where make(rng) -> (path, headers, Expect)
        self.kinds = [
            ("alice_mfa", 20, lambda r: (r.choice(MFA_PATHS), bearer(s().alice), Expect(200, user="alice"))),
            ("alice_resigned_mfa", 8, lambda r: (r.choice(MFA_PATHS), bearer(r.choice(s().resigned)), Expect(200, user="alice"))),
            ("alice_authenticated", 4, lambda r: (r.choice(AUTH_PATHS), bearer(s().alice), Expect(200, user="alice"))),
            ("bob_mfa_403", 12, lambda r: (r.choice(MFA_PATHS), bearer(s().bob),
                                           Expect(403, auth=None, detail="MFA enrolment required (totp)"))),
            ("bob_authenticated", 10, lambda r: (r.choice(AUTH_PATHS), bearer(s().bob), Expect(200, user="bob"))),
            ("bob_spoofing_alice", 4, lambda r: (r.choice(AUTH_PATHS),
                                                 {**bearer(s().bob), **SPOOF, "x-user-id": self.subs["alice"]},
                                                 Expect(200, user="bob"))),
            ("no_token", 5, lambda r: (r.choice(MFA_PATHS + AUTH_PATHS), {}, Expect(401, auth="Bearer", detail="Not authenticated"))),
            ("no_token_spoofed", 2, lambda r: (r.choice(MFA_PATHS), dict(SPOOF), Expect(401, auth="Bearer", detail="Not authenticated"))),
            ("garbage_random", 10, lambda r: (r.choice(MFA_PATHS), bearer(secrets.token_urlsafe(r.randint(8, 300))),
                                              bad("Could not validate credentials"))),
            ("garbage_jwt_unknown_kid", 5, lambda r: (r.choice(MFA_PATHS), bearer(random_jwt(r, kid=secrets.token_hex(8))),
                                                      bad("Could not validate credentials"))),
            ("garbage_jwt_pool_kid", 6, lambda r: (r.choice(MFA_PATHS + AUTH_PATHS), bearer(random_jwt(r, kid="dummy")),
                                                   bad("Could not validate credentials"))),
            ("tampered", 5, lambda r: (r.choice(MFA_PATHS + AUTH_PATHS), bearer(r.choice(s().tampered)),
                                       bad("Could not validate credentials"))),
            ("expired_resigned", 4, lambda r: (r.choice(MFA_PATHS), bearer(r.choice(s().expired)), bad("Token has expired"))),
            ("attacker_signed", 4, lambda r: (r.choice(MFA_PATHS + AUTH_PATHS), bearer(r.choice(s().attacker)),
                                              bad("Could not validate credentials"))),
            ("wrong_claims_resigned", 3, lambda r: self.wrong_claims(r)),
            ("id_token", 2, lambda r: (r.choice(MFA_PATHS), bearer(s().alice_id), bad("Not an access token"))),
            ("other_app_client", 2, lambda r: (r.choice(MFA_PATHS), bearer(s().other_client), bad("Could not validate credentials"))),
            ("revoked", 3, lambda r: self.revoked(r)),
            ("public_no_check", 1, lambda r: ("/public/logo.svg", dict(SPOOF), Expect(200, user=None))),
        ]
        self.names = [k[0] for k in self.kinds]
        self.cum = []
        total = 0
        for _, weight, _ in self.kinds:
            total += weight
            self.cum.append(total)
        self.total = total
        self.revoked_tokens = []  # appended by the revoker once its logout was acknowledged

    def wrong_claims(self, r):
        description, token = r.choice(self.state().wrong_claims)
        return r.choice(MFA_PATHS), bearer(token), bad(description)

    def revoked(self, r):
        tokens = self.revoked_tokens
        if not tokens:  # none yet: the very first second
            return r.choice(MFA_PATHS), {}, Expect(401, auth="Bearer", detail="Not authenticated")
        return r.choice(MFA_PATHS), bearer(r.choice(tokens[-20:])), bad("Token has been revoked")

    def pick(self, r):
        x = r.randrange(self.total)
        for i, c in enumerate(self.cum):
            if x < c:
                name, _, make = self.kinds[i]
                return name, *make(r)


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def random_jwt(r, kid):
    header = b64json({"alg": "RS256", "kid": kid, "typ": "JWT"})
    payload = b64json({"sub": str(uuid.uuid4()), "token_use": "access", "exp": int(time.time()) + 3600,
                       "jti": str(uuid.uuid4()), "n": r.random()})
    return f"{header}.{payload}.{b64(secrets.token_bytes(256))}"


def judge(expect, status, headers, body, subs):
    """None when right; else (kind_of_failure, reason). kind_of_failure is 'decision' or 'detail'."""
    if status != expect.status:
        return "decision", f"status {status}, expected {expect.status}"
    if status == 200:
        try:
            seen = json.loads(body)["headers"]
        except Exception:
            return "decision", f"200 whose body is not the upstream's echo: {body[:120]!r}"
        ids = {h: v for h, v in seen.items() if h.startswith("x-user") or h in ("x-username", "x-client-id")}
        if expect.user is None:
            if ids:
                return "decision", f"identity headers on an unchecked route: {ids}"
            return None
        want = {"x-user-id": [subs[expect.user]], "x-username": [expect.user]}
        got = {k: v for k, v in ids.items() if k != "x-user-groups"}
        if got != want:
            return "decision", f"upstream saw identity {ids}, expected {want}"
        groups = ids.get("x-user-groups")
        if expect.user == "bob" and groups is not None:
            return "decision", f"bob has no groups but upstream saw x-user-groups={groups}"
        if expect.user == "alice" and (groups is None or len(groups) != 1
                                       or sorted(groups[0].split(",")) != ["admins", "team%20a%2Cb"]):
            return "decision", f"alice's groups wrong: {groups}"
        return None
    auth = headers.get("www-authenticate")
    if expect.auth is None and auth is not None:
        return "detail", f"unexpected www-authenticate {auth!r}"
    if expect.auth is not None and auth != expect.auth:
        return "detail", f"www-authenticate {auth!r}, expected {expect.auth!r}"
    if expect.detail is not None:
        try:
            detail = json.loads(body).get("detail")
        except Exception:
            detail = body[:120]
        if detail != expect.detail:
            return "detail", f"detail {detail!r}, expected {expect.detail!r}"
    return None


# --------------------------------------------------------------------------------------------
# Workers


class Stats:
    """One per worker thread: no lock on the hot path; the sampler reads (racy, fine for ints)."""

    def __init__(self, names):
        self.sent = 0
        self.by_kind = {n: [0, 0, 0, 0, 0] for n in names}  # sent, right, wrong decision, wrong detail, error
        self.latencies = []
        self.examples = []


class Worker(threading.Thread):
    def __init__(self, index, host, port, traffic, subs, stop, timeout, seed):
        super().__init__(name=f"soak-{index}", daemon=True)
        self.host, self.port, self.traffic, self.subs, self.stop_event, self.timeout = host, port, traffic, subs, stop, timeout
        self.rng = random.Random(seed)
        self.stats = Stats(traffic.names)
        self.conn = None

    def connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def run(self):
        self.connect()
        stats = self.stats
        while not self.stop_event.is_set():
            name, path, headers, expect = self.traffic.pick(self.rng)
            counts = stats.by_kind[name]
            started = time.perf_counter()
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                body = response.read()
                got_headers = {k.lower(): v for k, v in response.getheaders()}
                status = response.status
            except Exception as error:  # transport: not a decision
                counts[0] += 1
                counts[4] += 1
                stats.sent += 1
                if len(stats.examples) < 20:
                    stats.examples.append({"kind": name, "path": path, "error": repr(error), "at": time.time()})
                self.connect()
                continue
            stats.latencies.append(time.perf_counter() - started)
            counts[0] += 1
            stats.sent += 1
            failure = judge(expect, status, got_headers, body, self.subs)
            if failure is None:
                counts[1] += 1
            else:
                counts[2 if failure[0] == "decision" else 3] += 1
                if len(stats.examples) < 20:
                    stats.examples.append({"kind": name, "path": path, failure[0]: failure[1], "at": time.time(),
                                           "www-authenticate": got_headers.get("www-authenticate"),
                                           "body": body[:200].decode(errors="replace")})
        self.conn.close()


class Revoker(threading.Thread):
    """One logout per interval through Envoy's /auth/logout: a fresh sign-in of alice, checked to
    be allowed, logged out (revocation store write), then handed to the traffic as revoked."""

    def __init__(self, pool, envoy_url, traffic, stop, interval, errors):
        super().__init__(name="soak-revoker", daemon=True)
        self.pool, self.traffic, self.stop_event, self.interval, self.errors = pool, traffic, stop, interval, errors
        self.host, self.port = envoy_url.removeprefix("http://").split(":")
        self.done = 0

    def get(self, path, token):
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        try:
            conn.request("GET", path, headers=bearer(token))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def run(self):
        while not self.stop_event.wait(self.interval / 2 if self.done == 0 else self.interval):
            try:
                token = self.pool.sign_in("alice")["AccessToken"]
                before = self.get("/api/items", token)[0]
                status, body = self.get("/auth/logout", token)
                if before != 200 or status != 200:
                    self.errors.append(f"revoker: before logout {before}, logout {status} {body[:120]!r}")
                    continue
                self.traffic.revoked_tokens.append(token)
                self.done += 1
            except Exception as error:
                self.errors.append(f"revoker: {error!r}")


# --------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started in the background
    binary = pick_binary(args.binary)
    if not binary.exists():
        sys.exit(f"no cognito-authz binary at {binary}: build it (cargo build [--release]) or pass --binary")
    os.environ["COGNITO_AUTHZ_BIN"] = str(binary)  # harness reads it at import
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    import harness

    assert pathlib.Path(harness.BINARY) == binary, (harness.BINARY, binary)
    profile = "release" if "/release/" in str(binary) else "debug" if "/debug/" in str(binary) else "custom"
    logdir = pathlib.Path(args.logdir or tempfile.mkdtemp(prefix="soak-"))
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"binary: {binary} ({profile}, built {time.ctime(binary.stat().st_mtime)})")
    print(f"logs:   {logdir}")

    # SIGTERM ends the run like Ctrl-C: through the finally below.
    def on_sigterm(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    stop = threading.Event()
    started_procs = []
    upstream = None
    summary = None
    exit_code = 1
    try:
        moto, moto_url = harness.start_moto(logdir)
        started_procs.append(moto)
        pool = harness.Pool(moto_url)  # alice (TOTP enrolled, in groups) and bob (no TOTP)
        upstream = harness.EchoUpstream()
        # The echo server keeps every request it saw; bound that in this long run.
        upstream.requests = collections.deque(maxlen=1000)
        authz = harness.start_authz(logdir, pool)
        started_procs.append(authz)
        envoy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port)
        started_procs.append(envoy)
        print(f"moto {moto_url}  cognito-authz pid {authz.proc.pid} (grpc {authz.grpc_port}, admin {authz.admin_port})  "
              f"envoy pid {envoy.proc.pid} {envoy.url}")

        tokens = {"current": Tokens(harness, pool)}
        state = lambda: tokens["current"]  # noqa: E731
        traffic = Traffic(state, pool)
        host, port = envoy.url.removeprefix("http://").split(":")
        seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        workers = [Worker(i, host, int(port), traffic, pool.subs, stop, args.timeout, seed + i) for i in range(args.threads)]
        side_errors = []
        revoker = Revoker(pool, envoy.url, traffic, stop, args.interval, side_errors)

        duration = args.minutes * 60
        rss0 = {"authz": rss_kib(authz.proc.pid), "envoy": rss_kib(envoy.proc.pid)}
        print(f"RSS before traffic: cognito-authz {mib(rss0['authz'])} MiB, envoy {mib(rss0['envoy'])} MiB; "
              f"{args.threads} threads for {args.minutes:g} min, seed {seed}")
        header = (f"{'t(s)':>6} {'req/s':>8} {'sent':>9} {'wrong':>6} {'detail':>6} {'errors':>6} "
                  f"{'p50ms':>6} {'p99ms':>7} {'authzRSS':>9} {'envoyRSS':>9} {'cache':>6} {'revoc':>5} {'load1':>5}")
        print(header)
        t0 = time.monotonic()
        for w in workers:
            w.start()
        revoker.start()

        samples = []
        last_sent, last_t = 0, t0
        next_sample = t0 + args.interval
        authz_died = False
        while True:
            now = time.monotonic()
            if now >= t0 + duration:
                break
            time.sleep(max(0.0, min(next_sample, t0 + duration) - now))
            now = time.monotonic()
            if now < next_sample and now < t0 + duration:
                continue
            if time.monotonic() - tokens["current"].made > 45 * 60:
                tokens["current"] = Tokens(harness, pool)
                print("  (tokens re-issued: moto's access tokens live an hour)")
            sent = sum(w.stats.sent for w in workers)
            wrong = sum(c[2] for w in workers for c in w.stats.by_kind.values())
            detail = sum(c[3] for w in workers for c in w.stats.by_kind.values())
            errors = sum(c[4] for w in workers for c in w.stats.by_kind.values())
            lats = []
            for w in workers:
                batch, w.stats.latencies = w.stats.latencies, []
                lats.extend(batch)
            lats.sort()
            p50 = lats[len(lats) // 2] * 1000 if lats else None
            p99 = lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000 if lats else None
            rate = (sent - last_sent) / (now - last_t)
            metrics = scrape(authz.admin_port) or {}
            sample = {"t": round(now - t0, 1), "rps": round(rate, 1), "sent": sent, "wrong_decisions": wrong,
                      "wrong_details": detail, "errors": errors,
                      "p50_ms": None if p50 is None else round(p50, 2), "p99_ms": None if p99 is None else round(p99, 2),
                      "authz_rss_kib": rss_kib(authz.proc.pid), "envoy_rss_kib": rss_kib(envoy.proc.pid),
                      "loadavg_1m": os.getloadavg()[0], **metrics}
            samples.append(sample)
            print(f"{sample['t']:>6.0f} {rate:>8.1f} {sent:>9} {wrong:>6} {detail:>6} {errors:>6} "
                  f"{(p50 or 0):>6.1f} {(p99 or 0):>7.1f} {str(mib(sample['authz_rss_kib'])):>9} "
                  f"{str(mib(sample['envoy_rss_kib'])):>9} {int(metrics.get('token_cache_entries', -1)):>6} "
                  f"{int(metrics.get('revocations', -1)):>5} {sample['loadavg_1m']:>5.2f}", flush=True)
            last_sent, last_t = sent, now
            next_sample += args.interval
            if not authz.alive():
                print(f"cognito-authz EXITED (rc {authz.proc.returncode})")
                authz_died = True
                break

        stop.set()
        for w in workers:
            w.join(args.timeout + 5)
        revoker.join(15)
        elapsed = time.monotonic() - t0
        final_metrics = scrape(authz.admin_port) or {}
        end_rss = {"authz": rss_kib(authz.proc.pid), "envoy": rss_kib(envoy.proc.pid)}
        summary = summarise(args, binary, profile, seed, workers, traffic, samples, rss0, end_rss, elapsed,
                            final_metrics, revoker, side_errors, authz_died, logdir)
        exit_code = 0 if summary["pass"] else 1
    except KeyboardInterrupt:
        print("interrupted")
        exit_code = 130
    finally:
        stop.set()
        for proc in reversed(started_procs):
            try:
                proc.stop()
            except Exception as error:
                print(f"stopping {proc.name}: {error!r}")
        if upstream is not None:
            upstream.stop()

    if summary is not None:
        authz_proc = next(p for p in started_procs if p.name == "cognito-authz")
        log = authz_proc.output()
        summary["authz_exit_code_on_sigterm"] = authz_proc.proc.returncode
        summary["authz_log"] = {"bytes": len(log), "panics": log.count("panicked"),
                                "error_lines": sum(1 for l in log.splitlines() if " ERROR " in l),
                                "warn_lines": sum(1 for l in log.splitlines() if " WARN " in l),
                                "token_fragments_logged": log.count("eyJ")}
        pathlib.Path(args.out).write_text(json.dumps(summary, indent=2))
        print_summary(summary)
        print(f"JSON: {args.out}")
    sys.exit(exit_code)


def summarise(args, binary, profile, seed, workers, traffic, samples, rss0, end_rss, elapsed, metrics, revoker,
              side_errors, authz_died, logdir):
    kinds = {}
    for name in traffic.names:
        rows = [w.stats.by_kind[name] for w in workers]
        kinds[name] = dict(zip(["sent", "right", "wrong_decisions", "wrong_details", "errors"],
                               [sum(r[i] for r in rows) for i in range(5)]))
    totals = {k: sum(v[k] for v in kinds.values()) for k in ["sent", "right", "wrong_decisions", "wrong_details", "errors"]}
    rates = [s["rps"] for s in samples]
    warm = samples[0] if samples else {}
    authz_warm = warm.get("authz_rss_kib")
    authz_end = end_rss["authz"]
    growth_kib = None if authz_warm is None or authz_end is None else authz_end - authz_warm
    # Slope after warm-up (least squares over the samples), KiB per minute.
    pts = [(s["t"], s["authz_rss_kib"]) for s in samples if s.get("authz_rss_kib") is not None]
    slope = None
    if len(pts) >= 3:
        mt = statistics.fmean(t for t, _ in pts)
        mr = statistics.fmean(r for _, r in pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        slope = round(60 * sum((t - mt) * (r - mr) for t, r in pts) / den, 1) if den else None
    rss_ok = growth_kib is not None and growth_kib <= args.rss_bound_mib * 1024
    summary = {
        "binary": str(binary), "profile": profile, "seed": seed, "threads": args.threads, "minutes": args.minutes,
        "elapsed_s": round(elapsed, 1), "logdir": str(logdir),
        "totals": totals, "overall_rps": round(totals["sent"] / elapsed, 1) if elapsed else None,
        "wrong_decisions": totals["wrong_decisions"], "wrong_details": totals["wrong_details"], "errors": totals["errors"],
        "rps_per_interval": {"min": min(rates) if rates else None, "median": round(statistics.median(rates), 1) if rates else None,
                             "max": max(rates) if rates else None, "all": rates},
        "rss": {
            "authz_before_traffic_mib": mib(rss0["authz"]), "authz_after_warmup_mib": mib(authz_warm),
            "authz_end_mib": mib(authz_end), "authz_growth_mib": mib(growth_kib), "authz_max_mib": mib(max((r for _, r in pts), default=None)),
            "authz_slope_kib_per_min": slope, "bound_mib": args.rss_bound_mib,
            "warmup_at_s": warm.get("t"),
            "envoy_before_traffic_mib": mib(rss0["envoy"]), "envoy_after_warmup_mib": mib(warm.get("envoy_rss_kib")),
            "envoy_end_mib": mib(end_rss["envoy"]),
        },
        "authz_metrics_end": metrics,
        "revocations_made": revoker.done,
        "side_errors": side_errors[:20],
        "kinds": kinds,
        "examples": [e for w in workers for e in w.stats.examples][:40],
        "samples": samples,
        "authz_died": authz_died,
    }
    reasons = []
    if totals["wrong_decisions"]:
        reasons.append(f"{totals['wrong_decisions']} wrong decisions")
    if totals["wrong_details"]:
        reasons.append(f"{totals['wrong_details']} wrong details")
    if not rss_ok:
        reasons.append(f"cognito-authz RSS grew {mib(growth_kib)} MiB (bound {args.rss_bound_mib} MiB)")
    if authz_died:
        reasons.append("cognito-authz exited during the run")
    if not samples:
        reasons.append("no samples taken (run shorter than one interval)")
    summary["pass"] = not reasons
    summary["fail_reasons"] = reasons
    return summary


def print_summary(s):
    print()
    print("=" * 78)
    print(f"SOAK SUMMARY  ({s['profile']} binary, {s['threads']} threads, {s['elapsed_s']} s, seed {s['seed']})")
    print("=" * 78)
    print(f"{'kind':<26}{'sent':>9}{'right':>9}{'wrong':>7}{'detail':>7}{'errors':>7}")
    for name, k in s["kinds"].items():
        print(f"{name:<26}{k['sent']:>9}{k['right']:>9}{k['wrong_decisions']:>7}{k['wrong_details']:>7}{k['errors']:>7}")
    t = s["totals"]
    print(f"{'TOTAL':<26}{t['sent']:>9}{t['right']:>9}{t['wrong_decisions']:>7}{t['wrong_details']:>7}{t['errors']:>7}")
    r = s["rps_per_interval"]
    print(f"req/s overall {s['overall_rps']}; per interval min {r['min']} / median {r['median']} / max {r['max']}")
    print(f"req/s per interval: {r['all']}")
    m = s["rss"]
    print(f"cognito-authz RSS: before traffic {m['authz_before_traffic_mib']} MiB, after warm-up (t={m['warmup_at_s']} s) "
          f"{m['authz_after_warmup_mib']} MiB, end {m['authz_end_mib']} MiB, growth {m['authz_growth_mib']} MiB "
          f"(bound {m['bound_mib']} MiB), max {m['authz_max_mib']} MiB, slope {m['authz_slope_kib_per_min']} KiB/min")
    print(f"envoy RSS:         before traffic {m['envoy_before_traffic_mib']} MiB, after warm-up "
          f"{m['envoy_after_warmup_mib']} MiB, end {m['envoy_end_mib']} MiB")
    print(f"cognito-authz metrics at end: {s['authz_metrics_end']}")
    print(f"revocations made during the run: {s['revocations_made']}; side errors: {s['side_errors'] or 'none'}")
    print(f"cognito-authz exit code on SIGTERM: {s.get('authz_exit_code_on_sigterm')}; log: {s.get('authz_log')}")
    for e in s["examples"][:10]:
        print(f"  example: {e}")
    print(f"RESULT: {'PASS' if s['pass'] else 'FAIL: ' + '; '.join(s['fail_reasons'])}")


if __name__ == "__main__":
    main()
