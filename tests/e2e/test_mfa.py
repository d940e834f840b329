"""The MFA gate end to end: Envoy's `access` context extension, cognito-authz asking moto's
Cognito (TOTP enabled) for each user's MFA state, with a 1 s cache so expiry is observable."""

import signal
import time

import requests

import harness


def get(envoy, path, token):
    return requests.get(envoy.url + path, headers={"authorization": f"Bearer {token}"}, timeout=10)


def eventually(probe, expected, within=4.0):
    """Polls until `probe()` equals `expected`; returns the last value seen."""
    deadline = time.monotonic() + within
    seen = probe()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = probe()
    return seen


def test_the_harness_never_sends_a_code_whose_step_is_about_to_end(monkeypatch):
    """moto accepts the current step's code only. A code computed 1 s before the step ends would
    reach it in the next step and be refused (a CI flake), so the harness waits for the next step;
    with 20 s left it answers at once (the positive control)."""
    secret = "JBSWY3DPEHPK3PXP"
    clock = {"now": 59.0}
    slept = []
    monkeypatch.setattr(harness.time, "time", lambda: clock["now"])
    monkeypatch.setattr(harness.time, "sleep", lambda s: (slept.append(s), clock.update(now=clock["now"] + s)))

    assert harness.totp(secret) == harness.totp(secret, at=60.0)
    assert harness.totp(secret, at=60.0) != harness.totp(secret, at=59.0)
    assert slept and sum(slept) < 1.5

    slept.clear()
    clock["now"] = 70.0
    assert harness.totp(secret) == harness.totp(secret, at=70.0) and slept == []


def test_user_without_totp_gets_403_on_mfa_routes_and_200_on_bootstrap_routes(envoy, pool):
    pool.add_user("carol")
    token = pool.sign_in("carol")["AccessToken"]
    denied = get(envoy, "/api/items", token)
    assert denied.status_code == 403
    assert denied.json() == {"detail": "MFA enrolment required (totp)"}
    assert get(envoy, "/api/mfa/status", token).status_code == 200


def test_enrolment_is_seen_within_the_negative_ttl_and_an_admin_reset_within_the_ttl(envoy, pool):
    pool.add_user("erin")
    token = pool.sign_in("erin")["AccessToken"]
    assert get(envoy, "/api/items", token).status_code == 403
    started = time.monotonic()
    pool.enrol_totp("erin")
    assert eventually(lambda: get(envoy, "/api/items", token).status_code, 200) == 200
    assert time.monotonic() - started < 4, "seen within the 2 s negative cache"
    pool.admin_reset_mfa("erin")
    assert eventually(lambda: get(envoy, "/api/items", token).status_code, 403) == 403, "reset seen within the 1 s TTL"


def test_a_disabled_user_is_refused_with_401(envoy, pool):
    pool.add_user("dave")
    pool.enrol_totp("dave")
    token = pool.sign_in("dave")["AccessToken"]
    assert get(envoy, "/api/items", token).status_code == 200
    pool.idp.admin_disable_user(UserPoolId=pool.id, Username="dave")
    assert eventually(lambda: get(envoy, "/api/items", token).status_code, 401) == 401, "within the 1 s TTL"
    assert get(envoy, "/api/items", token).json() == {"detail": "User is disabled"}


def test_cognito_down_means_503_on_mfa_routes_while_other_levels_pass(logdir, pool, upstream):
    dead = f"http://127.0.0.1:{harness.free_port()}"
    authz = harness.start_authz(logdir, pool, name="authz-cognito-down", cognito_endpoint=dead)
    proxy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-cognito-down")
    try:
        token = pool.sign_in("alice")["AccessToken"]
        response = get(proxy, "/api/items", token)
        assert response.status_code == 503
        assert response.json() == {"detail": "MFA status is temporarily unavailable"}
        assert get(proxy, "/api/mfa/status", token).status_code == 200, "authenticated routes need no lookup"
        assert harness.check_cli(authz.grpc_port, token, "public") == "allow"
        assert harness.check_cli(authz.grpc_port, token, "mfa") == "deny 503"
    finally:
        proxy.stop()
        authz.stop()


