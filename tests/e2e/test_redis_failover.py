"""The revocation store on Redis as managed services run it, with real processes (Debian's
redis-server and redis-sentinel) on loopback: a primary with two replicas behind three sentinels, a
three-primary Cluster, TLS with a client certificate and an ACL user. Two service replicas share it.
A steady stream of logouts runs while the primary is killed with SIGKILL; every decision is
recorded. Afterwards every acknowledged logout is refused by both replicas, and no recorded
decision allowed a token after its logout was acknowledged (the replica that acknowledged it, at
once; the other, within the staleness bound it promises)."""

import signal
import threading
import time

import pytest
import requests

import harness
import pki
import redis_ha
from redis_ha import forward_auth, start_replica

STALENESS = 5
# Tokens kept signed in through the whole test: the positive control that a replica still allows.
KEPT = 3


def serving(*replicas):
    for replica in replicas:
        harness.wait_until(lambda: harness.grpc_health(replica.grpc_port, "") == "SERVING",
                           what=f"{replica.name} serving", timeout=30)


def logout_is_shared(through, other, token):
    """A token the other replica allows (the positive control), logged out through one replica,
    is refused by the other within 1.5 s."""
    assert forward_auth(other, token) == 200
    assert harness.logout(through, token).status_code == 200
    harness.wait_until(lambda: forward_auth(other, token) == 401, what="refused by the other replica", timeout=1.5)


def shared_after_the_failover(a, b, before, after, kept):
    """After a failover: a logout is still shared, the one before it still holds on both, and a live
    token is still allowed (the positive control)."""
    logout_is_shared(b, a, after)
    for replica in (a, b):
        assert forward_auth(replica, before) == 401, f"{replica.name}: the logout before the failover holds"
        assert forward_auth(replica, kept) == 200, f"positive control: {replica.name} allows a live token"


def logouts_through_a_failover(a, b, tokens, kill, sign_in, after_acknowledged=6):
    """Logs out `tokens` one after another, alternating replicas, each retried until acknowledged;
    `kill()` runs once `after_acknowledged` are. Until a logout is acknowledged after the kill, more
    tokens come from `sign_in()` (appended to `tokens`). Returns ({index: (acknowledged at,
    replica)}, 503s seen, seconds from the kill to the first logout acknowledged after it)."""
    acknowledged, refusals, killed_at, first_after = {}, 0, None, None
    deadline = time.monotonic() + 90
    i = 0
    while i < len(tokens) or first_after is None:
        assert time.monotonic() < deadline, "no logout was acknowledged after the kill"
        if i == len(tokens):
            tokens.append(sign_in())
        taken = False
        while i not in acknowledged and not taken:
            assert time.monotonic() < deadline, f"logout {i} never acknowledged"
            via = (a, b)[i % 2]
            status = harness.logout(via, tokens[i]).status_code
            if status == 200:
                acknowledged[i] = (time.monotonic(), via.name)
                if killed_at and first_after is None:
                    first_after = time.monotonic() - killed_at
            elif status == 401 and refusals:
                # An earlier attempt answered 503 but reached the store: the token is revoked
                # already. Never acknowledged, so it is not counted as acknowledged.
                taken = True
            else:
                assert status == 503, f"a logout the store cannot take is 503, not {status}"
                refusals += 1
                time.sleep(0.1)
        if len(acknowledged) == after_acknowledged and killed_at is None:
            kill()
            killed_at = time.monotonic()
        i += 1
        time.sleep(0.05)
    return acknowledged, refusals, first_after


