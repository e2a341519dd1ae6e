"""Configuration the manifests hand the services: variables, mounted policy files, keys.

The ConfigMaps are generated from copies of the repo's policy files (kustomize cannot read
outside k8s/); a copy that drifted from its source would deploy a stale policy, so it fails
here, like the protobuf stub drift check.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from services.dispatcher.endpoints import load_endpoints
from services.router.policy import load_policy
from shared.pricing import load_catalogue
from tests.k8s.manifests import K8S, OVERLAYS, ROOT, Manifest, find, our_containers

PROD = K8S / "overlays" / "prod" / "config"
PROVIDER_CALLERS = ("dispatcher", "batcher")


def config_copies() -> list[tuple[Path, Path]]:
    lines = (K8S / "config-sources.txt").read_text().splitlines()
    pairs = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    return [(ROOT / source, ROOT / copy) for source, copy in pairs]


@pytest.mark.parametrize("source,copy", config_copies(), ids=lambda p: p.name)
def test_config_copy_matches_its_source(source: Path, copy: Path) -> None:
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: run `make k8s-config`"
    )


def test_every_generated_config_map_comes_from_a_tracked_copy() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    files = [
        (K8S / "base" / entry.split("=")[-1]).resolve()
        for generator in kustomization["configMapGenerator"]
        for entry in generator["files"]
    ]
    assert set(files) == {copy.resolve() for _, copy in config_copies()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_file_variables_point_into_a_mounted_config_map_key(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    checked = 0
    for c in our_containers(manifests):
        volumes = {v["name"]: v for v in c.pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in c.spec.get("volumeMounts", [])}
        for variable, value in c.env.items():
            if not value.startswith("/etc/sluice/"):
                continue
            path = PurePosixPath(value)
            volume = volumes[mounts[str(path.parent)]]
            config_map = find(manifests, "ConfigMap", volume["configMap"]["name"])
            assert path.name in config_map["data"], (c.where, variable)
            checked += 1
    # Router: policy + catalogue; compressor: catalogue; dispatcher: endpoints + catalogue.
    assert checked >= 5


class RecordingEnv(dict[str, str]):
    """An empty environment that remembers every variable a Settings.from_env asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def read_by(service: str) -> set[str]:
    """The variables a service reads: its own Settings.from_env, asked with an empty
    environment, plus process-wide ones read in shared/ (the shutdown announce) and the
    ${VAR} references in the services' YAML (the endpoints file's SLUICE_SIMULATOR_URL,
    which the dispatcher and the batcher both read)."""
    env = RecordingEnv()
    importlib.import_module(f"services.{service}.config").Settings.from_env(env)
    # mesh.py only writes variables for the processes it starts, so it does not count.
    texts = [p.read_text() for p in (ROOT / "shared").glob("*.py") if p.name != "mesh.py"]
    texts += [p.read_text() for p in (ROOT / "services").glob("*/*.yaml")]
    literals = {m for text in texts for m in re.findall(r"\bSLUICE_[A-Z0-9_]+\b", text)}
    return env.asked | literals


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_sluice_variable_is_one_its_service_reads(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """A misspelt variable, or one set on the wrong service, is silently ignored; not here."""
    unknown = set()
    for c in our_containers(rendered[overlay]):
        assert c.image_target is not None
        known = read_by(c.image_target)
        for variable in c.env:
            if variable.startswith("SLUICE_") and variable not in known:
                unknown.add(f"{c.where}: {variable}")
    assert not unknown


def test_provider_keys_come_from_an_optional_secret(rendered: dict[str, list[Manifest]]) -> None:
    """The dispatcher and the batcher (Batch API jobs) call providers; nothing else may hold
    their keys, and the keys never sit in the manifests themselves."""
    for overlay in OVERLAYS:
        for c in our_containers(rendered[overlay]):
            refs = [e["secretRef"] for e in c.spec.get("envFrom", []) if "secretRef" in e]
            expected = [{"name": "sluice-provider-keys", "optional": True}]
            assert refs == (expected if c.image_target in PROVIDER_CALLERS else []), c.where
            assert not [k for k in c.env if k.endswith("_API_KEY")], (overlay, c.where)


def _prod_yaml(name: str) -> Any:
    return yaml.safe_load((PROD / name).read_text())


def test_prod_endpoints_load_and_every_model_is_priced() -> None:
    endpoints = load_endpoints(PROD / "endpoints.yaml", env={})
    catalogue = load_catalogue()
    for endpoint in endpoints:
        assert endpoint.base_url.startswith("https://"), endpoint.name
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*_API_KEY", endpoint.api_key_env), endpoint.name
        for model in endpoint.models:
            assert catalogue.knows(model), f"{endpoint.name}: {model} has no price"


def test_prod_policy_loads_and_every_tier_model_has_an_endpoint() -> None:
    load_policy(PROD / "policy.yaml", load_catalogue())
    served = {m for e in load_endpoints(PROD / "endpoints.yaml", env={}) for m in e.models}
    for tenant, spec in _prod_yaml("policy.yaml")["tenants"].items():
        for model_class in spec["model_classes"].values():
            for tier in model_class["tiers"]:
                assert tier["model"] in served, (tenant, tier["model"])


def test_prod_does_not_accept_the_well_known_dev_key() -> None:
    dev_digest = hashlib.sha256(b"dev").hexdigest()
    for tenant, spec in _prod_yaml("policy.yaml")["tenants"].items():
        assert dev_digest not in spec["api_key_sha256"], tenant


def test_prod_mounts_its_own_policy_and_endpoints(rendered: dict[str, list[Manifest]]) -> None:
    for name, key, source in (
        ("sluice-policy", "default.yaml", "policy.yaml"),
        ("sluice-endpoints", "endpoints.yaml", "endpoints.yaml"),
    ):
        generated = [
            m
            for m in rendered["prod"]
            if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith(f"{name}-")
        ]
        assert len(generated) == 1, name
        assert generated[0]["data"][key] == (PROD / source).read_text()
