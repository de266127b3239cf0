"""Static checks of everything ops apply: the Dockerfile, the entry point, the compose file, the
Kubernetes manifests, Prometheus' configuration, alert rules and their unit tests, and the
Grafana dashboard. There is no Docker engine or cluster here; these are what can be checked."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from server.observe import metrics
from tests.ops.tools import ROOT, run, tool

K8S = ROOT / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
MONITORING = ROOT / "monitoring"


def _ok(result) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _kustomized() -> list[dict]:
    result = run(tool("kubectl"), "kustomize", str(K8S))
    _ok(result)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_kubernetes(manifest: Path) -> None:
    _ok(run(tool("kubernetes-validate"), "--strict", str(manifest)))


def test_the_kustomization_builds_into_valid_kubernetes(tmp_path: Path) -> None:
    built = tmp_path / "built.yaml"
    built.write_text(yaml.safe_dump_all(_kustomized()))
    _ok(run(tool("kubernetes-validate"), "--strict", str(built)))


def test_checkov_passes_on_k8s_and_the_dockerfile() -> None:
    for target in (("-d", "k8s"), ("-f", "Dockerfile")):
        result = run(tool("checkov"), "--config-file", ".checkov.yaml", *target)
        _ok(result)
        assert "Failed checks: 0" in result.stdout


def test_every_checkov_skip_says_why() -> None:
    config = (ROOT / ".checkov.yaml").read_text().splitlines()
    for number, line in enumerate(config):
        if line.strip().startswith("- CKV"):
            assert config[number - 1].strip().startswith("#"), f"skip without a reason: {line.strip()}"
    for path in K8S.rglob("*.yaml"):
        for match in re.finditer(r"checkov(?:\.io/skip\d+:|:skip=)\s*(CKV_\w+)[=:]\s*(.*)", path.read_text()):
            assert len(match.group(2).strip()) > 10, f"{path.name}: {match.group(1)} skipped without a reason"


def test_hadolint_passes() -> None:
    _ok(run(tool("hadolint"), "Dockerfile"))


def test_shellcheck_passes_on_the_entrypoint() -> None:
    _ok(run(tool("shellcheck"), "docker-entrypoint.sh"))


def test_the_compose_file_is_valid_and_wires_the_stack() -> None:
    result = run(
        tool("docker-compose"), "--env-file", ".env.example", "-f", "docker-compose.mlflow.yml", "config"
    )
    _ok(result)
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"postgres", "mlflow", "trainer", "api", "prometheus", "grafana"}
    assert services["api"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert services["mlflow"]["environment"]["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"
    assert services["api"]["environment"]["MODEL_URI"] == "models:/breast-cancer-classifier@champion"
    assert all("healthcheck" in services[name] for name in ("postgres", "mlflow", "api"))
    # The prediction log: a `predictions` database on the same PostgreSQL, created at its first start.
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["environment"]["PREDICTION_LOG_URL"].startswith("postgresql+psycopg://mlflow:")
    assert services["api"]["environment"]["PREDICTION_LOG_URL"].endswith("@postgres:5432/predictions")
    mounts = [v.split(":") for v in services["postgres"]["volumes"]]  # source:target:mode
    init = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert [m[2] for m in init] == ["ro"]
    assert "CREATE DATABASE predictions;" in Path(init[0][0]).read_text()


def test_compose_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run(
        tool("docker-compose"), "--env-file", str(empty), "-f", "docker-compose.mlflow.yml", "config"
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_no_secret_is_written_into_the_compose_file() -> None:
    text = (ROOT / "docker-compose.mlflow.yml").read_text()
    assert "change-me" not in text
    assert re.search(r"^\s+\w*(PASSWORD|SECRET):\s+(?!\$\{)\S", text, flags=re.MULTILINE) is None


def test_prometheus_config_rules_and_rule_tests() -> None:
    _ok(run(tool("promtool"), "check", "config", "prometheus.yml", cwd=MONITORING))
    _ok(run(tool("promtool"), "check", "rules", "alerts.yml", cwd=MONITORING))
    result = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=MONITORING)
    _ok(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_alert_rules_cover_what_ops_asked_for() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "ApiDown",
        "HighErrorRatio",
        "HighLatencyP95",
        "ModelNotLoaded",
        "ModelReloadFailures",
    }


def _exported_names() -> set[str]:
    names = set()
    for collector in vars(metrics).values():
        describe = getattr(collector, "describe", None)
        if callable(describe) and hasattr(collector, "_name"):
            for family in describe():
                names |= {
                    family.name,
                    f"{family.name}_total",
                    f"{family.name}_bucket",
                    f"{family.name}_count",
                }
    return names | {"api_uptime_seconds", "up"}


def _metric_names(expression: str) -> set[str]:
    words = set(
        re.findall(
            r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", expression)
        )
    )
    keywords = {
        "sum",
        "by",
        "le",
        "rate",
        "increase",
        "histogram_quantile",
        "min",
        "max",
        "or",
        "absent",
        "and",
        "class",
        "endpoint",
        "kind",
        "outcome",
        "name",
        "version",
        "alias",
        "run_id",
        "reason",
        "variant",
        "on",
        "group_left",
    }
    return {w for w in words if w not in keywords and "_" in w}


DASHBOARD = MONITORING / "grafana" / "dashboards" / "model-server.json"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _all_panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside a collapsed row included."""
    return [q for p in dashboard["panels"] for q in (p, *p.get("panels", []))]


