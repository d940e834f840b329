"""The deployment files (deploy/kubernetes, deploy/istio, Dockerfile, .dockerignore), checked offline:
no cluster, no Istio, no image build. The Kubernetes objects are validated against Kubernetes' own
JSON schemas (bundled in the kubernetes-validate wheel, strict: unknown fields fail), the Istio
resources against the small schemas in schemas/, and the properties the deployment depends on are
asserted one by one, against the source where the source decides (env var names, health service,
binary name)."""

import base64
import ipaddress
import json
import os
import re
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

import harness

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
ISTIO = ROOT / "deploy" / "istio"
MONITORING = K8S / "monitoring"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The oldest Kubernetes the manifests target (gRPC probes GA in 1.27, the preStop `sleep` action on by
# default from 1.30) and the newest the validator bundles.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]

APP = "cognito-authz"

# Kinds kustomize's `namespace:` leaves alone.
CLUSTER_SCOPED = {"Namespace", "PriorityClass"}


# --- reading the files ------------------------------------------------------------------------------


def load_yaml_docs(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization():
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def read_env_file(path):
    """kustomize's `envs:` format: KEY=VALUE lines, `#` comments, blank lines."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        assert key not in env, f"{path.name}: {key} set twice"
        env[key] = value
    return env


def generated_configmaps(kust):
    """The ConfigMaps kustomize's configMapGenerator makes (names without the hash suffix, which
    kustomize also rewrites in every reference)."""
    maps = []
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for env_file in gen.get("envs", []):
            data.update(read_env_file(K8S / env_file))
        for entry in gen.get("files", []):
            key, source = entry.split("=", 1) if "=" in entry else (Path(entry).name, entry)
            data[key] = (K8S / source).read_text()
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return maps


def k8s_objects():
    """What `kubectl apply -k deploy/kubernetes` would send, as far as the tests need it."""
    kust = kustomization()
    objects = []
    for resource in kust["resources"]:
        objects.extend(load_yaml_docs(K8S / resource))
    objects.extend(generated_configmaps(kust))
    namespace = kust.get("namespace")
    images = {i["name"]: i for i in kust.get("images", [])}
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        for container in pod_spec(obj)["containers"] if pod_spec(obj) else []:
            image = images.get(container["image"])
            if image:
                container["image"] = f"{image.get('newName', container['image'])}:{image['newTag']}"
    return objects


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "StatefulSet"):
        return obj["spec"]["template"]["spec"]
    return None


def the(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment, name=APP):
    [c] = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    return c


def container_port(c, name):
    [port] = [p["containerPort"] for p in c.get("ports", []) if p["name"] == name]
    return port


def secret_value(objects, ref):
    """The value a `secretKeyRef` reads from a Secret of the manifests."""
    data = the(objects, "Secret", ref["name"])
    if ref["key"] in data.get("stringData", {}):
        return data["stringData"][ref["key"]]
    return base64.b64decode(data["data"][ref["key"]]).decode()


def expand(value, env):
    """Kubernetes' dependent environment variables: `$(NAME)` becomes the value of a variable defined
    before it, `$$` is a literal `$`, and an unknown reference stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def container_env(objects, c):
    """The environment a container starts with: its ConfigMaps (envFrom), then explicit `env`,
    expanded in order, with Secret references read from the Secrets of the manifests."""
    env = {}
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(the(objects, "ConfigMap", ref)["data"])
    for var in c.get("env", []):
        if "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = secret_value(objects, var["valueFrom"]["secretKeyRef"])
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    return env


def service_env(objects):
    """The environment cognito-authz starts with."""
    return container_env(objects, container(the(objects, "Deployment", APP)))


def expansion_only_names(c):
    """Variables of a container's `env` that exist only to be expanded into another one."""
    values = [var.get("value", "") for var in c.get("env", [])]
    return {var["name"] for var in c.get("env", []) if any(f"$({var['name']})" in v for v in values)}


def selects(match_labels, labels):
    return all(labels.get(k) == v for k, v in match_labels.items())


def env_names_the_binary_reads():
    """Every environment variable `cognito-authz serve` reads, as its own `--help` lists them (the
    serve flags and the global ones): the binary, not a reading of its source."""
    help_text = subprocess.run([str(harness.BINARY), "serve", "--help"], capture_output=True, text=True,
                               check=True, env={"PATH": os.environ.get("PATH", "")}).stdout
    # `[env: NAME=value]`, or `[env: NAME]` for a setting whose value is never shown (a secret).
    names = set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", help_text))
    # Guards the parsing itself: a regex that silently matched nothing would let anything pass.
    assert {"COGNITO_AUTHZ_REGION", "COGNITO_AUTHZ_REVOCATION_STORE", "COGNITO_AUTHZ_LOG_FORMAT"} <= names
    assert len(names) >= 40, sorted(names)
    return names


def listen_port(value):
    host, _, port = value.rpartition(":")
    ipaddress.ip_address(host.strip("[]"))
    return int(port)


def duration_seconds(text):
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)s", text)
    assert match, f"not a protobuf JSON duration: {text!r}"
    return float(match.group(1))


def istio_operator():
    [doc] = load_yaml_docs(ISTIO / "mesh-config.yaml")
    return doc


def authorization_policy():
    [doc] = load_yaml_docs(ISTIO / "authorization-policy.yaml")
    return doc


def underscore_filter():
    [doc] = load_yaml_docs(ISTIO / "reject-underscore-headers.yaml")
    return doc


HCM = "envoy.filters.network.http_connection_manager"


def shipped_hcm():
    """The HTTP connection manager of envoy/envoy.yaml (its typed_config)."""
    config = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    [hcm] = [f["typed_config"] for listener in config["static_resources"]["listeners"]
             for chain in listener["filter_chains"] for f in chain["filters"] if f["name"] == HCM]
    return hcm