def assert_nothing_acknowledged_was_lost(a, b, tokens, kept, acknowledged, decisions):
    for i in acknowledged:
        for replica in (a, b):
            assert forward_auth(replica, tokens[i]) == 401, f"{replica.name} allows acknowledged logout {i}"
    for token in kept:
        for replica in (a, b):
            assert forward_auth(replica, token) == 200, f"positive control: {replica.name} allows a live token"
    late = []
    for started, name, index, status in decisions:
        if status != 200 or index not in acknowledged:
            continue
        at, via = acknowledged[index]
        bound = at if name == via else at + STALENESS
        if started > bound:
            late.append((name, index, round(started - at, 3)))
    assert not late, f"allowed after the logout was acknowledged: {late}"
    # The recorder saw the tokens before their logouts (it would see an allow if there were one).
    assert any(status == 200 and index in acknowledged for _, _, index, status in decisions)


@pytest.fixture
def sentinel(logdir):
    deployment = redis_ha.Sentinel(logdir)
    yield deployment
    deployment.stop()


def test_a_sentinel_failover_loses_no_acknowledged_logout_and_no_replica_allows_one(sentinel, pool, logdir):
    store = ["--revocation-store", sentinel.url(), "--revocation-max-staleness-seconds", str(STALENESS)]
    a = start_replica(logdir, pool, "sentinel-a", store)
    b = start_replica(logdir, pool, "sentinel-b", store)
    try:
        serving(a, b)
        tokens = [pool.sign_in("alice")["AccessToken"] for _ in range(16 + KEPT)]
        kept, tokens = tokens[-KEPT:], tokens[:-KEPT]
        old = sentinel.node(sentinel.primary_port())
        recorder = redis_ha.Recorder([a, b], tokens + kept)
        acknowledged, refusals, fresh = logouts_through_a_failover(a, b, tokens, old.kill9, lambda: pool.sign_in("alice")["AccessToken"])
        decisions = recorder.stop()
        assert sentinel.primary_port() != old.port, "a replica was promoted"
        assert refusals > 0, "logouts were refused (503) while there was no primary, not acknowledged"
        assert_nothing_acknowledged_was_lost(a, b, tokens, kept, acknowledged, decisions)
        print(f"sentinel: first logout acknowledged {fresh:.2f} s after the kill; {refusals} answered 503; "
              f"{len(decisions)} decisions, {sum(s == 503 for *_, s in decisions)} of them 503")
    finally:
        a.stop()
        b.stop()
    for replica in (a, b):
        log = replica.output()
        assert log.count("revocation list loaded from redis") >= 2, "it reloaded the whole list after the failover"


def test_replicas_follow_the_primary_the_sentinels_name_even_while_the_old_one_still_answers(
        sentinel, pool, logdir):
    # What a partition looks like from a replica that can still reach the old primary: the
    # sentinels name another, while the old one lives on, still a primary, answering every ping.
    # A replica that started meanwhile logs out on the new one; the others must hear of it.
    store = ["--revocation-store", sentinel.url()]
    a = start_replica(logdir, pool, "moved-a", store)
    b = start_replica(logdir, pool, "moved-b", store)
    new = redis_ha.start_node(logdir, "redis-new-primary")
    new_replica = redis_ha.start_node(logdir, "redis-new-replica", replica_of=new.port)
    c = None
    try:
        serving(a, b)
        channel = f"cognito-authz:{pool.id}:revoked"
        subscribed = lambda port: harness.redis_cli(port, "PUBSUB", "NUMSUB", channel).splitlines()[-1]  # noqa: E731
        old = sentinel.primary_port()
        harness.wait_until(lambda: subscribed(old) == "2", what="both subscribed on the primary")
        harness.wait_until(lambda: redis_ha.replicas_acknowledging(new.port, 1), what="the new primary's replica")
        for s in sentinel.sentinels:
            sentinel.sentinel_cli(s, "SENTINEL", "REMOVE", sentinel.MASTER)
            sentinel.sentinel_cli(s, "SENTINEL", "MONITOR", sentinel.MASTER, "127.0.0.1", str(new.port), "2")
        assert sentinel.primary_port() == new.port
        c = start_replica(logdir, pool, "moved-c", store)
        serving(c)
        harness.wait_until(lambda: subscribed(new.port) == "3", what="every replica subscribed on the new primary",
                           timeout=10)
        token, other = (pool.sign_in("alice")["AccessToken"] for _ in range(2))
        assert forward_auth(a, token) == forward_auth(b, token) == 200, "positive control"
        assert harness.logout(c, token).status_code == 200
        for replica in (a, b):
            harness.wait_until(lambda: forward_auth(replica, token) == 401, what=f"{replica.name} refuses it",
                               timeout=1.5)
        # And a logout on an old replica now goes to the new primary, where the newcomer hears it.
        assert harness.logout(a, other).status_code == 200
        harness.wait_until(lambda: forward_auth(c, other) == 401, what="the newcomer refuses it", timeout=1.5)
    finally:
        for proc in (a, b, c, new_replica, new):
            if proc:
                proc.stop()
    assert "the primary moved from" in a.output()


