#!/usr/bin/env python3
"""deploy/validate.py: offline checks of moat's deployment files.

Needs Python >= 3.11 and the packages of deploy/requirements.txt (PyYAML,
jsonschema, kubernetes-validate, helm-python-sdk); `cargo xtask helm` runs
it from target/moat-venv with them installed.
docker-compose (Debian package `docker-compose`) or `docker compose` is used
when installed; without it the `docker-compose config` check is reported as
skipped (or fails with --require-compose).

    python3 deploy/validate.py                    # check everything
    python3 deploy/validate.py --write-examples   # re-render deploy/helm/examples/*.yaml

It checks, without a Docker engine, helm or a cluster:
  1. Dockerfile: one ARG SERVICE, a stage per service exposing its ports,
     numeric non-root USER, MOAT_CONFIG_DIR, cache mounts, OCI labels.
  2. Compose: `docker-compose config` accepts the file, and the file with
     the TLS override docker-compose.tls.yml; every MOAT_* variable names a
     real config key; the `strategy` service is sandboxed (read_only, tmpfs
     /tmp, cap_drop ALL, no-new-privileges, no ports, non-root, only
     internal networks whose only other member is the gateway), with and
     without the override; plaintext is said explicitly, and the override
     wires mutual TLS from the development CA's files; NATS over TLS from
     nats.tls.conf (includes nats.conf and deploy/nats/users.conf, mounted
     read-only; verify_and_map) with each service's certificate naming its
     NATS user; ClickHouse users from clickhouse/users.d/moat.xml (the
     gateway's read-only), passwords as secret files matching their hashes;
     every mounted or secret file exists.
  3. Charts: layout and Chart.yaml of the five charts (the umbrella's file://
     dependencies resolve to the right charts and versions).
  4. Values: every values.yaml (and the example values) against its
     values.schema.json (draft-07), for the umbrella also each subchart's
     merged values; and values that must be refused are refused.
  5. Rendering and lint: `helm lint --strict` of every chart for both
     Kubernetes versions, and every scenario rendered by Helm's own engine
     (PyPI helm-python-sdk, Helm v4's Go SDK; no helm binary), then every
     manifest validated with
     kubernetes-validate --strict style for the oldest and newest supported
     Kubernetes versions, plus cross-checks (selectors, referenced objects,
     probes, security contexts, NetworkPolicies, config keys, TLS: a
     certificate or explicit plaintext, mounted Secrets, probe schemes,
     https:// exactly with a CA, cert-manager Certificates; NATS client
     TLS from whole Secrets and Certificates naming the NATS user; the
     ClickHouse password only as a mounted file).
  6. Examples: deploy/helm/examples/<scenario>.yaml equal the fresh render.

Prints every check and ends with "N passed, N failed"; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

try:
    import yaml
    import jsonschema
    import kubernetes_validate.utils as kv
    from helm_python.chart import Chart, lint as helm_lint
    from helm_python.errors import HelmError
except ImportError as missing:  # pragma: no cover - environment problem
    sys.exit(f"validate.py needs the packages of deploy/requirements.txt: "
             f"pip install -r deploy/requirements.txt ({missing})")

HELM = os.path.join(HERE, "helm")
EXAMPLES = os.path.join(HELM, "examples")
COMPOSE = os.path.join(HERE, "compose", "docker-compose.yml")
# The mutual-TLS override (`-f docker-compose.yml -f docker-compose.tls.yml`).
COMPOSE_TLS = os.path.join(HERE, "compose", "docker-compose.tls.yml")
# What `cargo xtask certs` writes (crates/devstack/src/certs.rs): ca.pem and
# <name>.pem / <name>-key.pem of each identity.
DEV_TLS_DIR = "../../target/moat-dev/tls/"
DEV_TLS_NAMES = ["gateway", "state", "collector", "storage-writer", "nats", "clickhouse", "dev"]
# The NATS users of moat's services (a Rust test keeps the file equal to
# moat_common_types::nats::USERS): a client certificate's DNS name
# moat-<service> logs it in as that user (nats-server's verify_and_map).
NATS_USERS = os.path.join(HERE, "nats", "users.conf")
NATS_SERVICES = ["collector", "storage-writer", "gateway"]
# The compose stack's ClickHouse users (users.d of the clickhouse container).
CLICKHOUSE_USERS = os.path.join(HERE, "compose", "clickhouse", "users.d", "moat.xml")
DOCKERFILE = os.path.join(HERE, "docker", "Dockerfile")

# Oldest supported (native gRPC probes are GA from 1.27) and the newest the
# installed kubernetes-validate knows.
MIN_K8S = "1.27.0"

SERVICES = {
    # service: (chart, ports, config env prefix)
    "collector": ("moat-collector", [8080], "MOAT_COLLECTOR__"),
    "storage-writer": ("moat-storage-writer", [8081], "MOAT_STORAGE_WRITER__"),
    "state": ("moat-state", [50052, 9091], "MOAT_STATE__"),
    "gateway": ("moat-gateway", [50051, 9090], "MOAT_GATEWAY__"),
}
CHARTS = [c for c, _, _ in SERVICES.values()] + ["moat"]
TEMPLATES = {
    "moat-collector": ["deployment.yaml", "service.yaml", "configmap.yaml", "pdb.yaml", "servicemonitor.yaml",
                       "nats-certificate.yaml"],
    "moat-storage-writer": ["deployment.yaml", "service.yaml", "configmap.yaml", "secret.yaml", "hpa.yaml",
                            "pdb.yaml", "servicemonitor.yaml", "nats-certificate.yaml"],
    "moat-state": ["deployment.yaml", "service.yaml", "configmap.yaml", "secret.yaml", "pdb.yaml",
                   "servicemonitor.yaml", "certificate.yaml"],
    "moat-gateway": ["deployment.yaml", "service.yaml", "configmap.yaml", "secret.yaml", "hpa.yaml", "pdb.yaml",
                     "servicemonitor.yaml", "networkpolicy.yaml", "certificate.yaml", "nats-certificate.yaml"],
    "moat": [],
}

# SafeTLSConfig of a ServiceMonitor endpoint (HTTPS scraping of the gateway).
_SECRET_OR_CONFIGMAP = {"type": "object", "additionalProperties": False, "properties": {
    "secret": {"type": "object", "required": ["name", "key"], "additionalProperties": False,
               "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1},
                              "optional": {"type": "boolean"}}},
    "configMap": {"type": "object", "required": ["name", "key"], "additionalProperties": False,
                  "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1},
                                 "optional": {"type": "boolean"}}}}}
_TLS_CONFIG = {"type": "object", "additionalProperties": False, "properties": {
    "ca": _SECRET_OR_CONFIGMAP, "cert": _SECRET_OR_CONFIGMAP,
    "keySecret": _SECRET_OR_CONFIGMAP["properties"]["secret"],
    "serverName": {"type": "string"}, "insecureSkipVerify": {"type": "boolean"},
    "caFile": {"type": "string"}, "certFile": {"type": "string"}, "keyFile": {"type": "string"},
    "minVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
    "maxVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]}}}

# A minimal schema for the CRDs the charts render (kubernetes-validate has none).
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "namespaceSelector": {"type": "object", "properties": {
                    "matchNames": {"type": "array", "items": {"type": "string"}}, "any": {"type": "boolean"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"], "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scheme": {"enum": ["http", "https"]},
                                   "tlsConfig": _TLS_CONFIG}}},
            },
        },
    },
}

# The PrometheusRule the umbrella chart renders from files/alerts.yml.
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["groups"], "additionalProperties": False,
            "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"],
                "properties": {"name": {"type": "string"}, "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                                   "expr": {"type": "string"}, "for": {"type": "string"},
                                   "labels": {"type": "object"}, "annotations": {"type": "object"}}}}}}}},
        },
    },
}

# cert-manager's Certificate (cert-manager.io/v1), the fields the charts use and their neighbours.
_GO_DURATION = {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$"}
CERTIFICATE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False,
            "anyOf": [{"required": ["commonName"]}, {"required": ["dnsNames"]}],
            "properties": {
                "secretName": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "secretTemplate": {"type": "object", "additionalProperties": False, "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "commonName": {"type": "string", "maxLength": 64},
                "dnsNames": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
                "duration": _GO_DURATION, "renewBefore": _GO_DURATION,
                "isCA": {"type": "boolean"},
                "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]}, "rotationPolicy": {"enum": ["Never", "Always"]}}},
                "usages": {"type": "array", "uniqueItems": True, "items": {"enum": [
                    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
                    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
                    "server auth", "client auth", "code signing", "email protection", "s/mime",
                    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                    "microsoft sgc", "netscape sgc"]}},
                "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                    "name": {"type": "string", "minLength": 1}, "kind": {"type": "string"},
                    "group": {"type": "string"}}},
            },
        },
    },
}

CRD_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA, "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
               "Certificate": CERTIFICATE_SCHEMA}


# ----------------------------------------------------------------- helm

_chart_dirs: dict[str, str] = {}
_scratch = tempfile.mkdtemp(prefix="moat-helm-")
atexit.register(shutil.rmtree, _scratch, True)


def chart_dir(chart: str, *, without_schema: bool = False) -> str:
    """The folder Helm loads `chart` from. The umbrella's file://
    dependencies are copied into its charts/ (what `helm dependency build`
    does), in a scratch copy so the checkout is left as it is."""
    key = f"{chart}{'-noschema' if without_schema else ''}"
    if key in _chart_dirs:
        return _chart_dirs[key]
    source = os.path.join(HELM, chart)
    meta = load_yaml(os.path.join(source, "Chart.yaml"))
    if not meta.get("dependencies") and not without_schema:
        _chart_dirs[key] = source
        return source
    target = os.path.join(_scratch, key, chart)
    shutil.copytree(source, target)
    for dep in meta.get("dependencies") or []:
        repo = dep["repository"]
        assert repo.startswith("file://"), f"{chart}: dependency {dep['name']} is not file://"
        shutil.copytree(os.path.normpath(os.path.join(source, repo[len("file://"):])),
                        os.path.join(target, "charts", dep["name"]))
    if without_schema:
        for root, _, files in os.walk(target):
            if "values.schema.json" in files:
                os.remove(os.path.join(root, "values.schema.json"))
    _chart_dirs[key] = target
    return target


def merged_values(chart: str, user: dict | None) -> dict:
    """The values a release of `chart` would use, composed by Helm (subchart
    defaults under their names, globals copied into each)."""
    return Chart.load(chart_dir(chart)).merge_values(user or {})


def enabled(values: dict, dep: str) -> bool:
    return bool((values.get(dep) or {}).get("enabled", True))


# ----------------------------------------------------------------- reporting

class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, name: str, problems: list[str] | str | None) -> bool:
        if isinstance(problems, str):
            problems = [problems]
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
            return False
        self.passed += 1
        print(f"ok   {name}")
        return True

    def run(self, name: str, fn: Callable[[], list[str] | None]) -> bool:
        try:
            return self.check(name, fn())
        except Exception as e:  # a crash in a check is a failure, with its reason
            return self.check(name, [f"{type(e).__name__}: {e}"])

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"skip {name}: {why}")


def load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


# ----------------------------------------------------------------- config keys

_COMMENTED_TABLE = re.compile(r"^#\s?(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*$")
_COMMENTED_KEY = re.compile(r"^#\s?([A-Za-z0-9_]+)\s*=\s*\S")
_TABLE = re.compile(r"^(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")


def commented_keys(text: str) -> set[str]:
    """Keys the documented TOML shows commented out (`# url = "..."`, `# [[venues]]`)."""
    keys: set[str] = set()
    table = ""
    for line in text.splitlines():
        line = line.strip()
        m = _TABLE.match(line) or _COMMENTED_TABLE.match(line)
        if m:
            table = m.group(2)
            if line.startswith("#"):
                keys.add(table)
            continue
        m = _COMMENTED_KEY.match(line)
        if m and not line.startswith("##"):
            try:
                tomllib.loads(line[1:].strip())
            except tomllib.TOMLDecodeError:
                continue
            keys.add(f"{table}.{m.group(1)}" if table else m.group(1))
    return keys


def config_keys(service: str) -> set[str]:
    """Dotted keys of config/<service>.toml (tables and leaves, also the commented-out ones)."""
    path = os.path.join(ROOT, "config", f"{service}.toml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    data = tomllib.loads(text)
    keys: set[str] = commented_keys(text)

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                key = f"{prefix}.{k}" if prefix else k
                keys.add(key)
                walk(key, x)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                walk(prefix, x)

    walk("", data)
    return keys


def env_problems(service: str, names: list[str]) -> list[str]:
    """MOAT_<SERVICE>__SECTION__KEY variables must name keys the service knows."""
    _, _, prefix = SERVICES[service]
    known = config_keys(service)
    out = []
    for name in names:
        if not name.startswith("MOAT_"):
            continue
        if name in ("MOAT_CONFIG_DIR", "MOAT_LOG_FORMAT"):
            continue
        if not name.startswith(prefix):
            out.append(f"{name}: not a {service} variable (expected prefix {prefix})")
            continue
        key = ".".join(name[len(prefix):].lower().split("__"))
        if key not in known:
            out.append(f"{name}: config/{service}.toml has no key {key}")
    return out


def toml_problems(service: str, text: str, where: str) -> list[str]:
    """A chart's TOML must parse and use only keys of config/<service>.toml."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{where}: not TOML: {e}"]
    known = config_keys(service)
    out = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                key = f"{prefix}.{k}" if prefix else k
                if key not in known:
                    out.append(f"{where}: key {key} is not in config/{service}.toml (the service would exit 64)")
                else:
                    walk(key, x)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                walk(prefix, x)

    walk("", data)
    return out


