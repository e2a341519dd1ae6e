"""The Tiltfile agrees with the dev overlay and the Dockerfile.

Tilt is not installed on the build machine, but a Tiltfile is Starlark, close enough to Python
to run here with Tilt's functions replaced by recorders. That checks what Tilt would be asked
to do: build every image the dev manifests use from a real Dockerfile target, sync paths that
exist, and forward ports that the pods open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.manifests import ROOT, Manifest, containers, dockerfile_stages, find


@dataclass
class TiltCalls:
    """What the Tiltfile asked Tilt for."""

    loads: list[tuple[str, ...]] = field(default_factory=list)
    yaml: list[Any] = field(default_factory=list)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    local: dict[str, dict[str, Any]] = field(default_factory=dict)
    versioned: bool = False


def run_tiltfile() -> TiltCalls:
    calls = TiltCalls()

    def version_settings(**_: Any) -> None:
        calls.versioned = True

    def docker_build_with_restart(ref: str, context: str, **kwargs: Any) -> None:
        calls.builds[ref] = {"context": context, **kwargs}

    def k8s_resource(name: str, **kwargs: Any) -> None:
        calls.resources[name] = kwargs

    def local_resource(name: str, cmd: str, **kwargs: Any) -> None:
        calls.local[name] = {"cmd": cmd, **kwargs}

    tilt = {
        "version_settings": version_settings,
        "load": lambda *args: calls.loads.append(args),
        "k8s_yaml": calls.yaml.append,
        "kustomize": lambda path, **_: ("kustomize", path),
        "local_resource": local_resource,
        "docker_build_with_restart": docker_build_with_restart,
        "k8s_resource": k8s_resource,
        "sync": lambda src, dest: ("sync", src, dest),
        "run": lambda cmd, trigger=(): ("run", cmd, tuple(trigger)),
    }
    source = (ROOT / "Tiltfile").read_text()
    exec(compile(source, "Tiltfile", "exec"), tilt)
    return calls


@pytest.fixture(scope="module")
def tilt() -> TiltCalls:
    return run_tiltfile()


def test_tiltfile_deploys_the_dev_overlay_with_restarting_builds(tilt: TiltCalls) -> None:
    assert tilt.versioned
    assert ("ext://restart_process", "docker_build_with_restart") in tilt.loads
    assert tilt.yaml == [("kustomize", "k8s/overlays/dev")]
    assert tilt.local["protos"]["cmd"] == "make proto"
    assert tilt.local["protos"]["deps"] == ["protos"]


def test_every_dev_image_is_built_from_its_dockerfile_target(
    tilt: TiltCalls, rendered: dict[str, list[Manifest]]
) -> None:
    images = {c.spec["image"] for c in containers(rendered["dev"]) if c.image_target}
    assert images == set(tilt.builds)
    stages = dockerfile_stages()
    for ref, build in tilt.builds.items():
        target = ref.removeprefix("sluice/")
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).is_file()
        assert build["target"] == target and target in stages
        assert build["entrypoint"] == stages[target].entrypoint
        # Written by the non-root user, and not under a volume that would hide the image's copy.
        assert build["restart_file"].startswith("/app/"), ref


def test_live_update_syncs_existing_paths_and_reinstalls_on_pyproject(tilt: TiltCalls) -> None:
    for ref, build in tilt.builds.items():
        steps = build["live_update"]
        syncs = [s for s in steps if s[0] == "sync"]
        runs = [s for s in steps if s[0] == "run"]
        for _, src, dest in syncs:
            assert (ROOT / src).exists(), (ref, src)
            assert dest == str(Path("/app") / src), (ref, src, dest)
        assert f"services/{ref.removeprefix('sluice/')}" in {s[1] for s in syncs}, ref
        assert {"shared", "pyproject.toml"} <= {s[1] for s in syncs}, ref
        assert runs and all(r[2] == ("pyproject.toml",) for r in runs), ref
        # The installer exists only in the image; the Dockerfile defines it.
        assert all(r[1].startswith("sluice-install-deps ") for r in runs), ref
        assert "/usr/local/bin/sluice-install-deps" in (ROOT / "Dockerfile").read_text()


def test_forwarded_ports_are_open_on_the_resources_pods(
    tilt: TiltCalls, rendered: dict[str, list[Manifest]]
) -> None:
    forwarded = {name: spec.get("port_forwards", []) for name, spec in tilt.resources.items()}
    assert forwarded["router"] and forwarded["jaeger"] == ["16686"]
    assert forwarded["prometheus"] == ["9090"]
    for name, ports in forwarded.items():
        pod = find(rendered["dev"], "Deployment", name)["spec"]["template"]["spec"]
        open_ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for port in ports:
            assert int(str(port).split(":")[-1]) in open_ports, (name, port)
