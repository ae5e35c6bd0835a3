#!/usr/bin/env python3
"""Validates deploy/: core Kubernetes manifests with kubernetes-validate (strict, offline),
the Prometheus Operator objects against deploy/schemas/, the Grafana dashboard's shape, and the
ConfigMap's portgate.yaml with `portgate --check`. Which metric names the dashboard and alerts
may use is checked by tests/it/deploy.rs against a live /metrics."""
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = {
    "PodMonitor": ROOT / "deploy" / "schemas" / "podmonitor.schema.json",
    "PrometheusRule": ROOT / "deploy" / "schemas" / "prometheusrule.schema.json",
}
failures = []

manifests = sorted(K8S.glob("*.yaml"))
core = []
for path in manifests:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        kind = doc.get("kind")
        if kind in SCHEMAS:
            schema = json.loads(SCHEMAS[kind].read_text())
            try:
                jsonschema.validate(doc, schema)
                print(f"ok   {path.name}: {kind}/{doc['metadata']['name']} (deploy/schemas)")
            except jsonschema.ValidationError as e:
                failures.append(f"{path.name}: {kind}: {e.message} at {list(e.absolute_path)}")
        elif path not in core:
            core.append(path)

if core:
    r = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *map(str, core)],
        capture_output=True,
        text=True,
    )
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "ERROR" in out or "Couldn't find schema" in out:
        failures.append(f"kubernetes-validate: {out}")
    else:
        for p in core:
            print(f"ok   {p.name} (kubernetes-validate --strict)")

dashboard = json.loads((K8S / "grafana-dashboard.json").read_text())
exprs = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]
if not exprs or any(not isinstance(e, str) or not e.strip() for e in exprs):
    failures.append("grafana-dashboard.json: every panel target needs an expr")
ids = [p["id"] for p in dashboard["panels"]]
if len(ids) != len(set(ids)):
    failures.append("grafana-dashboard.json: panel ids repeat")
print(f"ok   grafana-dashboard.json: {len(dashboard['panels'])} panels, {len(exprs)} queries")

config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["portgate.yaml"]

# The pod must outlive portgate's drain, or kubelet kills it mid-drain and the streams still
# open lose their error event: terminationGracePeriodSeconds > preStop sleep +
# grace_period_seconds + DRAIN_TAIL (up to 2 s for cut streams to end, up to 5 s of access-log
# flush; see src/shutdown.rs).
DRAIN_TAIL = 7
grace = yaml.safe_load(config).get("grace_period_seconds", 300)
for doc in yaml.safe_load_all((K8S / "deployment.yaml").read_text()):
    if not doc or doc.get("kind") != "Deployment":
        continue
    pod = doc["spec"]["template"]["spec"]
    termination = pod.get("terminationGracePeriodSeconds", 30)
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    portgate = [c for c in containers if c.get("name") == "portgate"]
    pre_stop = 0
    for c in portgate:
        pre_stop = (c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}) or {}).get("seconds", 0)
    needed = pre_stop + grace + DRAIN_TAIL
    if not portgate:
        failures.append("deployment.yaml: no container named portgate")
    elif termination <= needed:
        failures.append(
            f"deployment.yaml: terminationGracePeriodSeconds {termination} must exceed preStop "
            f"{pre_stop} + grace_period_seconds {grace} + {DRAIN_TAIL} = {needed}"
        )
    else:
        print(
            f"ok   deployment.yaml: terminationGracePeriodSeconds {termination} > preStop "
            f"{pre_stop} + grace_period_seconds {grace} + {DRAIN_TAIL}"
        )
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(config)
binary = ROOT / "target" / "debug" / "portgate"
r = subprocess.run([str(binary), "--check", "--config", f.name], capture_output=True, text=True)
if r.returncode != 0:
    failures.append(f"configmap portgate.yaml: {r.stderr.strip()}")
else:
    print("ok   configmap.yaml: portgate.yaml passes portgate --check")

if failures:
    print("\n".join(f"FAIL {x}" for x in failures), file=sys.stderr)
    sys.exit(1)
