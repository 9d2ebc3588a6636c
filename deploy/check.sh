#!/usr/bin/env bash
# Checks the files in deploy/ without a container engine: YAML and JSON parse, the systemd unit
# passes `systemd-analyze verify`, the Dockerfile parses, .dockerignore keeps target/ out of the
# build context and everything the build needs in, every TOML configuration (files and the
# Kubernetes ConfigMap) is accepted by `sfu serve --check` with an API key in the environment (and
# refused without one), and the ports that the Dockerfile, the compose files, Prometheus and the
# Kubernetes manifests use are the ones the configurations use (metrics on their own port, never
# published).
#
# The cluster files: compose.yaml is read as compose reads it (merge keys, interpolation with
# sample values) and must have one Redis (redis:7, a healthcheck, not published) and three sfu
# nodes, each passing `sfu serve --check` with its environment, pointing at the Redis service and
# waiting for it to be healthy, with distinct node ids and public URLs (each on the node's
# published HTTP port), the same keys, TURN secret and Redis URL, and media ranges published under
# their own numbers that overlap nothing else on the host (coturn's ports included); each compose
# file's Prometheus scrapes exactly its nodes. In deploy/kubernetes/: one redis:7 workload with a
# readiness probe and one Service leading to its port 6379 (no other Service selecting it), sfu
# pods with hostNetwork, ClusterFirstWithHostNet DNS, one pod per node (a DaemonSet, or required
# anti-affinity on kubernetes.io/hostname), SFU_NODE_ID from the pod name, SFU_ADVERTISE_IP from
# the host IP, SFU_PUBLIC_URL on that IP and the HTTP port, SFU_REDIS_URL naming the Redis
# Service, and the ConfigMap passing `sfu serve --check` with that environment.
#
# Where the tools are present: `promtool check config` on the Prometheus configurations,
# `docker compose config` on the compose files, and a Kubernetes schema check of the manifests
# (kubernetes-validate, installed with pip when it can be, or kubeconform).
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

# Compose itself, where it is installed: the files as compose reads them (anchors, merge keys,
# interpolation, the schema). The checks further down do not need it.
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  for file in deploy/compose.yaml deploy/compose.single.yaml; do
    if out="$(SFU_ADVERTISE_IP=203.0.113.7 SFU_API_KEY=APIcheck \
              SFU_API_SECRET=a-throwaway-secret-for-checking-configs \
              SFU_TURN_SECRET=a-throwaway-turn-secret docker compose -f "$file" config --quiet 2>&1)"; then
      echo "ok: $file (docker compose config)"
    else
      echo "$file: $out" >&2
      exit 1
    fi
  done
else
  echo "skipped: docker compose config (no docker compose)"
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
import configparser, glob, json, os, re, subprocess, sys, tomllib, urllib.parse
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
metrics_single = metrics or http

# compose.yaml: a cluster of sfu nodes and one Redis on one host, every node from the image's
# deploy/sfu.toml with its own settings in the environment. Values are interpolated the way
# compose does (${VAR}, ${VAR:-default}, ${VAR:?error}, nested) with sample values, and each
# node's environment is then checked by the server itself.
class Unset(Exception):
    pass

