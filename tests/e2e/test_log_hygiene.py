"""No log line holds a request's query string: denials (401, 403, 400, 503) at info and allows at
debug, in the JSON and the text formats. Each process is started for its test alone, so the
20-a-second audit limiter has admitted nothing else; and each test first finds the line it checks
(a suppressed line would be "clean" by accident)."""

import json
import re

import harness

PATH = "/enforce/items"


def decide(authz, path, token=None, access="mfa", headers=()):
    import subprocess

    argv = [str(harness.BINARY), "check", "--addr", f"http://127.0.0.1:{authz.grpc_port}", "--path", path,
            "--access", access]
    if token:
        argv += ["--token", token]
    for header in headers:
        argv += ["--header", header]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip()


def json_lines(authz):
    lines = []
    for line in authz.output().splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def line_for(lines, message, outcome):
    found = [entry for entry in lines if entry["fields"].get("message") == message
             and entry["fields"].get("outcome") == outcome]
    assert found, f"no {message!r} line with outcome {outcome!r} was written"
    return found[-1]["fields"]


def test_denials_and_allows_are_logged_without_their_query_in_json(logdir, pool):
    authz = harness.start_authz(logdir, pool, ["--log-format", "json"], name="authz-log-json")
    secrets = {}
    try:
        bob, alice = pool.sign_in("bob")["AccessToken"], pool.sign_in("alice")["AccessToken"]
        cases = [
            ("unauthenticated", None, PATH, "deny 401"),
            ("forbidden", bob, PATH, "deny 403"),
            ("bad_request", alice, "/enforce/../items", "deny 400"),
            ("allow", alice, PATH, "allow"),
        ]
        for outcome, token, path, expected in cases:
            secrets[outcome] = f"code-{outcome}-7Hq2LmP9"
            assert decide(authz, f"{path}?code={secrets[outcome]}&state=s#frag-{outcome}", token) == expected
    finally:
        authz.stop()
    lines = json_lines(authz)
    for outcome in ("unauthenticated", "forbidden", "bad_request"):
        fields = line_for(lines, "request denied", outcome)
        assert fields["method"] == "GET", "once-quoted, not a Debug string inside a JSON string"
        assert fields["path"] in (PATH, "/enforce/../items"), fields
        assert fields["query"] is True
        assert fields["suppressed"] == 0
    allow = line_for(lines, "decision", "allow")
    assert allow["path"] == PATH and allow["query"] is True
    text = authz.output()
    for outcome, secret in secrets.items():
        assert secret not in text, f"the {outcome} query reached the log"
        assert f"frag-{outcome}" not in text, f"the {outcome} fragment reached the log"
    assert "state=" not in text


def test_an_unavailable_decision_is_logged_without_its_query(logdir, pool):
    dead = f"http://127.0.0.1:{harness.free_port()}"
    authz = harness.start_authz(logdir, pool, ["--log-format", "json"], name="authz-log-503", cognito_endpoint=dead)
    try:
        assert decide(authz, f"{PATH}?token=secret-503-Zx81", pool.sign_in("alice")["AccessToken"]) == "deny 503"
    finally:
        authz.stop()
    fields = line_for(json_lines(authz), "request denied", "unavailable")
    assert fields["path"] == PATH and fields["query"] is True
    assert "secret-503-Zx81" not in authz.output()


def test_text_logs_escape_what_a_request_sends_and_drop_its_query(logdir, pool):
    authz = harness.start_authz(logdir, pool, name="authz-log-text")
    try:
        assert decide(authz, "/x\nINFO forged line?code=text-secret-Qw3") == "deny 400"
    finally:
        authz.stop()
    text = re.sub(r"\x1b\[[0-9;]*m", "", authz.output())  # colours, if the format adds them
    denied = [line for line in text.splitlines() if "request denied" in line]
    assert denied, "the denial line was written"
    assert 'path="/x\\nINFO forged line"' in denied[-1], denied[-1]
    assert not any(line.startswith("INFO forged line") for line in text.splitlines()), "no forged line"
    assert "text-secret-Qw3" not in text
