"""Redis as managed services run it, started on loopback from Debian's packages: a primary with
replicas behind three sentinels (`redis-sentinel`), a three-primary Cluster with a replica each,
and TLS. Each node is a `harness.Process` stopped by its PID; the tests kill them with SIGKILL."""

import pathlib
import threading
import time

import requests

import harness


def start_node(logdir, name, replica_of=None, extra=(), port=None, password=None, data=None):
    """One redis-server, persisting nothing (a failover must not lean on a disk); optionally a
    replica of `replica_of` (a port)."""
    port = port or harness.free_port()
    data = data or pathlib.Path(logdir) / f"{name}-data"
    data.mkdir(exist_ok=True)
    # A replica's first sync starts at once rather than after Redis's default 5 s wait for more.
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(data), "--daemonize", "no", "--repl-diskless-sync-delay", "0", *extra]
    if replica_of:
        argv += ["--replicaof", "127.0.0.1", str(replica_of)]
    proc = harness.Process(name, argv, logdir)
    proc.port = port
    harness.wait_until(lambda: harness.redis_cli(port, "PING", password=password) == "PONG", what=name)
    return proc


def replicas_online(port):
    """How many replicas of the node at `port` are in sync (not merely connected)."""
    return sum("state=online" in v for k, v in info(port, "replication").items() if k.startswith("slave"))


def replicas_acknowledging(port, n):
    """True once `n` replicas of the node at `port` acknowledge its writes (`WAIT`): after a
    diskless sync a replica reads as online up to a second before its first acknowledgement, and a
    WAIT in that window times out."""
    if replicas_online(port) != n:
        return False
    # A write first: WAIT counts the replicas that acknowledged this connection's own writes.
    probe = harness.subprocess.run(["redis-cli", "-p", str(port)], input=f"SET ha-probe 1\nWAIT {n} 200\n",
                                   capture_output=True, text=True, timeout=10).stdout.split()
    return probe == ["OK", str(n)]


def info(port, section, password=None):
    """`INFO section` as a dict."""
    text = harness.redis_cli(port, "INFO", section, password=password)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Sentinel:
    """A primary, two replicas and three sentinels (quorum 2) watching it as `MASTER`."""

    MASTER = "authz-primary"

    def __init__(self, logdir, down_after_ms=1500):
        self.logdir = logdir
        self.primary = start_node(logdir, "redis-primary")
        self.replicas = [start_node(logdir, f"redis-replica-{i}", replica_of=self.primary.port) for i in (1, 2)]
        harness.wait_until(lambda: replicas_acknowledging(self.primary.port, 2), what="both replicas in sync")
        self.sentinels = [self._sentinel(i, down_after_ms) for i in (1, 2, 3)]
        # Each sentinel knows both replicas and the two other sentinels before anything is killed.
        for s in self.sentinels:
            harness.wait_until(lambda: self.sentinel_view(s).get("num-slaves") == "2" and
                               self.sentinel_view(s).get("num-other-sentinels") == "2",
                               what="sentinels see the replicas and each other", timeout=30)

    def sentinel_view(self, sentinel):
        """`SENTINEL MASTER` as a dict (redis-cli prints field and value on lines of their own)."""
        lines = harness.redis_cli(sentinel.port, "SENTINEL", "MASTER", self.MASTER).splitlines()
        return dict(zip(lines[::2], lines[1::2]))

    def _sentinel(self, i, down_after_ms):
        port = harness.free_port()
        conf = pathlib.Path(self.logdir) / f"sentinel-{i}.conf"
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", f"dir {self.logdir}",
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}",
            f"sentinel failover-timeout {self.MASTER} 10000",
            f"sentinel parallel-syncs {self.MASTER} 2",
        ]) + "\n")
        proc = harness.Process(f"sentinel-{i}", ["redis-sentinel", str(conf)], self.logdir)
        proc.port = port
        harness.wait_until(lambda: harness.redis_cli(port, "PING") == "PONG", what=f"sentinel {i}")
        return proc

    def sentinel_cli(self, sentinel, *args):
        return harness.redis_cli(sentinel.port, *args)

    def url(self, scheme="redis+sentinel"):
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{self.MASTER}/0"

    def primary_port(self):
        """The primary's port as the first sentinel that answers names it."""
        for s in self.sentinels:
            if s.alive():
                reply = harness.redis_cli(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER, error_ok=True)
                lines = reply.splitlines()
                if len(lines) == 2:
                    return int(lines[1])
        raise AssertionError("no sentinel answered")

    def node(self, port):
        return next(n for n in [self.primary, *self.replicas] if n.port == port)

    def stop(self):
        for proc in [*self.sentinels, *self.replicas, self.primary]:
            if proc.alive():
                proc.stop()


