"""A replica that cannot hear is not fresh: replica B reaches Redis through a TCP relay that can be
told to stop forwarding its pub/sub subscription while keeping the sockets open (half-open, as a
NAT or proxy that silently dropped the connection leaves it). A logout on replica A then never
reaches B by publish; within the staleness bound B must refuse the token (401) or answer 503,
never allow it, and must resubscribe on its own."""

import socket
import threading
import time


import harness

STALENESS = 3


class Relay:
    """127.0.0.1 only: forwards every connection to Redis, byte for byte, each direction on its own
    thread. `silence_subscriptions()` makes the connections that have sent SUBSCRIBE drop every
    byte from then on, both ways, without closing anything. Connections made later are forwarded."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = []  # [client socket, upstream socket, {"subscribed": bool, "silent": bool}]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                return
            state = {"subscribed": False, "silent": False}
            with self.lock:
                self.connections.append((client, upstream, state))
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, source, sink, state, from_client):
        try:
            while data := source.recv(65536):
                if from_client and b"SUBSCRIBE" in data.upper():
                    state["subscribed"] = True
                if state["silent"]:
                    continue  # read and dropped: the peer's writes succeed, nothing arrives
                sink.sendall(data)
        except OSError:
            pass
        if not state["silent"]:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def subscriptions(self):
        with self.lock:
            return sum(1 for _, _, state in self.connections if state["subscribed"])

    def silence_subscriptions(self):
        with self.lock:
            silenced = [state for _, _, state in self.connections if state["subscribed"]]
        for state in silenced:
            state["silent"] = True
        return len(silenced)

    def stop(self):
        self.stopped = True
        self.listener.close()
        with self.lock:
            for client, upstream, _ in self.connections:
                client.close()
                upstream.close()


logout, decision = harness.logout, harness.authenticated_decision


def test_a_replica_whose_subscription_went_silent_refuses_or_answers_503_within_the_staleness_bound(logdir, pool):
    redis = harness.start_redis(logdir, name="redis-liveness")
    relay = Relay(redis.port)
    bound = ["--revocation-max-staleness-seconds", str(STALENESS)]
    a = b = None
    try:
        a = harness.start_authz(logdir, pool, ["--revocation-store", f"redis://127.0.0.1:{redis.port}/0", *bound],
                                name="liveness-a")
        b = harness.start_authz(logdir, pool, ["--revocation-store", f"redis://127.0.0.1:{relay.port}/0", *bound],
                                name="liveness-b")
        harness.wait_until(lambda: harness.grpc_health(b.grpc_port, "") == "SERVING", what="replica b serving")
        harness.wait_until(lambda: relay.subscriptions() == 1, timeout=5, what="b subscribed through the relay")

        # Positive control: with the relay forwarding, a logout on A is refused by B.
        first = pool.sign_in("alice")["AccessToken"]
        assert decision(b, first) == "allow"
        assert logout(a, first).status_code == 200
        harness.wait_until(lambda: decision(b, first) == "deny 401", timeout=5, what="b refusing a logout made on a")

        second = pool.sign_in("alice")["AccessToken"]
        assert decision(b, second) == "allow", "positive control: a live token passes on b"
        assert relay.silence_subscriptions() == 1
        silenced = time.monotonic()
        assert logout(a, second).status_code == 200

        # Within the bound (plus the time a `check` process takes here), no longer allowed...
        while (answer := decision(b, second)) == "allow":
            assert time.monotonic() - silenced < STALENESS + 2, "b still allows a logged-out token past the bound"
        assert answer in ("deny 401", "deny 503"), answer
        # ...and never again, whatever b is doing meanwhile (noticing, resubscribing, reloading).
        watch_until = time.monotonic() + 5
        while time.monotonic() < watch_until:
            answer = decision(b, second)
            assert answer in ("deny 401", "deny 503"), f"b answered {answer!r} for a logged-out token"

        # B resubscribed on its own (through a new connection) and learnt the logout by reloading.
        harness.wait_until(lambda: decision(b, second) == "deny 401", timeout=10, what="b refusing after resubscribing")
        assert relay.subscriptions() >= 2, "b made a new subscription"
        # Positive control: b's refusals of the logged-out token are in its log, the token is not.
        assert "request denied" in b.output()
        assert "eyJ" not in b.output(), "a token (or a piece of one) reached the log"
    finally:
        for proc in (b, a):
            if proc is not None:
                proc.stop()
        relay.stop()
        redis.stop()