def test_get_user_source_needs_no_aws_credentials(logdir, pool, upstream):
    authz = harness.start_authz(logdir, pool, ["--mfa-source", "get-user"], name="authz-get-user", credentials=False)
    proxy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-get-user")
    try:
        assert get(proxy, "/api/items", pool.sign_in("alice")["AccessToken"]).status_code == 200
        assert get(proxy, "/api/items", pool.sign_in("bob")["AccessToken"]).status_code == 403
    finally:
        proxy.stop()
        authz.stop()


def test_admin_get_user_source_without_credentials_fails_closed(logdir, pool, upstream):
    authz = harness.start_authz(logdir, pool, name="authz-no-credentials", credentials=False)
    try:
        token = pool.sign_in("alice")["AccessToken"]
        assert harness.check_cli(authz.grpc_port, token, "mfa") == "deny 503"
        assert harness.check_cli(authz.grpc_port, token, "authenticated") == "allow"
    finally:
        authz.stop()


def test_sms_counts_as_a_second_factor_only_where_mfa_factors_says_so(logdir, pool, authz):
    """moto's AdminGetUser lists SMS_MFA in UserMFASettingList once SMS MFA is enabled."""
    pool.add_user("sasha")
    token = pool.sign_in("sasha")["AccessToken"]
    pool.idp.admin_set_user_mfa_preference(UserPoolId=pool.id, Username="sasha",
                                           SMSMfaSettings={"Enabled": True, "PreferredMfa": False})
    listed = pool.idp.admin_get_user(UserPoolId=pool.id, Username="sasha").get("UserMFASettingList")
    assert listed == ["SMS_MFA"], listed
    either = harness.start_authz(logdir, pool, ["--mfa-factors", "totp,sms"], name="authz-sms")
    try:
        assert harness.check_cli(authz.grpc_port, token, "mfa") == "deny 403", "TOTP alone by default"
        assert harness.check_cli(either.grpc_port, token, "mfa") == "allow"
        bob = pool.sign_in("bob")["AccessToken"]
        assert harness.check_cli(either.grpc_port, bob, "mfa") == "deny 403", "positive control: no factor at all"
        metrics = requests.get(f"http://127.0.0.1:{either.admin_port}/metrics", timeout=5).text
        assert 'cognito_authz_mfa_lookups_total{result="enrolled",factors="totp,sms"} 1' in metrics
        assert 'cognito_authz_mfa_lookups_total{result="not_enrolled",factors="totp,sms"} 1' in metrics
    finally:
        either.stop()


def test_policy_file_reloads_on_sighup_and_a_bad_file_keeps_the_old_one(logdir, pool, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nprefix = "/reports"\naccess = "authenticated"\n')
    authz = harness.start_authz(logdir, pool, ["--policy", str(policy)], name="authz-policy")
    try:
        bob = pool.sign_in("bob")["AccessToken"]

        def decide(path):
            import subprocess
            argv = [str(harness.BINARY), "check", "--addr", f"http://127.0.0.1:{authz.grpc_port}", "--path", path,
                    "--token", bob]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split("\n")[0]

        assert decide("/reports/q1") == "allow"
        assert decide("/other") == "deny 403"
        policy.write_text('[[rule]]\nprefix = "/other"\naccess = "authenticated"\n')
        authz.signal(signal.SIGHUP)
        assert eventually(lambda: decide("/other"), "allow") == "allow"
        assert decide("/reports/q1") == "deny 403"
        policy.write_text("this is not toml [")
        authz.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert authz.alive()
        assert decide("/other") == "allow", "a bad file keeps the policy in force"
        assert "policy reload failed" in authz.output()
    finally:
        authz.stop()


def test_enforce_mfa_false_warns_and_lets_unenrolled_users_through(logdir, pool):
    authz = harness.start_authz(logdir, pool, ["--enforce-mfa=false"], name="authz-no-mfa")
    try:
        assert harness.check_cli(authz.grpc_port, pool.sign_in("bob")["AccessToken"], "mfa") == "allow"
        assert "MFA is NOT enforced" in authz.output()
        metrics = requests.get(f"http://127.0.0.1:{authz.admin_port}/metrics", timeout=5).text
        assert "cognito_authz_mfa_enforced 0" in metrics
    finally:
        authz.stop()


def counter(authz, series):
    """The value of one series on `/metrics` (0 while it has never been counted)."""
    metrics = requests.get(f"http://127.0.0.1:{authz.admin_port}/metrics", timeout=5).text
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(series + " ")]
    assert len(values) <= 1, values
    return values[0] if values else 0.0


