#!/usr/bin/env bash
# Checks the files in deploy/ without a container engine: YAML and JSON parse, the systemd unit
# passes `systemd-analyze verify`, the Dockerfile parses, .dockerignore keeps target/ out of the
# build context and everything the build needs in, every TOML configuration (files and the
# Kubernetes ConfigMap) is accepted by `sfu serve --check` with an API key in the environment (and
# refused without one), and the ports that the Dockerfile, compose.yaml, Prometheus and the
# Kubernetes manifests use are the ones the configurations use (metrics on their own port, never
# published). Where the tools are present: `promtool check config` on the Prometheus
# configuration, and a Kubernetes schema check of the manifests (kubernetes-validate, installed
# with pip when it can be, or kubeconform).
#
# Usage: deploy/check.sh [path to the sfu binary]   (default: target/release/sfu, built if missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sfu="${1:-${SFU_BIN:-${CARGO_TARGET_DIR:-target}/release/sfu}}"
if [[ ! -x "$sfu" ]]; then
  cargo build --release -p sfu
fi

if ! python3 -c 'import yaml' 2>/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    apt-get install -y -qq python3-yaml >/dev/null
  else
    python3 -m pip install --quiet pyyaml
  fi
fi
if ! python3 -c 'import dockerfile_parse' 2>/dev/null; then
  python3 -m pip install --quiet dockerfile-parse 2>/dev/null || true
fi

if ! command -v kubernetes-validate >/dev/null && ! command -v kubeconform >/dev/null; then
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null || true
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The systemd unit, with the binary path pointed at the one just built.
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/local/bin/sfu|$(realpath "$sfu")|g" deploy/sfu.service >"$tmp/sfu.service"
  out="$(systemd-analyze verify "$tmp/sfu.service" 2>&1 || true)"
  if [[ -n "$out" ]]; then
    echo "deploy/sfu.service: $out" >&2
    exit 1
  fi
  echo "ok: deploy/sfu.service (systemd-analyze verify)"
fi

if command -v promtool >/dev/null; then
  for prom in deploy/prometheus/*.yml; do
    if out="$(promtool check config "$prom" 2>&1)"; then
      echo "ok: $prom (promtool check config)"
    else
      echo "$prom: $out" >&2
      exit 1
    fi
  done
else
  echo "skipped: promtool check config (no promtool; apt-get install prometheus)"
fi

manifests=(deploy/kubernetes/*.yaml)
if command -v kubernetes-validate >/dev/null; then
  if out="$(kubernetes-validate --strict --quiet "${manifests[@]}" 2>&1)"; then
    echo "ok: deploy/kubernetes (kubernetes-validate --strict)"
  else
    echo "deploy/kubernetes: $out" >&2
    exit 1
  fi
elif command -v kubeconform >/dev/null; then
  if out="$(kubeconform -strict -summary "${manifests[@]}" 2>&1)"; then
    echo "ok: deploy/kubernetes (kubeconform -strict)"
  else
    echo "deploy/kubernetes: $out" >&2
    exit 1
  fi
else
  echo "skipped: Kubernetes schema check (no kubernetes-validate or kubeconform)"
fi

SFU="$sfu" TMP="$tmp" python3 - <<'EOF'
import configparser, glob, json, os, re, subprocess, sys, tomllib
import yaml

failures = []
def fail(msg):
    failures.append(msg)
    print("FAIL:", msg, file=sys.stderr)

sfu, tmp = os.environ["SFU"], os.environ["TMP"]

docs = {}
for path in sorted(glob.glob("deploy/**/*.yaml", recursive=True) + glob.glob("deploy/**/*.yml", recursive=True)):
    try:
        with open(path) as f:
            docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
        print("ok:", path)
    except yaml.YAMLError as e:
        fail(f"{path}: {e}")
for path in sorted(glob.glob("deploy/**/*.json", recursive=True)):
    try:
        with open(path) as f:
            json.load(f)
        print("ok:", path)
    except json.JSONDecodeError as e:
        fail(f"{path}: {e}")

# Without systemd-analyze: at least an INI parse with the three sections.
unit = configparser.ConfigParser(strict=False, interpolation=None)
unit.optionxform = str
unit.read("deploy/sfu.service")
for section in ("Unit", "Service", "Install"):
    if section not in unit:
        fail(f"deploy/sfu.service: no [{section}]")
exec_start = unit["Service"].get("ExecStart", "") if "Service" in unit else ""

