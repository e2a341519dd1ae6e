"""Images and ports agree across the Dockerfile, the manifests and the services' own settings.

Docker has no engine on the build machine, so the images are not built here: these tests read
the Dockerfile as text, and each service's Settings.from_env({}) for its default ports.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.mesh import DEFAULT_PORTS
from tests.k8s.manifests import (
    DOCKERFILE,
    MESH_SERVICES,
    OUR_IMAGES,
    OVERLAYS,
    ROOT,
    Container,
    Manifest,
    dockerfile_stages,
    find,
    inherited,
    lineage,
    our_containers,
)

# The services whose extra is `embeddings` (torch, sentence-transformers, FAISS, the model).
EMBEDDING_SERVICES = ("cache", "compressor")
APP_UID = 10001


def default_ports(service: str) -> set[int]:
    """Every port a service listens on by default: each `*listen` field of its Settings. The
    metrics address alone defaults to a free port (so replicas on one machine never clash);
    its fixed port is the one `sluice up` plans (shared/mesh.py), which the manifests use too."""
    config = importlib.import_module(f"services.{service}.config")
    settings: Any = config.Settings.from_env({})
    listens = {n: getattr(settings, n) for n in vars(settings) if n.endswith("listen")}
    assert listens, f"services.{service}.config.Settings has no *listen field"
    if "metrics_listen" in listens:
        assert listens["metrics_listen"] == "127.0.0.1:0", service
        listens["metrics_listen"] = f"127.0.0.1:{DEFAULT_PORTS[f'{service}_metrics']}"
    return {int(str(address).rpartition(":")[2]) for address in listens.values()}


@pytest.mark.parametrize("target", OUR_IMAGES)
def test_each_image_is_a_dockerfile_target_running_its_service(target: str) -> None:
    stages = dockerfile_stages()
    assert target in stages, f"no `FROM ... AS {target}` in {DOCKERFILE.name}"
    assert inherited(stages, target, "entrypoint") == ["python", "-m", f"services.{target}"]
    # Numeric, so the kubelet can check runAsNonRoot; set in base and never reset to root.
    assert inherited(stages, target, "user") == f"{APP_UID}:{APP_UID}"


@pytest.mark.parametrize("target", OUR_IMAGES)
def test_dockerfile_exposes_exactly_the_default_ports(target: str) -> None:
    assert dockerfile_stages()[target].expose == default_ports(target)


@pytest.mark.parametrize("target", OUR_IMAGES)
def test_only_the_embedding_services_carry_the_model(target: str) -> None:
    ancestors = {stage.name for stage in lineage(dockerfile_stages(), target)}
    assert ("deps-embeddings" in ancestors) == (target in EMBEDDING_SERVICES), ancestors


def test_dockerfile_keeps_the_hub_away_and_the_stubs_importable() -> None:
    text = DOCKERFILE.read_text()
    for setting in (
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        "PYTHONPATH=/app:/app/shared/gen",
    ):
        assert setting in text, setting
    # torch comes from the CPU index: the PyPI wheel of the same pin is a multi-GB CUDA build.
    assert "download.pytorch.org/whl/cpu" in text


def test_dockerignore_keeps_the_context_to_what_images_need() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: ignore everything, then re-include"
    assert {"!pyproject.toml", "!services/", "!shared/"} <= set(rules)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifest_ports_match_the_image_and_the_settings(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    stages = dockerfile_stages()
    for c in our_containers(rendered[overlay]):
        target = c.image_target
        assert target in stages, (overlay, c.where, c.spec["image"])
        ports = set(c.ports.values())
        assert ports == stages[target].expose == default_ports(target), (overlay, c.where)
        assert c.pod["securityContext"]["runAsUser"] == APP_UID, (overlay, c.where)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_listen_variables_bind_all_interfaces_on_the_container_ports(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """The 127.0.0.1 defaults suit the loopback mesh; in a pod nothing could reach them."""
    for c in our_containers(rendered[overlay]):
        listens = {k: v for k, v in c.env.items() if k.endswith("LISTEN")}
        assert listens, (overlay, c.where)
        hosts = {v.rpartition(":")[0] for v in listens.values()}
        assert hosts == {"0.0.0.0"}, (overlay, c.where)
        assert {int(v.rpartition(":")[2]) for v in listens.values()} == set(c.ports.values())


def _peer(value: str) -> tuple[str, int] | None:
    """host and port of an address or URL value, e.g. `cache:50052`, `http://jaeger:4317`."""
    parts = urlsplit(value if "://" in value else f"//{value}")
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname and port else None


def _peer_values(c: Container) -> dict[str, str]:
    return {
        k: v
        for k, v in c.env.items()
        if k.endswith(("_ADDR", "_URL", "_STORE", "OTLP_ENDPOINT")) and _peer(v)
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_peer_address_names_a_service_and_port_in_the_overlay(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    checked = 0
    for c in our_containers(manifests):
        for variable, value in _peer_values(c).items():
            peer = _peer(value)
            assert peer is not None
            host, port = peer
            service = find(manifests, "Service", host)
            assert port in {p["port"] for p in service["spec"]["ports"]}, (c.where, variable)
            checked += 1
    # Router -> 4 peers and batcher -> dispatcher, at least.
    assert checked >= 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_peers_go_through_headless_services(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    for c in our_containers(manifests):
        for variable, value in c.env.items():
            if variable.endswith("_ADDR"):
                host = value.rpartition(":")[0]
                assert host in MESH_SERVICES, (c.where, variable)
                spec = find(manifests, "Service", host)["spec"]
                assert spec.get("clusterIP") == "None", (c.where, variable)
