"""deploy/kubernetes/: schema-valid manifests that agree with config.yml, generated parts current.

Validated offline, with what the registries ship (test extra in pyproject.toml):
- core objects against the Kubernetes API's JSON schemas in strict mode (unknown fields are
  errors, as with ``kubectl apply``'s strict field validation) by kubernetes-validate, for the
  oldest and newest Kubernetes versions we claim;
- the prometheus-operator custom resources (ServiceMonitor, PrometheusRule) with the pydantic
  models cloudcoil generates from the operator's CRD schemas (required fields, types, patterns),
  plus a round trip that catches the unknown fields those models would silently drop.
``kubectl kustomize`` (in the machine image) renders the kustomization as ``apply -k`` would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from exporter import __version__
from exporter.config import Config, parse_config, parse_duration
from exporter.generate import generate
from exporter.generate.conventions import DASHBOARD_LABELS, dashboard_configmap_name
from exporter.generate.grafana import dashboards, dump_json

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "kubernetes"
GENERATED = DEPLOY / "generated"
#: How the generated files name their source: the path from the repository root.
SOURCE = "deploy/kubernetes/config.yml"
#: preStop's sleep action is on by default from 1.30; 1.37 is the newest schema bundled.
KUBERNETES_VERSIONS = ("1.30", "1.37")
REGENERATE = (
    "AGENT_QUALITY_EXPORTER_TOKEN=unused agent-quality-exporter generate --config.file "
    f"{SOURCE} --format prometheus-operator --out deploy/kubernetes/generated"
)

Resource = dict[str, Any]


class ManifestError(Exception):
    """A manifest the API server would refuse."""


def _first_difference(sent: Any, kept: Any, path: str = "") -> str:
    """Return where ``kept`` (the model's round trip) departs from ``sent``."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        for key in sent:
            if key not in kept:
                return f"{path}.{key}: unknown field"
            if sent[key] != kept[key]:
                return _first_difference(sent[key], kept[key], f"{path}.{key}")
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        for index, (left, right) in enumerate(zip(sent, kept, strict=True)):
            if left != right:
                return _first_difference(left, right, f"{path}[{index}]")
    return f"{path}: {sent!r} became {kept!r}"


def _custom_models() -> dict[str, type[pydantic.BaseModel]]:
    # Imported on first use: the generated module takes seconds to import.
    from cloudcoil.models.prometheus_operator import v1

    return {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}


def validate(resource: Resource) -> None:
    """Raise ``ManifestError`` unless ``resource`` is valid for every version we claim."""
    if resource.get("apiVersion") == "monitoring.coreos.com/v1":
        model = _custom_models().get(resource.get("kind", ""))
        if model is None:
            raise ManifestError(f"no schema for {resource.get('kind')!r}")
        try:
            kept = model.model_validate(resource).model_dump(
                by_alias=True, exclude_unset=True, mode="json"
            )
        except pydantic.ValidationError as error:
            raise ManifestError(str(error)) from error
        if kept != resource:  # the models ignore unknown keys; the API server refuses them
            raise ManifestError(_first_difference(resource, kept))
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            raise ManifestError(f"{version}: {where}: {error.message}") from error
        except kubernetes_validate.SchemaNotFoundError as error:
            raise ManifestError(error.message) from error


def load(relative: str) -> Resource:
    resource: Resource = yaml.safe_load((DEPLOY / relative).read_text())
    return resource


def kustomization() -> Resource:
    return load("kustomization.yaml")


RESOURCES: list[str] = kustomization()["resources"]


@pytest.fixture(scope="module")
def token_env() -> Iterator[None]:
    """Set the token variable config.yml names, as the Secret does in the pod."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENT_QUALITY_EXPORTER_TOKEN", "test-token")
        yield


@pytest.fixture(scope="module")
def config(token_env: None) -> Config:
    return parse_config(yaml.safe_load((DEPLOY / "config.yml").read_text()), source=SOURCE)


@pytest.fixture(scope="module")
def rendered() -> list[Resource]:
    """Return what ``kubectl apply -k deploy/kubernetes`` would send."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (it renders the kustomization) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


@pytest.fixture
def objects() -> dict[str, Resource]:
    """Return the hand-written manifests by kind."""
    return {
        resource["kind"]: resource
        for resource in map(load, RESOURCES)
        if not resource["metadata"]["name"].endswith("-dashboard")
    }


def pod_labels(objects: Mapping[str, Resource]) -> dict[str, str]:
    labels: dict[str, str] = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def container(objects: Mapping[str, Resource]) -> Resource:
    containers: list[Resource] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    (only,) = containers
    return only


#: Breaks that validation must catch: (file, how it is broken, what the error says).
BROKEN: dict[str, tuple[str, Callable[[Resource], object], str]] = {
    "deployment-unknown-field": (
        "deployment.yaml",
        lambda r: r["spec"]["template"]["spec"]["containers"][0].update(
            readinessProbes=r["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        ),
        "readinessProbes",
    ),
    "deployment-wrong-type": (
        "deployment.yaml",
        lambda r: r["spec"].update(replicas="two"),
        "'two' is not of type 'integer'",
    ),
    "deployment-missing-selector": (
        "deployment.yaml",
        lambda r: r["spec"].pop("selector"),
        "'selector' is a required property",
    ),
    "service-port-not-a-number": (
        "service.yaml",
        lambda r: r["spec"]["ports"][0].update(port="http"),
        "'http' is not of type 'integer'",
    ),
    "servicemonitor-unknown-field": (
        "servicemonitor.yaml",
        lambda r: r["spec"]["endpoints"][0].update(intervall="15s"),
        "intervall: unknown field",
    ),
    "servicemonitor-bad-duration": (
        "servicemonitor.yaml",
        lambda r: r["spec"]["endpoints"][0].update(interval="15 seconds"),
        "should match pattern",
    ),
    "servicemonitor-missing-selector": (
        "servicemonitor.yaml",
        lambda r: r["spec"].pop("selector"),
        "Field required",
    ),
    "prometheusrule-bad-for": (
        "generated/rules/agent-quality.prometheusrule.yaml",
        lambda r: next(rule for rule in r["spec"]["groups"][-1]["rules"] if "alert" in rule).update(
            {"for": "5 minutes"}
        ),
        "should match pattern",
    ),
    "prometheusrule-unknown-field": (
        "generated/rules/agent-quality.prometheusrule.yaml",
        lambda r: r["spec"]["groups"][0]["rules"][0].update(exprs="up"),
        "exprs: unknown field",
    ),
    "configmap-data-not-a-string": (
        "generated/grafana/configmaps/agent-quality-agent.configmap.yaml",
        lambda r: r["data"].update(extra={"a": 1}),
        "is not of type 'string'",
    ),
}


class TestSchemas:
    """Every object is valid against its schema, and the validator refuses broken ones."""

    @pytest.mark.parametrize("relative", RESOURCES)
    def test_committed_manifest_is_valid(self, relative: str) -> None:
        """Each file the kustomization lists validates (strict)."""
        validate(load(relative))

    def test_rendered_objects_are_valid(self, rendered: list[Resource]) -> None:
        """Everything `kubectl kustomize` renders validates, the config ConfigMap included."""
        kinds = sorted(resource["kind"] for resource in rendered)
        assert kinds == sorted(
            ["ConfigMap"] * 3
            + ["Deployment", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceMonitor"]
        )
        for resource in rendered:
            validate(resource)

    @pytest.mark.parametrize("case", sorted(BROKEN))
    def test_broken_manifest_is_refused(self, case: str) -> None:
        """A typo, a wrong type or a missing field fails validation, naming what is wrong."""
        relative, breaks, message = BROKEN[case]
        resource = load(relative)
        validate(resource)  # the intact file passes, so the failure below is the break's
        breaks(resource)
        with pytest.raises(ManifestError, match=message):
            validate(resource)


class TestKustomization:
    """kustomization.yaml lists every manifest and renders the config and image."""

    def test_lists_every_manifest(self) -> None:
        """Every hand-written manifest and every generated Kubernetes object is a resource."""
        written = {
            path.name for path in DEPLOY.glob("*.yaml") if path.name not in ("kustomization.yaml",)
        }
        generated = {
            str(path.relative_to(DEPLOY))
            for path in GENERATED.rglob("*.yaml")
            if yaml.safe_load(path.read_text()).get("apiVersion")
        }
        assert set(RESOURCES) == written | generated
        assert all((DEPLOY / relative).is_file() for relative in RESOURCES)

    def test_config_map_and_image(self, rendered: list[Resource]) -> None:
        """The pods mount config.yml under its hashed name and run this version's image."""
        by_kind = {resource["kind"]: resource for resource in rendered}
        (config_map,) = (
            resource
            for resource in rendered
            if resource["metadata"]["name"].startswith("agent-quality-exporter-config-")
        )
        assert config_map["data"] == {"config.yml": (DEPLOY / "config.yml").read_text()}
        pod = by_kind["Deployment"]["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
        assert pod["containers"][0]["image"] == f"agent-quality-exporter:{__version__}"


class TestAgreesWithConfig:
    """The manifests and config.yml say the same thing about ports, tokens and timing."""

    def test_port_and_probes(self, objects: dict[str, Resource], config: Config) -> None:
        """One named port, config.yml's, serves the probes and the Service."""
        main = container(objects)
        assert main["ports"] == [
            {"name": "http-metrics", "containerPort": config.server.port, "protocol": "TCP"}
        ]
        assert config.server.port == 10340
        assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}
        assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}
        (port,) = objects["Service"]["spec"]["ports"]
        assert port == {
            "name": "http-metrics",
            "port": 10340,
            "targetPort": "http-metrics",
            "protocol": "TCP",
        }

    def test_config_file_is_the_mounted_one(self, objects: dict[str, Resource]) -> None:
        """--config.file points into the config volume, at the key kustomize writes."""
        main = container(objects)
        (flag,) = (arg for arg in main["args"] if arg.startswith("--config.file="))
        path = Path(flag.removeprefix("--config.file="))
        mounts = {mount["name"]: mount for mount in main["volumeMounts"]}
        assert str(path.parent) == mounts["config"]["mountPath"]
        (generator,) = kustomization()["configMapGenerator"]
        assert generator["files"] == [path.name]
        assert main["command"] == ["agent-quality-exporter"]
        assert main["args"][0] == "run"

    def test_termination_outlasts_the_drain(
        self, objects: dict[str, Resource], config: Config
    ) -> None:
        """The grace period covers the preStop pause and the whole drain, with a margin."""
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        pause = container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = config.pipeline.drain_grace_period
        assert pod["terminationGracePeriodSeconds"] >= pause + drain + 10

    def test_token_from_the_secret(self, objects: dict[str, Resource], config: Config) -> None:
        """The pod's token variable and Prometheus' credentials are the same Secret key."""
        raw = yaml.safe_load((DEPLOY / "config.yml").read_text())
        variable = raw["server"]["auth"]["bearer_token_env"]
        env = {item["name"]: item for item in container(objects)["env"]}
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert config.server.auth.protect_metrics
        (endpoint,) = objects["ServiceMonitor"]["spec"]["endpoints"]
        assert endpoint["authorization"] == {"type": "Bearer", "credentials": reference}

    def test_selectors_meet(self, objects: dict[str, Resource], config: Config) -> None:
        """Service, PodDisruptionBudget and ServiceMonitor select what they should."""
        pods, service = pod_labels(objects), objects["Service"]
        assert objects["Service"]["spec"]["selector"].items() <= pods.items()
        for kind in ("Deployment", "PodDisruptionBudget"):
            assert objects[kind]["spec"]["selector"]["matchLabels"].items() <= pods.items()
        monitor = objects["ServiceMonitor"]["spec"]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert [endpoint["port"] for endpoint in monitor["endpoints"]] == ["http-metrics"]
        # Targets get job=<Service name>, which the generated exporter alerts select.
        assert "jobLabel" not in monitor
        assert config.alerting is not None
        assert service["metadata"]["name"] == config.alerting.job
        # The generated windows and rule groups follow the interval Prometheus scrapes at.
        (interval,) = {endpoint["interval"] for endpoint in monitor["endpoints"]}
        assert parse_duration(interval) == config.alerting.scrape_interval

    def test_prometheus_finds_the_objects(self, config: Config) -> None:
        """ServiceMonitor and PrometheusRule carry the label the operator's selectors match."""
        assert config.alerting is not None
        release = dict(config.alerting.operator.labels)
        assert release == {"release": "kube-prometheus-stack"}
        monitor = load("servicemonitor.yaml")
        assert release.items() <= monitor["metadata"]["labels"].items()

    def test_affinity_outlasts_the_late_signal_buffer(
        self, objects: dict[str, Resource], config: Config
    ) -> None:
        """Feedback within late_signals.max_age goes to the replica that holds the conversation."""
        spec = objects["Service"]["spec"]
        assert spec["sessionAffinity"] == "ClientIP"
        timeout = spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
        assert timeout >= config.sampling.late_max_age

    def test_two_replicas_hardened(self, objects: dict[str, Resource]) -> None:
        """Two replicas, non-root, read-only root, no privileges, bounded memory."""
        deployment = objects["Deployment"]["spec"]
        assert deployment["replicas"] == 2
        pod = deployment["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        main = container(objects)
        assert main["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"cpu", "memory"} <= main["resources"]["requests"].keys()
        assert "memory" in main["resources"]["limits"]
        assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1

    def test_daily_budget_is_per_replica(self, config: Config) -> None:
        """config.yml halves the default daily budget for its two replicas (docs/scaling.md)."""
        default = parse_config({}, source="default")
        replicas = load("deployment.yaml")["spec"]["replicas"]
        assert config.sampling.min_daily_samples * replicas == default.sampling.min_daily_samples
        assert config.sampling.max_daily_samples is not None
        assert default.sampling.max_daily_samples is not None
        assert config.sampling.max_daily_samples * replicas == default.sampling.max_daily_samples


class TestGenerated:
    """generated/ is `generate --format prometheus-operator` of config.yml."""

    def test_no_drift(self, config: Config, tmp_path: Path) -> None:
        """The committed files equal a fresh run, file for file."""
        generate(config, out=tmp_path, output_format="prometheus-operator")
        if os.environ.get("UPDATE_GOLDEN"):
            shutil.rmtree(GENERATED, ignore_errors=True)
            shutil.copytree(tmp_path, GENERATED)
        fresh = {p.relative_to(tmp_path): p for p in tmp_path.rglob("*") if p.is_file()}
        committed = {p.relative_to(GENERATED): p for p in GENERATED.rglob("*") if p.is_file()}
        assert sorted(committed) == sorted(fresh), f"regenerate: {REGENERATE}"
        for relative, path in fresh.items():
            assert committed[relative].read_bytes() == path.read_bytes(), (
                f"{relative} drifted; regenerate: {REGENERATE}"
            )

    def test_dashboard_configmaps(self, config: Config) -> None:
        """One ConfigMap per dashboard, labelled for Grafana's sidecar, holding its JSON."""
        for name, data in dashboards(config).items():
            stem = name.removesuffix(".json")
            resource = load(f"generated/grafana/configmaps/{stem}.configmap.yaml")
            assert resource["metadata"] == {
                "name": dashboard_configmap_name(name),
                "labels": dict(DASHBOARD_LABELS),
            }
            assert resource["data"] == {name: dump_json(data)}
        assert DASHBOARD_LABELS == {"grafana_dashboard": "1"}

    def test_namespace_from_the_operator_settings(self, tmp_path: Path) -> None:
        """alerting.prometheus_operator.namespace places the rule and the dashboards."""
        config = parse_config(
            {"alerting": {"prometheus_operator": {"namespace": "monitoring"}}}, source="ns.yml"
        )
        written = generate(config, out=tmp_path, output_format="prometheus-operator")
        resources = [yaml.safe_load(path.read_text()) for path in written if path.suffix == ".yaml"]
        assert sorted(resource["kind"] for resource in resources) == [
            "ConfigMap",
            "ConfigMap",
            "PrometheusRule",
        ]
        assert {resource["metadata"]["namespace"] for resource in resources} == {"monitoring"}

    def test_plain_format_writes_no_kubernetes_objects(self, tmp_path: Path) -> None:
        """Without --format prometheus-operator there are no ConfigMaps to mistake for files."""
        written = generate(parse_config({}, source="plain.yml"), out=tmp_path)
        assert not any(path.suffix == ".yaml" for path in written)
        assert not (tmp_path / "grafana" / "configmaps").exists()