# ----------------------------------------------------------------- 1. Dockerfile

def check_dockerfile() -> list[str]:
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    out = []
    if not text.startswith("# syntax=docker/dockerfile:1"):
        out.append("first line must be a `# syntax=docker/dockerfile:1...` directive (cache mounts need BuildKit)")
    if not re.search(r"^ARG SERVICE\s*$", text, re.M):
        out.append("no global `ARG SERVICE`")
    if "FROM svc-${SERVICE}" not in text:
        out.append("final stage must be `FROM svc-${SERVICE}`")
    if not re.search(r"^FROM \$\{RUST_IMAGE\} AS builder", text, re.M) or "rust:1-bookworm" not in text:
        out.append("builder stage must be rust:1-bookworm")
    for target in ("/usr/local/cargo/registry", "/usr/local/cargo/git"):
        if f"--mount=type=cache" not in text or f"target={target}" not in text:
            out.append(f"no BuildKit cache mount for {target}")
    if 'cargo build --release --locked --bin "moat-${SERVICE}"' not in text:
        out.append("builder must run cargo build --release --locked --bin moat-$SERVICE")
    if "distroless" not in text:
        out.append("runtime should be a distroless image")
    if not re.search(r"^USER 65532:65532$", text, re.M):
        out.append("runtime must run as numeric non-root USER 65532:65532")
    if "MOAT_CONFIG_DIR=/etc/moat" not in text or "/etc/moat" not in text:
        out.append("config must be copied to /etc/moat with MOAT_CONFIG_DIR=/etc/moat")
    for label in ("org.opencontainers.image.version=\"${VERSION}\"", "org.opencontainers.image.title"):
        if label not in text:
            out.append(f"missing OCI label {label}")
    stages = {m.group(1): m.start() for m in re.finditer(r"^FROM runtime AS svc-([a-z-]+)$", text, re.M)}
    for service, (_, ports, _) in SERVICES.items():
        if service not in stages:
            out.append(f"no stage svc-{service}")
            continue
        start = stages[service]
        nxt = min([p for p in list(stages.values()) + [text.find("# ----", start + 1)] if p > start] or [len(text)])
        body = text[start:nxt]
        expose = re.search(r"^EXPOSE (.+)$", body, re.M)
        got = sorted(int(p) for p in expose.group(1).split()) if expose else []
        if got != sorted(ports):
            out.append(f"svc-{service} exposes {got}, expected {sorted(ports)}")
        if f'ENTRYPOINT ["/usr/local/bin/moat-{service}"]' not in body:
            out.append(f"svc-{service} must have ENTRYPOINT [\"/usr/local/bin/moat-{service}\"]")
    ignore = os.path.join(HERE, "docker", "Dockerfile.dockerignore")
    if not os.path.exists(ignore):
        out.append("deploy/docker/Dockerfile.dockerignore is missing")
    else:
        with open(ignore, encoding="utf-8") as f:
            patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        for needed in ("target", ".git"):
            if needed not in patterns:
                out.append(f"Dockerfile.dockerignore should exclude {needed}")
    return out


# ----------------------------------------------------------------- 2. compose

def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def check_compose_config(cmd: list[str], files: list[str]) -> list[str]:
    """`config` of the files stacked; it resolves but does not open secret
    files, so the TLS override passes without `cargo xtask certs` run."""
    args = [a for f in files for a in ("-f", f)]
    run = subprocess.run(cmd + args + ["config", "-q"], capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        shown = " ".join(f"-f {rel(f)}" for f in files)
        return [f"`{' '.join(cmd)} {shown} config` exited {run.returncode}: {run.stderr.strip()}"]
    return []


def _merge_key(item: Any, field: str) -> str:
    """What compose matches list entries of `secrets` / `volumes` by."""
    if isinstance(item, dict):
        return str(item.get(field) or item.get("source"))
    text = str(item)
    if field == "target" and ":" in text:
        return text.split(":")[1]
    return text


def compose_merge(base: Any, override: Any, key: str = "") -> Any:
    """docker-compose.yml with an override file on top, by the rules of
    compose's merge for what these files use: mappings merge key by key
    (`environment` too), `secrets` merge by source and `volumes` by target
    (the override's entry wins), other lists and scalars are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = compose_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and key in ("secrets", "volumes"):
        field = "source" if key == "secrets" else "target"
        merged = {_merge_key(i, field): i for i in base}
        merged.update({_merge_key(i, field): i for i in override})
        return list(merged.values())
    return copy.deepcopy(override)


def _secret_paths(svc: dict) -> dict[str, str]:
    """In-container path -> secret name of a service's `secrets`."""
    out = {}
    for s in _as_list(svc.get("secrets")):
        source = s.get("source") if isinstance(s, dict) else str(s)
        target = (s.get("target") if isinstance(s, dict) else None) or source
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return out


def check_compose_tls(base: dict, override: dict, merged: dict) -> list[str]:
    """Plaintext said explicitly in docker-compose.yml; mutual TLS wired in
    the override from the development CA's files."""
    out = []
    services = merged.get("services") or {}
    top_secrets = merged.get("secrets") or {}
    env_of = lambda compose, name: ((compose.get("services") or {}).get(name) or {}).get("environment") or {}
    for name, prefix in (("gateway", "MOAT_GATEWAY__"), ("state", "MOAT_STATE__")):
        if str(env_of(base, name).get(f"{prefix}TLS__PLAINTEXT")) != "true":
            out.append(f"docker-compose.yml: {name} must say {prefix}TLS__PLAINTEXT: \"true\" (it refuses to start otherwise)")
        env = env_of(merged, name)
        if str(env.get(f"{prefix}TLS__PLAINTEXT")) != "false":
            out.append(f"override: {name} must set {prefix}TLS__PLAINTEXT to \"false\" (never together with a certificate)")
    # Every path a TLS variable names must be one of the service's secrets.
    wanted = {
        "gateway": ["MOAT_GATEWAY__TLS__CERT", "MOAT_GATEWAY__TLS__KEY", "MOAT_GATEWAY__TLS__CLIENT_CA",
                    "MOAT_GATEWAY__STATE__TLS__CA", "MOAT_GATEWAY__STATE__TLS__CERT", "MOAT_GATEWAY__STATE__TLS__KEY"],
        "state": ["MOAT_STATE__TLS__CERT", "MOAT_STATE__TLS__KEY", "MOAT_STATE__TLS__CLIENT_CA"],
        "strategy": ["MOAT_TLS_CA", "MOAT_TLS_CERT", "MOAT_TLS_KEY"],
    }
    for name, variables in wanted.items():
        svc = services.get(name) or {}
        env, paths = svc.get("environment") or {}, _secret_paths(svc)
        for var in variables:
            path = env.get(var)
            if not path:
                out.append(f"override: {name} must set {var}")
            elif path not in paths:
                out.append(f"override: {name} {var}={path} is none of its secrets ({sorted(paths)})")
            elif paths[path] not in top_secrets:
                out.append(f"override: secret {paths[path]} is not declared")
    gw = (services.get("gateway") or {}).get("environment") or {}
    if not str(gw.get("MOAT_GATEWAY__STATE__ENDPOINT", "")).startswith("https://"):
        out.append("override: MOAT_GATEWAY__STATE__ENDPOINT must be https:// with MOAT_GATEWAY__STATE__TLS__CA")
    if not gw.get("MOAT_GATEWAY__STATE__TLS__SERVER_NAME"):
        out.append("override: MOAT_GATEWAY__STATE__TLS__SERVER_NAME must name the state certificate's host (state)")
    st = (services.get("state") or {}).get("environment") or {}
    try:
        allowed = json.loads(str(st.get("MOAT_STATE__TLS__ALLOWED_CLIENTS", "")))
        if not (isinstance(allowed, list) and "moat-gateway" in allowed):
            out.append("override: MOAT_STATE__TLS__ALLOWED_CLIENTS must be a JSON array naming moat-gateway")
    except json.JSONDecodeError:
        out.append("override: MOAT_STATE__TLS__ALLOWED_CLIENTS must be a JSON array string, e.g. '[\"moat-gateway\"]'")
    if not ((services.get("strategy") or {}).get("environment") or {}).get("MOAT_TLS_SERVER_NAME"):
        out.append("override: strategy must set MOAT_TLS_SERVER_NAME (a name of the gateway's certificate)")
    # The override's secrets are files `cargo xtask certs` writes, never the CA's key.
    files = {"ca.pem"} | {f"{n}.pem" for n in DEV_TLS_NAMES} | {f"{n}-key.pem" for n in DEV_TLS_NAMES}
    for name, spec in (override.get("secrets") or {}).items():
        f = str((spec or {}).get("file", ""))
        if not f.startswith(DEV_TLS_DIR) or f[len(DEV_TLS_DIR):] not in files:
            out.append(f"override: secret {name} ({f}) is not a file of {DEV_TLS_DIR} that `cargo xtask certs` writes")
    # The sandbox gets the CA and its own identity, no service's key.
    for source in _secret_paths(services.get("strategy") or {}).values():
        f = str((top_secrets.get(source) or {}).get("file", ""))
        if f.startswith(DEV_TLS_DIR) and f[len(DEV_TLS_DIR):] not in ("ca.pem", "dev.pem", "dev-key.pem"):
            out.append(f"override: the strategy must not get {f}")
    return out


def nats_users() -> list[str]:
    """The users of deploy/nats/users.conf."""
    with open(NATS_USERS, encoding="utf-8") as f:
        return re.findall(r'\{\s*user:\s*"([^"]+)"', f.read())


def _bind_mounts(svc: dict) -> dict[str, tuple[str, bool]]:
    """Container path -> (host path, read-only) of a service's bind mounts
    (host paths relative to deploy/compose/, as compose resolves them)."""
    out = {}
    for vol in _as_list(svc.get("volumes")):
        if isinstance(vol, dict):
            source, target, ro = str(vol.get("source", "")), str(vol.get("target", "")), bool(vol.get("read_only"))
        else:
            parts = str(vol).split(":")
            if len(parts) < 2:
                continue
            source, target, ro = parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")
        if source.startswith((".", "/")):
            out[target] = (os.path.normpath(os.path.join(os.path.dirname(COMPOSE), source)), ro)
    return out


def check_compose_files(files: list[tuple[str, dict]]) -> list[str]:
    """Every file the compose files mount or name as a secret exists (the
    development certificates excepted: `cargo xtask certs` writes them)."""
    out = []
    for where, compose in files:
        for name, svc in (compose.get("services") or {}).items():
            for target, (source, _) in _bind_mounts(svc or {}).items():
                if not os.path.exists(source):
                    out.append(f"{where}: {name} mounts {rel(source)} at {target}, which does not exist")
        for name, spec in (compose.get("secrets") or {}).items():
            f = str((spec or {}).get("file", ""))
            if f and not f.startswith(DEV_TLS_DIR) and not os.path.exists(os.path.join(os.path.dirname(COMPOSE), f)):
                out.append(f"{where}: secret {name} names {f}, which does not exist")
    return out


def _nats_conf(path: str) -> tuple[list[str], dict[str, str]]:
    """The `include` paths and the `tls { ... }` settings of a nats-server config."""
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line.split("#", 1)[0] for line in f)
    includes = re.findall(r'^\s*include\s+"?([^"\s;]+)"?', text, re.M)
    block = re.search(r"^\s*tls\s*\{(.*?)\}", text, re.S | re.M)
    settings = {}
    for key, value in re.findall(r'^\s*(\w+)\s*[:=]\s*"?([^"\n]*?)"?\s*$', block.group(1) if block else "", re.M):
        settings[key] = value
    return includes, settings