def interpolate(value, env):
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    out, i, s = [], 0, value
    while i < len(s):
        if s.startswith("$$", i):
            out.append("$")
            i += 2
        elif s.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(s):
                    raise ValueError(f"unclosed ${{ in {s!r}")
                if s.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                if s[j] == "}":
                    depth -= 1
                j += 1
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", s[i + 2:j - 1], re.S)
            if not m:
                raise ValueError(f"cannot interpolate {s[i:j]!r}")
            name, op, arg = m.groups()
            val = env.get(name)
            missing = val is None or (op is not None and op.startswith(":") and val == "")
            if op in (":-", "-"):
                out.append(interpolate(arg, env) if missing else val)
            elif op in (":?", "?"):
                if missing:
                    raise Unset(f"{name}: {interpolate(arg, env)}")
                out.append(val)
            elif op in (":+", "+"):
                out.append("" if missing else interpolate(arg, env))
            else:
                out.append(val or "")
            i = j
        elif (m := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", s[i:])):
            out.append(env.get(m.group(1), ""))
            i += m.end()
        else:
            out.append(s[i])
            i += 1
    return "".join(out)

def port_mappings(where, spec):
    """'8081:8080/tcp' -> [((8081, 'tcp'), (8080, 'tcp'))]; host None when not published."""
    if isinstance(spec, dict):
        proto = spec.get("protocol", "tcp")
        spec = f"{spec.get('published', '')}:{spec['target']}/{proto}".lstrip(":")
    ports, _, proto = str(spec).partition("/")
    proto = proto or "tcp"
    parts = ports.split(":")
    def span(r):
        lo, _, hi = r.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))
    container = span(parts[-1])
    host = span(parts[-2]) if len(parts) >= 2 and parts[-2] else [None] * len(container)
    if len(host) != len(container):
        fail(f"{where}: {spec}: the host and container ranges differ in length")
        return []
    return [((h, proto), (c, proto)) for h, c in zip(host, container)]

def fmt(ports):
    """{(50000,'udp'), (50001,'udp'), (8080,'tcp')} -> '8080/tcp, 50000-50001/udp'"""
    out = []
    for proto in ("tcp", "udp"):
        nums = sorted(p for p, pr in ports if pr == proto)
        while nums:
            lo = hi = nums.pop(0)
            while nums and nums[0] == hi + 1:
                hi = nums.pop(0)
            out.append(f"{lo}/{proto}" if lo == hi else f"{lo}-{hi}/{proto}")
    return ", ".join(out) or "none"

