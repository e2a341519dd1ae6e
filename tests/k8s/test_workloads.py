"""Workload shape: probes, resources, security context, shutdown timing and Services.

These are the rules of STYLE.md 3.4 and issue 7, checked on the rendered overlays, so a patch
in an overlay or a component cannot quietly undo what base sets.
"""

from __future__ import annotations

import inspect
import re

import pytest

import shared.grpc_server
from tests.k8s.manifests import (
    MESH_SERVICES,
    OVERLAYS,
    Container,
    Manifest,
    containers,
    find,
    name_of,
    of_kind,
    our_containers,
)

# Startup work that must not be cut short by the liveness probe: the embedding model load.
MODEL_LOADING = ("cache", "compressor")


def shutdown_seconds(announce_env: str = "") -> float:
    """Announce + drain after SIGTERM, as shared/grpc_server.py does them; the announce is
    the manifest's SLUICE_SHUTDOWN_ANNOUNCE_S when it sets one, else the server's default."""
    source = inspect.getsource(shared.grpc_server.run_until_terminated)
    match = re.search(r'"SLUICE_SHUTDOWN_ANNOUNCE_S",\s*([\d.]+)', source)
    assert match, "the announce default moved; update shutdown_seconds()"
    announce = float(announce_env) if announce_env else float(match.group(1))
    return announce + shared.grpc_server.DEFAULT_DRAIN_GRACE_S


def all_containers(rendered: dict[str, list[Manifest]]) -> list[tuple[str, Container]]:
    return [(overlay, c) for overlay in OVERLAYS for c in containers(rendered[overlay])]


def mesh_containers(rendered: dict[str, list[Manifest]]) -> list[tuple[str, Container]]:
    return [
        (overlay, c) for overlay, c in all_containers(rendered) if c.image_target in MESH_SERVICES
    ]


