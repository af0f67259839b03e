#!/usr/bin/env python3
"""Offline validation of deploy/: what can be checked without a Docker engine or a cluster.

Run by scripts/validate-deploy (which installs the tools); each check prints `ok` or `FAIL`
with the reason, and the last line sums them up. The checks:

* Dockerfile: multi-stage, `cargo build --release --locked`, a runtime stage without RUN (it has
  no shell), a numeric non-root USER, exec-form ENTRYPOINT and HEALTHCHECK running
  `statusd health`; every shared library the statusd binary needs (readelf) is either in the
  distroless/cc runtime or copied in by the Dockerfile. `.dockerignore` keeps out target/,
  .git and key material.
* compose.yaml: the compose-spec JSON schema (check-jsonschema's bundled copy), then the
  stack's promises: three statusd replicas publishing no port, Redis with AOF, the edge mounting
  deploy/cdn/nginx.conf, Prometheus with prometheus.yml and alerts.yaml, declared secrets and
  every Prometheus scrape target a replica's admin port.
* Prometheus: `promtool check config`, `promtool check rules`, `promtool test rules` with
  alerts.test.yaml; every alert has a firing unit test and a runbook entry in
  docs/operations.md.
* Grafana: the dashboard's structure, and the PromQL of every panel through `promtool check
  rules` (as recording rules, with the dashboard variables substituted).
* Kubernetes: the base and every overlay rendered (scripts/kustomize_render.py; compared with
  `kubectl kustomize` when kubectl is installed), every object validated strictly against the
  Kubernetes JSON schemas of the oldest supported and the newest bundled version
  (kubernetes-validate), then the deployment's promises: probes on /readyz and /livez on the
  admin port, the admin port absent from the public Service and reachable only from named
  namespaces, selectors that select the pods, the HPA and PDB on the Deployment, non-root.

Metric names and label values in alerts.yaml and the dashboard are checked against a running
statusd by tests/it/deploy.rs, as is the configuration table of docs/operations.md.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kustomize_render  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# Kubernetes versions to validate against: the oldest the manifests support (preStop `sleep`
# is on by default from 1.30) and the newest schema kubernetes-validate bundles.
K8S_MIN_VERSION = "1.30.0"
ADMIN_PORT = 9090
PUBLIC_PORT = 8080
# Libraries gcr.io/distroless/cc-debian12 ships (glibc, libgcc, libstdc++, libgomp, OpenSSL).
DISTROLESS_CC_LIBS = {
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6",
    "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2", "libgcc_s.so.1",
    "libstdc++.so.6", "libgomp.so.1", "libssl.so.3", "libcrypto.so.3",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok    {what}")

    def fail(self, what, why):
        self.failed += 1
        print(f"FAIL  {what}: {why}")

    def check(self, what, problems):
        """Records `what` as passed when `problems` (a list of strings) is empty."""
        if problems:
            self.fail(what, "; ".join(problems))
        else:
            self.ok(what)


def rel(p):
    return Path(p).resolve().relative_to(ROOT)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def check_dockerfile(c, binary):
    path = DEPLOY / "Dockerfile"
    ins = dockerfile_instructions(path.read_text())
    args = dict(
        a.split("=", 1) for i, a in ins if i == "ARG" and "=" in a
    )
    stages, current = [], None
    for i, a in ins:
        if i == "FROM":
            current = {"from": re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), a), "ins": []}
            stages.append(current)
        elif current is not None:
            current["ins"].append((i, a))
    problems = []
    if len(stages) < 2:
        problems.append(f"{len(stages)} stage(s); a build stage and a runtime stage are expected")
    build = " ".join(a for s in stages[:-1] for i, a in s["ins"] if i == "RUN")
    if not re.search(r"cargo build [^&;]*--release[^&;]*--locked|cargo build [^&;]*--locked[^&;]*--release", build):
        problems.append("no `cargo build --release --locked` in a build stage")
    c.check("Dockerfile: multi-stage, reproducible build", problems)

    runtime = stages[-1] if stages else {"from": "", "ins": []}
    problems = []
    if "distroless" not in runtime["from"]:
        problems.append(f"runtime image {runtime['from']!r} is not distroless")
    if any(i == "RUN" for i, _ in runtime["ins"]):
        problems.append("the runtime stage has RUN, but its image has no shell")
    users = [a for i, a in runtime["ins"] if i == "USER"]
    if not users:
        problems.append("no USER in the runtime stage")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or uid == "0":
            problems.append(f"USER {users[-1]} must be a numeric non-root uid (runAsNonRoot checks it)")
    for name in ("ENTRYPOINT", "CMD"):
        for i, a in runtime["ins"]:
            if i == name and not a.startswith("["):
                problems.append(f"{name} {a} is in shell form; the image has no shell")
    health = [a for i, a in runtime["ins"] if i == "HEALTHCHECK"]
    argv = None
    if not health:
        problems.append("no HEALTHCHECK")
    else:
        m = re.search(r"\bCMD\s+(\[.*\])\s*$", health[-1])
        if not m:
            problems.append(f"HEALTHCHECK {health[-1]!r} is not in exec form")
        else:
            argv = json.loads(m.group(1))
            if len(argv) < 2 or not argv[0].endswith("/statusd") or argv[1] != "health":
                problems.append(f"HEALTHCHECK runs {argv}, not `statusd health`")
            elif f"127.0.0.1:{ADMIN_PORT}/readyz" not in " ".join(argv):
                problems.append(f"HEALTHCHECK does not probe http://127.0.0.1:{ADMIN_PORT}/readyz")
    entry = [a for i, a in runtime["ins"] if i == "ENTRYPOINT"]
    if argv and entry and json.loads(entry[-1])[0] != argv[0]:
        problems.append(f"HEALTHCHECK runs {argv[0]} but ENTRYPOINT is {entry[-1]}")
    c.check("Dockerfile: distroless runtime, non-root, exec-form entrypoint and health check", problems)

    # Shared libraries: what the binary needs against what the runtime image will hold.
    problems = []
    copied = set(re.findall(r"/(lib[\w+-]+)\\?\.so", build))
    out = run(["readelf", "-d", str(binary)])
    if out.returncode != 0:
        problems.append(f"readelf -d {binary}: {out.stderr.strip()}")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout)
    if out.returncode == 0 and not needed:
        problems.append(f"readelf found no NEEDED entries in {binary}")
    for lib in needed:
        if lib not in DISTROLESS_CC_LIBS and lib.split(".so")[0] not in copied:
            problems.append(f"{lib} is needed by statusd but neither in distroless/cc nor copied by the Dockerfile")
    c.check(f"Dockerfile: runtime image holds every library statusd needs ({', '.join(needed)})", problems)

    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    missing = [p for p in ("target", ".git", "deploy/secrets", "**/*.pem") if p not in ignore]
    c.check(".dockerignore keeps build output, history and keys out of the context",
            [f"{p} is not ignored" for p in missing])
    return argv


# ---------------------------------------------------------------------------------------------
# Compose


def check_compose(c, tools):
    path = DEPLOY / "compose.yaml"
    out = run([str(tools / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    c.check("compose.yaml: valid against the compose-spec schema",
            [] if out.returncode == 0 else [(out.stdout + out.stderr).strip()])
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services", {})
    problems = []
    replicas = sorted(s for s in services if re.fullmatch(r"statusd-\d+", s))
    if len(replicas) != 3:
        problems.append(f"expected three statusd replicas, found {replicas}")
    for name in replicas:
        s = services[name]
        env = s.get("environment", {})
        if s.get("ports"):
            problems.append(f"{name} publishes {s['ports']}: replicas are reached through the edge and Prometheus only")
        if not str(env.get("STATUSD_ADMIN_LISTEN", "")).endswith(f":{ADMIN_PORT}"):
            problems.append(f"{name}: STATUSD_ADMIN_LISTEN is not on port {ADMIN_PORT}")
        if not str(env.get("STATUSD_LISTEN", "")).endswith(f":{PUBLIC_PORT}"):
            problems.append(f"{name}: STATUSD_LISTEN is not on port {PUBLIC_PORT}")
        if not str(env.get("STATUSD_REDIS_URL", "")).startswith("redis://redis:"):
            problems.append(f"{name}: STATUSD_REDIS_URL does not name the redis service")
        for var, secret in (("STATUSD_SIGNING_KEY", "statusd_signing_key"), ("STATUSD_ADMIN_TOKENS", "statusd_admin_tokens")):
            if env.get(var) != f"/run/secrets/{secret}" or secret not in (s.get("secrets") or []):
                problems.append(f"{name}: {var} must be the compose secret {secret}")
        vols = [v.split(":")[0] for v in s.get("volumes", [])]
        if not any(v.endswith("-data") for v in vols):
            problems.append(f"{name}: no data volume for the last good snapshot")
    for name, s in services.items():
        for p in s.get("ports", []) or []:
            if str(p).split(":")[-1].split("/")[0] == str(ADMIN_PORT) and name != "prometheus":
                problems.append(f"{name} publishes the admin port: {p}")
            if not str(p).startswith("127.0.0.1:"):
                problems.append(f"{name} publishes {p} beyond loopback")
    secrets = doc.get("secrets", {})
    for name, s in services.items():
        for sec in s.get("secrets", []) or []:
            if sec not in secrets:
                problems.append(f"{name} uses undeclared secret {sec}")
    redis = " ".join(map(str, services.get("redis", {}).get("command", [])))
    if "--appendonly yes" not in redis:
        problems.append("redis runs without --appendonly yes")
    if not any(str(v).endswith(":/data") for v in services.get("redis", {}).get("volumes", [])):
        problems.append("redis keeps /data on no volume")
    cdn = services.get("cdn", {})
    if "./cdn/nginx.conf:/etc/nginx/nginx.conf:ro" not in cdn.get("volumes", []):
        problems.append("the edge does not mount ./cdn/nginx.conf read-only as its nginx.conf")
    prom = services.get("prometheus", {})
    for f in ("prometheus.yml", "alerts.yaml"):
        if f"./prometheus/{f}:/etc/prometheus/{f}:ro" not in prom.get("volumes", []):
            problems.append(f"prometheus does not mount ./prometheus/{f}")
    # Every scrape target of the statusd job is a replica's admin port, and every replica is one.
    pconf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for j in pconf["scrape_configs"] if j["job_name"] == "statusd"
               for sc in j.get("static_configs", []) for t in sc["targets"]]
    if sorted(targets) != [f"{r}:{ADMIN_PORT}" for r in replicas]:
        problems.append(f"statusd scrape targets {targets} are not the replicas' admin ports")
    prom_nets = set(prom.get("networks") or [])
    for r in replicas:
        if not prom_nets & set(services[r].get("networks") or {}):
            problems.append(f"prometheus shares no network with {r}")
    c.check("compose.yaml: three replicas behind the edge, admin port unpublished, AOF Redis, "
            "Prometheus on the replicas' admin ports, secrets declared", problems)


# ---------------------------------------------------------------------------------------------
# Prometheus and Grafana


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def doc_anchors():
    text = (ROOT / "docs" / "operations.md").read_text()
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def check_prometheus(c, promtool):
    pdir = DEPLOY / "prometheus"
    for what, cmd in (
        ("promtool check config prometheus.yml (and its rule files)", ["check", "config", "prometheus.yml"]),
        ("promtool check rules alerts.yaml", ["check", "rules", "alerts.yaml"]),
        ("promtool test rules alerts.test.yaml", ["test", "rules", "alerts.test.yaml"]),
    ):
        out = run([str(promtool), *cmd], cwd=pdir)
        c.check(what, [] if out.returncode == 0 else [(out.stdout + out.stderr).strip()])
    rules = yaml.safe_load((pdir / "alerts.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tests = yaml.safe_load((pdir / "alerts.test.yaml").read_text())
    fired = {t["alertname"] for block in tests["tests"] for t in block.get("alert_rule_test", [])
             if t.get("exp_alerts")}
    anchors = doc_anchors()
    problems = []
    for a in alerts:
        if a["alert"] not in fired:
            problems.append(f"{a['alert']} has no unit test in which it fires")
        runbook = a.get("annotations", {}).get("runbook", "")
        if not runbook.startswith("docs/operations.md#") or runbook.split("#", 1)[1] not in anchors:
            problems.append(f"{a['alert']}: runbook {runbook!r} is not a heading of docs/operations.md")
        for field in ("severity",):
            if field not in a.get("labels", {}):
                problems.append(f"{a['alert']} has no {field} label")
    c.check(f"alerts.yaml: each of {len(alerts)} alerts fires in a unit test and has a runbook entry", problems)


def check_grafana(c, promtool):
    path = DEPLOY / "grafana" / "statusd.json"
    problems = []
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        c.fail("grafana/statusd.json", f"not JSON: {e}")
        return
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids are missing or repeated: {ids}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    exprs = []
    for p in panels:
        g = p.get("gridPos", {})
        if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
            problems.append(f"panel {p.get('title')!r} has a bad gridPos {g}")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p.get('title')!r} does not use the $datasource variable")
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval", "__interval", "__range"}
            if used - variables:
                problems.append(f"panel {p.get('title')!r} uses undefined variables {sorted(used - variables)}")
            exprs.append((p.get("title"), t.get("refId"), expr))
    if not exprs:
        problems.append("no queries")
    c.check(f"grafana/statusd.json: {len(panels)} panels, variables defined, layout within 24 columns", problems)

    # PromQL syntax: every query as a recording rule, variables replaced by valid stand-ins.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": re.sub(r"\$__\w+", "5m", e).replace("$instance", ".*")}
        for n, (_, _, e) in enumerate(exprs)
    ]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(rules, f)
    out = run([str(promtool), "check", "rules", f.name])
    Path(f.name).unlink()
    c.check(f"grafana/statusd.json: the PromQL of all {len(exprs)} queries parses (promtool)",
            [] if out.returncode == 0 else [(out.stdout + out.stderr).strip()])


# ---------------------------------------------------------------------------------------------
# Kubernetes


def by_key(objects):
    return {kustomize_render.key(o): o for o in objects}


def pod_labels(dep):
    return dep["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def k8s_policy(objects):
    problems = []
    objs = by_key(objects)
    deps = [o for o in objects if o["kind"] == "Deployment"]
    if len(deps) != 1:
        return [f"expected one Deployment, found {len(deps)}"]
    dep = deps[0]
    labels = pod_labels(dep)
    ns = dep["metadata"]["namespace"]
    spec = dep["spec"]["template"]["spec"]
    [ctr] = [c for c in spec["containers"] if c["name"] == "statusd"]
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    if ports.get("admin") != ADMIN_PORT or ports.get("public") != PUBLIC_PORT:
        problems.append(f"container ports {ports}: expected public {PUBLIC_PORT} and admin {ADMIN_PORT}")

    def probe(name, path):
        p = ctr.get(name, {}).get("httpGet", {})
        if p.get("path") != path or p.get("port") not in ("admin", ADMIN_PORT):
            problems.append(f"{name} is {p}, expected GET {path} on the admin port")

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/livez")
    if "replicas" in dep["spec"]:
        problems.append("the Deployment sets replicas, which fights the HorizontalPodAutoscaler")
    sc, csc = spec.get("securityContext", {}), ctr.get("securityContext", {})
    if not sc.get("runAsNonRoot") or csc.get("allowPrivilegeEscalation") is not False or not csc.get("readOnlyRootFilesystem"):
        problems.append("pod must run as non-root with a read-only root filesystem and no privilege escalation")
    if not ctr.get("resources", {}).get("requests", {}).get("cpu") or not ctr.get("resources", {}).get("limits", {}).get("memory"):
        problems.append("the container needs a CPU request and a memory limit")
    if not spec.get("topologySpreadConstraints"):
        problems.append("no topologySpreadConstraints")
    for t in spec.get("topologySpreadConstraints", []):
        if not selects(t.get("labelSelector", {}).get("matchLabels"), labels):
            problems.append(f"topology spread on {t['topologyKey']} does not select the pods")

    # Settings: the ConfigMap the pods read carries the ports the probes and Services use.
    env_cms = [e["configMapRef"]["name"] for e in ctr.get("envFrom", []) if "configMapRef" in e]
    settings = {}
    for name in env_cms:
        cm = objs.get(("ConfigMap", ns, name))
        if cm is None:
            problems.append(f"envFrom names ConfigMap {name}, which is not rendered")
        else:
            settings.update(cm.get("data", {}))
    if not settings.get("STATUSD_ADMIN_LISTEN", "").endswith(f":{ADMIN_PORT}"):
        problems.append(f"STATUSD_ADMIN_LISTEN {settings.get('STATUSD_ADMIN_LISTEN')!r} is not on port {ADMIN_PORT}")
    if not settings.get("STATUSD_LISTEN", "").endswith(f":{PUBLIC_PORT}"):
        problems.append(f"STATUSD_LISTEN {settings.get('STATUSD_LISTEN')!r} is not on port {PUBLIC_PORT}")
    if settings.get("STATUSD_ADMIN_ALLOW_PUBLIC") != "true":
        problems.append("STATUSD_ADMIN_ALLOW_PUBLIC must be \"true\" for probes and Prometheus to reach 9090")
    mount_list = ctr.get("volumeMounts", [])
    mounts = {m["name"]: m["mountPath"] for m in mount_list}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    for var in ("STATUSD_SIGNING_KEY", "STATUSD_ADMIN_TOKENS"):
        path = settings.get(var, "")
        # A directory mount holding the file, or a subPath mount of exactly that file.
        hit = [
            (m["name"], path[len(m["mountPath"]) + 1:])
            for m in mount_list
            if "subPath" not in m and path.startswith(m["mountPath"] + "/")
        ] + [
            (m["name"], m["subPath"])
            for m in mount_list
            if "subPath" in m and path == m["mountPath"]
        ]
        if not hit:
            problems.append(f"{var}={path!r} is under no volume mount")
            continue
        vname, key = hit[0]
        secret = vols.get(vname, {}).get("secret")
        items = [i["path"] for i in (secret or {}).get("items", [])]
        if secret is None or key not in items:
            problems.append(f"{var}={path!r} is not a key of the mounted Secret")
    if settings.get("STATUSD_DATA_DIR") not in mounts.values():
        problems.append("STATUSD_DATA_DIR is not a mounted (writable) volume; the root filesystem is read-only")

    # Services: selectors select the pods; the public Service never exposes the admin port.
    for svc in (o for o in objects if o["kind"] == "Service"):
        name = svc["metadata"]["name"]
        if not selects(svc["spec"].get("selector"), labels):
            problems.append(f"Service {name} does not select the statusd pods")
        targets = {p.get("targetPort") for p in svc["spec"]["ports"]}
        if name == "statusd" and (targets & {"admin", ADMIN_PORT}):
            problems.append("the public Service exposes the admin port")
    if ("Service", ns, "statusd") not in objs:
        problems.append("no public Service named statusd")

    # NetworkPolicy: every rule names its ports, and the admin port is reachable only from
    # namespace-selected peers (no empty `from`, no ipBlock).
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not policies:
        problems.append("no NetworkPolicy")
    for pol in policies:
        pspec = pol["spec"]
        if not selects(pspec.get("podSelector", {}).get("matchLabels"), labels):
            problems.append(f"NetworkPolicy {pol['metadata']['name']} does not select the statusd pods")
        if "Ingress" not in pspec.get("policyTypes", []):
            problems.append(f"NetworkPolicy {pol['metadata']['name']} does not restrict ingress")
        for n, rule in enumerate(pspec.get("ingress", [])):
            rports = {p.get("port") for p in rule.get("ports", [])}
            if not rports:
                problems.append(f"ingress rule {n} has no ports, so it opens the admin port too")
            if rports & {"admin", ADMIN_PORT}:
                peers = rule.get("from", [])
                if not peers:
                    problems.append(f"ingress rule {n} opens the admin port to every source")
                for peer in peers:
                    if "ipBlock" in peer or not peer.get("namespaceSelector", {}).get("matchLabels"):
                        problems.append(f"ingress rule {n} opens the admin port to {peer}")

    hpa = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    if len(hpa) != 1 or hpa[0]["spec"]["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}:
        problems.append("expected one HorizontalPodAutoscaler on the statusd Deployment")
    elif hpa[0]["spec"].get("minReplicas", 1) < 2:
        problems.append("the HorizontalPodAutoscaler allows a single replica")
    pdb = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    if len(pdb) != 1 or not selects(pdb[0]["spec"]["selector"].get("matchLabels"), labels):
        problems.append("expected one PodDisruptionBudget selecting the statusd pods")
    for o in objects:
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != ns:
            problems.append(f"{kustomize_render.describe(kustomize_render.key(o))} is not in namespace {ns}")
    return problems


def check_k8s(c, latest_version):
    import kubernetes_validate

    k8s = DEPLOY / "k8s"
    dirs = [k8s / "base"] + sorted(p for p in (k8s / "overlays").iterdir() if p.is_dir())
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("note  kubectl is not installed: renders are not compared with `kubectl kustomize`")
    for d in dirs:
        name = rel(d)
        try:
            objects = kustomize_render.render(d)
        except kustomize_render.RenderError as e:
            c.fail(f"{name}: renders", str(e))
            continue
        c.ok(f"{name}: renders ({len(objects)} objects)")
        if kubectl:
            out = run([kubectl, "kustomize", str(d)])
            if out.returncode != 0:
                c.fail(f"{name}: kubectl kustomize", out.stderr.strip())
            else:
                theirs = by_key(yaml.safe_load_all(out.stdout))
                mine = by_key(objects)
                diff = sorted(kustomize_render.describe(k) for k in set(mine) | set(theirs)
                              if mine.get(k) != theirs.get(k))
                c.check(f"{name}: identical to `kubectl kustomize`", [f"differs in {', '.join(diff)}"] if diff else [])
        for version in (K8S_MIN_VERSION, latest_version):
            problems = []
            for o in objects:
                try:
                    kubernetes_validate.validate(o, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = "/".join(str(p) for p in e.path)
                    problems.append(f"{kustomize_render.describe(kustomize_render.key(o))}: {where}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                    problems.append(f"{kustomize_render.describe(kustomize_render.key(o))}: {e}")
            c.check(f"{name}: every object valid (strict) against the Kubernetes {version} schemas", problems)
        c.check(f"{name}: probes, ports, secrets, Services, NetworkPolicy, HPA and PDB fit together",
                k8s_policy(objects))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--promtool", required=True, type=Path)
    ap.add_argument("--tools", required=True, type=Path, help="bin directory of the validation venv")
    ap.add_argument("--binary", required=True, type=Path, help="a statusd binary built from this tree")
    a = ap.parse_args()
    import kubernetes_validate

    c = Checks()
    for name, check in (
        ("Dockerfile", lambda: check_dockerfile(c, a.binary)),
        ("compose.yaml", lambda: check_compose(c, a.tools)),
        ("Prometheus", lambda: check_prometheus(c, a.promtool)),
        ("Grafana", lambda: check_grafana(c, a.promtool)),
        ("Kubernetes", lambda: check_k8s(c, kubernetes_validate.latest_version())),
    ):
        try:
            check()
        except Exception as e:  # a malformed file must fail its check, not stop the others
            c.fail(f"{name} checks", f"{type(e).__name__}: {e}")
    print(f"deploy checks: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