def seconds(text):
    """'40s', '1m30s', '1h 30m', '500ms' or a number of seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?", str(text))
    unit = {"ms": 0.001, "h": 3600, "m": 60, "s": 1, "": 1}
    return sum(float(n) * unit[u] for n, u in parts)

def node_config(cfg, env):
    """deploy/sfu.toml as the environment overrides it (the keys that decide ports)."""
    cfg = dict(cfg)
    for var, key, conv in (("SFU_HTTP", "http", str), ("SFU_METRICS", "metrics", str),
                           ("SFU_UDP_PORT", "udp_port", int), ("SFU_WORKERS", "workers", int),
                           ("SFU_ICE_TCP", "ice_tcp", lambda v: v == "true")):
        if var in env:
            cfg[key] = conv(env[var])
    return cfg

def run_check(name, env):
    """sfu serve --check with the image's configuration and this environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
    r = subprocess.run([sfu, "serve", "--config", "deploy/sfu.toml", "--check"],
                       env=base | env, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{name}: sfu serve --check: {r.stderr.strip() or r.stdout.strip()}")
    else:
        print(f"ok: {name} (sfu serve --check)")

# coturn runs with the host's network: its ports are taken on the host.
turn = {}
with open("deploy/coturn/turnserver.conf") as f:
    for line in f:
        key, _, value = line.strip().partition("=")
        if value and not key.startswith("#"):
            turn[key] = value
coturn_ports = {(int(turn.get("listening-port", 3478)), p) for p in ("udp", "tcp")}
coturn_ports |= {(int(turn.get("tls-listening-port", 5349)), p) for p in ("udp", "tcp")}
coturn_ports |= {(p, "udp") for p in range(int(turn.get("min-port", 49152)),
                                           int(turn.get("max-port", 65535)) + 1)}

C = "deploy/compose.yaml"
SAMPLE = {"SFU_ADVERTISE_IP": "203.0.113.7", "SFU_API_KEY": "APIcheck",
          "SFU_API_SECRET": "a-throwaway-secret-for-checking-configs",
          "SFU_TURN_SECRET": "a-throwaway-turn-secret"}
raw = docs[C][0]
# Every one of these must be demanded (${VAR:?...}): a cluster started without them would run
# with an empty key or advertise no usable address.
for var in SAMPLE:
    try:
        interpolate(raw, {k: v for k, v in SAMPLE.items() if k != var})
        fail(f"{C}: starts without {var}; it must be required (${{{var}:?...}})")
    except Unset:
        pass
cluster = interpolate(raw, SAMPLE)
services = cluster["services"]
redis_names = [n for n, s in services.items() if re.match(r"(docker\.io/(library/)?)?redis:", str(s.get("image", "")))]
sfu_names = sorted(n for n, s in services.items() if s.get("image") == "sfu:latest"
                   or "deploy/Dockerfile" in str(s.get("build", "")))
if len(redis_names) != 1:
    fail(f"{C}: expected one redis service, found {redis_names}")
else:
    redis_name = redis_names[0]
    redis = services[redis_name]
    if not str(redis["image"]).split(":", 1)[1].startswith("7"):
        fail(f"{C}: {redis_name}: expected the official redis:7 image, not {redis['image']}")
    if not redis.get("healthcheck", {}).get("test"):
        fail(f"{C}: {redis_name} has no healthcheck")
    if redis.get("ports"):
        fail(f"{C}: {redis_name} publishes ports; it has no password and only the nodes use it")
if len(sfu_names) != 3:
    fail(f"{C}: expected three sfu services, found {sfu_names}")

sfu_cfg = configs["deploy/sfu.toml"]
drain = seconds(sfu_cfg.get("shutdown", {}).get("drain_timeout", "30s"))
shared = ("SFU_API_KEY", "SFU_API_SECRET", "SFU_TURN_SECRET", "SFU_TURN_URLS", "SFU_REDIS_URL",
          "SFU_ADVERTISE_IP")
nodes = {}
for name in sfu_names:
    svc, where = services[name], f"{C}: {name}"
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    env = {k: str(v) for k, v in env.items()}
    if "SFU_CONFIG" in env or any("/etc/sfu" in str(v) for v in svc.get("volumes", [])):
        fail(f"{where}: replaces the image's configuration; these checks read deploy/sfu.toml")
    for var in ("SFU_REDIS_URL", "SFU_NODE_ID", "SFU_PUBLIC_URL", "SFU_ADVERTISE_IP",
                "SFU_API_KEY", "SFU_API_SECRET"):
        if not env.get(var):
            fail(f"{where}: no {var}")
    run_check(where, env)
    redis_url = urllib.parse.urlparse(env.get("SFU_REDIS_URL", ""))
    if redis_names and (redis_url.hostname != redis_names[0] or (redis_url.port or 6379) != 6379):
        fail(f"{where}: SFU_REDIS_URL {redis_url.geturl()!r} is not the {redis_names[0]} service")
    depends = svc.get("depends_on", {})
    if redis_names and (not isinstance(depends, dict)
                        or depends.get(redis_names[0], {}).get("condition") != "service_healthy"):
        fail(f"{where}: must depend on {redis_names[0]} with condition service_healthy")
    if seconds(svc.get("stop_grace_period", "10s")) <= drain:
        fail(f"{where}: stop_grace_period must exceed the drain ({drain} s)")
    http, metrics, media = config_ports(node_config(sfu_cfg, env))
    if not media:
        fail(f"{where}: workers is not set, so the media ports are not known")
    maps = [m for spec in svc.get("ports", []) for m in port_mappings(where, spec)]
    container = {c for _, c in maps}
    if metrics and (metrics, "tcp") in container:
        fail(f"{where}: the metrics port {metrics} is published; Prometheus reaches it inside")
    if container != {(http, "tcp")} | media:
        fail(f"{where}: publishes container ports {fmt(container)}, but its configuration "
             f"uses {fmt({(http, 'tcp')} | media)}")
    moved = {c for h, c in maps if c in media and h != c}
    if moved:
        fail(f"{where}: media ports {fmt(moved)} are published under other numbers; a node "
             "advertises the port it binds")
    http_host = [h for h, c in maps if c == (http, "tcp")]
    public = urllib.parse.urlparse(env.get("SFU_PUBLIC_URL", ""))
    if not http_host or not http_host[0][0]:
        fail(f"{where}: the HTTP port {http} is not published")
    elif public.port != http_host[0][0]:
        fail(f"{where}: SFU_PUBLIC_URL {public.geturl()!r} is not on the published HTTP port "
             f"{http_host[0][0]}")
    if public.hostname != SAMPLE["SFU_ADVERTISE_IP"]:
        fail(f"{where}: SFU_PUBLIC_URL {public.geturl()!r} does not default to the host's address "
             "(SFU_ADVERTISE_IP)")
    nodes[name] = {"env": env, "metrics": metrics or http, "media": media,
                   "host": {h for h, _ in maps if h[0]}}

def distinct(what, values):
    seen = {}
    for name, v in values.items():
        if v in seen:
            fail(f"{C}: {name} and {seen[v]} have the same {what} {v!r}")
        seen.setdefault(v, name)
distinct("SFU_NODE_ID", {n: x["env"].get("SFU_NODE_ID") for n, x in nodes.items()})
distinct("SFU_PUBLIC_URL", {n: x["env"].get("SFU_PUBLIC_URL") for n, x in nodes.items()})
for var in shared:
    if len({x["env"].get(var) for x in nodes.values()}) > 1:
        fail(f"{C}: the nodes differ in {var}; every node needs the same")
# No host port twice: not between nodes (media ranges, HTTP), nor with the other services or
# coturn's ports on the host network.
taken, clashes = {}, {}
for name, svc in services.items():
    ports = nodes[name]["host"] if name in nodes else {
        h for spec in svc.get("ports", []) for h, _ in port_mappings(f"{C}: {name}", spec) if h[0]}
    if svc.get("network_mode") == "host" and "coturn" in str(svc.get("image", "")):
        ports = coturn_ports
    for p in ports:
        if p in taken and taken[p] != name:
            clashes.setdefault((taken[p], name), set()).add(p)
        taken.setdefault(p, name)
for (a, b), ports in clashes.items():
    fail(f"{C}: {a} and {b} both take host ports {fmt(ports)}")
print(f"ok: {C} ({len(nodes)} nodes: distinct ids, HTTP and media ports; one Redis)")

# Each compose file mounts its own Prometheus configuration, which scrapes each of its nodes'
# metrics address and nothing else.
for path, prom_nodes in ((C, {n: x["metrics"] for n, x in nodes.items()}),
                         ("deploy/compose.single.yaml", {"sfu": metrics_single})):
    services_ = docs[path][0]["services"]
    mounts = [str(v).split(":") for v in services_["prometheus"].get("volumes", [])]
    prom_file = next((os.path.normpath(os.path.join("deploy", m[0])) for m in mounts
                      if len(m) > 1 and m[1] == "/etc/prometheus/prometheus.yml"), None)
    if prom_file not in docs:
        fail(f"{path}: Prometheus does not mount a configuration from deploy/prometheus")
        continue
    prom = docs[prom_file][0]
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]}
    want = {f"{n}:{p}" for n, p in prom_nodes.items()}
    if targets != want:
        fail(f"{prom_file}: targets {sorted(targets)} != the metrics of {path}'s nodes {sorted(want)}")
    else:
        print(f"ok: {prom_file} scrapes {', '.join(sorted(want))}")
    if not any("grafana/dashboards" in str(v) for v in services_["grafana"].get("volumes", [])):
        fail(f"{path}: the Grafana dashboards are not mounted")

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
deployment = next(d for d in docs["deploy/kubernetes/deployment.yaml"]
                  if d["kind"] in ("Deployment", "DaemonSet"))
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
if grace <= seconds(drain):
    fail("deploy/kubernetes/deployment.yaml: terminationGracePeriodSeconds must exceed the drain")

