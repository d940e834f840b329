"""`cognito-authz dev` runs two issuers with no cloud: the dev pool (Cognito-shaped, named
`default`) and `dev-oidc`, an OIDC-style issuer whose tokens say how the session signed in (`amr`).
Decisions are asked with the service's own `check` client."""

import subprocess

import pytest

import harness


@pytest.fixture(scope="module")
def dev(logdir, tmp_path_factory):
    data = tmp_path_factory.mktemp("dev-issuers-data")
    grpc, http, admin = harness.free_port(), harness.free_port(), harness.free_port()
    argv = [str(harness.BINARY), "dev", "--data-dir", str(data), "--grpc-listen", f"127.0.0.1:{grpc}",
            "--http-listen", f"127.0.0.1:{http}", "--admin-listen", f"127.0.0.1:{admin}"]
    proc = harness.Process("dev-issuers", argv, logdir, dict(__import__("os").environ, RUST_LOG="info"))
    proc.grpc_port, proc.data = grpc, data
    # SERVING once both issuers have loaded their keys.
    harness.wait_until(lambda: harness.grpc_health(grpc, "") == "SERVING", what="dev server, both issuers")
    yield proc
    proc.stop()


def token(dev, *args):
    argv = [str(harness.BINARY), "dev", "--data-dir", str(dev.data), "token", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def check(dev, tok, access):
    argv = [str(harness.BINARY), "check", "--addr", f"http://127.0.0.1:{dev.grpc_port}", "--access", access,
            "--token", tok]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def test_dev_oidc_tokens_pass_and_name_their_issuer(dev):
    out = check(dev, token(dev, "--issuer", "dev-oidc", "alice"), "authenticated")
    assert out.startswith("allow"), out
    # Two issuers: the dev pool's values stay bare, dev-oidc's are qualified by its name, so its
    # alice is never the pool's alice.
    assert "set    x-user-issuer: dev-oidc" in out and "set    x-username: dev-oidc:alice" in out, out
    pool = check(dev, token(dev, "alice"), "authenticated")
    assert pool.startswith("allow") and "set    x-user-issuer: default" in pool, pool
    assert "set    x-username: alice\n" in pool, pool


def test_dev_oidc_mfa_routes_need_a_second_factor_in_amr(dev):
    with_otp = check(dev, token(dev, "--issuer", "dev-oidc", "alice", "--amr", "pwd,otp"), "mfa")
    assert with_otp.startswith("allow"), with_otp
    password_only = check(dev, token(dev, "--issuer", "dev-oidc", "alice", "--amr", "pwd"), "mfa")
    assert password_only.startswith("deny 401"), password_only
    assert 'error="insufficient_user_authentication"' in password_only
    # bob has no TOTP in the dev pool, yet a dev-oidc token showing otp passes: no pool is asked.
    bob = check(dev, token(dev, "--issuer", "dev-oidc", "bob", "--amr", "otp"), "mfa")
    assert bob.startswith("allow"), bob


def test_amr_is_refused_for_the_dev_pool(dev):
    argv = [str(harness.BINARY), "dev", "--data-dir", str(dev.data), "token", "alice", "--amr", "otp"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--amr is for --issuer dev-oidc" in result.stderr