def test_every_overlay_runs_all_five_services(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        targets = {c.image_target for c in our_containers(rendered[overlay])}
        assert set(MESH_SERVICES) <= targets, overlay


def test_mesh_containers_are_named_server_and_probed_over_grpc(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, c in mesh_containers(rendered):
        assert c.spec["name"] == "server", (overlay, c.where)
        grpc_port = c.ports["grpc"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c.spec[probe]["grpc"]["port"] == grpc_port, (overlay, c.where, probe)


def test_model_loading_services_have_a_startup_probe_long_enough_for_the_load(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, c in mesh_containers(rendered):
        if c.image_target not in MODEL_LOADING:
            continue
        startup = c.spec["startupProbe"]
        assert startup["grpc"]["port"] == c.ports["grpc"], (overlay, c.where)
        # ~5 s on an idle core, 16-19 s measured on a busy 2-core machine; allow minutes.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, c.where


def test_liveness_outlasts_the_shutdown_so_a_draining_pod_is_not_restarted(
    rendered: dict[str, list[Manifest]],
) -> None:
    """Health says NOT_SERVING from SIGTERM until exit; liveness must not fail in that time."""
    for overlay, c in mesh_containers(rendered):
        liveness = c.spec["livenessProbe"]
        budget = liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3)
        needed = shutdown_seconds(c.env.get("SLUICE_SHUTDOWN_ANNOUNCE_S", ""))
        assert budget > needed, (overlay, c.where, budget)


def test_termination_grace_is_longer_than_announce_plus_drain(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, c in mesh_containers(rendered):
        grace = c.pod["terminationGracePeriodSeconds"]
        needed = shutdown_seconds(c.env.get("SLUICE_SHUTDOWN_ANNOUNCE_S", ""))
        assert grace > needed, (overlay, c.where, grace, needed)


def test_every_container_has_requests_and_limits(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, c in all_containers(rendered):
        resources = c.spec.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), (overlay, c.where, bound)


def test_every_pod_and_container_is_locked_down(rendered: dict[str, list[Manifest]]) -> None:
    """runAsNonRoot, RuntimeDefault seccomp, no privilege escalation, no capabilities, and a
    read-only root filesystem, except where dev's Tilt live_update writes into our images."""
    for overlay, c in all_containers(rendered):
        pod = c.pod.get("securityContext", {})
        own = c.spec.get("securityContext", {})
        where = (overlay, c.where)
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) > 0, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not own.get("capabilities", {}).get("add"), where
        assert not own.get("privileged", False), where
        live_updated = overlay == "dev" and c.image_target is not None
        if not live_updated:
            assert own.get("readOnlyRootFilesystem") is True, where


def test_read_only_containers_get_a_writable_tmp(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, c in all_containers(rendered):
        if c.image_target is None:
            continue  # third-party images know their own writable paths
        mounts = {m["mountPath"]: m["name"] for m in c.spec.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in c.pod.get("volumes", [])}
        assert "/tmp" in mounts, (overlay, c.where)
        assert "emptyDir" in volumes[mounts["/tmp"]], (overlay, c.where)


def test_data_dirs_are_writable_volumes(rendered: dict[str, list[Manifest]]) -> None:
    """The cache's entry store and the batcher's job store write under *_DATA_DIR; with a
    read-only root filesystem that must be a mounted volume."""
    checked = set()
    for overlay, c in mesh_containers(rendered):
        mounts = {m["mountPath"]: m for m in c.spec.get("volumeMounts", [])}
        for variable, value in c.env.items():
            if variable.endswith("_DATA_DIR"):
                assert value in mounts, (overlay, c.where, variable)
                assert not mounts[value].get("readOnly"), (overlay, c.where, variable)
                checked.add(c.image_target)
    assert checked == {"cache", "batcher"}


def test_manifests_pass_args_never_command(rendered: dict[str, list[Manifest]]) -> None:
    """Tilt's restart_process replaces the image entrypoint; a `command` would defeat it."""
    for overlay, c in all_containers(rendered):
        assert "command" not in c.spec, (overlay, c.where)


def test_no_service_account_token_unless_the_pod_uses_the_api(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, c in mesh_containers(rendered):
        assert c.pod["automountServiceAccountToken"] is False, (overlay, c.where)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inner_hops_are_headless_and_the_router_is_a_cluster_ip(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """gRPC over a ClusterIP pins each HTTP/2 connection to one pod; headless Services give
    the clients every pod's address for round_robin."""
    manifests = rendered[overlay]
    for service in MESH_SERVICES:
        spec = find(manifests, "Service", service)["spec"]
        assert "grpc" in {p["name"] for p in spec["ports"]}, service
        if service == "router":
            assert spec.get("clusterIP") != "None" and spec.get("type", "ClusterIP") == (
                "ClusterIP"
            )
        else:
            assert spec.get("clusterIP") == "None", service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods_and_target_named_ports(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    workloads = of_kind(manifests, "Deployment", "StatefulSet")
    for service in of_kind(manifests, "Service"):
        selector = service["spec"]["selector"]
        matches = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"{name_of(service)} selects {len(matches)} workloads"
        ports = {
            p["name"]: p["containerPort"]
            for c in matches[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (name_of(service), port)
            # Same number on both sides, so an address means the same thing everywhere.
            assert ports[port["targetPort"]] == port["port"], (name_of(service), port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_carry_the_standard_labels(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for workload in of_kind(rendered[overlay], "Deployment", "StatefulSet"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == workload["metadata"]["name"]
        assert labels["app.kubernetes.io/part-of"] == "sluice"


def test_dev_runs_one_replica_and_prod_leaves_replicas_to_the_autoscaler(
    rendered: dict[str, list[Manifest]],
) -> None:
    for service in MESH_SERVICES:
        assert find(rendered["dev"], "Deployment", service)["spec"]["replicas"] == 1
        # With `replicas` set, every `kubectl apply` would reset what the HPA chose.
        assert "replicas" not in find(rendered["prod"], "Deployment", service)["spec"]
        hpa = find(rendered["prod"], "HorizontalPodAutoscaler", service)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == service
        assert hpa["spec"]["minReplicas"] >= 2
        pdb = find(rendered["prod"], "PodDisruptionBudget", service)
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == service


def test_dev_has_jaeger_and_debug_logs_and_prod_has_redis(
    rendered: dict[str, list[Manifest]],
) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    jaeger = find(dev, "Service", "jaeger")
    assert 4317 in {p["port"] for p in jaeger["spec"]["ports"]}
    for overlay, c in mesh_containers(rendered):
        if overlay == "dev":
            assert c.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", c.where
            assert c.env["SLUICE_LOG_LEVEL"] == "DEBUG", c.where
        if overlay == "prod":
            assert c.env["SLUICE_LOG_LEVEL"] == "INFO", c.where
    find(prod, "StatefulSet", "redis")
    cache = next(c for c in our_containers(prod) if c.image_target == "cache")
    assert cache.env["SLUICE_CACHE_STORE"].startswith("redis://redis:6379")


def test_prod_images_are_pinned_to_a_registry_and_tag(
    rendered: dict[str, list[Manifest]],
) -> None:
    for c in containers(rendered["prod"]):
        image = c.spec["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
        if c.image_target is not None:
            assert not image.startswith("sluice/"), f"{image} names no registry"


def test_third_party_images_are_pinned(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, c in all_containers(rendered):
        if c.image_target is None:
            tag = c.spec["image"].rsplit(":", 1)
            assert len(tag) == 2 and re.fullmatch(r"v?\d+\.\d+\.\d+", tag[1]), (overlay, c.where)
