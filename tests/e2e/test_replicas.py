"""Two cognito-authz replicas sharing a real Redis: a logout on one is refused by the other within
a second; a replica whose subscription dropped (Redis restarted, or its connection killed) still
learns of logouts made meanwhile; with Redis gone, logouts answer 503 and, past the staleness
bound, so do decisions."""

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


def logout(replica, token):
    return requests.get(f"http://127.0.0.1:{replica.http_port}/auth/logout",
                        headers={"authorization": f"Bearer {token}"}, timeout=10)


def decision(replica, token):
    return harness.check_cli(replica.grpc_port, token, "authenticated")


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
        second = pool.sign_in("alice")["AccessToken"]
        harness.redis_cli(restarted.port, "CLIENT", "KILL", "TYPE", "pubsub")
        assert logout(a, second).status_code == 200
        assert seconds_until_refused(b, second) < 5.0
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