def test_a_logout_is_acknowledged_only_once_a_replica_holds_it(logdir, pool):
    primary = redis_ha.start_node(logdir, "wait-primary")
    replica = redis_ha.start_node(logdir, "wait-replica", replica_of=primary.port)
    harness.wait_until(lambda: redis_ha.replicas_acknowledging(primary.port, 1), what="the replica in sync")
    store = ["--revocation-store", f"redis://127.0.0.1:{primary.port}/0", "--revocation-min-replicas", "1",
             "--revocation-replica-timeout-ms", "300"]
    a = start_replica(logdir, pool, "wait-a", store)
    try:
        serving(a)
        first, second = (pool.sign_in("alice")["AccessToken"] for _ in range(2))
        assert harness.logout(a, first).status_code == 200, "positive control: a replica acknowledges"
        replica.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            answer = harness.logout(a, second)
            took = time.monotonic() - started
            assert answer.status_code == 503, "no replica holds it: not acknowledged"
            assert took >= 0.3, "it waited the replica timeout"
        finally:
            replica.signal(signal.SIGCONT)
        # The refused logout was written to the primary all the same (a revocation is never undone),
        # so the token is refused; a logout once the replica is back is acknowledged again.
        assert forward_auth(a, second) == 401
        third = pool.sign_in("alice")["AccessToken"]
        harness.wait_until(lambda: harness.logout(a, third).status_code == 200, what="acknowledged once it can be")
    finally:
        a.stop()
        for node in (replica, primary):
            node.stop()
    assert "0 of 1 replicas acknowledged" in a.output()


@pytest.fixture
def cluster(logdir):
    deployment = redis_ha.Cluster(logdir)
    yield deployment
    deployment.stop()