def check_compose_nats_tls(base: dict, merged: dict) -> list[str]:
    """docker-compose.yml runs NATS without TLS or users; the override runs
    it from nats.tls.conf, which includes nats.conf and deploy/nats/users.conf
    (mounted read-only beside it) and maps client certificates to users, and
    gives the collector, storage-writer and gateway each the certificate
    that names its NATS user."""
    out = []
    top_secrets = merged.get("secrets") or {}
    nats_base = (base.get("services") or {}).get("nats") or {}
    nats = (merged.get("services") or {}).get("nats") or {}
    users = nats_users()
    # The base file: plaintext NATS, no TLS settings on any service.
    base_cmd = _as_list(nats_base.get("command"))
    base_conf = _bind_mounts(nats_base).get(base_cmd[-1] if base_cmd else "", ("", False))[0]
    if not base_conf or _nats_conf(base_conf)[1]:
        out.append("docker-compose.yml: nats must run nats.conf without TLS (the override adds it)")
    for name, svc in (base.get("services") or {}).items():
        if any("__NATS__TLS__" in k for k in ((svc or {}).get("environment") or {})):
            out.append(f"docker-compose.yml: {name} sets NATS TLS variables; they belong to the override")
    # The override's nats-server config.
    cmd = _as_list(nats.get("command"))
    mounts = _bind_mounts(nats)
    if len(cmd) != 2 or cmd[0] != "-c" or cmd[1] not in mounts:
        return out + [f"override: nats command {cmd} must be [-c, <a mounted config file>]"]
    conf, _ = mounts[cmd[1]]
    if os.path.basename(conf) != "nats.tls.conf":
        out.append(f"override: nats runs {rel(conf)}, expected deploy/compose/nats.tls.conf")
    includes, tls = _nats_conf(conf)
    included = []
    for inc in includes:
        target = os.path.normpath(os.path.join(os.path.dirname(cmd[1]), inc))
        if target not in mounts:
            out.append(f"{rel(conf)}: includes {inc} ({target} in the container), which the nats service does not mount")
            continue
        source, ro = mounts[target]
        included.append(source)
        if not ro:
            out.append(f"override: nats must mount {rel(source)} read-only")
    if base_conf and base_conf not in included:
        out.append(f"{rel(conf)}: must include {rel(base_conf)} (JetStream and the monitor, as without TLS)")
    if NATS_USERS not in included:
        out.append(f"{rel(conf)}: must include {rel(NATS_USERS)}, mounted from there (not a copy)")
    if tls.get("verify_and_map") != "true":
        out.append(f"{rel(conf)}: the tls block needs verify_and_map: true (a certificate's name is its user)")
    nats_secrets = _secret_paths(nats)
    for key, want in (("cert_file", "nats.pem"), ("key_file", "nats-key.pem"), ("ca_file", "ca.pem")):
        path = tls.get(key, "")
        f = str((top_secrets.get(nats_secrets.get(path, "")) or {}).get("file", ""))
        if path not in nats_secrets:
            out.append(f"{rel(conf)}: tls {key} {path!r} is none of the nats service's secrets ({sorted(nats_secrets)})")
        elif f != DEV_TLS_DIR + want:
            out.append(f"override: nats {key} must be {DEV_TLS_DIR}{want}, is {f}")
    # Each service: the CA and the certificate that names its NATS user.
    for service in NATS_SERVICES:
        prefix = SERVICES[service][2]
        user = f"moat-{service}"
        if user not in users:
            out.append(f"{rel(NATS_USERS)} has no user {user}")
        svc = (merged.get("services") or {}).get(service) or {}
        env, paths = svc.get("environment") or {}, _secret_paths(svc)
        url = str(env.get(f"{prefix}NATS__URL", ""))
        if not url.startswith("nats://nats:"):
            out.append(f"override: {service} {prefix}NATS__URL={url}: the host must be nats, a name of nats.pem")
        for var, want in (("CA", "ca.pem"), ("CERT", f"{service}.pem"), ("KEY", f"{service}-key.pem")):
            path = env.get(f"{prefix}NATS__TLS__{var}")
            f = str((top_secrets.get(paths.get(path or "", "")) or {}).get("file", ""))
            if not path:
                out.append(f"override: {service} must set {prefix}NATS__TLS__{var}")
            elif path not in paths:
                out.append(f"override: {service} {prefix}NATS__TLS__{var}={path} is none of its secrets")
            elif f != DEV_TLS_DIR + want:
                out.append(f"override: {service} {prefix}NATS__TLS__{var} must be {DEV_TLS_DIR}{want} "
                           f"(its certificate names NATS user {user}), is {f}")
    return out


def _clickhouse_users() -> dict[str, dict]:
    """The users and profiles of deploy/compose/clickhouse/users.d/moat.xml."""
    import xml.etree.ElementTree as ET
    root = ET.parse(CLICKHOUSE_USERS).getroot()
    profiles = {p.tag: {c.tag: (c.text or "").strip() for c in p} for p in root.find("profiles") or []}
    users = {}
    for u in root.find("users") or []:
        networks = u.find("networks")
        users[u.tag] = {
            "password": u.findtext("password"),
            "sha256": (u.findtext("password_sha256_hex") or "").strip().lower(),
            "networks": [(n.text or "").strip() for n in networks] if networks is not None else None,
            "networks_replace": networks is not None and networks.get("replace") == "replace",
            "profile": profiles.get((u.findtext("profile") or "").strip(), {}),
            "grants": [(q.text or "").strip() for q in u.findall("grants/query")],
        }
    return users


def check_compose_clickhouse(compose: dict) -> list[str]:
    """ClickHouse users of docker-compose.yml: the clickhouse container
    takes them from clickhouse/users.d/moat.xml (not from the image's
    CLICKHOUSE_USER/PASSWORD); the gateway uses a read-only user, the
    storage-writer and migrate a writing one, each with a password file
    from a compose secret whose SHA-256 is the user's."""
    import hashlib
    out = []
    services = compose.get("services") or {}
    ch = services.get("clickhouse") or {}
    env = ch.get("environment") or {}
    for var in ("CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"):
        if var in env:
            out.append(f"clickhouse: {var} makes the image write its own user and remove `default`; "
                       "the users are clickhouse/users.d/moat.xml's")
    if str(env.get("CLICKHOUSE_SKIP_USER_SETUP")) != "1":
        out.append("clickhouse: CLICKHOUSE_SKIP_USER_SETUP must be \"1\" (users.d/moat.xml defines the users)")
    mounted = {src: (target, ro) for target, (src, ro) in _bind_mounts(ch).items()}
    if CLICKHOUSE_USERS not in mounted or not mounted[CLICKHOUSE_USERS][1] or \
            not mounted[CLICKHOUSE_USERS][0].startswith("/etc/clickhouse-server/users.d/"):
        out.append(f"clickhouse: must mount {rel(CLICKHOUSE_USERS)} read-only into /etc/clickhouse-server/users.d/")
    users = _clickhouse_users()
    default = users.get("default")
    if not default or not default["networks_replace"] or \
            set(default["networks"] or []) - {"::1", "127.0.0.1", "localhost"}:
        out.append(f"{rel(CLICKHOUSE_USERS)}: `default` must be limited to the container itself "
                   "(<networks replace=\"replace\"> with ::1 and 127.0.0.1)")
    for name, u in users.items():
        if name == "default":
            continue
        if u["password"] is not None or not re.fullmatch(r"[0-9a-f]{64}", u["sha256"]):
            out.append(f"{rel(CLICKHOUSE_USERS)}: {name} needs <password_sha256_hex> (no plaintext <password>)")
    used: dict[str, str] = {}
    top_secrets = compose.get("secrets") or {}
    for name, svc in services.items():
        svc = svc or {}
        service = next((x for x in SERVICES if str(svc.get("image", "")).startswith(f"moat-{x}:")), None)
        prefix = SERVICES[service][2] if service else ""
        senv = svc.get("environment") or {}
        user = senv.get(f"{prefix}CLICKHOUSE__USER")
        if not service or user is None:
            continue
        used[name] = user
        if f"{prefix}CLICKHOUSE__PASSWORD" in senv:
            out.append(f"{name}: {prefix}CLICKHOUSE__PASSWORD puts the password in the environment; "
                       f"use {prefix}CLICKHOUSE__PASSWORD_FILE and a secret")
        if user not in users or user == "default":
            out.append(f"{name}: ClickHouse user {user} is not one of {rel(CLICKHOUSE_USERS)}")
            continue
        path = senv.get(f"{prefix}CLICKHOUSE__PASSWORD_FILE")
        secret = _secret_paths(svc).get(path or "")
        f = str((top_secrets.get(secret or "") or {}).get("file", ""))
        if not secret or not f:
            out.append(f"{name}: {prefix}CLICKHOUSE__PASSWORD_FILE={path} is none of its secrets")
            continue
        with open(os.path.join(os.path.dirname(COMPOSE), f), encoding="utf-8") as fh:
            first = (fh.read().splitlines() or [""])[0].rstrip()
        if hashlib.sha256(first.encode()).hexdigest() != users[user]["sha256"]:
            out.append(f"{name}: the first line of {f} is not the password of {user} "
                       f"(its password_sha256_hex in {rel(CLICKHOUSE_USERS)})")
        readonly = users[user]["profile"].get("readonly", "0")
        grants = users[user]["grants"]
        if service == "gateway":
            if readonly != "2":
                out.append(f"{name}: user {user} must have readonly = 2 (reads, and query settings), has {readonly}")
            if not grants or any(not re.match(r"GRANT SELECT ON \S+$", g) for g in grants):
                out.append(f"{name}: user {user} may be granted SELECT only, has {grants}")
        elif readonly != "0":
            out.append(f"{name}: user {user} is read-only, but {service} creates tables and inserts")
    gateway_users = {u for n, u in used.items() if n == "gateway"}
    writer_users = {u for n, u in used.items() if n != "gateway"}
    if gateway_users & writer_users:
        out.append(f"the gateway shares ClickHouse user {gateway_users & writer_users} with the writers")
    if not gateway_users or not writer_users:
        out.append("expected the gateway and the storage-writer (and migrate) to name their ClickHouse users")
    return out


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _networks(svc: dict) -> list[str]:
    nets = svc.get("networks")
    if nets is None:
        return ["default"]
    return list(nets) if isinstance(nets, (dict, list)) else []


