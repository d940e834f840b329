"""Redis as managed services run it, started on loopback from Debian's packages: a primary with
replicas behind three sentinels (`redis-sentinel`), a three-primary Cluster with a replica each,
each of them optionally over TLS only and with passwords. Each node is a `harness.Process` stopped
by its PID; the tests kill them with SIGKILL.

`auth` throughout is how a client reaches a node: `{"tls": pki.write_pki's paths, "password": ...}`,
either optional; the same dict is passed to `harness.redis_cli`."""

import pathlib
import tempfile
import threading
import time

import requests

import harness


def tls_settings(tls):
    """A server that speaks only TLS (test CA, client certificates required), and uses TLS, with the
    client pair, to its primary and its cluster bus: as a redis.conf's lines of (name, value)."""
    return [("tls-cert-file", tls["server_cert"]), ("tls-key-file", tls["server_key"]), ("tls-ca-cert-file", tls["ca"]),
            ("tls-client-cert-file", tls["client_cert"]), ("tls-client-key-file", tls["client_key"]),
            ("tls-auth-clients", "yes"), ("tls-replication", "yes")]


def start_node(logdir, name, replica_of=None, extra=(), port=None, auth=None, data=None):
    """One redis-server, persisting nothing (a failover must not lean on a disk); optionally a
    replica of `replica_of` (a port); reached as `auth` says (TLS only, a password)."""
    auth = auth or {}
    port = port or harness.free_port()
    data = data or pathlib.Path(logdir) / f"{name}-data"
    data.mkdir(exist_ok=True)
    # A replica's first sync starts at once rather than after Redis's default 5 s wait for more.
    argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(data), "--daemonize", "no", "--repl-diskless-sync-delay", "0", *extra]
    if auth.get("tls"):
        argv += ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes"]
        argv += [arg for name_, value in tls_settings(auth["tls"]) for arg in (f"--{name_}", str(value))]
    else:
        argv += ["--port", str(port)]
    if auth.get("password"):
        argv += ["--requirepass", auth["password"], "--masterauth", auth["password"]]
    if replica_of:
        argv += ["--replicaof", "127.0.0.1", str(replica_of)]
    proc = harness.Process(name, argv, logdir)
    proc.port = port
    harness.wait_until(lambda: harness.redis_cli(port, "PING", error_ok=True, **auth) == "PONG", what=name)
    return proc


def replicas_online(port, auth=None):
    """How many replicas of the node at `port` are in sync (not merely connected)."""
    return sum("state=online" in v for k, v in info(port, "replication", auth).items() if k.startswith("slave"))


def replicas_acknowledging(port, n, auth=None):
    """True once `n` replicas of the node at `port` acknowledge its writes (`WAIT`): after a
    diskless sync a replica reads as online up to a second before its first acknowledgement, and a
    WAIT in that window times out."""
    if replicas_online(port, auth) != n:
        return False
    # A write first: WAIT counts the replicas that acknowledged this connection's own writes.
    probe = harness.redis_cli(port, stdin=f"SET ha-probe 1\nWAIT {n} 200\n", error_ok=True, **(auth or {}))
    return probe.split() == ["OK", str(n)]