def test_a_cluster_shares_revocations_and_a_killed_primary_loses_no_acknowledged_logout(cluster, pool, logdir):
    store = ["--revocation-store", cluster.url(), "--revocation-max-staleness-seconds", str(STALENESS)]
    harness.wait_until(lambda: cluster.acknowledging(pool.id), what="the list's shard replicating")
    a = start_replica(logdir, pool, "cluster-a", store)
    b = start_replica(logdir, pool, "cluster-b", store)
    try:
        serving(a, b)
        first = pool.sign_in("alice")["AccessToken"]
        logout_is_shared(a, b, first)

        key = f"cognito-authz:{{{pool.id}}}:revocations"
        victim = cluster.primary_of(key)
        # Both subscribe on the primary that runs every publish, not on any node: another node
        # hears it over the cluster bus, which a node just restarted may not have linked yet
        # while it answers pings.
        channel = f"cognito-authz:{{{pool.id}}}:revoked"
        subscribed = lambda node: harness.redis_cli(node.port, "PUBSUB", "NUMSUB", channel).splitlines()[-1]  # noqa: E731
        harness.wait_until(lambda: subscribed(victim) == "2", what="both subscribed on the slot's primary")
        tokens = [pool.sign_in("alice")["AccessToken"] for _ in range(12 + KEPT)]
        kept, tokens = tokens[-KEPT:], tokens[:-KEPT]
        recorder = redis_ha.Recorder([a, b], tokens + kept)
        promoted = threading.Event()

        def kill():
            # The promoted replica has no replica of its own until the killed node is back: until
            # then no logout can be acknowledged (503), as the WAIT setting asks.
            victim.kill9()

            def replace():
                harness.wait_until(lambda: cluster.primary_of(key).port != victim.port, what="promotion", timeout=30)
                promoted.set()
                cluster.restart(victim)
            threading.Thread(target=replace, daemon=True).start()

        acknowledged, refusals, fresh = logouts_through_a_failover(a, b, tokens, kill, lambda: pool.sign_in("alice")["AccessToken"])
        decisions = recorder.stop()
        assert promoted.is_set() and cluster.primary_of(key).port != victim.port, "its replica was promoted"
        harness.wait_until(lambda: subscribed(cluster.primary_of(key)) == "2", what="both followed the slot's primary")
        assert_nothing_acknowledged_was_lost(a, b, tokens, kept, acknowledged, decisions)
        assert forward_auth(a, first) == forward_auth(b, first) == 401
        assert fresh is not None, "positive control: logouts are acknowledged again once the node is back"
        print(f"cluster: first logout acknowledged {fresh:.2f} s after the kill (the node restarted); "
              f"{refusals} answered 503")
    finally:
        a.stop()
        b.stop()


def never_serving(logdir, pool, name, store):
    """A replica started with `store` and checked two seconds later: its health, a logout's answer, and its log."""
    ports = (harness.free_port(), harness.free_port(), harness.free_port())
    replica = harness.start_authz(logdir, pool, store, name=name, ports=ports,
                                  ready=lambda: requests.get(f"http://127.0.0.1:{ports[1]}/healthz", timeout=1) is not None)
    try:
        time.sleep(2)
        health = harness.grpc_health(replica.grpc_port, "")
        return health, harness.logout(replica, pool.sign_in("alice")["AccessToken"]).status_code, replica
    finally:
        replica.stop()


def tls_cli(port, paths, *args, user=None, password=None):
    argv = ["redis-cli", "--tls", "--cacert", str(paths["ca"]), "--cert", str(paths["client_cert"]),
            "--key", str(paths["client_key"]), "-p", str(port)]
    if user:
        argv += ["--user", user, "--pass", password, "--no-auth-warning"]
    return harness.subprocess.run([*argv, *args], capture_output=True, text=True, timeout=10).stdout.strip()


# The least the store needs (README): its key and channel, and these commands.
ACL = ["resetkeys", "~cognito-authz:*", "resetchannels", "&cognito-authz:*", "-@all", "+ping", "+multi", "+exec",
       "+wait", "+zadd", "+zrangebyscore", "+zremrangebyscore", "+publish", "+subscribe", "+select", "+role"]


