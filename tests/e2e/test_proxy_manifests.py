"""The proxies' configurations, checked offline where no test can run the proxy (ingress-nginx's
Ingress, Traefik's Kubernetes Middleware, Envoy Gateway's SecurityPolicy), and the identity
headers every shipped proxy configuration passes on, against the source. The configurations a
proxy can run (deploy/nginx/nginx.conf, deploy/caddy/Caddyfile, deploy/traefik's files,
envoy/ext-authz-http.yaml) run in test_proxies.py; the offline ones are held to those."""

import copy
import re
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from test_deploy_manifests import (APP, K8S_VERSIONS, ROOT, container, container_port, k8s_objects, kustomization,
                                   load_yaml_docs, schema, the)

DEPLOY = ROOT / "deploy"
INGRESS = DEPLOY / "nginx" / "ingress-nginx.yaml"
TRAEFIK_DYNAMIC = DEPLOY / "traefik" / "dynamic.yaml"
TRAEFIK_MIDDLEWARE = DEPLOY / "traefik" / "middleware.yaml"
ENVOY_GATEWAY = DEPLOY / "envoy-gateway" / "security-policy.yaml"


def source_constant(path, pattern):
    [value] = re.findall(pattern, (ROOT / path).read_text())
    return value


def identity_headers():
    """The headers every allow sets (and a proxy must replace), as the source declares them."""
    listed = source_constant("src/authz/headers.rs", r"pub const FIXED: \[&str; \d+\] = \[([^\]]+)\];")
    names = re.findall(r'"([a-z-]+)"', listed)
    assert "x-user-id" in names, "positive control: the parse found the headers"
    return set(names)


FORWARD_PATH = source_constant("src/http/forward_auth.rs", r'pub const FORWARD_PATH: &str = "([^"]+)";')
NGINX_PATH = source_constant("src/http/forward_auth.rs", r'pub const NGINX_PATH: &str = "([^"]+)";')
DEFAULT_PREFIX = source_constant("src/config/settings.rs", r'authz_http_prefix: "([^"]+)"\.to_owned\(\)')


def service_address():
    """Where a proxy in another namespace reaches the HTTP authorization listener: the Service's
    cluster DNS name and its port for the container's `authz-http` port."""
    objects = k8s_objects()
    service = the(objects, "Service", APP)
    [port] = [p["port"] for p in service["spec"]["ports"] if p["targetPort"] == "authz-http"]
    assert container_port(container(the(objects, "Deployment", APP)), "authz-http") == port
    return f"{APP}.{kustomization()['namespace']}.svc.cluster.local", port


def lower(names):
    return {n.lower() for n in names}


# --- every configuration passes on exactly the decision's identity ---------------------------------


def traefik_forward_auth(path):
    doc = yaml.safe_load(path.read_text())
    return doc["spec"]["forwardAuth"] if doc.get("kind") == "Middleware" else doc["http"]["middlewares"][APP]["forwardAuth"]


def passed_on_by_each_config():
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    caddy = (DEPLOY / "caddy" / "Caddyfile").read_text()
    [copied] = re.findall(r"^\s*copy_headers (.+)$", caddy, re.M)
    [ingress] = load_yaml_docs(INGRESS)
    [policy] = [d for d in load_yaml_docs(ENVOY_GATEWAY) if d["kind"] == "SecurityPolicy"]
    envoy_http = yaml.safe_load((ROOT / "envoy" / "ext-authz-http.yaml").read_text())
    return {
        "nginx.conf: auth_request_set": lower(n.replace("_", "-") for n in
                                              re.findall(r"\$upstream_http_([a-z_]+);", nginx)),
        "nginx.conf: proxy_set_header": lower(re.findall(r"proxy_set_header (X-User-\S+|X-Username|X-Client-Id) \$", nginx)),
        "Caddyfile: copy_headers": lower(copied.split()),
        "Caddyfile: request_header -": lower(re.findall(r"request_header -(\S+)", caddy)),
        "traefik/dynamic.yaml": lower(traefik_forward_auth(TRAEFIK_DYNAMIC)["authResponseHeaders"]),
        "traefik/middleware.yaml": lower(traefik_forward_auth(TRAEFIK_MIDDLEWARE)["authResponseHeaders"]),
        "ingress-nginx.yaml": lower(ingress["metadata"]["annotations"]
                                    ["nginx.ingress.kubernetes.io/auth-response-headers"].split(",")),
        "envoy-gateway": lower(policy["spec"]["extAuth"]["http"]["headersToBackend"]),
        "envoy/ext-authz-http.yaml": {p["exact"] for p in envoy_http["http_service"]["authorization_response"]
                                      ["allowed_upstream_headers"]["patterns"]},
    }


def test_every_shipped_proxy_config_replaces_exactly_the_identity_headers():
    expected = identity_headers()
    for where, names in passed_on_by_each_config().items():
        assert names == expected, f"{where}: {sorted(names)} != {sorted(expected)}"


def test_every_proxy_config_is_checked():
    shipped = {p.relative_to(DEPLOY).as_posix() for d in ("nginx", "caddy", "traefik", "envoy-gateway")
               for p in (DEPLOY / d).iterdir()}
    assert shipped == {"nginx/nginx.conf", "nginx/ingress-nginx.yaml", "caddy/Caddyfile", "traefik/traefik.yaml",
                       "traefik/dynamic.yaml", "traefik/middleware.yaml", "envoy-gateway/security-policy.yaml"}