def test_mfa_lookups_are_counted_in_metrics(authz, envoy, pool):
    # A user nobody has asked about yet, so the decision below is a cache miss: one lookup.
    pool.add_user("karl")
    pool.enrol_totp("karl")
    token = pool.sign_in("karl")["AccessToken"]
    enrolled, not_enrolled = ('cognito_authz_mfa_lookups_total{result="enrolled",factors="totp"}',
                              'cognito_authz_mfa_lookups_total{result="not_enrolled",factors="totp"}')
    before = counter(authz, enrolled), counter(authz, not_enrolled)
    assert get(envoy, "/api/items", token).status_code == 200
    assert (counter(authz, enrolled), counter(authz, not_enrolled)) == (before[0] + 1, before[1])
    assert counter(authz, "cognito_authz_mfa_enforced") == 1


def test_a_token_of_a_deleted_user_gets_nothing_from_a_new_user_of_the_same_name(envoy, pool):
    pool.add_user("henry")
    old = pool.sign_in("henry")["AccessToken"]
    assert get(envoy, "/api/mfa/status", old).status_code == 200
    pool.idp.admin_delete_user(UserPoolId=pool.id, Username="henry")
    pool.add_user("henry")  # someone else: a new sub
    pool.enrol_totp("henry")
    new = pool.sign_in("henry")["AccessToken"]
    assert get(envoy, "/api/items", new).status_code == 200, "the new henry has enrolled"
    refused = get(envoy, "/api/items", old)
    assert refused.status_code == 401, refused.text
    assert refused.json() == {"detail": "Could not validate credentials"}
    assert get(envoy, "/api/items", new).status_code == 200, "nothing of the refusal was cached for the new user"


def test_sessions_before_an_enrolment_are_revoked_when_configured(logdir, pool, upstream):
    authz = harness.start_authz(logdir, pool, ["--revoke-sessions-on-mfa-enrolment", "--mfa-negative-cache-ttl", "1"],
                                name="authz-revoke-on-enrolment")
    proxy = harness.start_envoy(logdir, authz.grpc_port, authz.http_port, upstream.port, name="envoy-enrolment")
    try:
        pool.add_user("ivan")
        before = pool.sign_in("ivan")["AccessToken"]
        assert get(proxy, "/api/items", before).status_code == 403
        time.sleep(1.1)  # a later sign-in falls in a later second than the refusal
        pool.enrol_totp("ivan")
        assert eventually(lambda: get(proxy, "/api/items", before).status_code, 401) == 401
        assert get(proxy, "/api/items", before).json() == {"detail": "Token has been revoked"}
        assert get(proxy, "/api/mfa/status", before).status_code == 401, "revoked on every route"
        after = pool.sign_in("ivan")["AccessToken"]
        assert get(proxy, "/api/items", after).status_code == 200, "a sign-in after the enrolment passes"
        assert "sessions that began before were revoked" in authz.output()
    finally:
        proxy.stop()
        authz.stop()