# The Dockerfile.
with open("deploy/Dockerfile") as f:
    dockerfile = f.read()
try:
    from dockerfile_parse import DockerfileParser
    parser = DockerfileParser(path=os.path.join(tmp, "Dockerfile"))
    parser.content = dockerfile
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
except ImportError:
    instructions = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "COMMENT"}
for word, _ in instructions:
    if word not in known:
        fail(f"deploy/Dockerfile: unknown instruction {word}")
stages = [v for w, v in instructions if w == "FROM"]
if not instructions or instructions[0][0] not in ("FROM", "ARG", "COMMENT") or len(stages) < 2:
    fail("deploy/Dockerfile: expected a multi-stage build starting with FROM")
if not any(w == "USER" and v not in ("root", "0") for w, v in instructions):
    fail("deploy/Dockerfile: the runtime must not run as root")
for w, v in instructions:
    if w in ("ENTRYPOINT", "CMD") and v.startswith("["):
        json.loads(v)
print("ok: deploy/Dockerfile")

def expand(spec):
    """'50000-50003/udp' -> {(50000,'udp'), ...}"""
    spec = str(spec)
    ports, _, proto = spec.partition("/")
    lo, _, hi = ports.partition("-")
    return {(p, proto or "tcp") for p in range(int(lo), int(hi or lo) + 1)}

def config_ports(cfg):
    """(http port, metrics port or None, media ports)"""
    http = int(cfg.get("http", "0.0.0.0:8080").rsplit(":", 1)[1])
    metrics = int(cfg["metrics"].rsplit(":", 1)[1]) if "metrics" in cfg else None
    first, workers = cfg.get("udp_port", 50000), cfg.get("workers")
    media = set()
    if workers and first:
        for p in range(first, first + workers):
            media.add((p, "udp"))
            if cfg.get("ice_tcp", True):
                media.add((p, "tcp"))
    return http, metrics, media

# Every deployment passes its API key in the environment (compose, the Kubernetes Secret, the
# systemd unit's EnvironmentFile), so the configurations are checked with one, and once without:
# a server that listens on every interface must then refuse to start (development mode is for
# loopback).
CHECK_KEYS = {"SFU_API_KEY": "APIcheck", "SFU_API_SECRET": "a-throwaway-secret-for-checking-configs"}

def check_config(name, text):
    path = os.path.join(tmp, re.sub(r"[^A-Za-z0-9.]", "_", name))
    with open(path, "w") as f:
        f.write(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
    r = subprocess.run([sfu, "serve", "--config", path, "--check"], env=env | CHECK_KEYS,
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{name}: sfu serve --check: {r.stderr.strip() or r.stdout.strip()}")
    else:
        print(f"ok: {name} (sfu serve --check)")
    config = tomllib.loads(text)
    if not config.get("keys") and not config.get("http", "").startswith("127."):
        r = subprocess.run([sfu, "serve", "--config", path, "--check"], env=env,
                           capture_output=True, text=True)
        if r.returncode != 2 or "--dev" not in r.stderr:
            fail(f"{name}: without API keys, sfu serve --check must refuse it: {r.stderr.strip()}")
        else:
            print(f"ok: {name} is refused without API keys")
    return config

configs = {}
for path in sorted(glob.glob("deploy/**/*.toml", recursive=True)):
    with open(path) as f:
        configs[path] = check_config(path, f.read())
cm = next(d for d in docs["deploy/kubernetes/configmap.yaml"] if d["kind"] == "ConfigMap")
k8s_config = check_config("deploy/kubernetes/configmap.yaml", cm["data"]["sfu.toml"])

# The image and compose use deploy/sfu.toml.
http, metrics, media = config_ports(configs["deploy/sfu.toml"])
metrics_ports = {(metrics, "tcp")} if metrics else set()
exposed = set()
for w, v in instructions:
    if w == "EXPOSE":
        for spec in v.split():
            exposed |= expand(spec)
want = {(http, "tcp")} | metrics_ports | media
if exposed != want:
    fail(f"deploy/Dockerfile: EXPOSE {sorted(exposed)} != config ports {sorted(want)}")
if "deploy/sfu.toml" not in dockerfile:
    fail("deploy/Dockerfile does not install deploy/sfu.toml")

compose = docs["deploy/compose.single.yaml"][0]
published = set()
for spec in compose["services"]["sfu"]["ports"]:
    host, _, container = str(spec).rpartition(":")
    published |= expand(container)
if published & metrics_ports:
    fail(f"deploy/compose.single.yaml: the metrics port {metrics} is published; Prometheus reaches it inside")
elif published != {(http, "tcp")} | media:
    fail(f"deploy/compose.single.yaml: sfu ports {sorted(published)} != config ports")
prom = docs["deploy/prometheus/prometheus.single.yml"][0]
targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
if f"sfu:{metrics or http}" not in targets:
    fail(f"deploy/prometheus/prometheus.single.yml: no target sfu:{metrics or http}")

# .dockerignore: the build context is the repository root. Matched the way Docker does for the
# patterns used here (a path or any of its parent folders matches; `**` spans folders).
import fnmatch
with open(".dockerignore") as f:
    ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]
def ignored(path):
    out = False
    for pattern in ignore:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.match(regex, p) for p in prefixes):
            out = not negate
    return out