def _queries(panels: list[dict]) -> list[str]:
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def _row(dashboard: dict, title: str) -> list[dict]:
    """The panels of a row: inside it when collapsed, else the ones after it up to the next row."""
    panels = dashboard["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title)
    if panels[start].get("collapsed"):
        return panels[start]["panels"]
    end = next((i for i in range(start + 1, len(panels)) if panels[i]["type"] == "row"), len(panels))
    return panels[start + 1 : end]


def test_alerts_and_dashboard_query_metrics_the_server_exports() -> None:
    exported = _exported_names()
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    expressions = [r["expr"] for r in rules] + _queries(_all_panels(_dashboard()))
    for expression in expressions:
        unknown = _metric_names(expression) - exported
        assert not unknown, f"{expression!r} uses {unknown}, which the server does not export"


def test_dashboard_has_the_panels_ops_asked_for() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] == "MLflow & Model Server Monitoring"
    queries = " ".join(_queries(_all_panels(dashboard)))
    for needle in (
        "rate(prediction_requests_total",
        "prediction_requests_failed_total",
        "histogram_quantile(0.50",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "predictions_total",
        "batch_size_bucket",
        "model_info",
        "api_uptime_seconds",
    ):
        assert needle in queries


def test_dashboard_compares_champion_and_challenger() -> None:
    dashboard = _dashboard()
    row = _row(dashboard, "Champion vs challenger")
    by_title = {p["title"]: " ".join(_queries([p])) for p in row}
    expected = {
        "Requests/s by variant": ['sum by (variant) (rate(prediction_requests_total{variant!="none"}[5m]))'],
        "Error ratio by variant": ["prediction_requests_failed_total", "prediction_requests_total"],
        "Latency p50 / p99 by variant": [
            "histogram_quantile(0.50, sum by (le, variant) (rate(prediction_latency_seconds_bucket",
            "histogram_quantile(0.99, sum by (le, variant) (rate(prediction_latency_seconds_bucket",
        ],
        "Predicted-class share by variant": [
            "sum by (variant, class) (rate(predictions_total[5m])) / on (variant) group_left"
        ],
        "Served version by variant": ["model_info", "variant", "version"],
        "Challenger traffic": ["challenger_traffic_percent"],
        "Shadow agreement": [
            'sum(rate(shadow_agreement_total{outcome="same_class"}[5m]))',
            "/ sum(rate(shadow_agreement_total[5m]))",
        ],
        "Shadow probability difference p90": [
            "histogram_quantile(0.90, sum by (le, version) (rate(shadow_probability_difference_bucket[5m])))"
        ],
        "Shadow drops/s": ['sum(rate(shadow_requests_total{outcome="dropped"}[5m]))'],
    }
    for title, needles in expected.items():
        assert title in by_title, f"no {title!r} panel in the champion vs challenger row"
        for needle in needles:
            assert needle in by_title[title], (title, needle)
    # Above the row, a challenger neither counts as the model served nor, in shadow mode, as an
    # answer: its rows count only while it takes a share of the traffic.
    overview = {
        p["title"]: " ".join(_queries([p]))
        for p in itertools.takewhile(lambda p: p["type"] != "row", dashboard["panels"])
    }
    assert 'model_info{variant!="challenger"}' in overview["Model version served"]
    assert "challenger_traffic_percent" in overview["Predictions by class"]


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    dashboard = _dashboard()
    ids = [p["id"] for p in _all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    collapsed = [p["panels"] for p in dashboard["panels"] if p.get("collapsed")]
    for layer in (dashboard["panels"], *collapsed):  # a collapsed row's panels lie where it opens
        cells: dict[tuple[int, int], str] = {}
        for panel in layer:
            grid = panel["gridPos"]
            assert grid["w"] > 0, panel["title"]
            assert grid["h"] > 0, panel["title"]
            assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    other = cells.setdefault((x, y), panel["title"])
                    assert other == panel["title"], f"{panel['title']!r} overlaps {other!r} at {(x, y)}"
    for panel in _all_panels(dashboard):
        # tests/ops/test_topology.py evaluates every panel's targets, a row's (none) included.
        assert "targets" in panel, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == PROMETHEUS, panel["title"]
            assert all(t["datasource"] == PROMETHEUS for t in panel["targets"]), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_grafana_reads_its_password_from_the_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.mlflow.yml").read_text())
    assert compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


@pytest.mark.parametrize(("given", "expected"), [(None, "0.0.0.0"), ("10.1.2.3", "10.1.2.3")])
def test_the_entry_point_serves_on_every_interface_of_the_container(
    tmp_path: Path, given: str | None, expected: str
) -> None:
    """The server alone binds 127.0.0.1; in a container that would be out of reach of the port
    mapping and the probes, so the entry point's api mode defaults API_HOST to 0.0.0.0."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf %s "$API_HOST"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", **({"API_HOST": given} if given else {})}
    result = subprocess.run(
        ["sh", str(ROOT / "docker-entrypoint.sh"), "api"], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout == expected


def test_the_shipped_apis_run_as_production_with_authentication() -> None:
    """docs/security.md: authentication is on in the compose and Kubernetes examples, which run as
    production (so the published placeholders stop them), with the keys file mounted read-only."""
    api = yaml.safe_load((ROOT / "docker-compose.mlflow.yml").read_text())["services"]["api"]["environment"]
    assert api["AUTH_ENABLED"] == "true"
    assert api["ENVIRONMENT"] == "${ENVIRONMENT:-production}"
    documents = _kustomized()
    config = _kind(documents, "ConfigMap", "registry-serve-config")["data"]
    assert (config["AUTH_ENABLED"], config["ENVIRONMENT"]) == ("true", "production")
    pod = _kind(documents, "Deployment", "registry-serve-api")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/api-keys" == config["API_KEYS_FILE"]


def test_services_without_authentication_are_published_on_loopback_only() -> None:
    """MLflow's server and Prometheus check no credentials: on every interface, anyone who can reach
    the host could register and promote a model (code the API then runs) or read every metric."""
    services = yaml.safe_load((ROOT / "docker-compose.mlflow.yml").read_text())["services"]
    for name in ("mlflow", "prometheus"):
        ports = services[name]["ports"]
        assert ports, name
        assert all(str(port).startswith("127.0.0.1:") for port in ports), (name, ports)


def _kind(documents: list[dict], kind: str, name: str) -> dict:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_api_deployment_is_hardened_and_probed() -> None:
    documents = _kustomized()
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {"mlflow-prod"}
    deployment = _kind(documents, "Deployment", "registry-serve-api")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert {"requests", "limits"} <= set(container["resources"])
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    service = _kind(documents, "Service", "fastapi-service")
    assert service["spec"]["ports"][0]["port"] == 8000
    hpa = _kind(documents, "HorizontalPodAutoscaler", "registry-serve-api")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert _kind(documents, "PodDisruptionBudget", "registry-serve-api")["spec"]["minAvailable"] == 1


def test_network_policies_confine_each_service() -> None:
    documents = _kustomized()
    policies = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny-all"]["podSelector"] == {}
    api_sources = policies["registry-serve-api"]["ingress"][0]["from"]
    namespaces = {
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for s in api_sources
        if "namespaceSelector" in s
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    api_egress = policies["registry-serve-api"]["egress"]
    assert [rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in api_egress] == [
        "mlflow",
        "postgres",  # the prediction log's database
    ]
    assert api_egress[1]["ports"] == [{"protocol": "TCP", "port": 5432}]
    postgres_sources = {
        s["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for s in policies["postgres"]["ingress"][0]["from"]
    }
    assert postgres_sources == {"mlflow", "registry-serve-api"}
    mlflow_sources = {
        s["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for s in policies["mlflow"]["ingress"][0]["from"]
    }
    assert mlflow_sources == {"registry-serve-api", "trainer"}


def test_the_api_logs_predictions_to_its_own_database_on_postgres() -> None:
    """PREDICTION_LOG_URL (a password in it) comes from a Secret, optional so that the API file
    applies on its own; PostgreSQL's first start creates the `predictions` database it names."""
    documents = _kustomized()
    pod = _kind(documents, "Deployment", "registry-serve-api")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    reference = env["PREDICTION_LOG_URL"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "registry-serve-secrets", "key": "prediction-log-url", "optional": True}
    url = _kind(documents, "Secret", "registry-serve-secrets")["stringData"]["prediction-log-url"]
    assert url.startswith("postgresql+psycopg://")
    assert url.endswith("@postgres:5432/predictions")
    postgres = _kind(documents, "StatefulSet", "postgres")["spec"]["template"]["spec"]
    mount = next(m for m in postgres["containers"][0]["volumeMounts"] if m["name"] == "init")
    assert (mount["mountPath"], mount["readOnly"]) == ("/docker-entrypoint-initdb.d", True)
    volume = next(v for v in postgres["volumes"] if v["name"] == "init")
    script = _kind(documents, "ConfigMap", volume["configMap"]["name"])["data"]
    assert "CREATE DATABASE predictions;" in "".join(script.values())


def test_the_single_api_file_applies_on_its_own(tmp_path: Path) -> None:
    documents = [d for d in yaml.safe_load_all((K8S / "fastapi-deployment.yaml").read_text()) if d]
    assert {d["kind"] for d in documents} == {"ConfigMap", "Service", "Deployment"}
    assert all(d["metadata"]["namespace"] == "mlflow-prod" for d in documents)


def test_the_entrypoint_refuses_an_unknown_mode() -> None:
    result = run("sh", "docker-entrypoint.sh", "nonsense")
    assert result.returncode == 64
    assert result.stderr.strip() == "docker-entrypoint.sh: unknown mode 'nonsense': use api, mlflow or train"


KSERVE = K8S / "kserve"
KSERVE_MANIFESTS = sorted(KSERVE.glob("*.yaml"))


def _kserve_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("python"), str(ROOT / "tests" / "ops" / "kserve_schema.py"), *map(str, paths))