# Kubernetes as a cluster: a Redis with its Service, and every sfu pod one node of the cluster,
# with its own id and public URL from the downward API, one per Kubernetes node.
K = "deploy/kubernetes/deployment.yaml"
objects = [(path, d) for path, ds in docs.items() if path.startswith("deploy/kubernetes/")
           for d in ds if isinstance(d, dict) and "kind" in d]
workloads = [(path, d) for path, d in objects if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
services_k8s = [(path, d) for path, d in objects if d["kind"] == "Service"]

def selects(selector, labels):
    """Whether a label selector (matchLabels/matchExpressions, or a Service's plain map) selects
    these labels."""
    if not selector:
        return False
    match = selector.get("matchLabels", {}) if ("matchLabels" in selector or
                                                "matchExpressions" in selector) else selector
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in selector.get("matchExpressions", []) if "matchExpressions" in selector else []:
        has, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": has and value in e.get("values", []),
              "NotIn": not has or value not in e.get("values", []),
              "Exists": has, "DoesNotExist": not has}[e["operator"]]
        if not ok:
            return False
    return True

pod = deployment["spec"]["template"]
pod_spec, pod_labels = pod["spec"], pod["metadata"].get("labels", {})
redis_workloads = [(p, d) for p, d in workloads
                   if any(re.match(r"(docker\.io/(library/)?)?redis:7", str(c.get("image", "")))
                          for c in d["spec"]["template"]["spec"]["containers"])]