def check_compose_sandbox(compose: dict) -> list[str]:
    out = []
    services = compose.get("services") or {}
    networks = compose.get("networks") or {}
    s = services.get("strategy")
    if not isinstance(s, dict):
        return ["no `strategy` service"]
    if s.get("read_only") is not True:
        out.append("strategy: read_only must be true")
    tmpfs = [str(t).split(":")[0] for t in _as_list(s.get("tmpfs"))]
    if "/tmp" not in tmpfs:
        out.append("strategy: tmpfs must include /tmp")
    if "ALL" not in [str(c).upper() for c in _as_list(s.get("cap_drop"))]:
        out.append("strategy: cap_drop must include ALL")
    if s.get("cap_add"):
        out.append("strategy: cap_add must be empty")
    sec = [str(x).replace(" ", "") for x in _as_list(s.get("security_opt"))]
    if not any(x in ("no-new-privileges:true", "no-new-privileges", "no-new-privileges=true") for x in sec):
        out.append("strategy: security_opt must include no-new-privileges:true")
    for key in ("ports", "network_mode", "extra_hosts", "devices", "pid", "ipc"):
        if s.get(key):
            out.append(f"strategy: must not set {key}")
    if s.get("privileged"):
        out.append("strategy: must not be privileged")
    user = str(s.get("user", ""))
    if not user or user.split(":")[0] in ("0", "root"):
        out.append("strategy: must run as a non-root user")
    for vol in _as_list(s.get("volumes")):
        text = vol if isinstance(vol, str) else f"{vol.get('source')}:{vol.get('target')}:{'ro' if vol.get('read_only') else 'rw'}"
        if not str(text).endswith(":ro"):
            out.append(f"strategy: volume {text} must be read-only")
        if "docker.sock" in str(text):
            out.append("strategy: must not mount the Docker socket")
    s_nets = _networks(s)
    if not s_nets:
        out.append("strategy: joins no network")
    gateway_nets = _networks(services.get("gateway") or {})
    for net in s_nets:
        spec = networks.get(net) or {}
        if spec.get("internal") is not True:
            out.append(f"strategy: network {net} must be `internal: true`")
        members = sorted(n for n, svc in services.items() if net in _networks(svc or {}))
        others = [m for m in members if m not in ("strategy", "gateway")]
        if others:
            out.append(f"network {net} must hold only strategies and the gateway, also has {others}")
        if net not in gateway_nets:
            out.append(f"gateway must join network {net}")
    if not any((networks.get(n) or {}).get("internal") is not True for n in gateway_nets):
        out.append("gateway must also join a non-internal backend network")
    return out


def check_compose_services(compose: dict) -> list[str]:
    out = []
    services = compose.get("services") or {}
    for name, svc in services.items():
        svc = svc or {}
        image = str(svc.get("image", ""))
        build = svc.get("build") or {}
        service = next((s for s in SERVICES if image.startswith(f"moat-{s}:")), None)
        if service is None:
            continue
        env = svc.get("environment") or {}
        names = list(env) if isinstance(env, dict) else [str(e).split("=")[0] for e in env]
        out += [f"{name}: {p}" for p in env_problems(service, names)]
        if env.get("MOAT_CONFIG_DIR") != "/etc/moat":
            out.append(f"{name}: MOAT_CONFIG_DIR must be /etc/moat")
        if not any(str(v).startswith("../../config:/etc/moat") and str(v).endswith(":ro")
                   for v in _as_list(svc.get("volumes"))):
            out.append(f"{name}: must mount ../../config at /etc/moat read-only")
        if build and (build.get("args") or {}).get("SERVICE") != service:
            out.append(f"{name}: build arg SERVICE must be {service}")
        if svc.get("healthcheck"):
            out.append(f"{name}: the distroless image has no shell or curl for a healthcheck")
        for cond in (svc.get("depends_on") or {}).values() if isinstance(svc.get("depends_on"), dict) else []:
            if cond.get("condition") not in ("service_started", "service_healthy", "service_completed_successfully"):
                out.append(f"{name}: unknown depends_on condition {cond}")
        for dep, cond in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else []:
            if cond.get("condition") == "service_healthy" and not (services.get(dep) or {}).get("healthcheck"):
                out.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
    for dep, port in (("nats", "8222/healthz"), ("clickhouse", "8123/ping")):
        test = " ".join(_as_list(((services.get(dep) or {}).get("healthcheck") or {}).get("test")))
        if port not in test:
            out.append(f"{dep}: healthcheck should probe :{port}")
    if "migrate" in [k for k in services]:
        cmd = _as_list(services["migrate"].get("command"))
        if cmd != ["migrate"]:
            out.append("migrate: command must be [migrate]")
    return out


# ----------------------------------------------------------------- 3. chart layout

def check_chart_layout(chart: str) -> list[str]:
    path = os.path.join(HELM, chart)
    out = []
    meta = load_yaml(os.path.join(path, "Chart.yaml")) or {}
    if meta.get("apiVersion") != "v2":
        out.append("Chart.yaml apiVersion must be v2")
    if meta.get("name") != chart:
        out.append(f"Chart.yaml name {meta.get('name')!r} must equal the folder name")
    if not re.match(r"^\d+\.\d+\.\d+", str(meta.get("version", ""))):
        out.append("Chart.yaml version must be SemVer")
    if not isinstance(meta.get("appVersion"), str):
        out.append("Chart.yaml appVersion must be a quoted string")
    for f in ("values.yaml", "values.schema.json", "templates/NOTES.txt"):
        if not os.path.exists(os.path.join(path, f)):
            out.append(f"missing {f}")
    if chart != "moat":
        for f in ["_helpers.tpl"] + TEMPLATES[chart]:
            full = os.path.join(path, "templates", f)
            if not os.path.exists(full):
                out.append(f"missing templates/{f}")
                continue
            with open(full, encoding="utf-8") as fh:
                head = fh.read(8)
            if not (head.startswith("{{/*") or head.startswith("{{- /*")):
                out.append(f"templates/{f} must open with a {{{{/* comment */}}}}")
    for f in ("Chart.yaml", "values.yaml"):
        with open(os.path.join(path, f), encoding="utf-8") as fh:
            if not fh.read(1) == "#":
                out.append(f"{f} must open with a comment")
    for dep in meta.get("dependencies") or []:
        repo = str(dep.get("repository", ""))
        if not repo.startswith("file://"):
            out.append(f"dependency {dep.get('name')}: repository must be file://")
            continue
        target = os.path.normpath(os.path.join(path, repo[len("file://"):]))
        sub = load_yaml(os.path.join(target, "Chart.yaml")) if os.path.exists(os.path.join(target, "Chart.yaml")) else None
        if not sub:
            out.append(f"dependency {dep.get('name')}: {repo} has no Chart.yaml")
            continue
        if sub.get("name") != dep.get("name"):
            out.append(f"dependency {dep.get('name')}: {repo} is chart {sub.get('name')}")
        if str(sub.get("version")) != str(dep.get("version")):
            out.append(f"dependency {dep.get('name')}: version {dep.get('version')} but the chart is {sub.get('version')}")
        if dep.get("condition") != f"{dep.get('name')}.enabled":
            out.append(f"dependency {dep.get('name')}: condition should be {dep.get('name')}.enabled")
    if chart == "moat":
        names = sorted(d.get("name") for d in meta.get("dependencies") or [])
        if names != sorted(c for c in CHARTS if c != "moat"):
            out.append(f"umbrella dependencies {names} must be the four service charts")
    return out


# ----------------------------------------------------------------- 4. values

_validators: dict[str, Any] = {}


def validator(chart: str):
    if chart not in _validators:
        with open(os.path.join(HELM, chart, "values.schema.json"), encoding="utf-8") as f:
            schema = json.load(f)
        if schema.get("$schema") != "http://json-schema.org/draft-07/schema#":
            raise ValueError(f"{chart}/values.schema.json must declare JSON Schema draft-07")
        jsonschema.Draft7Validator.check_schema(schema)
        _validators[chart] = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return _validators[chart]


