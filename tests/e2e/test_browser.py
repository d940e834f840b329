"""The demo (demo/run.py) walked in a real browser: Debian's headless Chromium, driven by
playwright-core (tests/e2e/browser/walk.mjs), through Envoy, the dev server's hosted UI and the
companion module. The demo's parts are started by demo/run.py's own `Demo`, so the demo and this
test cannot drift. Screenshots of each step go to the run's log directory (`browser-shots/`)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import requests

import harness

ROOT = harness.ROOT
BROWSER_DIR = ROOT / "tests" / "e2e" / "browser"
CHROMIUM = pathlib.Path("/usr/bin/chromium")


demo_run = harness.demo


@pytest.fixture(scope="module")
def demo(logdir):
    assert CHROMIUM.exists(), "Debian's chromium is installed (tests/run-all.sh does it)"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").exists(), "npm ci ran in tests/e2e/browser"
    running = demo_run.Demo(pathlib.Path(logdir) / "browser-demo")
    yield running
    running.stop()
    assert running.dev.proc.returncode == 0, "SIGTERM ends cognito-authz dev cleanly"


@pytest.fixture(scope="module")
def users(demo):
    return {user["username"]: user for user in demo.users()}


@pytest.fixture(scope="module")
def walk(demo, users, logdir):
    """One walk through the demo in Chromium; what it saw, as JSON."""
    port = demo.envoy_url.rsplit(":", 1)[1]
    shots = pathlib.Path(logdir) / "browser-shots"
    walk_input = {
        "page_url": demo.page_url,
        # Another origin and another site than 127.0.0.1, on the same Envoy and page.
        "cross_page_url": f"http://localhost:{port}/demo/",
        "envoy_url": demo.envoy_url,
        "hosted_ui": demo.hosted_ui,
        "shots": str(shots),
        "users": {name: users[name] for name in ("alice", "bob")},
    }
    started = time.monotonic()
    done = subprocess.run(["node", str(BROWSER_DIR / "walk.mjs")], cwd=BROWSER_DIR, capture_output=True, text=True,
                          timeout=200, env=dict(os.environ, WALK_INPUT=json.dumps(walk_input)))
    print(f"browser walk: {time.monotonic() - started:.1f} s, screenshots in {shots}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"the walk printed nothing (exit {done.returncode}): {done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    seen = json.loads(lines[-1])
    for key in ("token_1", "token_2"):
        if key in seen.get("alice", {}):
            seen["alice"][key] = "(redacted)"
    (pathlib.Path(logdir) / "browser-walk.json").write_text(json.dumps(seen, indent=2))
    assert "error" not in result, f"the walk failed: {result['error']}\nconsole: {result['console']}\n" \
                                  f"stderr: {done.stderr[-2000:]}"
    assert done.returncode == 0, done.stderr[-3000:]
    return result


def only_cookie(cookies, name="cognito_refresh"):
    found = [c for c in cookies if c["name"] == name]
    assert len(found) == 1, f"one {name} cookie in the browser's jar, found {found}"
    return found[0]


def test_alice_signs_in_through_the_hosted_ui_with_totp(walk):
    alice = walk["alice"]
    assert alice["sign_in"]["exchange_status"] == 200
    assert alice["sign_in"]["status"] == "signed in as alice"


def test_refresh_cookie_is_httponly_secure_strict_and_scoped_to_auth(walk):
    cookie = only_cookie(walk["alice"]["cookies"])
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/auth"
    assert cookie["domain"] == "127.0.0.1", "a host-only cookie of the page's own host"


def test_page_script_cannot_read_the_refresh_cookie(walk):
    alice = walk["alice"]
    assert "cognito_refresh" not in alice["page_document_cookie"]
    assert "cognito_refresh" not in alice["auth_path_document_cookie"], "not even on a page under /auth"


def test_call_api_shows_the_upstreams_echo_of_alices_identity(walk, users):
    api = walk["alice"]["api"]
    assert api["status"] == 200, api
    assert api["body"]["headers"]["x-user-id"] == users["alice"]["sub"]
    assert api["body"]["headers"]["x-username"] == "alice"


def test_another_site_cannot_use_the_cookie_while_the_page_can(walk):
    cross, same = walk["alice"]["cross_site"], walk["alice"]["same_site"]
    assert cross["status"] != 200, f"a page on localhost refreshed with 127.0.0.1's cookie: {cross}"
    assert same["status"] == 200, f"the same call from the page itself works: {same}"
    # What the browser put on the wire (Chromium's own record of the request's headers).
    assert same["sent_refresh_cookie"] is True, "the page's own request carries the cookie"
    assert cross["sent_refresh_cookie"] is False, "SameSite=Strict: the cookie is not sent cross-site"


def test_refresh_gives_a_new_access_token(walk):
    alice = walk["alice"]
    assert alice["refresh"]["status"] == 200
    assert alice["refresh"]["page_status"] == "signed in as alice"
    assert alice["token_2"] and alice["token_2"] != alice["token_1"]


def test_sign_out_clears_the_cookie_and_envoy_refuses_the_old_tokens(walk, demo):
    alice = walk["alice"]
    assert alice["sign_out"]["page_status"] == "signed out", alice["sign_out"]
    assert not [c for c in alice["cookies_after_sign_out"] if c["name"] == "cognito_refresh"]
    assert alice["api_after_sign_out"]["status"] == 401, "the page has no token left"
    for token in (alice["token_1"], alice["token_2"]):
        response = requests.get(f"{demo.envoy_url}/api/items", headers={"authorization": f"Bearer {token}"},
                                timeout=10)
        assert response.status_code == 401, response.text


def test_bob_without_totp_is_refused_until_he_enrols_then_let_through(walk, users):
    bob = walk["bob"]
    assert bob["sign_in"]["exchange_status"] == 200
    assert bob["sign_in"]["status"] == "signed in as bob"
    assert bob["api_before_enrolment"]["status"] == 403, bob["api_before_enrolment"]
    assert bob["otpauth"].startswith("otpauth://totp/")
    assert bob["enrolled"]
    assert bob["api_after_enrolment"]["status"] == 200, bob["api_after_enrolment_statuses"]
    assert bob["api_after_enrolment"]["body"]["headers"]["x-user-id"] == users["bob"]["sub"]


def test_no_token_reaches_the_dev_server_log(walk, demo):
    assert "eyJ" not in demo.dev.log_path.read_text(errors="replace")


def children_of(pid):
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def end(proc):
    """Stops the demo command the way a user would (it then stops its children); SIGKILL, which
    would leave them behind, only if it does not answer."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_demo_command(workdir):
    proc = subprocess.Popen([sys.executable, str(ROOT / "demo" / "run.py"), "--workdir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Ctrl-C"):
            return proc, "".join(lines)
    end(proc)
    raise AssertionError(f"the demo did not start: {''.join(lines)}")


def test_demo_command_prints_the_page_and_users_and_stops_everything_on_sigterm(tmp_path):
    proc, shown = start_demo_command(tmp_path)
    try:
        assert "/demo/" in shown and "alice" in shown and "bob" in shown, shown
        children = children_of(proc.pid)
        assert len(children) == 2, f"the dev server and Envoy: {children}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "demo: stopped" in proc.stdout.read()
        assert not [pid for pid in children if pathlib.Path(f"/proc/{pid}").exists()], "its children are gone"
    finally:
        end(proc)


def test_demo_command_stops_the_rest_when_one_part_dies(tmp_path):
    proc, _ = start_demo_command(tmp_path)
    try:
        children = children_of(proc.pid)
        os.kill(children[0], signal.SIGKILL)
        assert proc.wait(30) == 1
        assert "stopping the rest" in proc.stdout.read()
        assert not [pid for pid in children if pathlib.Path(f"/proc/{pid}").exists()]
    finally:
        end(proc)