def test_tls_with_a_client_certificate_and_an_acl_user_whose_password_comes_from_a_file(logdir, pool, tmp_path):
    paths = pki.write_pki(tmp_path / "redis-pki")
    port = harness.free_port()
    node = harness.Process("redis-tls", [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--tls-cert-file", str(paths["server_cert"]), "--tls-key-file", str(paths["server_key"]),
        "--tls-ca-cert-file", str(paths["ca"]), "--tls-auth-clients", "yes", "--daemonize", "no"], logdir)
    harness.wait_until(lambda: tls_cli(port, paths, "PING") == "PONG", what="redis over TLS")
    password = "Rp-5f0c2a7e-acl-user"
    assert tls_cli(port, paths, "ACL", "SETUSER", "authz", "on", f">{password}", *ACL) == "OK"
    assert tls_cli(port, paths, "ACL", "SETUSER", "default", "off") == "OK"
    (tmp_path / "redis-password").write_text(password + "\n")
    tls = ["--revocation-store", f"rediss://authz@127.0.0.1:{port}/0",
           "--revocation-redis-password-file", str(tmp_path / "redis-password"),
           "--revocation-redis-ca-file", str(paths["ca"])]
    client = ["--revocation-redis-client-cert", str(paths["client_cert"]),
              "--revocation-redis-client-key", str(paths["client_key"])]
    a = start_replica(logdir, pool, "tls-a", tls + client)
    b = start_replica(logdir, pool, "tls-b", tls + client)
    try:
        serving(a, b)
        token = pool.sign_in("alice")["AccessToken"]
        logout_is_shared(a, b, token)
        listed = tls_cli(port, paths, "ZRANGEBYSCORE", f"cognito-authz:{pool.id}:revocations", "-inf", "+inf",
                         user="authz", password=password)
        assert '"kind":"jti"' in listed and '"kind":"origin"' in listed, "the token's and its sign-in's entries"
        # Without its client certificate the server refuses the handshake: never serving.
        health, status, bare = never_serving(logdir, pool, "tls-no-client-cert", tls)
        assert (health, status) == ("NOT_SERVING", 503)
    finally:
        for proc in (a, b, node):
            proc.stop()
    for proc in (a, b, bare):
        assert password not in proc.output()
    assert "revocation list loaded from redis" in a.output() and "rediss://127.0.0.1" in a.output()


def tls_store(paths, tmp_path, url, passwords, ca=True):
    """A replica's settings for a store reached over TLS with the test CA (unless not `ca`) and
    client pair; each password (`{"password": ..., "sentinel-password": ...}`) from a file, as a
    mounted Secret would give it."""
    args = ["--revocation-store", url, "--revocation-redis-client-cert", str(paths["client_cert"]),
            "--revocation-redis-client-key", str(paths["client_key"])]
    if ca:
        args += ["--revocation-redis-ca-file", str(paths["ca"])]
    for setting, value in passwords.items():
        secret = tmp_path / f"redis-{setting}"
        secret.write_text(value + "\n")
        args += [f"--revocation-redis-{setting}-file", str(secret)]
    return args


NODE_PASSWORD, SENTINEL_PASSWORD = "Rp-8e1d40-nodes", "Sp-3b7a19-sentinels"


@pytest.fixture
def redis_pki(tmp_path):
    return pki.write_pki(tmp_path / "redis-pki")