redis_service = None
if len(redis_workloads) != 1:
    fail(f"deploy/kubernetes: expected one workload running redis:7, found {len(redis_workloads)}")
else:
    rpath, redis_wl = redis_workloads[0]
    rtemplate = redis_wl["spec"]["template"]
    rlabels = rtemplate["metadata"].get("labels", {})
    rcontainer = next(c for c in rtemplate["spec"]["containers"] if "redis" in c["image"])
    if "readinessProbe" not in rcontainer:
        fail(f"{rpath}: the redis container has no readinessProbe")
    rports = {p.get("name"): p["containerPort"] for p in rcontainer.get("ports", [])}
    chosen = [(path, svc) for path, svc in services_k8s if selects(svc["spec"].get("selector"), rlabels)]
    to_redis = [(path, svc) for path, svc in chosen
                if any(rports.get(p.get("targetPort"), p.get("targetPort", p["port"])) == 6379
                       for p in svc["spec"]["ports"])]
    if not chosen:
        fail(f"{rpath}: no Service selects the redis pods")
    else:
        rsvc_path, redis_service = (to_redis or chosen)[0]
    # The sfu Service and the sfu workload's selector must not take Redis in.
    for path, svc in chosen:
        if svc is not redis_service:
            fail(f"{path}: Service {svc['metadata']['name']} also selects the redis pods")
    if selects(deployment["spec"].get("selector"), rlabels):
        fail(f"{K}: its selector also selects the redis pods")

# The sfu pods: host network, cluster DNS, one per node.
if pod_spec.get("hostNetwork") is not True:
    fail(f"{K}: hostNetwork must be true (media ports of every pod reachable by clients)")
if pod_spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
    fail(f"{K}: dnsPolicy must be ClusterFirstWithHostNet, or the pods cannot resolve the Redis Service")
if deployment["kind"] != "DaemonSet":
    terms = (pod_spec.get("affinity", {}).get("podAntiAffinity", {})
             .get("requiredDuringSchedulingIgnoredDuringExecution", []))
    if not any(t.get("topologyKey") == "kubernetes.io/hostname"
               and selects(t.get("labelSelector"), pod_labels) for t in terms):
        fail(f"{K}: no required pod anti-affinity on kubernetes.io/hostname selecting its own pods "
             "(one pod per node: hostNetwork ports)")

# The environment, as Kubernetes builds it: the downward API with sample values, Secrets with the
# check keys, $(VAR) expanded from the variables defined before it (later or unknown ones stay
# as they are, which the server would then take literally).
SAMPLE_FIELDS = {"metadata.name": "sfu-6d9f7b8c5d-x7k2q", "status.hostIP": "10.0.0.11",
                 "status.podIP": "10.0.0.11", "spec.nodeName": "node-1"}