def schema_errors(chart: str, values: dict) -> list[str]:
    errors = sorted(validator(chart).iter_errors(values), key=lambda e: list(e.absolute_path))
    return [f"{chart}: {'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


def values_problems(chart: str, user: dict | None) -> list[str]:
    """The chart's values (plus `user`) against its schema, like helm does:
    for the umbrella also every enabled subchart's merged values."""
    values = merged_values(chart, user)
    out = schema_errors(chart, values)
    for dep in load_yaml(os.path.join(HELM, chart, "Chart.yaml")).get("dependencies") or []:
        if enabled(values, dep["name"]):
            out += schema_errors(dep["name"], values[dep["name"]])
    return out


# Values that must be refused (each by the chart's schema).
MUST_FAIL = [
    ("moat-state", {"replicaCount": 2}, "two replicas on SQLite"),
    ("moat-state", {"database": {"type": "postgres"}}, "postgres without a URL or Secret"),
    ("moat-gateway", {"securityContext": {"readOnlyRootFilesystem": False}}, "a writable root filesystem"),
    ("moat-gateway", {"securityContext": {"allowPrivilegeEscalation": True}}, "privilege escalation"),
    ("moat-gateway", {"auth": {"tokens": [{"strategyId": "s1", "token": "short"}]}}, "a token under 16 characters"),
    ("moat-gateway", {"replicas": 3}, "an unknown key (typo of replicaCount)"),
    ("moat-gateway", {"probes": {"readinessMode": "tcp"}}, "an unknown readiness mode"),
    ("moat-gateway", {"rpc": {"upstreams": {"ethereum": ["ftp://x"]}}}, "a non-HTTP upstream"),
    ("moat-gateway", {"tls": {"certManager": {"enabled": True}}}, "cert-manager without an issuer"),
    ("moat-gateway", {"tls": {"enabled": "yes"}}, "a TLS switch that is not a boolean"),
    ("moat-state", {"tls": {"allowedClients": []}}, "TLS letting in no client name"),
    ("moat-state", {"tls": {"certManager": {"enabled": True, "duration": "90d"}}}, "a duration Go cannot parse"),
    ("moat-collector", {"shards": []}, "no shard"),
    ("moat-collector", {"nats": {"tls": {"enabled": "true"}}}, "a NATS TLS switch that is not a boolean"),
    ("moat-storage-writer", {"nats": {"tls": {"certManager": {"enabled": True}}}},
     "a NATS client Certificate without an issuer"),
    ("moat-gateway", {"nats": {"tls": {"serverName": "nats"}}}, "an unknown NATS TLS key"),
    ("moat-collector", {"nats": {"streamReplicas": 0}}, "zero stream replicas"),
    ("moat-storage-writer", {"global": {"clickhouse": {"url": "clickhouse:8123"}}}, "a ClickHouse URL without scheme"),
    ("moat", {"moat-state": {"replicaCount": 3}}, "umbrella: two+ SQLite replicas (subchart schema)"),
    ("moat", {"moat-gateway": {"podSecurityContext": {"runAsNonRoot": False}}}, "umbrella: root pods (subchart schema)"),
]


# ----------------------------------------------------------------- 5. rendering

def scenarios() -> list[dict]:
    prod = load_yaml(os.path.join(EXAMPLES, "production-values.yaml"))
    # TLS is on by default without cert-manager: the kubernetes.io/tls
    # Secrets must exist beside the release.
    out = [{"name": f"{c}-default", "chart": c, "values": {}, "values_file": None,
            "external_secrets": {"moat-gateway-tls", "moat-state-tls"}} for c in CHARTS]
    out.append({"name": "moat-production", "chart": "moat", "values": prod,
                "values_file": "deploy/helm/examples/production-values.yaml",
                # Secrets the production values expect to exist already.
                "external_secrets": {"clickhouse-moat-writer", "clickhouse-moat-gateway", "moat-state-db"},
                "distinct_clickhouse_users": True})
    # NATS TLS from Secrets made by hand (no cert-manager), the gateway's
    # from its own TLS Secret, and ClickHouse passwords from the charts'
    # own Secrets: rendered and checked, but no example file.
    nats_tls = {"nats": {"tls": {"enabled": True}}}
    out.append({"name": "moat-nats-tls-own-secrets", "chart": "moat", "example": False, "values": {
        "moat-collector": {**nats_tls, "shards": [
            {"name": "a", "exchange": "sim", "replicas": 1, "config": "", "resources": {}, "extraEnv": []},
            {"name": "b", "exchange": "sim", "replicas": 1, "config": "", "resources": {}, "extraEnv": []}]},
        "moat-storage-writer": {**nats_tls, "clickhouse": {"user": "moat_writer", "password": "writer-password"}},
        "moat-gateway": {"nats": {"tls": {"enabled": True, "secretName": "moat-gateway-tls"}},
                         "clickhouse": {"user": "moat_gateway", "password": "gateway-password"}}},
        "values_file": None, "distinct_clickhouse_users": True,
        "external_secrets": {"moat-gateway-tls", "moat-state-tls", "moat-collector-nats-tls",
                             "moat-storage-writer-nats-tls"}})
    return out


def render(scn: dict) -> tuple[list[tuple[str, str]], str]:
    """`(template path, rendered text)` of every manifest in path order, and
    the top-level chart's NOTES.txt, as `helm template` renders them."""
    out = Chart.load(chart_dir(scn["chart"])).render(scn["values"], name="moat", namespace="moat")
    notes = out.pop(f"{scn['chart']}/templates/NOTES.txt", "")
    rendered = [(path, text) for path, text in sorted(out.items())
                if not path.endswith("NOTES.txt") and not os.path.basename(path).startswith("_")]
    return rendered, notes


def manifests(rendered: list[tuple[str, str]]) -> list[tuple[str, dict]]:
    """Splits rendered templates into YAML documents, dropping empty ones."""
    docs = []
    for template, text in rendered:
        for part in re.split(r"(?m)^---[ \t]*$", text):
            if not part.strip():
                continue
            doc = yaml.safe_load(part)
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{template}: a rendered document is not a mapping")
            docs.append((template, doc))
    return docs


def example_text(scn: dict, rendered: list[tuple[str, str]]) -> str:
    source = f"deploy/helm/{scn['chart']}"
    with_values = f" with -f {scn['values_file']}" if scn["values_file"] else " with its default values"
    lines = [
        f"# Rendered manifests of {source}{with_values}",
        "# (release `moat`, namespace `moat`), written by `python3 deploy/validate.py --write-examples`",
        "# with Helm's own engine (helm-python-sdk). Do not edit by hand: CI re-renders and compares.",
    ]
    for template, text in rendered:
        for part in re.split(r"(?m)^---[ \t]*$", text.strip("\n")):
            part = part.strip("\n")
            if not part.strip() or yaml.safe_load(part) is None:
                continue
            lines += ["---", f"# Source: {template}", part]
    return "\n".join(lines) + "\n"


def lint_problems(chart: str, versions: list[str]) -> list[str]:
    """`helm lint --strict` for each Kubernetes version: warnings and errors."""
    out = []
    for version in versions:
        report = helm_lint(chart_dir(chart), strict=True, kube_version=f"v{version}")
        out += [f"Kubernetes {version}: {m['path']}: {m['error']}" for m in report["messages"]
                if m["severity"] >= 2]
        out += [f"Kubernetes {version}: {e}" for e in report["errors"]]
    return out


def k8s_problems(docs: list[tuple[str, dict]], versions: list[str]) -> list[str]:
    out = []
    for where, doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if doc.get("kind") in CRD_SCHEMAS:
            errs = list(jsonschema.Draft7Validator(CRD_SCHEMAS[doc["kind"]]).iter_errors(doc))
            out += [f"{where}: {name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errs]
            continue
        for version in versions:
            try:
                kv.validate(copy.deepcopy(doc), version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                out.append(f"{where}: {name} (Kubernetes {version}): {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                out.append(f"{where}: {name}: no schema: {e.message}")
    return out


def _selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def policy_problems(scn: dict, docs: list[tuple[str, dict]]) -> list[str]:
    out = []
    by_kind: dict[str, list[dict]] = {}
    seen = set()
    for where, d in docs:
        meta = d.get("metadata") or {}
        key = (d.get("kind"), meta.get("namespace", "moat"), meta.get("name"))
        if key in seen:
            out.append(f"duplicate object {key}")
        seen.add(key)
        by_kind.setdefault(d["kind"], []).append(d)
        labels = meta.get("labels") or {}
        if d["kind"] != "NetworkPolicy" or not meta.get("name", "").endswith("-strategies"):
            for needed in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
                if needed not in labels:
                    out.append(f"{where}: {key[0]}/{key[2]} lacks label {needed}")
    names = lambda kind: {(d.get("metadata") or {}).get("name") for d in by_kind.get(kind, [])}
    # Secrets that exist beside the release, and those cert-manager writes for a rendered Certificate.
    external = set(scn.get("external_secrets", set())) | \
        {c["spec"]["secretName"] for c in by_kind.get("Certificate", [])}
    pods = []
    for dep in by_kind.get("Deployment", []):
        dname = dep["metadata"]["name"]
        spec = dep["spec"]
        tpl = spec["template"]
        plabels = tpl["metadata"].get("labels") or {}
        pods.append((dname, plabels, tpl["spec"]))
        if not _selector_matches(spec["selector"]["matchLabels"], plabels):
            out.append(f"Deployment/{dname}: selector does not match its pod labels")
        ps = tpl["spec"]
        if (ps.get("securityContext") or {}).get("runAsNonRoot") is not True:
            out.append(f"Deployment/{dname}: pod securityContext.runAsNonRoot must be true")
        if ps.get("automountServiceAccountToken") is not False:
            out.append(f"Deployment/{dname}: automountServiceAccountToken must be false")
        sa = ps.get("serviceAccountName")
        if sa and sa != "default" and sa not in names("ServiceAccount"):
            out.append(f"Deployment/{dname}: ServiceAccount {sa} is not rendered")
        service = next((s for s, (c, _, _) in SERVICES.items() if dname.startswith(c)), None)
        for c in ps.get("initContainers", []) + ps["containers"]:
            cname = f"Deployment/{dname} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{cname}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{cname}: allowPrivilegeEscalation must be false")
            if sc.get("runAsNonRoot") is not True:
                out.append(f"{cname}: runAsNonRoot must be true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{cname}: capabilities.drop must include ALL")
            if (sc.get("capabilities") or {}).get("add"):
                out.append(f"{cname}: must not add capabilities")
            if c["image"].endswith(":latest") or ":" not in c["image"].rsplit("/", 1)[-1]:
                out.append(f"{cname}: image {c['image']} needs a pinned tag")
            if not (c.get("resources") or {}).get("requests"):
                out.append(f"{cname}: no resource requests")
            env = {e["name"]: e for e in c.get("env", [])}
            if env.get("MOAT_CONFIG_DIR", {}).get("value") != "/etc/moat":
                out.append(f"{cname}: MOAT_CONFIG_DIR must be /etc/moat")
            if service:
                out += [f"{cname}: {p}" for p in env_problems(service, list(env))]
            for e in env.values():
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in names("Secret") and ref["name"] not in external:
                    out.append(f"{cname}: env {e['name']} reads Secret {ref['name']}, which is neither rendered nor external")
                if ref and ref["name"] in names("Secret"):
                    sec = next(s for s in by_kind["Secret"] if s["metadata"]["name"] == ref["name"])
                    if ref["key"] not in (sec.get("stringData") or {}) and ref["key"] not in (sec.get("data") or {}):
                        out.append(f"{cname}: Secret {ref['name']} has no key {ref['key']}")
            if service == "collector" and int(dep["spec"].get("replicas", 1)) > 1 \
                    and env.get("MOAT_COLLECTOR__PUBLISHER__MAX_BATCH_EVENTS", {}).get("value") != "1":
                out.append(f"{cname}: {dep['spec']['replicas']} replicas of one shard must publish one event "
                           "per message (MOAT_COLLECTOR__PUBLISHER__MAX_BATCH_EVENTS=1), or their batches "
                           "escape JetStream's deduplication")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            if "/etc/moat" not in mounts or not mounts["/etc/moat"].get("readOnly"):
                out.append(f"{cname}: config must be mounted read-only at /etc/moat")
            elif service:
                vol = next((v for v in ps.get("volumes", []) if v["name"] == mounts["/etc/moat"]["name"]), {})
                cm_ref = vol.get("configMap") or {}
                cm = next((x for x in by_kind.get("ConfigMap", []) if x["metadata"]["name"] == cm_ref.get("name")), None)
                files = [i["path"] for i in cm_ref.get("items", [])] if cm_ref.get("items") else \
                    list((cm or {}).get("data") or {})
                if f"{service}.toml" not in files:
                    out.append(f"{cname}: /etc/moat holds {files}, not {service}.toml")
            if "/tmp" not in mounts:
                out.append(f"{cname}: /tmp must be a writable volume (read-only root)")
        main = ps["containers"][0]
        live = (main.get("livenessProbe") or {}).get("httpGet") or {}
        if live.get("path") != "/health/live":
            out.append(f"Deployment/{dname}: liveness probe must GET /health/live")
        ready = main.get("readinessProbe") or {}
        if dname.startswith("moat-gateway"):
            if "grpc" not in ready and (ready.get("httpGet") or {}).get("path") not in ("/health", "/health/live"):
                out.append(f"Deployment/{dname}: readiness must be the gRPC health probe, GET /health/live or GET /health")
            grpc_port = next((p["containerPort"] for p in main["ports"] if p["name"] == "grpc"), None)
            if "grpc" in ready and ready["grpc"].get("port") != grpc_port:
                out.append(f"Deployment/{dname}: gRPC readiness probe is not on the gRPC port")
        elif (ready.get("httpGet") or {}).get("path") != "/health":
            out.append(f"Deployment/{dname}: readiness probe must GET /health")
        port_names = {p["name"] for p in main.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = ((main.get(probe) or {}).get("httpGet") or {}).get("port")
            if port is not None and port not in port_names:
                out.append(f"Deployment/{dname}: {probe} uses unknown port {port}")
        if service:
            expected = SERVICES[service][1]
            got = sorted(p["containerPort"] for p in main.get("ports", []))
            if got != sorted(expected):
                out.append(f"Deployment/{dname}: container ports {got}, expected {sorted(expected)}")
            listen = {k: v.get("value") for k, v in {e["name"]: e for e in main.get("env", [])}.items()
                      if k.endswith("__LISTEN")}
            for k, v in listen.items():
                if not v or int(v.rsplit(":", 1)[1]) not in got:
                    out.append(f"Deployment/{dname}: {k}={v} is not a container port")
        for vol in ps.get("volumes", []):
            if "configMap" in vol and vol["configMap"]["name"] not in names("ConfigMap"):
                out.append(f"Deployment/{dname}: ConfigMap {vol['configMap']['name']} is not rendered")
            if "configMap" in vol:
                cm = next((x for x in by_kind.get("ConfigMap", []) if x["metadata"]["name"] == vol["configMap"]["name"]), None)
                for item in vol["configMap"].get("items", []):
                    if cm and item["key"] not in (cm.get("data") or {}):
                        out.append(f"Deployment/{dname}: ConfigMap {cm['metadata']['name']} has no key {item['key']}")
            if "secret" in vol and vol["secret"]["secretName"] not in names("Secret") | external \
                    and vol["secret"]["secretName"] not in _existing_secrets(scn):
                out.append(f"Deployment/{dname}: Secret {vol['secret']['secretName']} is not rendered")
            if "secret" in vol and vol["secret"]["secretName"] in names("Secret"):
                sec = next(x for x in by_kind["Secret"] if x["metadata"]["name"] == vol["secret"]["secretName"])
                for item in vol["secret"].get("items", []):
                    if item["key"] not in (sec.get("stringData") or {}) and item["key"] not in (sec.get("data") or {}):
                        out.append(f"Deployment/{dname}: Secret {sec['metadata']['name']} has no key {item['key']}")
            if "persistentVolumeClaim" in vol and vol["persistentVolumeClaim"]["claimName"] not in names("PersistentVolumeClaim"):
                out.append(f"Deployment/{dname}: PVC {vol['persistentVolumeClaim']['claimName']} is not rendered")
    # ConfigMaps: the TOML must use only keys the service knows.
    for cm in by_kind.get("ConfigMap", []):
        for key, text in (cm.get("data") or {}).items():
            service = next((s for s, (c, _, _) in SERVICES.items() if cm["metadata"]["name"].startswith(c)), None)
            if service and key.endswith(".toml"):
                out += toml_problems(service, text, f"ConfigMap/{cm['metadata']['name']} {key}")
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector") or {}
        matching = [p for p in pods if _selector_matches(sel, p[1])]
        if not matching:
            out.append(f"Service/{svc['metadata']['name']}: selector matches no pods")
        for port in svc["spec"]["ports"]:
            for pname, _, ps in matching:
                if isinstance(port["targetPort"], str) and port["targetPort"] not in \
                        {p["name"] for p in ps["containers"][0].get("ports", [])}:
                    out.append(f"Service/{svc['metadata']['name']}: targetPort {port['targetPort']} not on {pname}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        if hpa["spec"]["scaleTargetRef"]["name"] not in names("Deployment"):
            out.append(f"HPA/{hpa['metadata']['name']}: target Deployment is not rendered")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            out.append(f"HPA/{hpa['metadata']['name']}: minReplicas > maxReplicas")
        dep = next((d for d in by_kind["Deployment"] if d["metadata"]["name"] == hpa["spec"]["scaleTargetRef"]["name"]), None)
        if dep and "replicas" in dep["spec"]:
            out.append(f"HPA/{hpa['metadata']['name']}: its Deployment must not set replicas")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not any(_selector_matches(pdb["spec"]["selector"]["matchLabels"], p[1]) for p in pods):
            out.append(f"PDB/{pdb['metadata']['name']}: selector matches no pods")
    for sm in by_kind.get("ServiceMonitor", []):
        if not any(_selector_matches(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels") or {})
                   for s in by_kind.get("Service", [])):
            out.append(f"ServiceMonitor/{sm['metadata']['name']}: selects no Service")
    out += network_policy_problems(scn, by_kind, pods)
    out += tls_problems(by_kind)
    out += nats_tls_problems(by_kind)
    out += clickhouse_problems(scn, by_kind)
    return out


# Where the charts mount the TLS Secret, and the variables that name its files.
TLS_DIR = "/etc/moat-tls"
TLS_FILE_VARS = {
    "gateway": ["MOAT_GATEWAY__TLS__CERT", "MOAT_GATEWAY__TLS__KEY", "MOAT_GATEWAY__TLS__CLIENT_CA",
                "MOAT_GATEWAY__STATE__TLS__CA", "MOAT_GATEWAY__STATE__TLS__CERT", "MOAT_GATEWAY__STATE__TLS__KEY"],
    "state": ["MOAT_STATE__TLS__CERT", "MOAT_STATE__TLS__KEY", "MOAT_STATE__TLS__CLIENT_CA"],
}


def tls_problems(by_kind: dict) -> list[str]:
    """The gateway and moat-state refuse to start without a certificate or
    an explicit plaintext: every rendered Deployment must say one, read its
    files from a whole Secret mounted read-only (no subPath, so renewals
    reach the pod), probe and be scraped the way it serves, and call
    moat-state the way moat-state serves."""
    out = []
    mode: dict[str, bool] = {}        # service -> serves TLS
    calls_state_tls = None
    state_host = None                 # host of the gateway's state endpoint
    tls_secrets: dict[str, str] = {}  # service -> mounted TLS Secret
    for dep in by_kind.get("Deployment", []):
        dname = dep["metadata"]["name"]
        service = next((s for s, (c, _, _) in SERVICES.items() if dname.startswith(c)), None)
        if service not in TLS_FILE_VARS:
            continue
        prefix = SERVICES[service][2]
        ps = dep["spec"]["template"]["spec"]
        main = ps["containers"][0]
        env = {e["name"]: e.get("value") for e in main.get("env", [])}
        cert, plain = env.get(f"{prefix}TLS__CERT"), env.get(f"{prefix}TLS__PLAINTEXT") == "true"
        where = f"Deployment/{dname}"
        if not cert and not plain:
            out.append(f"{where}: neither {prefix}TLS__CERT nor {prefix}TLS__PLAINTEXT=true (it refuses to start)")
        if cert and plain:
            out.append(f"{where}: {prefix}TLS__CERT and {prefix}TLS__PLAINTEXT=true together (it refuses to start)")
        if cert and not env.get(f"{prefix}TLS__KEY"):
            out.append(f"{where}: {prefix}TLS__CERT without {prefix}TLS__KEY")
        mode[service] = bool(cert)
        volumes = {v["name"]: v for v in ps.get("volumes", [])}
        for var in TLS_FILE_VARS[service]:
            path = env.get(var)
            if not path:
                continue
            mount = next((m for m in main.get("volumeMounts", [])
                          if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
            secret = (volumes.get(mount["name"]) or {}).get("secret") if mount else None
            if not secret:
                out.append(f"{where}: {var}={path} is not in a mounted Secret")
                continue
            if mount.get("subPath") or mount.get("subPathExpr") or not mount.get("readOnly"):
                out.append(f"{where}: the TLS Secret must be mounted read-only as a whole directory (no subPath, "
                           "or renewals never reach the pod)")
            if secret.get("items"):
                out.append(f"{where}: the TLS Secret volume must not pick items (tls.crt, tls.key, ca.crt all needed)")
            tls_secrets[service] = secret["secretName"]
        allowed = env.get(f"{prefix}TLS__ALLOWED_CLIENTS")
        if allowed is not None:
            try:
                names = json.loads(allowed)
                if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                    raise ValueError
            except ValueError:
                out.append(f"{where}: {prefix}TLS__ALLOWED_CLIENTS={allowed} is not a JSON array of names")
            if not env.get(f"{prefix}TLS__CLIENT_CA"):
                out.append(f"{where}: {prefix}TLS__ALLOWED_CLIENTS needs {prefix}TLS__CLIENT_CA")
        if service == "state" and cert and not env.get(f"{prefix}TLS__CLIENT_CA"):
            out.append(f"{where}: moat-state with TLS must ask for client certificates (only the gateway may call it)")
        if service == "gateway":
            schemes = {p: ((main.get(p) or {}).get("httpGet") or {}).get("scheme", "HTTP")
                       for p in ("startupProbe", "livenessProbe", "readinessProbe")
                       if (main.get(p) or {}).get("httpGet")}
            want = "HTTPS" if cert else "HTTP"
            for probe, scheme in schemes.items():
                if scheme != want:
                    out.append(f"{where}: {probe} uses {scheme} but the HTTP port serves {want}")
            if cert and "grpc" in (main.get("readinessProbe") or {}):
                out.append(f"{where}: the kubelet's gRPC probe cannot speak TLS")
            endpoint = env.get("MOAT_GATEWAY__STATE__ENDPOINT") or ""
            calls_state_tls = bool(env.get("MOAT_GATEWAY__STATE__TLS__CA"))
            state_host = endpoint.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            if endpoint.startswith("https://") != calls_state_tls:
                out.append(f"{where}: MOAT_GATEWAY__STATE__ENDPOINT={endpoint} must be https:// exactly with "
                           "MOAT_GATEWAY__STATE__TLS__CA (the gateway refuses to start otherwise)")
            if bool(env.get("MOAT_GATEWAY__STATE__TLS__CERT")) != bool(env.get("MOAT_GATEWAY__STATE__TLS__KEY")):
                out.append(f"{where}: MOAT_GATEWAY__STATE__TLS__CERT and __KEY go together")
    # Only when the gateway calls the moat-state of this render.
    state_services = {s["metadata"]["name"] for s in by_kind.get("Service", [])
                      if s["metadata"]["name"].startswith(SERVICES["state"][0])}
    if "state" in mode and state_host in state_services and calls_state_tls != mode["state"]:
        out.append(f"the gateway calls moat-state {'with' if calls_state_tls else 'without'} TLS, but moat-state "
                   f"serves {'TLS' if mode['state'] else 'plaintext'}")
    for sm in by_kind.get("ServiceMonitor", []):
        if sm["metadata"]["name"].startswith("moat-gateway") and "gateway" in mode:
            for ep in sm["spec"]["endpoints"]:
                if (ep.get("scheme", "http") == "https") != mode["gateway"]:
                    out.append(f"ServiceMonitor/{sm['metadata']['name']}: scheme {ep.get('scheme', 'http')} but the "
                               f"gateway serves {'TLS' if mode['gateway'] else 'plaintext'}")
                tc = ep.get("tlsConfig") or {}
                if tc.get("insecureSkipVerify"):
                    out.append(f"ServiceMonitor/{sm['metadata']['name']}: insecureSkipVerify defeats TLS")
    nats_secrets = set(_nats_tls_secrets(by_kind).values())
    for c in by_kind.get("Certificate", []):
        spec, cname = c["spec"], f"Certificate/{c['metadata']['name']}"
        if spec["secretName"] in nats_secrets and spec["secretName"] not in tls_secrets.values():
            continue  # a NATS client certificate: nats_tls_problems
        service = next((s for s, (ch, _, _) in SERVICES.items() if c["metadata"]["name"].startswith(ch)), None)
        if service not in tls_secrets or tls_secrets[service] != spec["secretName"]:
            out.append(f"{cname}: writes Secret {spec['secretName']}, which no {service} pod mounts for TLS")
        usages = spec.get("usages") or []
        if "server auth" not in usages:
            out.append(f"{cname}: usages must include server auth")
        if service == "gateway":
            if spec.get("commonName") != "moat-gateway" or "moat-gateway" not in (spec.get("dnsNames") or []):
                out.append(f"{cname}: must name moat-gateway (common name and DNS name): moat-state lets in that name")
            if "client auth" not in usages:
                out.append(f"{cname}: usages must include client auth (the gateway's identity towards moat-state)")
        svc = next((s["metadata"]["name"] for s in by_kind.get("Service", [])
                    if s["metadata"]["name"] == c["metadata"]["name"]), None)
        if svc and svc not in (spec.get("dnsNames") or []):
            out.append(f"{cname}: dnsNames must hold the Service's name {svc}")
    return list(dict.fromkeys(out))


NATS_TLS_DIR = "/etc/moat-nats-tls"


def _mounted_secret(container: dict, volumes: dict, path: str) -> tuple[dict | None, dict | None]:
    """The volume mount and the secret volume a file path of a container lies in."""
    mount = next((m for m in container.get("volumeMounts", [])
                  if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    return mount, ((volumes.get(mount["name"]) or {}).get("secret") if mount else None)


def _nats_tls_secrets(by_kind: dict) -> dict[str, str]:
    """Deployment -> the Secret its NATS client certificate comes from."""
    out = {}
    for dep in by_kind.get("Deployment", []):
        service = next((s for s, (c, _, _) in SERVICES.items() if dep["metadata"]["name"].startswith(c)), None)
        if service not in NATS_SERVICES:
            continue
        ps = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in ps.get("volumes", [])}
        main = ps["containers"][0]
        cert = {e["name"]: e.get("value") for e in main.get("env", [])}.get(f"{SERVICES[service][2]}NATS__TLS__CERT")
        _, secret = _mounted_secret(main, volumes, cert or "")
        if secret:
            out[dep["metadata"]["name"]] = secret["secretName"]
    return out


def nats_tls_problems(by_kind: dict) -> list[str]:
    """NATS client TLS of collector, storage-writer and gateway: the CA,
    certificate and key together, from one whole Secret mounted read-only
    (renewals reach the pod) in every container that has them; a
    cert-manager Certificate writing that Secret names the service's NATS
    user of deploy/nats/users.conf and is for client auth."""
    out = []
    users = nats_users()
    secret_user: dict[str, str] = {}
    for dep in by_kind.get("Deployment", []):
        dname = dep["metadata"]["name"]
        service = next((s for s, (c, _, _) in SERVICES.items() if dname.startswith(c)), None)
        if service not in NATS_SERVICES:
            continue
        prefix = SERVICES[service][2]
        ps = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in ps.get("volumes", [])}
        for c in ps.get("initContainers", []) + ps["containers"]:
            where = f"Deployment/{dname} container {c['name']}"
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            files = {var: env.get(f"{prefix}NATS__TLS__{var}") for var in ("CA", "CERT", "KEY")}
            if not any(files.values()):
                continue
            if not all(files.values()):
                out.append(f"{where}: {prefix}NATS__TLS__CA, __CERT and __KEY go together (a NATS server with "
                           "verify_and_map needs the client certificate)")
            secrets = set()
            for var, path in files.items():
                if not path:
                    continue
                mount, secret = _mounted_secret(c, volumes, path)
                if not secret:
                    out.append(f"{where}: {prefix}NATS__TLS__{var}={path} is not in a mounted Secret")
                    continue
                if not path.startswith(NATS_TLS_DIR + "/"):
                    out.append(f"{where}: {prefix}NATS__TLS__{var}={path} should be under {NATS_TLS_DIR}")
                if mount.get("subPath") or mount.get("subPathExpr") or not mount.get("readOnly") or secret.get("items"):
                    out.append(f"{where}: the NATS TLS Secret must be mounted read-only as a whole directory "
                               "(no subPath, no items)")
                secrets.add(secret["secretName"])
            if len(secrets) > 1:
                out.append(f"{where}: the NATS CA, certificate and key come from different Secrets {sorted(secrets)}")
            for name in secrets:
                secret_user[name] = f"moat-{service}"
            url = env.get(f"{prefix}NATS__URL") or ""
            if c in ps["containers"] and not url.startswith(("nats://", "tls://")):
                out.append(f"{where}: {prefix}NATS__URL={url} must be nats:// (TLS comes from the CA)")
    for c in by_kind.get("Certificate", []):
        spec, cname = c["spec"], f"Certificate/{c['metadata']['name']}"
        user = secret_user.get(spec["secretName"])
        if user is None:
            if c["metadata"]["name"].endswith("-nats"):
                out.append(f"{cname}: writes Secret {spec['secretName']}, which no pod mounts for NATS TLS")
            continue
        if user not in users:
            out.append(f"{cname}: {user} is not a user of {rel(NATS_USERS)}")
        if spec.get("commonName") != user or user not in (spec.get("dnsNames") or []):
            out.append(f"{cname}: must name NATS user {user} (common name and DNS name: verify_and_map maps it)")
        if extra := [n for n in spec.get("dnsNames") or [] if n in users and n != user]:
            out.append(f"{cname}: also names NATS users {extra}: the server would pick one of them")
        if "client auth" not in (spec.get("usages") or []):
            out.append(f"{cname}: usages must include client auth")
    return list(dict.fromkeys(out))


CLICKHOUSE_PASSWORD_DIR = "/etc/moat-clickhouse"


def clickhouse_problems(scn: dict, by_kind: dict) -> list[str]:
    """The ClickHouse password is a file from a Secret mounted read-only,
    never a plain environment value; with `distinct_clickhouse_users` the
    gateway and the storage-writer log in as different users."""
    out = []
    users: dict[str, str] = {}
    for dep in by_kind.get("Deployment", []):
        dname = dep["metadata"]["name"]
        service = next((s for s, (c, _, _) in SERVICES.items() if dname.startswith(c)), None)
        if service not in ("gateway", "storage-writer"):
            continue
        prefix = SERVICES[service][2]
        ps = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in ps.get("volumes", [])}
        for c in ps.get("initContainers", []) + ps["containers"]:
            where = f"Deployment/{dname} container {c['name']}"
            env = {e["name"]: e for e in c.get("env", [])}
            if f"{prefix}CLICKHOUSE__PASSWORD" in env:
                out.append(f"{where}: {prefix}CLICKHOUSE__PASSWORD in the environment; mount it as "
                           f"{prefix}CLICKHOUSE__PASSWORD_FILE")
            users[service] = (env.get(f"{prefix}CLICKHOUSE__USER") or {}).get("value", "")
            path = (env.get(f"{prefix}CLICKHOUSE__PASSWORD_FILE") or {}).get("value")
            if not path:
                continue
            mount, secret = _mounted_secret(c, volumes, path)
            if not secret:
                out.append(f"{where}: {prefix}CLICKHOUSE__PASSWORD_FILE={path} is not in a mounted Secret")
                continue
            if mount.get("subPath") or not mount.get("readOnly"):
                out.append(f"{where}: the ClickHouse password Secret must be mounted read-only, without subPath")
            if os.path.basename(path) not in [i["path"] for i in secret.get("items", [])] and secret.get("items"):
                out.append(f"{where}: {path} is none of the mounted Secret's items")
    if scn.get("distinct_clickhouse_users") and len(users) == 2 and users["gateway"] == users["storage-writer"]:
        out.append(f"the gateway logs in to ClickHouse as the storage-writer's user {users['gateway']}: give it a "
                   "read-only one")
    return out


def _existing_secrets(scn: dict) -> set[str]:
    return set(scn.get("external_secrets", set()))


def _gateway_values(scn: dict) -> dict | None:
    values = merged_values(scn["chart"], scn["values"])
    if scn["chart"] == "moat-gateway":
        return values
    if scn["chart"] == "moat":
        return values["moat-gateway"] if enabled(values, "moat-gateway") else None
    return None


def network_policy_problems(scn: dict, by_kind: dict, pods: list) -> list[str]:
    gv = _gateway_values(scn)
    if gv is None or not gv["networkPolicy"]["enabled"]:
        return []
    out = []
    np_cfg = gv["networkPolicy"]
    strategy_labels = np_cfg["strategies"]["podLabels"]
    policies = by_kind.get("NetworkPolicy", [])
    gw_pod = next((p for p in pods if p[0].startswith("moat-gateway")), None)
    if gw_pod is None:
        return ["networkPolicy.enabled but no gateway Deployment"]
    gw_ports = {p["containerPort"] for p in gw_pod[2]["containers"][0]["ports"]}
    http_port = next(p["containerPort"] for p in gw_pod[2]["containers"][0]["ports"] if p["name"] == "http")
    ingress = [p for p in policies if _selector_matches(p["spec"]["podSelector"].get("matchLabels") or {}, gw_pod[1])]
    if len(ingress) != 1:
        return [f"expected one NetworkPolicy selecting the gateway pods, found {len(ingress)}"]
    pol = ingress[0]["spec"]
    if "Ingress" not in pol.get("policyTypes", []):
        out.append("gateway NetworkPolicy must have policyType Ingress")
    rules = pol.get("ingress") or []
    strat_rules = [r for r in rules if any((f.get("podSelector") or {}).get("matchLabels") == strategy_labels
                                          for f in r.get("from", []))]
    if not strat_rules:
        out.append("gateway NetworkPolicy does not admit strategy pods")
    for r in strat_rules:
        if {p["port"] for p in r.get("ports", [])} - gw_ports:
            out.append("strategy ingress rule names ports the gateway does not listen on")
    metrics_rules = [r for r in rules if any((f.get("namespaceSelector") or {}).get("matchLabels", {}).get(
        "kubernetes.io/metadata.name") == np_cfg["metricsNamespace"] and not f.get("podSelector", {}).get(
        "matchLabels") == strategy_labels for f in r.get("from", []))]
    if np_cfg["allowMetricsScraping"]:
        if not metrics_rules:
            out.append(f"allowMetricsScraping: no ingress rule from namespace {np_cfg['metricsNamespace']}")
        for r in metrics_rules:
            if [p["port"] for p in r.get("ports", [])] != [http_port]:
                out.append("the metrics rule must open only the HTTP (metrics) port")
    elif metrics_rules:
        out.append("metrics scraping is admitted although allowMetricsScraping is false")
    if np_cfg["strategies"]["restrictEgress"]:
        sandbox = [p for p in policies if (p["spec"]["podSelector"].get("matchLabels") or {}) == strategy_labels]
        if len(sandbox) != 1:
            out.append(f"expected one NetworkPolicy selecting strategy pods, found {len(sandbox)}")
        else:
            sp = sandbox[0]["spec"]
            want_ns = np_cfg["strategies"]["namespace"] or "moat"
            if sandbox[0]["metadata"].get("namespace") != want_ns:
                out.append(f"strategy NetworkPolicy must live in namespace {want_ns}")
            if sorted(sp.get("policyTypes", [])) != ["Egress", "Ingress"]:
                out.append("strategy NetworkPolicy must restrict both Ingress and Egress")
            if sp.get("ingress"):
                out.append("strategy pods must accept no ingress")
            for rule in sp.get("egress") or []:
                for to in rule.get("to", []) or [{}]:
                    to_gateway = _selector_matches((to.get("podSelector") or {}).get("matchLabels") or {}, gw_pod[1])
                    to_dns = (to.get("podSelector") or {}).get("matchLabels") == {"k8s-app": "kube-dns"}
                    if not (to_gateway or to_dns):
                        out.append(f"strategy egress rule reaches more than the gateway: {to}")
                    if to_dns and {p["port"] for p in rule.get("ports", [])} != {53}:
                        out.append("strategy DNS egress must be port 53 only")
                    if to_gateway and {p["port"] for p in rule.get("ports", [])} - gw_ports:
                        out.append("strategy egress to the gateway opens ports it does not listen on")
                if not rule.get("to") or not rule.get("ports"):
                    out.append("strategy egress rules must name destinations and ports")
    return out


# ----------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-examples", action="store_true",
                        help="re-render deploy/helm/examples/<scenario>.yaml instead of comparing")
    parser.add_argument("--require-compose", action="store_true",
                        help="fail (not skip) when neither docker-compose nor `docker compose` is installed")
    parser.add_argument("--k8s-versions", default=f"{MIN_K8S},{kv.latest_version()}",
                        help="comma-separated Kubernetes versions to validate against (default: %(default)s)")
    args = parser.parse_args()
    versions = [v.strip() for v in args.k8s_versions.split(",") if v.strip()]
    report = Report()

    print("== Dockerfile")
    report.run(f"{rel(DOCKERFILE)}: SERVICE arg, per-service stages and ports, non-root distroless runtime", check_dockerfile)

    print("== compose")
    cmd = compose_command()
    for files in ([COMPOSE], [COMPOSE, COMPOSE_TLS]):
        shown = " ".join(f"-f {rel(f)}" for f in files)
        if cmd:
            report.run(f"`{' '.join(cmd)} {shown} config` accepts the file{'s' if len(files) > 1 else ''}",
                       lambda files=files: check_compose_config(cmd, files))
        elif args.require_compose:
            report.check(f"docker-compose {shown} config", "neither docker-compose nor `docker compose` is installed")
        else:
            report.skip(f"docker-compose {shown} config", "neither docker-compose nor `docker compose` is installed "
                        "(apt-get install docker-compose)")
    compose = load_yaml(COMPOSE)
    tls_override = load_yaml(COMPOSE_TLS)
    with_tls = compose_merge(compose, tls_override)
    for label, spec in (("compose", compose), ("compose + tls override", with_tls)):
        report.run(f"{label}: moat services (config mount, env keys, build args, no shell healthchecks)",
                   lambda spec=spec: check_compose_services(spec))
        report.run(f"{label}: strategy sandbox (read_only, tmpfs /tmp, cap_drop ALL, no-new-privileges, "
                   "no ports, non-root, internal network shared only with the gateway)",
                   lambda spec=spec: check_compose_sandbox(spec))
    report.run("compose TLS: plaintext said explicitly; the override wires mutual TLS (gateway, gateway -> state, "
               "strategy) from the development CA's files", lambda: check_compose_tls(compose, tls_override, with_tls))
    report.run("compose TLS: NATS from nats.tls.conf (includes nats.conf and deploy/nats/users.conf, verify_and_map), "
               "each service's certificate names its NATS user", lambda: check_compose_nats_tls(compose, with_tls))
    report.run("compose: ClickHouse users from clickhouse/users.d/moat.xml (gateway read-only, writers apart), "
               "passwords from secret files matching their hashes", lambda: check_compose_clickhouse(compose))
    report.run("compose: every mounted file and secret file exists (the development certificates excepted)",
               lambda: check_compose_files([("docker-compose.yml", compose), ("docker-compose.tls.yml", tls_override)]))

    print("== charts")
    for chart in CHARTS:
        report.run(f"{chart}: Chart.yaml, templates and dependencies", lambda chart=chart: check_chart_layout(chart))

    print("== values against values.schema.json (draft-07)")
    for chart in CHARTS:
        report.run(f"{chart}: values.yaml", lambda chart=chart: values_problems(chart, None))
    report.run("moat: examples/production-values.yaml (and each subchart's merged values)",
               lambda: values_problems("moat", load_yaml(os.path.join(EXAMPLES, "production-values.yaml"))))
    for chart, bad, what in MUST_FAIL:
        report.run(f"{chart}: refuses {what}",
                   lambda chart=chart, bad=bad: [] if values_problems(chart, bad) else ["accepted"])

    print(f"== helm lint --strict ({', '.join(versions)})")
    for chart in CHARTS:
        report.run(f"{chart}: helm lint", lambda chart=chart: lint_problems(chart, versions))

    print(f"== rendering (Helm's engine) and Kubernetes schemas ({', '.join(versions)}, strict)")
    os.makedirs(EXAMPLES, exist_ok=True)
    for scn in scenarios():
        name = scn["name"]
        try:
            rendered, notes = render(scn)
            docs = manifests(rendered)
        except (HelmError, ValueError, yaml.YAMLError) as e:
            report.check(f"{name}: renders", str(e))
            continue
        kinds = sorted({d["kind"] for _, d in docs})
        report.check(f"{name}: renders {len(docs)} objects ({', '.join(kinds)}) and NOTES.txt",
                     None if notes.strip() else "NOTES.txt rendered empty")
        report.run(f"{name}: every object valid for Kubernetes {', '.join(versions)}",
                   lambda docs=docs: k8s_problems(docs, versions))
        report.run(f"{name}: selectors, references, probes, security contexts, NetworkPolicies, config keys, TLS",
                   lambda scn=scn, docs=docs: policy_problems(scn, docs))
        path = os.path.join(EXAMPLES, f"{name}.yaml")
        text = example_text(scn, rendered)
        if not scn.get("example", True):
            continue
        if args.write_examples:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            report.check(f"{name}: wrote {rel(path)}", None)
        else:
            def compare(path=path, text=text) -> list[str]:
                if not os.path.exists(path):
                    return [f"{rel(path)} is missing: run python3 deploy/validate.py --write-examples"]
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        return [f"{rel(path)} is out of date: run python3 deploy/validate.py --write-examples"]
                return []
            report.run(f"{name}: {rel(path)} matches the render", compare)

    # The committed example files themselves, as kubernetes-validate reads them.
    def example_files() -> list[str]:
        out = []
        for fname in sorted(os.listdir(EXAMPLES)):
            if fname.endswith(".yaml") and fname != "production-values.yaml":
                docs = [(fname, d) for d in yaml.safe_load_all(open(os.path.join(EXAMPLES, fname))) if d]
                out += k8s_problems(docs, versions)
        return out
    report.run(f"examples/*.yaml: every manifest valid for Kubernetes {', '.join(versions)}", example_files)

    # A template-level guard behind the schema: SQLite with two replicas must not render.
    def sqlite_guard() -> list[str]:
        c = Chart.load(chart_dir("moat-state", without_schema=True))
        try:
            c.render({"replicaCount": 2}, name="moat", namespace="moat")
        except HelmError as e:
            return [] if "SQLite allows one replica" in str(e) else [f"failed for another reason: {e}"]
        return ["rendered"]
    report.run("moat-state: template refuses two SQLite replicas even without the schema", sqlite_guard)

    # Template-level TLS guards: values the schemas accept but that cannot work.
    def refuses(chart: str, values: dict, message: str) -> list[str]:
        try:
            Chart.load(chart_dir(chart, without_schema=True)).render(values, name="moat", namespace="moat")
        except HelmError as e:
            return [] if message in str(e) else [f"failed for another reason: {e}"]
        return ["rendered"]
    for chart, values, message, what in (
        ("moat-gateway", {"probes": {"readinessMode": "grpc"}}, "kubelet's gRPC probe does not speak TLS",
         "the gRPC readiness probe with TLS"),
        ("moat-gateway", {"state": {"tls": True, "endpoint": "http://state:50052"}}, "must be https://",
         "an http:// state endpoint with state.tls"),
        ("moat-gateway", {"tls": {"enabled": False, "clientAuth": True}}, "tls.clientAuth needs tls.enabled",
         "client certificates without TLS"),
        ("moat-gateway", {"tls": {"certManager": {"enabled": True}}}, "issuerRef.name is required",
         "cert-manager without an issuer"),
        ("moat", {"moat-state": {"tls": {"enabled": False}}}, "set both to the same value",
         "umbrella: a plaintext moat-state called with TLS"),
        ("moat", {"moat-gateway": {"state": {"tls": False}}}, "set both to the same value",
         "umbrella: a TLS moat-state called in plaintext"),
        ("moat", {"moat-gateway": {"nats": {"tls": {"enabled": True}}}}, "nats.tls.enabled differs",
         "umbrella: NATS TLS on some services of one NATS server only"),
        ("moat-collector", {"nats": {"tls": {"enabled": True, "certManager": {"enabled": True}}}},
         "nats.tls.certManager.issuerRef.name is required", "a NATS client Certificate without an issuer"),
        ("moat-gateway", {"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "ca"}}},
                          "nats": {"tls": {"enabled": True, "secretName": "moat-gateway-tls",
                                           "certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}}},
         "which tls.certManager already writes", "two Certificates writing the gateway's TLS Secret"),
    ):
        report.run(f"{chart}: template refuses {what}",
                   lambda chart=chart, values=values, message=message: refuses(chart, values, message))

    print()
    skipped = f", {report.skipped} skipped" if report.skipped else ""
    print(f"{report.passed} passed, {report.failed} failed{skipped}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