@pytest.fixture
def tls_sentinel(logdir, redis_pki):
    deployment = redis_ha.Sentinel(logdir, tls=redis_pki, password=NODE_PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    yield deployment
    deployment.stop()


@pytest.fixture
def tls_cluster(logdir, redis_pki):
    deployment = redis_ha.Cluster(logdir, tls=redis_pki, password=NODE_PASSWORD)
    yield deployment
    deployment.stop()


def test_sentinel_over_tls_with_the_sentinels_own_password_shares_revocations_and_follows_a_failover(
        logdir, pool, tmp_path, redis_pki, tls_sentinel):
    paths, sentinel = redis_pki, tls_sentinel
    node_password, sentinel_password = NODE_PASSWORD, SENTINEL_PASSWORD
    assert sentinel.url().startswith("rediss+sentinel://")
    store = tls_store(paths, tmp_path, sentinel.url(), {"password": node_password, "sentinel-password": sentinel_password})
    a = start_replica(logdir, pool, "sentinel-tls-a", store)
    b = start_replica(logdir, pool, "sentinel-tls-b", store)
    try:
        serving(a, b)
        kept, first, second = (pool.sign_in("alice")["AccessToken"] for _ in range(3))
        logout_is_shared(a, b, first)

        # A failover the sentinels run, as a managed service's maintenance does: both replicas
        # find the new primary through the sentinels (over TLS, with their password) and
        # subscribe there.
        old = sentinel.primary_port()
        assert sentinel.sentinel_cli(sentinel.sentinels[0], "SENTINEL", "FAILOVER", sentinel.MASTER) == "OK"
        harness.wait_until(lambda: sentinel.primary_port() != old, what="a replica promoted", timeout=30)
        new = sentinel.primary_port()
        channel = f"cognito-authz:{pool.id}:revoked"
        harness.wait_until(lambda: harness.redis_cli(new, "PUBSUB", "NUMSUB", channel, **sentinel.auth)
                           .splitlines()[-1] == "2", what="both subscribed on the new primary", timeout=15)
        harness.wait_until(lambda: redis_ha.replicas_acknowledging(new, 2, sentinel.auth),
                           what="the new primary's replicas in sync", timeout=30)
        shared_after_the_failover(a, b, first, second, kept)
    finally:
        a.stop()
        b.stop()
    # The nodes' password but not the sentinels' own: the sentinels refuse it, and it never serves.
    without = tls_store(paths, tmp_path, sentinel.url(), {"password": node_password})
    assert never_serving(logdir, pool, "sentinel-tls-no-sentinel-password", without)[:2] == ("NOT_SERVING", 503)
    for replica in (a, b):
        log = replica.output()
        assert log.count("revocation list loaded from redis") >= 2, "loaded, and reloaded after the failover"
        assert node_password not in log and sentinel_password not in log


def test_a_cluster_over_tls_with_a_password_shares_revocations_and_follows_a_failover(
        logdir, pool, tmp_path, redis_pki, tls_cluster):
    paths, cluster, password = redis_pki, tls_cluster, NODE_PASSWORD
    assert cluster.url().startswith("rediss+cluster://")
    store = tls_store(paths, tmp_path, cluster.url(), {"password": password})
    harness.wait_until(lambda: cluster.acknowledging(pool.id), what="the list's shard replicating")
    a = start_replica(logdir, pool, "cluster-tls-a", store)
    b = start_replica(logdir, pool, "cluster-tls-b", store)
    key, channel = f"cognito-authz:{{{pool.id}}}:revocations", f"cognito-authz:{{{pool.id}}}:revoked"
    subscribed = lambda node: harness.redis_cli(node.port, "PUBSUB", "NUMSUB", channel, **cluster.auth).splitlines()[-1]  # noqa: E731
    try:
        serving(a, b)
        kept, first, second = (pool.sign_in("alice")["AccessToken"] for _ in range(3))
        logout_is_shared(a, b, first)
        primary = cluster.primary_of(key)
        listed = harness.redis_cli(primary.port, "ZRANGEBYSCORE", key, "-inf", "+inf", **cluster.auth)
        assert '"kind":"jti"' in listed, "the entry is in the list's slot"
        harness.wait_until(lambda: subscribed(primary) == "2", what="both subscribed on the slot's primary")

        # The slot's replica takes over (`CLUSTER FAILOVER`, as at a managed service's
        # maintenance): both replicas move their subscription to it, over TLS.
        promoted = cluster.replica_of(primary)
        assert harness.redis_cli(promoted.port, "CLUSTER", "FAILOVER", **cluster.auth) == "OK"
        harness.wait_until(lambda: cluster.primary_of(key).port == promoted.port, what="the replica promoted",
                           timeout=30)
        harness.wait_until(lambda: subscribed(promoted) == "2", what="both subscribed on the new primary",
                           timeout=15)
        harness.wait_until(lambda: cluster.acknowledging(pool.id), what="the list's shard replicating again")
        shared_after_the_failover(a, b, first, second, kept)
    finally:
        a.stop()
        b.stop()
    # Without the test CA the nodes' certificates are not trusted (no `insecure`): it never serves.
    untrusting = tls_store(paths, tmp_path, cluster.url(), {"password": password}, ca=False)
    assert never_serving(logdir, pool, "cluster-tls-no-ca", untrusting)[:2] == ("NOT_SERVING", 503)
    for replica in (a, b):
        log = replica.output()
        assert "revocation list loaded from redis" in log and "rediss+cluster://" in log
        assert password not in log