SAMPLE_SECRETS = {"api-key": CHECK_KEYS["SFU_API_KEY"], "api-secret": CHECK_KEYS["SFU_API_SECRET"]}
k8s_env, sources = {}, {}
for e in container.get("env", []):
    name = e["name"]
    if "value" in e:
        value = e["value"]
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
            if ref not in k8s_env:
                fail(f"{K}: {name} uses $({ref}), which is not defined before it")
        value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                       lambda m: k8s_env.get(m.group(1), m.group(0)), value)
        sources[name] = ("value", e["value"])
    elif "fieldRef" in e.get("valueFrom", {}):
        field = e["valueFrom"]["fieldRef"]["fieldPath"]
        value = SAMPLE_FIELDS.get(field, "")
        sources[name] = ("field", field)
    elif "secretKeyRef" in e.get("valueFrom", {}):
        value = SAMPLE_SECRETS.get(e["valueFrom"]["secretKeyRef"]["key"], "")
        sources[name] = ("secret", e["valueFrom"]["secretKeyRef"]["key"])
    else:
        value = ""
        sources[name] = ("other", None)
    k8s_env[name] = value
if sources.get("SFU_NODE_ID") != ("field", "metadata.name"):
    fail(f"{K}: SFU_NODE_ID must come from the pod name (fieldRef metadata.name)")
if sources.get("SFU_ADVERTISE_IP", ("",))[0] != "field" or sources["SFU_ADVERTISE_IP"][1] not in ("status.hostIP", "status.podIP"):
    fail(f"{K}: SFU_ADVERTISE_IP must come from status.hostIP (or status.podIP)")
public = urllib.parse.urlparse(k8s_env.get("SFU_PUBLIC_URL", ""))
if public.scheme not in ("http", "https"):
    fail(f"{K}: no SFU_PUBLIC_URL with http:// or https://")
elif public.scheme == "http" and (public.hostname != SAMPLE_FIELDS["status.hostIP"] or public.port != http):
    fail(f"{K}: SFU_PUBLIC_URL {sources['SFU_PUBLIC_URL'][1]!r} must be the pod's host IP "
         f"(from the downward API) and the HTTP port {http}")
redis_url = urllib.parse.urlparse(k8s_env.get("SFU_REDIS_URL", ""))
if redis_service is not None:
    rname = redis_service["metadata"]["name"]
    port = next((p for p in redis_service["spec"]["ports"]
                 if p["port"] == (redis_url.port or 6379)), None)
    if not redis_url.hostname or not (redis_url.hostname == rname
                                      or redis_url.hostname.startswith(rname + ".")):
        fail(f"{K}: SFU_REDIS_URL {k8s_env.get('SFU_REDIS_URL')!r} is not the {rname} Service")
    elif port is None:
        fail(f"{K}: SFU_REDIS_URL's port is not a port of the {rname} Service")
    elif rports.get(port.get("targetPort"), port.get("targetPort", port["port"])) != 6379:
        fail(f"{rsvc_path}: the {rname} Service does not lead to Redis's port 6379")
k8s_path = os.path.join(tmp, "k8s-sfu.toml")
with open(k8s_path, "w") as f:
    f.write(cm["data"]["sfu.toml"])
base = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
r = subprocess.run([sfu, "serve", "--config", k8s_path, "--check"], env=base | k8s_env,
                   capture_output=True, text=True)
if r.returncode != 0:
    fail(f"{K}: the ConfigMap with the pod's environment: sfu serve --check: {r.stderr.strip()}")
else:
    print(f"ok: {K} (the ConfigMap with the pod's environment: sfu serve --check)")
print("ok: deploy/kubernetes (Redis and its Service; node id, public URL and Redis URL per pod; "
      "hostNetwork, one pod per node)")

if failures:
    sys.exit(1)
print("deploy: all checks passed")
EOF