def info(port, section, auth=None):
    """`INFO section` as a dict."""
    text = harness.redis_cli(port, "INFO", section, **(auth or {}))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Sentinel:
    """A primary, two replicas and three sentinels (quorum 2) watching it as `MASTER`. With `tls`
    every node and sentinel speaks only TLS; `password` is the nodes' (`requirepass`, and the
    sentinels' `auth-pass`), `sentinel_password` the sentinels' own (`requirepass`, `sentinel-pass`)."""

    MASTER = "authz-primary"

    def __init__(self, logdir, down_after_ms=1500, tls=None, password=None, sentinel_password=None):
        # A directory of its own: a deployment's files never meet an earlier one's.
        logdir = self.logdir = tempfile.mkdtemp(prefix="sentinel-", dir=logdir)
        self.tls = tls
        self.auth = {"tls": tls, "password": password}
        self.sentinel_auth = {"tls": tls, "password": sentinel_password}
        self.primary = start_node(logdir, "redis-primary", auth=self.auth)
        self.replicas = [start_node(logdir, f"redis-replica-{i}", replica_of=self.primary.port, auth=self.auth)
                         for i in (1, 2)]
        harness.wait_until(lambda: replicas_acknowledging(self.primary.port, 2, self.auth), what="both replicas in sync")
        self.sentinels = [self._sentinel(i, down_after_ms) for i in (1, 2, 3)]
        # Each sentinel knows both replicas and the two other sentinels before anything is killed.
        for s in self.sentinels:
            harness.wait_until(lambda: self.sentinel_view(s).get("num-slaves") == "2" and
                               self.sentinel_view(s).get("num-other-sentinels") == "2",
                               what="sentinels see the replicas and each other", timeout=30)

    def sentinel_view(self, sentinel):
        """`SENTINEL MASTER` as a dict (redis-cli prints field and value on lines of their own)."""
        lines = harness.redis_cli(sentinel.port, "SENTINEL", "MASTER", self.MASTER, **self.sentinel_auth).splitlines()
        return dict(zip(lines[::2], lines[1::2]))

    def _sentinel(self, i, down_after_ms):
        port = harness.free_port()
        conf = pathlib.Path(self.logdir) / f"sentinel-{i}.conf"
        lines = ["bind 127.0.0.1", f"dir {self.logdir}",
                 f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2",
                 f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}",
                 f"sentinel failover-timeout {self.MASTER} 10000",
                 f"sentinel parallel-syncs {self.MASTER} 2"]
        if self.tls:
            lines += ["port 0", f"tls-port {port}", *(f"{name} {value}" for name, value in tls_settings(self.tls))]
        else:
            lines += [f"port {port}"]
        if self.auth["password"]:
            lines += [f"sentinel auth-pass {self.MASTER} {self.auth['password']}"]
        if self.sentinel_auth["password"]:
            lines += [f"requirepass {self.sentinel_auth['password']}",
                      f"sentinel sentinel-pass {self.sentinel_auth['password']}"]
        conf.write_text("\n".join(lines) + "\n")
        proc = harness.Process(f"sentinel-{i}", ["redis-sentinel", str(conf)], self.logdir)
        proc.port = port
        harness.wait_until(lambda: harness.redis_cli(port, "PING", error_ok=True, **self.sentinel_auth) == "PONG",
                           what=f"sentinel {i}")
        return proc

    def sentinel_cli(self, sentinel, *args):
        return harness.redis_cli(sentinel.port, *args, **self.sentinel_auth)

    def url(self, scheme=None):
        scheme = scheme or ("rediss+sentinel" if self.tls else "redis+sentinel")
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{self.MASTER}/0"

    def primary_port(self):
        """The primary's port as the first sentinel that answers names it."""
        for s in self.sentinels:
            if s.alive():
                reply = harness.redis_cli(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER, error_ok=True,
                                          **self.sentinel_auth)
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
    """Three primaries and a replica each (`redis-cli --cluster create`); with `tls` clients and the
    cluster bus speak only TLS, and `password` is every node's."""

    def __init__(self, logdir, node_timeout_ms=2000, tls=None, password=None):
        # A directory of its own: a node that found an earlier cluster's nodes.conf would not join.
        logdir = self.logdir = tempfile.mkdtemp(prefix="cluster-", dir=logdir)
        self.nodes, self.extra, self.tls = [], {}, tls
        self.auth = {"tls": tls, "password": password}
        for i in range(6):
            self.extra[i] = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
                             "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0",
                             # The bus port would be the port + 10000: a free one of its own instead.
                             "--cluster-port", str(harness.free_port())]
            self.nodes.append(start_node(logdir, f"cluster-{i}", extra=self.extra[i], auth=self.auth))
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        env = dict(harness.os.environ, REDISCLI_AUTH=password) if password else None
        created = harness.subprocess.run([*harness.redis_cli_argv(self.nodes[0].port, tls), "--cluster", "create",
                                          *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                                         capture_output=True, text=True, timeout=60, env=env)
        assert created.returncode == 0, created.stdout + created.stderr
        harness.wait_until(lambda: all(info(n.port, "cluster", self.auth).get("cluster_enabled") == "1" and
                                       harness.redis_cli(n.port, "CLUSTER", "INFO", **self.auth)
                                       .startswith("cluster_state:ok") for n in self.nodes),
                           what="cluster ok", timeout=30)

    def acknowledging(self, tag):
        """True once the primary serving hash tag `tag`'s slot has a replica acknowledging its
        writes (see `replicas_acknowledging`): a write to that slot, then `WAIT` on the same
        connection (`-c` follows the redirect there)."""
        probe = harness.redis_cli(self.nodes[0].port, "-c", stdin=f"SET {{{tag}}}:ha-probe 1\nWAIT 1 200\n",
                                  error_ok=True, **self.auth).split()
        return probe[-2:] == ["OK", "1"]

    def restart(self, node):
        """Starts a killed node again on its port and with its cluster state: it rejoins as a replica."""
        i = self.nodes.index(node)
        self.nodes[i] = start_node(self.logdir, f"cluster-{i}-again", extra=self.extra[i], port=node.port, auth=self.auth,
                                   data=pathlib.Path(self.logdir) / f"cluster-{i}-data")
        return self.nodes[i]

    def url(self):
        return ("rediss+cluster://" if self.tls else "redis+cluster://") + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def primary_of(self, key):
        """The node serving `key`'s slot now, as the cluster says."""
        asked = next(n for n in self.nodes if n.alive())
        slot = int(harness.redis_cli(asked.port, "CLUSTER", "KEYSLOT", key, **self.auth))
        for line in harness.redis_cli(asked.port, "CLUSTER", "NODES", **self.auth).splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                for r in fields[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no primary serves slot {slot}")

    def replica_of(self, primary):
        """A node replicating `primary`, as the cluster says."""
        lines = [line.split() for line in harness.redis_cli(primary.port, "CLUSTER", "NODES", **self.auth).splitlines()]
        primary_id = next(fields[0] for fields in lines if "myself" in fields[2])
        port = next(int(fields[1].split("@")[0].rsplit(":", 1)[1]) for fields in lines if fields[3] == primary_id)
        return next(n for n in self.nodes if n.port == port)

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