class Cluster:
    """Three primaries and a replica each (`redis-cli --cluster create`)."""

    def __init__(self, logdir, node_timeout_ms=2000):
        self.logdir, self.nodes, self.extra = logdir, [], {}
        for i in range(6):
            self.extra[i] = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
                             "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0",
                             # The bus port would be the port + 10000: a free one of its own instead.
                             "--cluster-port", str(harness.free_port())]
            self.nodes.append(start_node(logdir, f"cluster-{i}", extra=self.extra[i]))
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = harness.subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1",
                                          "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        harness.wait_until(lambda: all(info(n.port, "cluster").get("cluster_enabled") == "1" and
                                       harness.redis_cli(n.port, "CLUSTER", "INFO").startswith("cluster_state:ok")
                                       for n in self.nodes), what="cluster ok", timeout=30)

    def acknowledging(self, tag):
        """True once the primary serving hash tag `tag`'s slot has a replica acknowledging its
        writes (see `replicas_acknowledging`): a write to that slot, then `WAIT` on the same
        connection (`-c` follows the redirect there)."""
        probe = harness.subprocess.run(["redis-cli", "-c", "-p", str(self.nodes[0].port)],
                                       input=f"SET {{{tag}}}:ha-probe 1\nWAIT 1 200\n",
                                       capture_output=True, text=True, timeout=10).stdout.split()
        return probe[-2:] == ["OK", "1"]

    def restart(self, node):
        """Starts a killed node again on its port and with its cluster state: it rejoins as a replica."""
        i = self.nodes.index(node)
        self.nodes[i] = start_node(self.logdir, f"cluster-{i}-again", extra=self.extra[i], port=node.port,
                                   data=pathlib.Path(self.logdir) / f"cluster-{i}-data")
        return self.nodes[i]

    def url(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def primary_of(self, key):
        """The node serving `key`'s slot now, as the cluster says."""
        asked = next(n for n in self.nodes if n.alive())
        slot = int(harness.redis_cli(asked.port, "CLUSTER", "KEYSLOT", key))
        for line in harness.redis_cli(asked.port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                for r in fields[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no primary serves slot {slot}")

    def stop(self):
        for node in self.nodes:
            if node.alive():
                node.stop()


def forward_auth(authz, token):
    """The decision for `token` on the HTTP authorization listener (Envoy `http_service`'s path),
    as a status code: 200 allow, 401 refused, 503 cannot decide."""
    return requests.get(f"http://127.0.0.1:{authz.authz_http_port}/envoy/api/orders",
                        headers={"authorization": f"Bearer {token}"}, timeout=5).status_code


def start_replica(logdir, pool, name, store_args):
    port = harness.free_port()
    authz = harness.start_authz(logdir, pool, [*store_args, "--authz-http-listen", f"127.0.0.1:{port}"], name=name)
    authz.authz_http_port = port
    return authz


class Recorder:
    """Every decision the replicas make on the given tokens, in a background thread, each with the
    time it was asked: (started, replica name, token index, status)."""

    def __init__(self, replicas, tokens):
        self.replicas, self.tokens = replicas, tokens
        self.decisions = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            replica = self.replicas[i % len(self.replicas)]
            index = (i // len(self.replicas)) % len(self.tokens)
            started = time.monotonic()
            try:
                status = forward_auth(replica, self.tokens[index])
            except requests.RequestException:
                status = "error"
            self.decisions.append((started, replica.name, index, status))
            i += 1

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.decisions
