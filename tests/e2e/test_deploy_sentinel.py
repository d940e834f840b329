"""deploy/kubernetes/sentinel, checked offline as deploy/kubernetes is: the overlay that puts the
revocation store on Redis behind Sentinel. What `kubectl apply -k` would send is built here from the
base (test_deploy_manifests.k8s_objects) and the overlay's three kinds of change: objects deleted
(`$patch: delete`), objects added, and the Deployment's env merged by name (strategic merge)."""

import re
import subprocess
from urllib.parse import unquote

import kubernetes_validate
import pytest
import yaml

import test_deploy_manifests as base
from test_deploy_manifests import APP, K8S_VERSIONS, container, pod_spec, selects, the

OVERLAY = base.K8S / "sentinel"
HA = "cognito-authz-redis-ha"


def overlay_objects():
    kust = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kust["resources"][0] == "../", "the overlay builds on deploy/kubernetes"
    objects = base.k8s_objects()
    for patch in kust["patches"]:
        for doc in base.load_yaml_docs(OVERLAY / patch["path"]):
            key = (doc["kind"], doc["metadata"]["name"])
            if doc.get("$patch") == "delete":
                before = len(objects)
                objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) != key]
                assert len(objects) == before - 1, f"the patch deletes {key}, which the base must have"
                continue
            target = the(objects, *key)
            for patched in pod_spec(doc)["containers"]:
                c = container(target, patched["name"])
                env = {v["name"]: v for v in c.get("env", [])}
                for var in patched["env"]:
                    env[var["name"]] = var
                # Strategic merge keeps the base's order and appends the new names.
                c["env"] = list(env.values())
    for resource in kust["resources"][1:]:
        objects.extend(base.load_yaml_docs(OVERLAY / resource))
    for gen in kust.get("configMapGenerator", []):
        data = {name: (OVERLAY / name).read_text() for name in gen["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for obj in objects:
        if obj["kind"] not in base.CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kust["namespace"]
    return objects


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_overlay_matches_the_kubernetes_schemas_and_replaces_the_single_redis(version):
    objects = overlay_objects()
    assert not [o for o in objects if o["metadata"]["name"] == "cognito-authz-redis" and o["kind"] != "Secret"]
    assert the(objects, "StatefulSet", HA)["spec"]["replicas"] == 3
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_pod_of_the_overlay_is_hardened():
    objects = overlay_objects()
    workloads = [o for o in objects if pod_spec(o)]
    assert {o["metadata"]["name"] for o in workloads} == {APP, HA}
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]


def store_url(objects):
    env = base.service_env(objects)
    return env["COGNITO_AUTHZ_REVOCATION_STORE"], env


def test_the_store_url_names_each_sentinel_pod_and_the_set_the_sentinels_monitor():
    objects = overlay_objects()
    url, env = store_url(objects)
    scheme, rest = url.split("://", 1)
    assert scheme == "redis+sentinel" and "@" not in rest, "no credentials in the URL: they come from settings"
    hosts, master, db = re.fullmatch(r"([^/]+)/([^/]+)/([0-9]+)", rest).groups()
    sts = the(objects, "StatefulSet", HA)
    headless = the(objects, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert selects(headless["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    sentinel_port = base.container_port(container(sts, "sentinel"), "sentinel")
    expected = [f"{HA}-{i}.{headless['metadata']['name']}:{sentinel_port}" for i in range(sts["spec"]["replicas"])]
    assert hosts.split(",") == expected
    assert {p["port"] for p in headless["spec"]["ports"]} == {6379, sentinel_port}
    # The scripts monitor, announce and look up the same names.
    scripts = the(objects, "ConfigMap", "cognito-authz-redis-ha-scripts")["data"]
    shared = scripts["find-primary.sh"]
    assert re.search(rf"^SERVICE={headless['metadata']['name']}$", shared, re.M)
    assert re.search(rf"^SET={re.escape(unquote(master))}$", shared, re.M)
    for name in ("start-redis.sh", "start-sentinel.sh"):
        assert ". /scripts/find-primary.sh" in scripts[name], name
    assert "sentinel monitor $SET $PRIMARY 6379 2" in scripts["start-sentinel.sh"]
    assert "sentinel announce-hostnames yes" in scripts["start-sentinel.sh"]
    assert db == "0"
    # A replica must hold a revocation before it is acknowledged.
    assert env["COGNITO_AUTHZ_REVOCATION_MIN_REPLICAS"] == "1"


def test_the_service_reads_the_same_password_the_nodes_and_sentinels_require():
    objects = overlay_objects()
    c = container(the(objects, "Deployment", APP))
    data_ref = base.secret_ref_of(c, "COGNITO_AUTHZ_REVOCATION_REDIS_PASSWORD")
    sentinel_ref = base.secret_ref_of(c, "COGNITO_AUTHZ_REVOCATION_REDIS_SENTINEL_PASSWORD")
    sts = the(objects, "StatefulSet", HA)
    for name in ("redis", "sentinel"):
        assert base.secret_ref_of(container(sts, name), "REDIS_PASSWORD") == data_ref == sentinel_ref
    scripts = the(objects, "ConfigMap", "cognito-authz-redis-ha-scripts")["data"]
    assert 'requirepass "$REDIS_PASSWORD"' in scripts["start-redis.sh"]
    assert 'masterauth "$REDIS_PASSWORD"' in scripts["start-redis.sh"]
    assert 'requirepass "$REDIS_PASSWORD"' in scripts["start-sentinel.sh"]
    assert 'sentinel auth-pass $SET "$REDIS_PASSWORD"' in scripts["start-sentinel.sh"]
    # Never on a command line (visible in the process list): only in a file the script writes.
    assert "exec valkey-server /conf/redis.conf" in scripts["start-redis.sh"]
    assert "exec valkey-sentinel /sentinel/sentinel.conf" in scripts["start-sentinel.sh"]
    for script in scripts.values():
        assert not re.search(r"exec valkey-\w+ .*\$REDIS_PASSWORD", script)
    names = base.env_names_the_binary_reads()
    for var in c["env"]:
        if var["name"].startswith("COGNITO_AUTHZ_"):
            assert var["name"] in names, var["name"]


def test_network_policies_admit_the_service_and_the_set_to_redis_and_the_sentinels():
    objects = overlay_objects()
    pods = the(objects, "StatefulSet", HA)["spec"]["template"]["metadata"]["labels"]
    app = the(objects, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]
    ingress = the(objects, "NetworkPolicy", HA)
    assert selects(ingress["spec"]["podSelector"]["matchLabels"], pods)
    [rule] = ingress["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {6379, 26379}
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert any(selects(p, app) for p in peers) and any(selects(p, pods) for p in peers)
    assert not any(selects(p, {"app.kubernetes.io/name": "somebody-else"}) for p in peers), "positive control"
    # cognito-authz may reach 6379 (its base policy) and 26379 (the overlay's) on those pods.
    reachable = set()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"]["matchLabels"], app)):
        for rule in policy["spec"].get("egress", []):
            if any(selects(peer.get("podSelector", {}).get("matchLabels", {"-": "-"}), pods) for peer in rule.get("to", [])):
                reachable |= {p["port"] for p in rule["ports"]}
    assert {6379, 26379} <= reachable


def test_the_start_scripts_are_valid_shell_and_never_start_a_second_primary_by_default():
    for name in ("find-primary.sh", "start-redis.sh", "start-sentinel.sh"):
        assert subprocess.run(["sh", "-n", str(OVERLAY / name)]).returncode == 0, name
    text = (OVERLAY / "find-primary.sh").read_text()
    # The sentinels are asked before pod 0 is taken for the primary.
    assert text.index("SENTINEL get-master-addr-by-name") < text.index('PRIMARY="$SERVICE-0.$SERVICE"')


def test_every_file_of_the_overlay_is_used_and_every_patch_deletes_or_merges_one_object():
    kust = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    used = set(kust["resources"][1:]) | {p["path"] for p in kust["patches"]}
    used |= {name for gen in kust["configMapGenerator"] for name in gen["files"]}
    on_disk = {p.name for p in OVERLAY.iterdir()} - {"kustomization.yaml"}
    assert used == on_disk, "a file of the overlay is not in its kustomization, or the reverse"
    for patch in kust["patches"]:
        assert len(base.load_yaml_docs(OVERLAY / patch["path"])) == 1, f"{patch['path']}: one object a patch file"
