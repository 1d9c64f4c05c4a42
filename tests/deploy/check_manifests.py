#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests (`kubectl kustomize` output) of deploy/kubernetes/.

    check_manifests.py NAME RENDERED.yaml     check one rendering (NAME: base or an overlay)
    check_manifests.py --self-test BASE.yaml  prove that broken copies of the base rendering fail

Built-in kinds are validated, strictly (unknown fields are errors), against the Kubernetes
JSON schemas of a pinned version bundled in the PyPI package kubernetes-validate (see
tests/deploy/check-kubernetes for the pins). The Prometheus Operator kinds have no schema
there; they get the structural checks below. On top, what docs/DEPLOYMENT.md promises:
ESIM_SHARD=auto/N equals the replicas, non-root read-only containers without privilege
escalation, resource requests and memory limits, a headless Service, scrape endpoints on a
port that exists, split-exposition parts covering 0..N-1 once each, the PrometheusRule's
groups equal to config/alerts.yml's.
"""
import copy
import pathlib
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"
ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def problems(docs):
    """Every problem found in one rendering, as readable strings."""
    out = []
    by_kind = {}
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        by_kind.setdefault(kind, []).append(doc)
        where = f"{kind}/{name}"
        if kind in CRD_KINDS:
            if doc.get("apiVersion") != "monitoring.coreos.com/v1":
                out.append(f"{where}: apiVersion must be monitoring.coreos.com/v1")
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            out.append(f"{where}: schema {K8S_VERSION}: {e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            out.append(f"{where}: no Kubernetes {K8S_VERSION} schema for {doc.get('apiVersion')} {kind}")
    for check in (statefulset, service, monitors, rules, singletons):
        out += check(by_kind)
    return out


def singletons(by_kind):
    wanted = ["StatefulSet", "Service", "PrometheusRule", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"]
    out = [f"no {k}" for k in wanted if len(by_kind.get(k, [])) != 1]
    if len(by_kind.get("ServiceMonitor", [])) + len(by_kind.get("PodMonitor", [])) != 1:
        out.append("want exactly one ServiceMonitor or PodMonitor")
    return out


def statefulset(by_kind):
    out = []
    for sts in by_kind.get("StatefulSet", []):
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        replicas = spec.get("replicas", 1)
        main = [c for c in pod["containers"] if c["name"] == "esim-exporter"]
        if not main:
            return ["StatefulSet: no esim-exporter container"]
        env = {e["name"]: e for e in main[0].get("env", [])}
        shard = env.get("ESIM_SHARD", {}).get("value", "")
        if shard != f"auto/{replicas}":
            out.append(f"StatefulSet: ESIM_SHARD is `{shard}` but replicas is {replicas}: want auto/{replicas}")
        if env.get("HOSTNAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            out.append("StatefulSet: HOSTNAME must come from metadata.name (auto/N reads the pod ordinal)")
        if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
            out.append("StatefulSet: pod securityContext.runAsNonRoot must be true")
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext", {})
            for key, want in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
                if sc.get(key) is not want:
                    out.append(f"StatefulSet container {c['name']}: securityContext.{key} must be {want}")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                out.append(f"StatefulSet container {c['name']}: must drop ALL capabilities")
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
                out.append(f"StatefulSet container {c['name']}: needs cpu+memory requests and a memory limit")
        mounts = {m["mountPath"] for m in main[0].get("volumeMounts", [])}
        for path in ("/etc/esim-exporter", "/run/secrets/esim", "/var/lib/esim-exporter"):
            if path not in mounts:
                out.append(f"StatefulSet: nothing mounted at {path}")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        configmaps = {c["metadata"]["name"] for c in by_kind.get("ConfigMap", [])}
        cm = volumes.get("config", {}).get("configMap", {}).get("name")
        if cm not in configmaps:
            out.append(f"StatefulSet: config volume names ConfigMap `{cm}`, not rendered here ({sorted(configmaps)})")
        if "secret" not in volumes.get("credentials", {}):
            out.append("StatefulSet: credentials must be a Secret volume (files, not env)")
    return out


def service(by_kind):
    out = []
    for svc in by_kind.get("Service", []):
        if svc["spec"].get("clusterIP") != "None":
            out.append("Service: must be headless (clusterIP: None): one target per shard")
    return out


def monitors(by_kind):
    out = []
    svc_ports = {p.get("name") for s in by_kind.get("Service", []) for p in s["spec"].get("ports", [])}
    pod_ports = {
        p.get("name")
        for s in by_kind.get("StatefulSet", [])
        for c in s["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    pod_labels = {k: v for s in by_kind.get("StatefulSet", []) for k, v in s["spec"]["template"]["metadata"]["labels"].items()}
    svc_labels = {k: v for s in by_kind.get("Service", []) for k, v in s["metadata"].get("labels", {}).items()}
    for kind, field, ports, labels in (
        ("ServiceMonitor", "endpoints", svc_ports, svc_labels),
        ("PodMonitor", "podMetricsEndpoints", pod_ports, pod_labels),
    ):
        for mon in by_kind.get(kind, []):
            selector = mon["spec"].get("selector", {}).get("matchLabels", {})
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                out.append(f"{kind}: selector {selector} does not match the {'Service' if kind == 'ServiceMonitor' else 'pods'}")
            endpoints = mon["spec"].get(field, [])
            if not endpoints:
                out.append(f"{kind}: no {field}")
            parts = []
            for ep in endpoints:
                if ep.get("port") not in ports:
                    out.append(f"{kind}: endpoint port `{ep.get('port')}` is not one of {sorted(ports)}")
                params = ep.get("params", {})
                if params:
                    try:
                        parts.append((int(params["part"][0]), int(params["parts"][0])))
                    except (KeyError, IndexError, ValueError, TypeError):
                        out.append(f"{kind}: params {params} must be part: [\"K\"], parts: [\"N\"]")
            if parts:
                counts = {n for _, n in parts}
                if len(counts) != 1:
                    out.append(f"{kind}: endpoints disagree on parts: {sorted(counts)}")
                n = max(counts)
                if sorted(k for k, _ in parts) != list(range(n)) or len(parts) != len(endpoints):
                    out.append(f"{kind}: parts {sorted(k for k, _ in parts)} must be 0..{n - 1}, once each, on every endpoint")
    return out


def rules(by_kind):
    source = yaml.safe_load((ROOT / "config" / "alerts.yml").read_text())["groups"]
    return [
        "PrometheusRule: groups differ from config/alerts.yml (run scripts/gen-prometheusrule)"
        for rule in by_kind.get("PrometheusRule", [])
        if rule["spec"].get("groups") != source
    ]


def self_test(path):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    assert problems(docs) == [], problems(docs)
    def broken(mutate, expect):
        bad = copy.deepcopy(docs)
        mutate({d["kind"]: d for d in bad})
        found = problems(bad)
        assert any(expect in p for p in found), f"expected `{expect}` in {found}"
    sts = lambda d: d["StatefulSet"]["spec"]
    main = lambda d: sts(d)["template"]["spec"]["containers"][0]
    broken(lambda d: sts(d).update(replicas=4), "ESIM_SHARD is `auto/3` but replicas is 4")
    broken(lambda d: sts(d).update(replica=4), "schema")
    broken(lambda d: main(d)["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem")
    broken(lambda d: main(d)["ports"][0].update(containerPort="http"), "schema")
    broken(lambda d: d["Service"]["spec"].pop("clusterIP"), "headless")
    broken(lambda d: d["ServiceMonitor"]["spec"]["endpoints"][0].update(port="web"), "endpoint port `web`")
    broken(lambda d: d["ServiceMonitor"]["spec"]["endpoints"].append(
        dict(d["ServiceMonitor"]["spec"]["endpoints"][0], params={"part": ["1"], "parts": ["2"]})), "parts [1] must be 0..1")
    broken(lambda d: d["PrometheusRule"]["spec"]["groups"].pop(), "differ from config/alerts.yml")
    print("ok: check_manifests self-test: a good rendering passes, 8 broken ones fail")


def main(argv):
    if len(argv) == 2 and argv[0] == "--self-test":
        self_test(argv[1])
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    name, path = argv
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    found = problems(docs)
    for p in found:
        print(f"FAIL: {name}: {p}")
    if not found:
        print(f"ok: {name}: {len(docs)} objects pass the Kubernetes {K8S_VERSION} schemas (strict) and the deployment checks")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
