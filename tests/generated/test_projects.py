"""Every generated project passes its own checks: its tests, lint, types, Dockerfile lint,
and manifest validation. Parametrized over every kind, with defaults and other options."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from daprforge.generator.context import PYTHON_IMAGE
from daprforge.runner.template import load_template
from tests.generated._manifests import dapr_errors, documents, kubernetes_errors
from tests.generated._variants import VARIANTS
from tests.generated.conftest import Completed, Generated, run, tool

IDS = [variant.id for variant in VARIANTS]


@pytest.fixture(params=IDS)
def project(request: pytest.FixtureRequest, projects: dict[str, Generated]) -> Generated:
    return projects[request.param]


def test_its_own_tests_pass(
    project: Generated, own_test_runs: dict[str, Future[Completed]]
) -> None:
    """The project's pytest, run in its folder as its developers would: real sidecar
    processes, and ``openai_server`` for the AI kind."""
    own_test_runs[project.variant.id].result(timeout=900).check()


def test_ruff_check(project: Generated) -> None:
    run([tool("ruff"), "check", "--no-cache", "."], project.root).check()


def test_ruff_format(project: Generated) -> None:
    run([tool("ruff"), "format", "--check", "--no-cache", "."], project.root).check()


def test_mypy_strict(project: Generated, mypy_cache: Path) -> None:
    run([tool("mypy"), "--cache-dir", str(mypy_cache)], project.root).check()


def test_hadolint(project: Generated) -> None:
    run([tool("hadolint"), "--failure-threshold", "info", "Dockerfile"], project.root).check()


def test_kubernetes_manifests_validate(project: Generated) -> None:
    for name in ("deployment.yaml", "service.yaml"):
        for document in documents(project.root / "k8s" / name):
            assert kubernetes_errors(document) == [], name


def test_dapr_resources_validate(project: Generated) -> None:
    paths = sorted((project.root / "components").glob("*.yaml"))
    paths += sorted((project.root / "k8s" / "components").glob("*.yaml"))
    assert paths
    for path in paths:
        for document in documents(path):
            assert dapr_errors(document) == [], path
            # Every Dapr resource we generate is for this app only.
            if document["kind"] != "Configuration":
                assert document["scopes"] == [project.variant.name], path


def _deployment(project: Generated) -> dict[str, Any]:
    (deployment,) = documents(project.root / "k8s" / "deployment.yaml")
    return deployment


def test_deployment_follows_the_production_rules(project: Generated) -> None:
    deployment = _deployment(project)
    answers = yaml.safe_load((project.root / ".daprforge.yml").read_text())["options"]
    pod = deployment["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == project.variant.name
    assert annotations["dapr.io/app-port"] == str(answers["port"])
    assert annotations["dapr.io/app-protocol"] == "http"
    assert annotations["dapr.io/log-level"] == "info"
    assert annotations["dapr.io/enable-profiling"] == "false"
    assert annotations["dapr.io/config"] == f"{project.variant.name}-config"
    assert annotations["dapr.io/sidecar-seccomp-profile-type"] == "RuntimeDefault"
    assert deployment["spec"]["replicas"] == answers["replicas"]

    (container,) = pod["spec"]["containers"]
    assert ":" in container["image"]
    assert not container["image"].endswith(":latest")
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    if project.variant.kind == "code-executor":  # its sandbox needs user namespaces
        assert security["seccompProfile"] == {
            "type": "Localhost",
            "localhostProfile": "daprforge/code-executor.json",
        }
        assert security["procMount"] == "Unmasked"
        assert pod["spec"]["hostUsers"] is False
    else:
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["envFrom"][0]["secretRef"]["name"] == f"{project.variant.name}-env"

    resources = container["resources"]
    if project.variant.kind == "ai-agent":  # the brief's sizes for AI services
        assert resources == {
            "requests": {"cpu": "200m", "memory": "512Mi"},
            "limits": {"cpu": "1000m", "memory": "1Gi"},
        }
    else:
        assert resources == {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        }


def test_the_app_is_pointed_at_its_production_components(project: Generated) -> None:
    """STATE_STORE / PUBSUB_NAME in the Deployment name components in k8s/components, and
    the dapr.io/config annotation names the Configuration there."""
    names = {
        (document["kind"], document["metadata"]["name"])
        for path in (project.root / "k8s" / "components").glob("*.yaml")
        for document in documents(path)
    }
    deployment = _deployment(project)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert ("Component", env["STATE_STORE"]) in names
    assert ("Component", env["PUBSUB_NAME"]) in names
    config = deployment["spec"]["template"]["metadata"]["annotations"]["dapr.io/config"]
    assert ("Configuration", config) in names


def test_dockerfile_is_pinned_multi_stage_and_non_root(project: Generated) -> None:
    lines = (project.root / "Dockerfile").read_text().splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert stages == [f"FROM {PYTHON_IMAGE} AS build", f"FROM {PYTHON_IMAGE} AS runtime"]
    final = lines[lines.index(stages[1]) :]
    assert any(line.startswith("USER 10001") for line in final)
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert final[-1].startswith('CMD ["')  # exec form
    # No compilers or package managers' leftovers in the final stage.
    assert not any("apt-get" in line or "gcc" in line for line in final)


def test_dapr_yaml_is_a_valid_run_template(project: Generated) -> None:
    template = load_template(project.root / "dapr.yaml")
    (app,) = template.apps
    assert app.app_id == project.variant.name
    assert app.resources_paths == ((project.root / "components").resolve(),)
    assert template.warnings == ()


def test_requirements_are_declared_and_installable(project: Generated) -> None:
    """requirements.txt matches pyproject's dependencies, every requirement is satisfied
    in this environment (daprforge by this checkout), and every third-party module the
    code imports belongs to a declared requirement."""
    pyproject = tomllib.loads((project.root / "pyproject.toml").read_text())
    runtime = pyproject["project"]["dependencies"]
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    lines = (project.root / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == runtime

    for text in runtime + dev:
        requirement = Requirement(text)
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (text, installed)

    declared_runtime = {canonicalize_name(Requirement(text).name) for text in runtime}
    declared_all = declared_runtime | {canonicalize_name(Requirement(text).name) for text in dev}
    owners = importlib.metadata.packages_distributions()
    for folder, declared in (("app", declared_runtime), ("tests", declared_all)):
        for module in _third_party_imports(project.root / folder):
            names = owners.get(module) or _same_name(module)
            distributions = {canonicalize_name(name) for name in names}
            assert distributions & declared, f"{folder}/ imports {module}, not declared"


def _same_name(module: str) -> list[str]:
    """An editable install (daprforge from this checkout) records no top-level modules, so
    packages_distributions() misses it: fall back to the distribution of the same name."""
    try:
        importlib.metadata.distribution(module)
    except importlib.metadata.PackageNotFoundError:
        return []
    return [module]


def _third_party_imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {
        name
        for name in found
        if name not in sys.stdlib_module_names and name not in ("app", "tests", "__future__")
    }
