"""Two cognito-authz replicas sharing a real Redis: a logout on one is refused by the other within
a second; a replica whose subscription dropped (Redis restarted, or its connection killed) still
learns of logouts made meanwhile; with Redis gone, logouts answer 503 and, past the staleness
bound, so do decisions. With a Redis password (deploy/kubernetes's setup): the same sharing, a
replica with the wrong password never serves, and no log shows the password."""

import time

import pytest
import requests

import harness


@pytest.fixture
def replicas(logdir, pool):
    redis = harness.start_redis(logdir)
    store = ["--revocation-store", f"redis://127.0.0.1:{redis.port}/0", "--revocation-max-staleness-seconds", "3"]
    a = harness.start_authz(logdir, pool, store, name="replica-a")
    b = harness.start_authz(logdir, pool, store, name="replica-b")
    harness.wait_until(lambda: harness.grpc_health(b.grpc_port, "") == "SERVING", what="replica b serving")
    yield redis, a, b
    for proc in (a, b, redis):
        proc.stop()


logout, decision = harness.logout, harness.authenticated_decision
# What a replica logs each time it (re)subscribes and reloads the whole list.
RELOADED = "revocation list loaded from redis"


def pubsub_clients(port):
    """The pub/sub connections Redis holds, one line each."""
    listing = harness.redis_cli(port, "CLIENT", "LIST", "TYPE", "pubsub")
    return [line for line in listing.splitlines() if line.startswith("id=")]


def seconds_until_refused(replica, token, within=5.0):
    started = time.monotonic()
    while time.monotonic() - started < within:
        if decision(replica, token) == "deny 401":
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{replica.name} still allows a revoked token after {within} s")


def test_a_logout_on_one_replica_is_refused_by_the_other_within_a_second(replicas, pool):
    redis, a, b = replicas
    token = pool.sign_in("alice")["AccessToken"]
    assert decision(b, token) == "allow"
    assert logout(a, token).status_code == 200
    assert seconds_until_refused(b, token) < 1.0


def test_a_replica_learns_of_logouts_made_while_its_subscription_was_down(replicas, pool, logdir):
    redis, a, b = replicas
    # Redis restarts: B's subscription drops; a logout made meanwhile must still reach B.
    token = pool.sign_in("alice")["AccessToken"]
    redis.stop()
    down = logout(a, token)
    assert down.status_code == 503, "with Redis stopped a logout is not acknowledged"
    restarted = harness.start_redis(logdir, port=redis.port)
    try:
        harness.wait_until(lambda: logout(a, token).status_code == 200, what="logout once redis is back")
        assert seconds_until_refused(b, token) < 5.0
        # Pub/sub connections killed: the publish reaches nobody, the reload after resubscribing does.
        # Both replicas subscribed again after the restart: one subscription each.
        second = pool.sign_in("alice")["AccessToken"]
        harness.wait_until(lambda: len(pubsub_clients(restarted.port)) == 2, what="both replicas subscribed")
        reloads = b.output().count(RELOADED)
        killed = harness.redis_cli(restarted.port, "CLIENT", "KILL", "TYPE", "pubsub")
        assert killed == "2", f"one subscription per replica killed, not {killed!r}"
        # B waits out its backoff (at least 200 ms after the restart above) before resubscribing, so
        # the logout's publish finds no subscription of B's: B learns of it by its reload.
        assert logout(a, second).status_code == 200
        assert seconds_until_refused(b, second) < 5.0
        assert b.output().count(RELOADED) > reloads, "b reloaded the list after resubscribing"
    finally:
        restarted.stop()


def test_without_redis_logouts_are_503_and_decisions_too_after_the_staleness_bound(replicas, pool):
    redis, a, b = replicas
    token = pool.sign_in("alice")["AccessToken"]
    assert decision(b, token) == "allow"
    redis.stop()
    assert logout(a, token).status_code == 503
    deadline = time.monotonic() + 8
    while decision(b, token) != "deny 503" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert decision(b, token) == "deny 503", "an old copy is not trusted past the bound"


# Distinctive, so a search of the logs cannot miss it.
REDIS_PASSWORD = "Rp-4f9c2e7a-not-in-logs"


@pytest.fixture
def password_redis(logdir):
    redis = harness.start_redis(logdir, name="redis-password", password=REDIS_PASSWORD)
    yield redis
    redis.stop()


def password_store(redis, password):
    return ["--revocation-store", f"redis://:{password}@127.0.0.1:{redis.port}/0",
            "--revocation-max-staleness-seconds", "3"]


def test_with_a_redis_password_a_logout_on_one_replica_is_refused_by_the_other_and_no_log_shows_it(
        password_redis, pool, logdir):
    # This Redis does refuse a client without the password.
    assert "NOAUTH" in harness.redis_cli(password_redis.port, "PING", error_ok=True)
    store = password_store(password_redis, REDIS_PASSWORD)
    a = harness.start_authz(logdir, pool, store, name="password-a")
    b = harness.start_authz(logdir, pool, store, name="password-b")
    try:
        harness.wait_until(lambda: harness.grpc_health(b.grpc_port, "") == "SERVING", what="replica b serving")
        token = pool.sign_in("alice")["AccessToken"]
        assert decision(b, token) == "allow"
        assert logout(a, token).status_code == 200
        assert seconds_until_refused(b, token) < 1.0
        # The revocation is in the password-protected Redis.
        assert harness.redis_cli(password_redis.port, "KEYS", "cognito-authz:*", password=REDIS_PASSWORD)
    finally:
        a.stop()
        b.stop()
    for replica in (a, b):
        log = replica.output()
        # Positive control: the log does speak of the store it loaded.
        assert "revocation list loaded from redis" in log, replica.name
        assert REDIS_PASSWORD not in log, f"{replica.name} logged the Redis password"


def test_a_replica_with_the_wrong_redis_password_never_serves_and_answers_503(password_redis, pool, logdir):
    wrong = "Wp-0d1e5b3c-wrong-one"
    ports = (harness.free_port(), harness.free_port(), harness.free_port())
    # Ready as soon as its HTTP listener answers at all: it is not expected to turn SERVING.
    listening = lambda: requests.get(f"http://127.0.0.1:{ports[1]}/healthz", timeout=1) is not None  # noqa: E731
    replica = harness.start_authz(logdir, pool, password_store(password_redis, wrong), name="wrong-password",
                                  ports=ports, ready=listening)
    try:
        # Long enough for several attempts to connect (backoff from 100 ms, doubling to 500 ms).
        time.sleep(4)
        for service in ("", "envoy.service.auth.v3.Authorization"):
            assert harness.grpc_health(replica.grpc_port, service) == "NOT_SERVING", service
        healthz = requests.get(f"http://127.0.0.1:{replica.http_port}/healthz", timeout=5)
        assert healthz.status_code == 503, "HTTP health says what gRPC health says"
        token = pool.sign_in("alice")["AccessToken"]
        assert decision(replica, token) == "deny 503", "without its revocation list no decision is an allow"
        assert logout(replica, token).status_code == 503, "a logout it cannot store is not acknowledged"
    finally:
        replica.stop()
    log = replica.output()
    # Positive control: the refusal and its reason are logged, without either password.
    assert "lost the revocation subscription" in log and "authentication failed" in log.lower()
    assert wrong not in log and REDIS_PASSWORD not in log