def test_the_kserve_manifests_follow_kserves_schema() -> None:
    assert len(KSERVE_MANIFESTS) == 3
    _ok(_kserve_schema(*KSERVE_MANIFESTS))


def test_the_kserve_schema_check_catches_mistakes(tmp_path: Path) -> None:
    text = (KSERVE / "cluster-serving-runtime.yaml").read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        text.replace("autoSelect: true", 'autoSelect: "yes"', 1)
        .replace("protocolVersions:", "protocolVersion:")
        .replace("containerPort: 8081", "containerPort: '8081'")
    )
    result = _kserve_schema(broken)
    assert result.returncode == 1
    # The Kubernetes client's own validation adds its words about the port; these three are ours.
    assert {
        "broken.yaml#0.spec.supportedModelFormats[0].autoSelect: must be bool, not str",
        "broken.yaml#0.spec.protocolVersion: not a field of V1alpha1ServingRuntimeSpec",
        "broken.yaml#0.spec.containers[0].ports[1].containerPort: must be int, not str",
    } <= set(result.stdout.splitlines())


def _runtime() -> dict:
    return yaml.safe_load((KSERVE / "cluster-serving-runtime.yaml").read_text())


def test_the_runtime_takes_mlflow_models_before_kserve_mlserver() -> None:
    spec = _runtime()["spec"]
    formats = {(f["name"], f["version"]): f for f in spec["supportedModelFormats"]}
    assert set(formats) == {("mlflow", "1"), ("mlflow", "2")}
    # kserve-mlserver declares mlflow with priority 1: a higher one wins autoselection.
    assert all(f["autoSelect"] and f["priority"] > 1 for f in formats.values())
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]


def test_the_runtime_listens_where_kserve_expects_and_runs_hardened() -> None:
    (container,) = _runtime()["spec"]["containers"]
    assert container["name"] == "kserve-container"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert (env["API_PORT"], env["GRPC_PORT"], env["API_HOST"]) == ("8080", "8081", "0.0.0.0")
    assert env["MODEL_URI"] == "/mnt/models"
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8080), ("h2c", 8081)]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_the_inference_services_use_the_runtime_in_both_modes() -> None:
    storage = yaml.safe_load((KSERVE / "inference-service-storage.yaml").read_text())["spec"]["predictor"][
        "model"
    ]
    registry = yaml.safe_load((KSERVE / "inference-service-registry.yaml").read_text())["spec"]["predictor"][
        "model"
    ]
    for model in (storage, registry):
        assert model["runtime"] == _runtime()["metadata"]["name"]
        assert model["modelFormat"]["name"] == "mlflow"
    assert "storageUri" in storage
    assert "storageUri" not in registry
    env = {item["name"]: item["value"] for item in registry["env"]}
    assert env["MODEL_URI"].startswith("models:/")
    assert env["MODEL_URI"].endswith("@champion")