# --- Traefik on Kubernetes -----------------------------------------------------------------------------


def test_traefiks_kubernetes_middleware_is_the_tested_one_asking_the_service():
    [middleware] = load_yaml_docs(TRAEFIK_MIDDLEWARE)
    jsonschema.validate(middleware, schema("traefik-middleware-forwardauth.json"))
    crd, tested = traefik_forward_auth(TRAEFIK_MIDDLEWARE), traefik_forward_auth(TRAEFIK_DYNAMIC)
    jsonschema.validate({**middleware, "spec": {"forwardAuth": tested}}, schema("traefik-middleware-forwardauth.json"))
    assert {k: v for k, v in crd.items() if k != "address"} == {k: v for k, v in tested.items() if k != "address"}
    assert crd["trustForwardHeader"] is False, "Traefik must send its own X-Forwarded-Uri, not a client's"
    host, port = service_address()
    address = urlsplit(crd["address"])
    assert (address.scheme, address.hostname, address.port, address.path) == ("http", host, port, FORWARD_PATH)
    assert urlsplit(tested["address"]).path == FORWARD_PATH


# --- ingress-nginx -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_ingress_matches_the_kubernetes_schema(version):
    [ingress] = load_yaml_docs(INGRESS)
    kubernetes_validate.validate(ingress, version, strict=True)


def test_ingress_nginx_asks_the_service_at_nginxs_path_and_caches_nothing():
    [ingress] = load_yaml_docs(INGRESS)
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    host, port = service_address()
    url = urlsplit(annotations[prefix + "auth-url"])
    assert (url.scheme, url.hostname, url.port, url.path, url.query) == ("http", host, port, NGINX_PATH, "")
    # A cached answer would outlive a logout; a snippet could pass a client's headers or skip the check.
    used = {k.removeprefix(prefix) for k in annotations}
    assert used == {"auth-url", "auth-response-headers"}, used
    assert ingress["spec"]["ingressClassName"] == "nginx"


# --- Envoy Gateway -------------------------------------------------------------------------------------


def envoy_gateway():
    docs = {d["kind"]: d for d in load_yaml_docs(ENVOY_GATEWAY)}
    assert sorted(docs) == ["ClientTrafficPolicy", "ReferenceGrant", "SecurityPolicy"]
    return docs


def test_envoy_gateway_resources_match_their_schemas():
    docs = envoy_gateway()
    for kind, name in (("SecurityPolicy", "envoy-gateway-securitypolicy.json"),
                       ("ClientTrafficPolicy", "envoy-gateway-clienttrafficpolicy-underscores.json"),
                       ("ReferenceGrant", "gateway-referencegrant.json")):
        jsonschema.validate(docs[kind], schema(name))


def test_envoy_gateway_asks_the_service_under_the_prefix_and_fails_closed():
    docs = envoy_gateway()
    policy = docs["SecurityPolicy"]
    ext_auth = policy["spec"]["extAuth"]
    assert ext_auth["failOpen"] is False
    [backend] = ext_auth["http"]["backendRefs"]
    host, port = service_address()
    assert (backend["name"], backend["namespace"], backend["port"]) == (APP, kustomization()["namespace"], port)
    assert ext_auth["http"]["path"] == DEFAULT_PREFIX, "cognito-authz takes its --authz-http-prefix off the path"
    # The cookie credential and its same-site rule need Cookie and Origin; the sign-in redirect needs
    # Accept. Envoy Gateway sends an HTTP service nothing it is not told to (Authorization aside).
    assert {"cookie", "origin", "accept"} <= set(ext_auth["headersToExtAuth"])
    # The Service in cognito-authz's namespace may be referred to from the policy's.
    grant = docs["ReferenceGrant"]
    assert grant["metadata"]["namespace"] == backend["namespace"]
    assert {"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy",
            "namespace": policy["metadata"]["namespace"]} in grant["spec"]["from"]
    assert {"group": "", "kind": "Service", "name": APP} in grant["spec"]["to"]
    # Underscored header names, which cognito-authz never sees here, are refused at the Gateway the
    # policy's route attaches to (a policy attaches within its own namespace).
    underscores = docs["ClientTrafficPolicy"]
    assert underscores["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert underscores["spec"]["headers"]["withUnderscoresAction"] == "RejectRequest"


@pytest.mark.parametrize("file, kind, schema_name, path, value", [
    (TRAEFIK_MIDDLEWARE, "Middleware", "traefik-middleware-forwardauth.json", ["spec", "forwardAuth", "trustForwardHeaders"], False),
    (ENVOY_GATEWAY, "SecurityPolicy", "envoy-gateway-securitypolicy.json", ["spec", "extAuth", "failopen"], False),
    (ENVOY_GATEWAY, "SecurityPolicy", "envoy-gateway-securitypolicy.json", ["spec", "extAuth", "grpc"],
     {"backendRefs": [{"name": "cognito-authz", "port": 9001}]}),
    (ENVOY_GATEWAY, "ClientTrafficPolicy", "envoy-gateway-clienttrafficpolicy-underscores.json",
     ["spec", "headers", "withUnderscoresAction"], "Allow"),
])
def test_the_proxy_schemas_refuse_a_misspelt_or_weaker_field(file, kind, schema_name, path, value):
    [doc] = [d for d in load_yaml_docs(file) if d["kind"] == kind]
    jsonschema.validate(doc, schema(schema_name))  # positive control: the shipped file passes
    changed = copy.deepcopy(doc)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(changed, schema(schema_name))
