"""Session fixtures: one moto_server, one user pool, one echo upstream, one cognito-authz and one
Envoy, all real processes on 127.0.0.1, stopped by PID at the end."""

import pytest

import harness


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """Set up first, so torn down last: after every other fixture has stopped its own."""
    yield
    left = harness.stop_left_running()
    if left:
        print(f"\nstopped at the session's end, left running by a failed test or fixture: {', '.join(left)}")


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="session")
def moto(logdir):
    proc, url = harness.start_moto(logdir)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def pool(moto):
    return harness.Pool(moto)


@pytest.fixture(scope="session")
def upstream():
    app = harness.EchoUpstream()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def authz(logdir, pool):
    proc = harness.start_authz(logdir, pool)
    yield proc
    # Whatever tests ran, one token-shaped credential is refused last, so its denial is in the log.
    assert harness.check_cli(proc.grpc_port, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "mfa") == "deny 401"
    proc.stop()
    assert proc.proc.returncode == 0, "SIGTERM ends cognito-authz cleanly"
    log = proc.output()
    assert "stopped" in log
    # Positive control: the decisions that handled the tokens were logged; no token was.
    assert "request denied" in log, "the denials are in the log"
    assert "eyJ" not in log, "a token (or a piece of one) reached the log"


@pytest.fixture(scope="session")
def envoy(logdir, authz, upstream):
    proc = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port)
    yield proc
    proc.stop()