def schema(name):
    value = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(value)
    return value


# --- Kubernetes: the files and their schemas ----------------------------------------------------------


def test_kustomization_lists_every_manifest_and_every_file_exists():
    kust = kustomization()
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest in deploy/kubernetes is not in kustomization.yaml, or the reverse"
    for gen in kust["configMapGenerator"]:
        for f in gen.get("envs", []) + [e.split("=", 1)[-1] for e in gen.get("files", [])]:
            assert (K8S / f).is_file(), f
    # The image kustomize rewrites is the one the Deployment names.
    [image] = kust["images"]
    assert container(the(load_yaml_docs(K8S / "deployment.yaml"), "Deployment", APP))["image"] == image["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version):
    objects = k8s_objects()
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "StatefulSet",
            "NetworkPolicy", "ConfigMap", "PriorityClass"} <= kinds
    for obj in objects:
        # strict: additionalProperties false everywhere, so a misspelt or misplaced field fails.
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_validation_catches_a_misplaced_field():
    deployment = the(k8s_objects(), "Deployment", APP)
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


# --- Kubernetes: what the deployment relies on -----------------------------------------------------------


def test_every_pod_is_hardened():
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault
    seccomp, no Kubernetes API token, CPU and memory requests, a memory limit: what the namespace's
    `restricted` Pod Security level enforces, and more. (CPU limits: see the next test.)"""
    objects = k8s_objects()
    namespace = the(objects, "Namespace", APP)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [o for o in objects if pod_spec(o)]
    assert {o["metadata"]["name"] for o in workloads} == {APP, "cognito-authz-redis"}
    for workload in workloads:
        spec = pod_spec(workload)
        where = f'{workload["kind"]}/{workload["metadata"]["name"]}'
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser", 0) > 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, (where, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (where, c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (where, c["name"])
            assert not sc.get("capabilities", {}).get("add"), (where, c["name"])
            assert not sc.get("privileged"), (where, c["name"])
            assert sc.get("runAsUser", pod_sc["runAsUser"]) > 0, (where, c["name"])
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (where, c["name"])
            assert "memory" in resources.get("limits", {}), (where, c["name"])


def mebibytes(quantity):
    number, unit = re.fullmatch(r"([0-9]+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_cognito_authz_has_no_cpu_limit_and_keeps_its_memory_limit():
    """A CPU limit throttles the pod for the rest of a CFS period once its quota is spent, and every
    request Envoy holds waits on a decision: the p99 of all of them would show it. Memory, which
    cannot be throttled, stays bounded."""
    resources = container(the(k8s_objects(), "Deployment", APP))["resources"]
    assert "cpu" not in resources.get("limits", {}), "a CPU limit throttles every decision at p99"
    assert resources["requests"]["cpu"], "the scheduler must still reserve CPU for it"
    requested, limit = mebibytes(resources["requests"]["memory"]), mebibytes(resources["limits"]["memory"])
    assert requested <= limit


def test_cognito_authz_runs_at_a_priority_class_the_kustomization_ships():
    objects = k8s_objects()
    name = pod_spec(the(objects, "Deployment", APP))["priorityClassName"]
    assert not name.startswith("system-"), "the system classes belong to what the cluster itself needs"
    priority = the(objects, "PriorityClass", name)
    assert "namespace" not in priority["metadata"], "a PriorityClass is cluster-scoped"
    # Above ordinary pods (0), below the system classes; never the default for every other pod.
    assert 0 < priority["value"] <= 1_000_000_000
    assert priority.get("globalDefault", False) is False
    assert priority.get("preemptionPolicy", "PreemptLowerPriority") == "PreemptLowerPriority"


def test_cognito_authz_runs_several_replicas_with_a_disruption_budget():
    objects = k8s_objects()
    deployment = the(objects, "Deployment", APP)
    assert deployment["spec"]["replicas"] >= 2
    # A rollout never removes a serving pod before its replacement is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    pdb = the(objects, "PodDisruptionBudget", APP)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"], "a budget no eviction can meet blocks drains"
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB must select the Deployment's pods"
    redis_labels = the(objects, "StatefulSet", "cognito-authz-redis")["spec"]["template"]["metadata"]["labels"]
    assert not selects(pdb["spec"]["selector"]["matchLabels"], redis_labels), "the PDB must not count Redis"
    sa = pod_spec(deployment)["serviceAccountName"]
    the(objects, "ServiceAccount", sa)


def test_readiness_is_the_grpc_health_check_and_liveness_is_livez_on_the_admin_port():
    """Readiness asks the ext_authz service's gRPC health (NOT_SERVING until Cognito's keys load).
    Liveness asks GET /livez on the admin listener, which depends on nothing external, so a Cognito or
    JWKS outage restarts no pod. No startup probe: one on key readiness kills pods that wait for Cognito."""
    server = (ROOT / "src" / "server" / "mod.rs").read_text()
    [health_service] = re.findall(r'pub const AUTHZ_SERVICE: &str = "([^"]+)";', server)
    objects = k8s_objects()
    c = container(the(objects, "Deployment", APP))
    timings = {"periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold", "initialDelaySeconds"}
    probe = c["readinessProbe"]
    assert set(probe) - timings == {"grpc"}, "the readiness probe must be the native gRPC one"
    assert probe["grpc"]["port"] == container_port(c, "grpc")
    assert probe["grpc"]["service"] == health_service

    liveness = c["livenessProbe"]
    assert set(liveness) - timings == {"httpGet"}, "liveness must not ask the gRPC health, tied to the keys"
    get = liveness["httpGet"]
    assert get["path"] == "/livez"
    assert get.get("scheme", "HTTP") == "HTTP", "the admin listener is plaintext"
    admin = container_port(c, "admin")
    assert port_number(get["port"], c) == admin == listen_port(service_env(objects)["COGNITO_AUTHZ_ADMIN_LISTEN"])
    # Conservative: about 30 s without an answer before a restart, 2 s per answer.
    assert liveness["periodSeconds"] >= 10 and liveness["failureThreshold"] >= 3
    assert liveness["timeoutSeconds"] >= 2
    assert liveness.get("successThreshold", 1) == 1, "Kubernetes requires 1 for liveness"
    assert "startupProbe" not in c, "a startup probe on key readiness kills pods that wait for Cognito"


def test_env_names_are_ones_the_binary_reads():
    objects = k8s_objects()
    known = env_names_the_binary_reads()
    env = service_env(objects)
    helpers = expansion_only_names(container(the(objects, "Deployment", APP)))
    unknown = {name for name in env
               if name not in known | helpers and name != "RUST_LOG" and not name.startswith("AWS_")}
    assert not unknown, f"cognito-authz reads no such variable (renamed flag?): {sorted(unknown)}"
    for required in ("COGNITO_AUTHZ_REGION", "COGNITO_AUTHZ_USER_POOL_ID", "COGNITO_AUTHZ_CLIENT_IDS"):
        assert env.get(required), required
    # The same rule as src/config/pool.rs, so the example values start.
    region = env["COGNITO_AUTHZ_REGION"]
    assert re.fullmatch(r"[a-z]+(-[a-z0-9]+)+-[0-9]+", region)
    assert re.fullmatch(re.escape(region) + r"_[A-Za-z0-9]+", env["COGNITO_AUTHZ_USER_POOL_ID"])
    # Secrets are read from files (a mounted Secret), never from a ConfigMap.
    for configmap in (o for o in objects if o["kind"] == "ConfigMap"):
        for name in configmap["data"]:
            if "SECRET" in name or "ADMIN_TOKEN" in name:
                assert name.endswith("_FILE"), f"{name} in ConfigMap {configmap['metadata']['name']}"


def test_listeners_match_container_ports_and_services():
    objects = k8s_objects()
    deployment = the(objects, "Deployment", APP)
    c = container(deployment)
    env = service_env(objects)
    listeners = {"grpc": "COGNITO_AUTHZ_GRPC_LISTEN", "http": "COGNITO_AUTHZ_HTTP_LISTEN",
                 "admin": "COGNITO_AUTHZ_ADMIN_LISTEN", "authz-http": "COGNITO_AUTHZ_AUTHZ_HTTP_LISTEN"}
    for port_name, var in listeners.items():
        assert listen_port(env[var]) == container_port(c, port_name), var
        # The pod IP must be served (probes, Services); a loopback address would serve nothing.
        assert not ipaddress.ip_address(env[var].rpartition(":")[0].strip("[]")).is_loopback, var
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def targets(service):
        assert selects(service["spec"]["selector"], pod_labels)
        out = {}
        for p in service["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            out[p["name"]] = container_port(c, target) if isinstance(target, str) else target
        return out

    main = targets(the(objects, "Service", APP))
    assert main == {"grpc": container_port(c, "grpc"), "http": container_port(c, "http"),
                    "authz-http": container_port(c, "authz-http")}
    # The HTTP authorization listener believes forwarded headers from the cluster's own addresses
    # only, never from anywhere (a load balancer's clients).
    trusted = [ipaddress.ip_network(n) for n in env["COGNITO_AUTHZ_TRUSTED_PROXIES"].split(",")]
    assert trusted and all(n.is_private and n.prefixlen >= 8 for n in trusted), trusted
    assert container_port(c, "admin") not in main.values(), "the admin port must not be on the routed Service"
    admin = targets(the(objects, "Service", "cognito-authz-admin"))
    assert list(admin.values()) == [container_port(c, "admin")]


def test_policy_configmap_is_mounted_where_the_service_reads_it_and_is_the_audited_policy():
    objects = k8s_objects()
    deployment = the(objects, "Deployment", APP)
    env = service_env(objects)
    path = Path(env["COGNITO_AUTHZ_POLICY"])
    [mount] = [m for m in container(deployment)["volumeMounts"] if path.parent == Path(m["mountPath"])]
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    configmap = the(objects, "ConfigMap", volume["configMap"]["name"])
    deployed = tomllib.loads(configmap["data"][path.name])
    shipped = tomllib.loads((ROOT / "envoy" / "policy.toml").read_text())
    # The exempt set test_exempt_routes.py audits is the one that is deployed.
    assert deployed == shipped


def test_revocations_are_shared_through_redis_and_nothing_else_is_written():
    objects = k8s_objects()
    deployment = the(objects, "Deployment", APP)
    env = service_env(objects)
    store = urlsplit(env["COGNITO_AUTHZ_REVOCATION_STORE"])
    assert store.scheme == "redis", "replicas must share revocations: a file store is per pod"
    redis_service = the(objects, "Service", store.hostname.split(".")[0])
    namespace = redis_service["metadata"]["namespace"]
    assert store.hostname in (redis_service["metadata"]["name"],
                              f"{redis_service['metadata']['name']}.{namespace}.svc.cluster.local")
    [redis_port] = [p for p in redis_service["spec"]["ports"] if p["port"] == (store.port or 6379)]
    redis = the(objects, "StatefulSet", "cognito-authz-redis")
    assert selects(redis_service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"])
    redis_container = pod_spec(redis)["containers"][0]
    assert container_port(redis_container, redis_port["targetPort"]) == 6379
    args = " ".join(redis_container.get("command", []) + redis_container.get("args", []))
    assert "--appendonly yes" in args, "revocations must survive a Redis restart"
    assert "--maxmemory-policy noeviction" in args, "an evicted entry is a forgotten revocation"
    # Only cognito-authz pods may reach it.
    policy = the(objects, "NetworkPolicy", "cognito-authz-redis")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], redis["spec"]["template"]["metadata"]["labels"])
    [rule] = policy["spec"]["ingress"]
    assert [selects(f["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
            for f in rule["from"]] == [True]
    assert [p["port"] for p in rule["ports"]] == [6379]
    # With Redis the service writes nothing to disk (--data-dir serves the file store only): every
    # volume it mounts is read-only, and it has no emptyDir.
    for mount in container(deployment).get("volumeMounts", []):
        assert mount.get("readOnly") is True, mount
    assert not [v for v in pod_spec(deployment).get("volumes", []) if "emptyDir" in v]


def secret_ref_of(c, name):
    [var] = [v for v in c.get("env", []) if v["name"] == name]
    ref = var["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_redis_requires_the_password_cognito_authz_puts_in_its_store_url_from_one_secret_key():
    objects = k8s_objects()
    redis = pod_spec(the(objects, "StatefulSet", "cognito-authz-redis"))["containers"][0]
    argv = redis.get("command", []) + redis.get("args", [])
    password_arg = argv[argv.index("--requirepass") + 1]
    redis_var = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", password_arg).group(1)
    redis_ref = secret_ref_of(redis, redis_var)

    c = container(the(objects, "Deployment", APP))
    names = [var["name"] for var in c["env"]]
    [store] = [var for var in c["env"] if var["name"] == "COGNITO_AUTHZ_REVOCATION_STORE"]
    # The password is the URL's, and comes from a variable Kubernetes expands: one defined earlier.
    raw = urlsplit(store["value"])
    authz_var = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", raw.password).group(1)
    assert names.index(authz_var) < names.index("COGNITO_AUTHZ_REVOCATION_STORE")
    assert secret_ref_of(c, authz_var) == redis_ref, "both sides must read the same Secret key"
    # Not also in the ConfigMap, where a second, password-less URL would be a trap for the next edit.
    assert all("COGNITO_AUTHZ_REVOCATION_STORE" not in o["data"] for o in objects if o["kind"] == "ConfigMap")

    # As the pods see it: Redis's password is the URL's password, unchanged by URL parsing.
    password = secret_value(objects, dict(zip(("name", "key"), redis_ref)))
    assert urlsplit(service_env(objects)["COGNITO_AUTHZ_REVOCATION_STORE"]).password == password
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", password), "URL-safe characters only"
    # The shipped value is a placeholder, never a real secret.
    assert "change-me" in password.lower()


def test_serve_help_in_the_deployments_environment_shows_no_secret():
    """`serve --help` run with the Deployment's own environment (as `kubectl exec … -- cognito-authz
    serve --help` would be): the Redis password in the store URL, from the Secret, is not printed."""
    objects = k8s_objects()
    env = service_env(objects)
    password = urlsplit(env["COGNITO_AUTHZ_REVOCATION_STORE"]).password
    assert password, "the shipped store URL carries a password"
    help_text = subprocess.run([str(harness.BINARY), "serve", "--help"], capture_output=True, text=True, check=True,
                               env={"PATH": os.environ.get("PATH", ""), **env}).stdout
    # Positive control: a non-secret setting of the same environment is shown with its value.
    assert f"[env: COGNITO_AUTHZ_REGION={env['COGNITO_AUTHZ_REGION']}]" in help_text
    assert "[env: COGNITO_AUTHZ_REVOCATION_STORE]" in help_text, "named, without its value"
    assert password not in help_text


# Who may reach cognito-authz (networkpolicy.yaml): the proxies' pods, and Prometheus in `monitoring`.
PROXY_PEERS = [
    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"istio": "ingressgateway"}}},
    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"security.istio.io/tlsMode": "istio"}}},
]
HTTP_PROXY_PEERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx",
                                     "app.kubernetes.io/component": "controller"}}},
    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
     "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "envoy-gateway",
                                     "app.kubernetes.io/component": "proxy"}}},
]
MONITORING_PEERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
]


def port_number(port, c):
    """A port of a NetworkPolicy or a Service's targetPort: a number, or the name of a container port."""
    return port if isinstance(port, int) else container_port(c, port)


def by_port(rules, peers_key, c):
    """{(port, protocol): [peers]} of NetworkPolicy rules; `None` among the peers means anyone."""
    reach = {}
    for rule in rules:
        assert rule.get("ports"), f"a rule without ports allows every port: {rule}"
        for p in rule["ports"]:
            reach.setdefault((port_number(p["port"], c), p.get("protocol", "TCP")), []).extend(
                rule.get(peers_key) or [None])
    return reach


def test_only_the_proxies_reach_grpc_and_http_and_only_prometheus_the_admin_port():
    objects = k8s_objects()
    deployment = the(objects, "Deployment", APP)
    c = container(deployment)
    policy = the(objects, "NetworkPolicy", APP)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    reach = by_port(policy["spec"]["ingress"], "from", c)
    grpc, http, admin, authz_http = (container_port(c, name) for name in ("grpc", "http", "admin", "authz-http"))
    assert reach[(grpc, "TCP")] == PROXY_PEERS
    assert reach[(http, "TCP")] == PROXY_PEERS
    assert reach[(authz_http, "TCP")] == HTTP_PROXY_PEERS
    assert reach[(admin, "TCP")] == MONITORING_PEERS
    # Exactly the ports the two Services send to, which are the ports the binary listens on.
    env = service_env(objects)
    listened = {listen_port(env[f"COGNITO_AUTHZ_{n}_LISTEN"]) for n in ("GRPC", "HTTP", "ADMIN", "AUTHZ_HTTP")}
    for name, ports in ((APP, {grpc, http, authz_http}), ("cognito-authz-admin", {admin})):
        service = the(objects, "Service", name)
        assert {port_number(p["targetPort"], c) for p in service["spec"]["ports"]} == ports
    assert set(reach) == {(p, "TCP") for p in listened} == {(grpc, "TCP"), (http, "TCP"), (admin, "TCP"),
                                                             (authz_http, "TCP")}
    # Every peer names pods by label: no rule admits a whole namespace, an address range or anyone.
    for peers in reach.values():
        for peer in peers:
            assert peer is not None and peer["podSelector"]["matchLabels"], peer
            assert "ipBlock" not in peer


def test_cognito_authz_reaches_out_only_to_dns_redis_https_istiod_and_the_pod_identity_agent():
    objects = k8s_objects()
    c = container(the(objects, "Deployment", APP))
    reach = by_port(the(objects, "NetworkPolicy", APP)["spec"]["egress"], "to", c)
    kube_dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    assert reach[(53, "UDP")] == reach[(53, "TCP")] == [kube_dns]
    # The Redis of the revocation store, on the port its Service and the store URL name.
    store = urlsplit(service_env(objects)["COGNITO_AUTHZ_REVOCATION_STORE"])
    redis = the(objects, "StatefulSet", "cognito-authz-redis")
    [redis_port] = the(objects, "Service", store.hostname.split(".")[0])["spec"]["ports"]
    assert redis_port["port"] == (store.port or 6379)
    [redis_peer] = reach[(redis_port["port"], "TCP")]
    assert "namespaceSelector" not in redis_peer, "the Redis of this namespace"
    assert selects(redis_peer["podSelector"]["matchLabels"], redis["spec"]["template"]["metadata"]["labels"])
    # Cognito and STS are AWS addresses: HTTPS to anywhere, and that is the only rule open to anyone.
    assert reach[(443, "TCP")] == [None]
    assert [port for port, peers in reach.items() if None in peers] == [(443, "TCP")]
    assert set(reach) == {(53, "UDP"), (53, "TCP"), (redis_port["port"], "TCP"), (443, "TCP"),
                          (15012, "TCP"), (80, "TCP")}
    assert reach[(80, "TCP")] == [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "only the EKS Pod Identity agent"
    istiod = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
              "podSelector": {"matchLabels": {"app": "istiod"}}}
    assert reach[(15012, "TCP")] == [istiod], "only istiod's xDS port, for a sidecar of cognito-authz's own"


# --- Prometheus (deploy/kubernetes/monitoring) ------------------------------------------------------------

# Prometheus's own series of every scrape target.
SCRAPE_METRICS = {"up": set()}
# Labels Prometheus (through the operator's ServiceMonitor) puts on every series of a target.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
LABEL_VALUES = {
    "outcome": {"allow", "unauthenticated", "forbidden", "bad_request", "unavailable"},
    "mode": {"enforce", "shadow"},
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "bool", "offset", "inf", "nan"}


@pytest.fixture(scope="module")
def exported_metrics(logdir, tmp_path_factory):
    """Every series the binary exports on its admin listener's `/metrics`, with its label names: read
    from a running `cognito-authz dev` (no cloud needed) after an allow, a denial, an MFA lookup and an
    HTTP module request, so the labelled families have series. Not a list kept beside the alerts."""
    data = tmp_path_factory.mktemp("metrics-dev-data")
    grpc, http, admin = harness.free_port(), harness.free_port(), harness.free_port()
    argv = [str(harness.BINARY), "dev", "--data-dir", str(data), "--grpc-listen", f"127.0.0.1:{grpc}",
            "--http-listen", f"127.0.0.1:{http}", "--admin-listen", f"127.0.0.1:{admin}"]
    proc = harness.Process("dev-metrics", argv, logdir, dict(os.environ, RUST_LOG="warn"))
    try:
        harness.wait_until(lambda: harness.grpc_health(grpc, "") == "SERVING", what="dev server serving")
        token = subprocess.run([str(harness.BINARY), "dev", "--data-dir", str(data), "token", "alice"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        assert harness.check_cli(grpc, token, "mfa") == "allow"
        assert harness.check_cli(grpc, "", "mfa") == "deny 401"
        assert requests.get(f"http://127.0.0.1:{http}/auth/me", timeout=5).status_code == 403
        text = requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
    finally:
        proc.stop()
    series = {}
    for line in text.splitlines():
        sample = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})? ", line)
        if sample and not line.startswith("#"):
            labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', sample.group(2) or ""))
            series.setdefault(sample.group(1), set()).update(labels)
    # Guards the parsing itself: a regex that silently read nothing would let no alert pass, and
    # one that read no labels would let none name one.
    assert series["cognito_authz_decisions_total"] == {"outcome", "reason", "mode", "transport"}, series
    assert series["cognito_authz_decision_duration_seconds_bucket"] == {"outcome", "le"}, series
    return series


def selectable_metrics(exported):
    """Every series name an expression may select: what the binary exports, and `up`."""
    return exported | SCRAPE_METRICS


def metric_names(expr):
    """The metric names a PromQL expression selects: every identifier that is not a function or an
    aggregation (followed by `(`), a keyword, a label (in `{...}` or a `by (...)` list), a string, a
    duration or part of a number."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def selectors(expr):
    """(metric name, {label: (operator, value)}) of each `name{...}` selector of an expression."""
    out = []
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        matchers = {label: (op, value) for label, op, value in
                    re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', match.group(2))}
        out.append((match.group(1), matchers))
    return out


def grouping_labels(expr):
    return {label.strip() for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
            for label in clause.split(",") if label.strip()}


def monitoring_kustomization():
    return yaml.safe_load((MONITORING / "kustomization.yaml").read_text())


def monitoring_objects():
    kust = monitoring_kustomization()
    objects = [o for resource in kust["resources"] for o in load_yaml_docs(MONITORING / resource)]
    for obj in objects:
        obj["metadata"]["namespace"] = kust["namespace"]
    return objects


def service_monitor():
    [monitor] = [o for o in monitoring_objects() if o["kind"] == "ServiceMonitor"]
    return monitor


def alerts():
    [rule] = [o for o in monitoring_objects() if o["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def scraped_job(objects):
    """The `job` label of the admin Service's targets: the operator uses the Service's name, or the
    value of its label named by `jobLabel`."""
    monitor = service_monitor()
    [service] = [o for o in objects if o["kind"] == "Service"
                 and selects(monitor["spec"]["selector"]["matchLabels"], o["metadata"].get("labels", {}))]
    job_label = monitor["spec"].get("jobLabel")
    return service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]


def test_monitoring_is_a_kustomization_of_its_own_beside_the_default_one():
    """The ServiceMonitor and PrometheusRule kinds exist only with the Prometheus Operator's CRDs, so
    `kubectl apply -k deploy/kubernetes` must not contain them: they are deploy/kubernetes/monitoring."""
    kust = monitoring_kustomization()
    on_disk = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == on_disk
    assert kust["namespace"] == kustomization()["namespace"], "the rules and the monitor live beside the app"
    assert {o["kind"] for o in monitoring_objects()} == {"ServiceMonitor", "PrometheusRule"}
    assert not [o for o in k8s_objects() if o["apiVersion"].startswith("monitoring.coreos.com/")]


def test_monitoring_resources_match_their_schemas():
    for obj, name in ((service_monitor(), "prometheus-servicemonitor.json"),
                      (next(o for o in monitoring_objects() if o["kind"] == "PrometheusRule"),
                       "prometheus-prometheusrule-alerts.json")):
        jsonschema.validate(obj, schema(name), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("path, value", [
    (("for",), None),
    (("labels", "severity"), None),
    (("labels", "severity"), "page-someone"),
    (("annotations", "description"), None),
    (("annotations", "summary"), None),
    (("for_",), "5m"),
    (("for",), "5 minutes"),
])
def test_the_prometheusrule_schema_refuses_an_alert_that_does_not_say_when_or_what_to_do(path, value):
    [rule] = [o for o in monitoring_objects() if o["kind"] == "PrometheusRule"]
    target = rule["spec"]["groups"][0]["rules"][0]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert not jsonschema.Draft202012Validator(schema("prometheus-prometheusrule-alerts.json")).is_valid(rule)


def test_the_service_monitor_scrapes_the_admin_service_metrics_port():
    objects = k8s_objects()
    monitor = service_monitor()
    c = container(the(objects, "Deployment", APP))
    services = [o for o in objects if o["kind"] == "Service"]
    picked = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
    assert [s["metadata"]["name"] for s in picked] == ["cognito-authz-admin"], "only the admin Service has /metrics"
    [service] = picked
    namespaces = monitor["spec"].get("namespaceSelector", {}).get("matchNames", [monitor["metadata"]["namespace"]])
    assert service["metadata"]["namespace"] in namespaces
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    admin = listen_port(service_env(objects)["COGNITO_AUTHZ_ADMIN_LISTEN"])
    assert port_number(port["targetPort"], c) == container_port(c, "admin") == admin
    assert endpoint["path"] == "/metrics"
    assert endpoint.get("scheme", "http") == "http", "the admin listener is plaintext"


def test_every_alert_names_only_metrics_the_service_exports(exported_metrics):
    """A renamed or misspelt metric makes an alert that can never fire: every name and label an
    expression uses is one the running service (or Prometheus, for `up`) produces, and every label
    value one of the fixed sets the code draws them from."""
    known = selectable_metrics(exported_metrics)
    all_labels = set().union(*known.values()) | TARGET_LABELS
    rules = alerts()
    assert len(rules) >= 8
    for rule in rules:
        expr, where = rule["expr"], rule["alert"]
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= set(known), f"{where}: not exported: {sorted(names - set(known))}"
        assert {name for name, _ in selectors(expr)} == names, f"{where}: every metric needs a job selector"
        for name, matchers in selectors(expr):
            assert set(matchers) <= known[name] | TARGET_LABELS, (where, name, sorted(matchers))
            for label, (op, value) in matchers.items():
                if label in LABEL_VALUES:
                    values = value.split("|") if op in ("=~", "!~") else [value]
                    assert set(values) <= LABEL_VALUES[label], (where, label, value)
        assert grouping_labels(expr) <= all_labels, (where, grouping_labels(expr))


@pytest.mark.parametrize("expr, names", [
    ('sum by (reason) (rate(cognito_authz_decisions_total{outcome="unavailable"}[5m])) > 0',
     {"cognito_authz_decisions_total"}),
    ("(time() - a_timestamp_seconds > 7200) and on (namespace, pod) increase(b_total[1h]) > 0",
     {"a_timestamp_seconds", "b_total"}),
    ("histogram_quantile(0.99, sum(rate(x_bucket[5m] offset 1h)) by (le)) > 1e3", {"x_bucket"}),
    ('absent(up{job="a"} == 1)', {"up"}),
    ("process_resident_memory_bytes > 0.9 * 256 * 1024 * 1024", {"process_resident_memory_bytes"}),
    ("cognito_authz_keys == 0", {"cognito_authz_keys"}),
])
def test_the_metric_name_parser_finds_every_selected_metric(expr, names):
    # Guards the parsing itself: a regex that silently found nothing would let any alert pass.
    assert metric_names(expr) == names


def test_alerts_select_the_job_the_service_monitor_produces():
    job = scraped_job(k8s_objects())
    for rule in alerts():
        for name, matchers in selectors(rule["expr"]):
            # `up` and `process_*` are what every target exports: without the job, another's would match.
            assert matchers.get("job") == ("=", job), (rule["alert"], name)


def test_alerts_cover_the_failures_operations_must_hear_of():
    exprs = {rule["alert"]: rule["expr"] for rule in alerts()}

    def alerting_on(name, **labels):
        return [alert for alert, expr in exprs.items() for metric, matchers in selectors(expr)
                if metric == name and all(label in matchers and set(value.split("|")) <= set(matchers[label][1].split("|"))
                                          for label, value in labels.items())]

    assert alerting_on("cognito_authz_decisions_total", outcome="unavailable")
    assert alerting_on("cognito_authz_decisions_total", outcome="unauthenticated", reason="signature|unknown_key")
    assert alerting_on("cognito_authz_jwks_last_refresh_timestamp_seconds")
    assert alerting_on("cognito_authz_jwks_fetch_failures_total")
    assert alerting_on("cognito_authz_jwks_keys")
    assert alerting_on("cognito_authz_revocation_sync_age_seconds")
    assert alerting_on("cognito_authz_mfa_lookups_refused_total")
    assert alerting_on("up")
    assert alerting_on("process_resident_memory_bytes")


def test_memory_alerts_follow_the_container_request_and_limit():
    """The thresholds are written as `N * 1024 * 1024` (N MiB): they must be deployment.yaml's."""
    resources = container(the(k8s_objects(), "Deployment", APP))["resources"]
    exprs = {rule["alert"]: rule["expr"] for rule in alerts()}
    for alert, bound in (("CognitoAuthzMemoryNearLimit", "limits"), ("CognitoAuthzMemoryAboveRequest", "requests")):
        [mib] = re.findall(r"([0-9]+) \* 1024 \* 1024", exprs[alert])
        assert int(mib) == mebibytes(resources[bound]["memory"]), (alert, bound)


# --- Istio ----------------------------------------------------------------------------------------------


def test_istio_resources_match_their_schemas():
    jsonschema.validate(istio_operator(), schema("istio-extauthz-grpc-provider.json"),
                        cls=jsonschema.Draft202012Validator)
    jsonschema.validate(authorization_policy(), schema("istio-authorizationpolicy-custom.json"),
                        cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("rules, matches_all", [
    ([{}], True),
    ([{"to": [{"operation": {"paths": ["*"]}}]}], True),
    ([{"to": [{"operation": {"paths": ["/api/*"]}}]}], False),
    ([{"to": [{"operation": {"paths": ["*"], "methods": ["GET"]}}]}], False),
    ([{"from": [{"source": {"namespaces": ["x"]}}]}], False),
    ([], False),
])
def test_the_authorization_policy_schema_accepts_only_rules_matching_every_request(rules, matches_all):
    policy = authorization_policy()
    policy["spec"]["rules"] = rules
    validator = jsonschema.Draft202012Validator(schema("istio-authorizationpolicy-custom.json"))
    assert validator.is_valid(policy) == matches_all


def test_istio_provider_points_at_the_grpc_service_and_outlasts_the_service_timeouts():
    objects = k8s_objects()
    service = the(objects, "Service", APP)
    [grpc] = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    [provider] = [p for p in istio_operator()["spec"]["meshConfig"]["extensionProviders"]
                  if "envoyExtAuthzGrpc" in p]
    grpc_provider = provider["envoyExtAuthzGrpc"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert grpc_provider["service"] in (f"{name}.{namespace}.svc.cluster.local", f"{namespace}/{name}")
    assert grpc_provider["port"] == grpc["port"]
    assert grpc_provider["port"] != listen_port(service_env(objects)["COGNITO_AUTHZ_ADMIN_LISTEN"])
    assert grpc_provider["statusOnError"] == "503"
    assert grpc_provider.get("failOpen", False) is False
    # The proxy must wait longer than the service's own bounded waits (a key refetch, a Cognito
    # lookup), or a slow Cognito turns into a proxy error instead of the service's answer.
    env = service_env(objects)
    longest_wait_ms = max(int(env.get("COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", 1000)),
                          int(env.get("COGNITO_AUTHZ_COGNITO_TIMEOUT_MS", 1000)))
    assert duration_seconds(grpc_provider["timeout"]) * 1000 > longest_wait_ms


def test_authorization_policy_uses_the_provider_and_spares_cognito_authz_itself():
    objects = k8s_objects()
    policy = authorization_policy()
    spec = policy["spec"]
    providers = {p["name"]: p for p in istio_operator()["spec"]["meshConfig"]["extensionProviders"]}
    assert spec["action"] == "CUSTOM"
    assert "envoyExtAuthzGrpc" in providers[spec["provider"]["name"]]
    assert any(rule == {} or rule == {"to": [{"operation": {"paths": ["*"]}}]} for rule in spec["rules"])
    # Applied to cognito-authz's own pods, each Check would itself be checked.
    assert spec.get("selector", {}).get("matchLabels"), "a CUSTOM policy without selector covers every workload"
    deployment = the(objects, "Deployment", APP)
    if policy["metadata"]["namespace"] in (deployment["metadata"]["namespace"], "istio-system"):
        assert not selects(spec["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])


def test_every_istio_file_is_checked():
    # A file added to deploy/istio without a test of its own would pass unchecked.
    assert {p.name for p in ISTIO.iterdir()} == {
        "mesh-config.yaml", "authorization-policy.yaml", "reject-underscore-headers.yaml"}


def test_the_mesh_rejects_header_names_with_underscores_at_gateways_and_sidecars():
    """A client-sent `x_user_id` is not replaced by the allow's `x-user-id`, and many upstreams read
    one as the other: every proxy of the mesh must refuse such names, as envoy/envoy.yaml does."""
    envoy_filter = underscore_filter()
    jsonschema.validate(envoy_filter, schema("istio-envoyfilter-reject-underscores.json"),
                        cls=jsonschema.Draft202012Validator)
    spec = envoy_filter["spec"]
    contexts = {patch["match"]["context"] for patch in spec["configPatches"]}
    assert "ANY" in contexts or {"GATEWAY", "SIDECAR_INBOUND"} <= contexts, "gateways and sidecars alike"
    # Mesh-wide: Istio's root namespace, no workload selector.
    assert envoy_filter["metadata"]["namespace"] == istio_operator()["metadata"]["namespace"] == "istio-system"
    assert "workloadSelector" not in spec and "targetRefs" not in spec
    # The very setting of the shipped envoy.yaml, which test_envoy_cognito.py exercises on a real Envoy.
    hcm = shipped_hcm()
    for patch in spec["configPatches"]:
        typed = patch["patch"]["value"]["typed_config"]
        assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == HCM
        assert typed["@type"] == hcm["@type"]
        assert typed["common_http_protocol_options"] == hcm["common_http_protocol_options"] == {
            "headers_with_underscores_action": "REJECT_REQUEST"}


OPTIONS = ("patch", "value", "typed_config", "common_http_protocol_options")


@pytest.mark.parametrize("path, value", [
    (OPTIONS + ("headers_with_underscores_action",), "ALLOW"),
    (OPTIONS + ("headers_with_underscores_action",), "DROP_HEADER"),
    (OPTIONS, {"headers_with_underscore_action": "REJECT_REQUEST"}),
    (("patch", "operation"), "REPLACE"),
    (("applyTo",), "HTTP_FILTER"),
    (("match", "listener", "filterChain", "filter", "name"), "envoy.filters.http.router"),
])
def test_the_envoyfilter_schema_refuses_a_patch_that_would_not_reject(path, value):
    envoy_filter = underscore_filter()
    target = envoy_filter["spec"]["configPatches"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    validator = jsonschema.Draft202012Validator(schema("istio-envoyfilter-reject-underscores.json"))
    assert not validator.is_valid(envoy_filter)


# --- Dockerfile -------------------------------------------------------------------------------------------


def dockerfile_instructions():
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def dockerfile_stages():
    stages = []
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            stages.append({"from": args, "steps": []})
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1]["steps"].append((instruction, args))
    return stages


def binary_name():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    bins = cargo.get("bin", [])
    return bins[0]["name"] if bins else cargo["package"]["name"]


def test_dockerfile_builds_locked_and_runs_the_binary_as_a_non_root_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: the toolchain stays out of the runtime image"
    build, final = stages[0], stages[-1]
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    # The builder's Rust is new enough (a pinned rust:1.NN image must not fall behind rust-version).
    image = build["from"].split()[0]
    pinned = re.match(r"rust:(\d+)\.(\d+)", image)
    if pinned:
        want = tuple(int(x) for x in cargo["package"]["rust-version"].split(".")[:2])
        assert (int(pinned.group(1)), int(pinned.group(2))) >= want, image
    else:
        assert re.match(r"rust:1(-|$)", image), image
    runs = [args for stage in stages for instruction, args in stage["steps"] if instruction == "RUN"]
    builds = [b for r in runs for b in re.findall(r"cargo build[^&;|]*", r)]
    assert builds, "no cargo build in the Dockerfile"
    for b in builds:
        assert "--release" in b.split() and "--locked" in b.split(), f"{b!r}: the image must build what Cargo.lock pins"

    steps = final["steps"]
    [entrypoint] = [json.loads(args) for instruction, args in steps if instruction == "ENTRYPOINT"]
    assert Path(entrypoint[0]).name == binary_name(), "ENTRYPOINT runs a binary Cargo.toml does not build"
    assert entrypoint[1:2] == ["serve"]
    copies = [args.split() for instruction, args in steps if instruction == "COPY"]
    assert any(c[-1] == entrypoint[0] and c[-2].endswith("/" + binary_name()) for c in copies), \
        "the final stage must copy the built binary to the ENTRYPOINT path"
    [user] = [args for instruction, args in steps if instruction == "USER"][-1:]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root USER, which runAsNonRoot can verify"
    deployment = the(k8s_objects(), "Deployment", APP)
    assert pod_spec(deployment)["securityContext"]["runAsUser"] == int(uid)
    exposed = {int(p.split("/")[0]) for instruction, args in steps if instruction == "EXPOSE" for p in args.split()}
    c = container(deployment)
    assert {container_port(c, n) for n in ("grpc", "http", "admin")} <= exposed


def test_dockerignore_keeps_local_state_out_and_the_sources_in():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for must in (".git", "target", ".venv", "node_modules", "tests/e2e/oidc/node_modules"):
        assert must in patterns, must

    def ignored(path):
        return any(fnmatch(path, p) or fnmatch(path, p.removeprefix("**/")) for p in patterns)

    sources = []
    for stage in dockerfile_stages():
        for instruction, args in stage["steps"]:
            if instruction == "COPY" and "--from=" not in args:
                sources.extend(args.split()[:-1])
    assert {"Cargo.toml", "Cargo.lock", "src"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source), f"COPY {source}, but .dockerignore leaves it out of the build context"
