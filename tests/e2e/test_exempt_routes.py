"""The exempt set stays small: exactly these routes of the shipped Envoy configuration and example
policy are `public` or `authenticated` (or unchecked). Widening it must be a deliberate edit here."""

import tomllib

import yaml

import harness

ENVOY_EXEMPT = {
    # route name: (match, level)
    "health": ({"path": "/healthz"}, "unchecked"),
    "public": ({"prefix": "/public/"}, "unchecked"),
    "auth-sign-in": ({"path": "/auth/sign-in"}, "public"),
    "auth-refresh": ({"path": "/auth/refresh"}, "public"),
    "auth-me": ({"path": "/auth/me"}, "public"),
    "auth-logout": ({"path": "/auth/logout"}, "public"),
    "mfa-bootstrap": ({"prefix": "/api/mfa/"}, "authenticated"),
}

POLICY_EXEMPT = [
    ("/auth/sign-in", "public"),
    ("/auth/refresh", "public"),
    ("/auth/me", "public"),
    ("/auth/logout", "public"),
    ("/api/mfa", "authenticated"),
]


def envoy_routes():
    config = yaml.safe_load(harness.SHIPPED_CONFIG.read_text())
    [listener] = config["static_resources"]["listeners"]
    [hcm] = listener["filter_chains"][0]["filters"]
    [vhost] = hcm["typed_config"]["route_config"]["virtual_hosts"]
    return vhost["routes"]


def level(route):
    per_filter = route.get("typed_per_filter_config", {}).get("envoy.filters.http.ext_authz")
    if per_filter is None:
        return "mfa (no context: policy default)"
    if per_filter.get("disabled"):
        return "unchecked"
    return per_filter["check_settings"]["context_extensions"]["access"]


def test_envoy_exempts_exactly_these_routes():
    routes = envoy_routes()
    exempt = {r["name"]: (r["match"], level(r)) for r in routes if level(r) != "mfa"}
    assert exempt == ENVOY_EXEMPT
    assert routes[-1]["match"] == {"prefix": "/"} and level(routes[-1]) == "mfa", "the catch-all is mfa"


def test_unchecked_routes_cannot_reach_the_authz_http_module():
    for route in envoy_routes():
        if level(route) == "unchecked":
            assert route.get("route", {}).get("cluster") != "cognito_authz_http"


def test_example_policy_exempts_exactly_these_paths():
    policy = tomllib.loads((harness.ROOT / "envoy" / "policy.toml").read_text())
    exempt = [(r.get("path") or r.get("prefix"), r["access"]) for r in policy["rule"] if r["access"] != "mfa"]
    assert exempt == POLICY_EXEMPT


def test_the_service_accepts_the_example_policy(tmp_path):
    import subprocess

    # `serve` validates the file at start-up; a bad file stops it with a line naming --policy.
    argv = [str(harness.BINARY), "serve", "--region", "us-east-1", "--user-pool-id", "us-east-1_X", "--client-id",
            "c", "--policy", str(harness.ROOT / "envoy" / "policy.toml"), "--grpc-listen", "127.0.0.1:1",
            "--http-listen", "127.0.0.1:1", "--admin-listen", "127.0.0.1:1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert "--policy" not in result.stderr, result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\npath = "/x"\naccess = "everyone"\n')
    argv[argv.index("--policy") + 1] = str(bad)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--policy (COGNITO_AUTHZ_POLICY)" in result.stderr, result.stderr