for path in ["target/release/sfu", ".git/HEAD", "sfu/tests/browser/node_modules/x/index.js",
             "client/node_modules/typescript/package.json"]:
    if not ignored(path):
        fail(f".dockerignore: {path} would be sent to the image build")
for path in ["Cargo.toml", "Cargo.lock", "sfu/Cargo.toml", "sfu/src/main.rs", "sfu/build.rs",
             "signal/src/lib.rs", "signal/static/demo.js", "client/src/sfu-client.js", "loadtest/Cargo.toml",
             "loadtest/src/main.rs", "deploy/sfu.toml"]:
    if ignored(path):
        fail(f".dockerignore: the build needs {path}")
print("ok: .dockerignore")
grafana_path = compose["services"]["grafana"]["volumes"]
if not any("grafana/dashboards" in v for v in grafana_path):
    fail("deploy/compose.single.yaml: the Grafana dashboards are not mounted")
with open("deploy/grafana/dashboards/sfu.json") as f:
    dashboard = f.read()
for metric in re.findall(r"\b(sfu_[a-z_]+)", dashboard):
    base = re.sub(r"_(bucket|count|sum)$", "", metric)
    with open("sfu/src/io/metrics.rs") as f, open("sfu/src/ops.rs") as g, open("sfu/src/io/handle.rs") as h, open("sfu/src/io/process.rs") as p:
        source = f.read() + g.read() + h.read() + p.read()
    if f'"{metric}"' not in source and f'"{base}"' not in source:
        fail(f"deploy/grafana/dashboards/sfu.json: {metric} is not a metric of the server")

# Kubernetes: container ports and probes against the ConfigMap's configuration.
http, metrics, media = config_ports(k8s_config)
metrics_ports = {(metrics, "tcp")} if metrics else set()
deployment = next(d for d in docs["deploy/kubernetes/deployment.yaml"] if d["kind"] == "Deployment")
container = deployment["spec"]["template"]["spec"]["containers"][0]
ports = {(p["containerPort"], p["protocol"].lower()) for p in container["ports"]}
if ports != {(http, "tcp")} | metrics_ports | media:
    fail(f"deploy/kubernetes/deployment.yaml: ports {sorted(ports)} != config ports")
named = {p["name"]: p["containerPort"] for p in container["ports"]}
annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
if annotations.get("prometheus.io/port") != str(metrics or http):
    fail(f"deploy/kubernetes/deployment.yaml: prometheus.io/port must be {metrics or http}")
service = next(d for d in docs["deploy/kubernetes/service.yaml"] if d["kind"] == "Service")
for p in service["spec"]["ports"]:
    if metrics and named.get(p["targetPort"], p["targetPort"]) == metrics:
        fail("deploy/kubernetes/service.yaml: the Service must not expose the metrics port")
for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    get = container[probe]["httpGet"]
    if get["path"] != path or named.get(get["port"], get["port"]) != http:
        fail(f"deploy/kubernetes/deployment.yaml: {probe} must be GET {path} on {http}")
if "requests" not in container.get("resources", {}):
    fail("deploy/kubernetes/deployment.yaml: no resource requests")
grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
drain = k8s_config.get("shutdown", {}).get("drain_timeout", "30s")
if grace <= int(str(drain).rstrip("s")):
    fail("deploy/kubernetes/deployment.yaml: terminationGracePeriodSeconds must exceed the drain")

if failures:
    sys.exit(1)
print("deploy: all checks passed")
EOF
