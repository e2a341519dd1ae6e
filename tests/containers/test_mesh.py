"""The dev overlay, played with `podman kube play`, answers through the router, and still
answers with the cache killed.

Each Deployment of ours is played on its own, on one internal network, with its Service name
as a DNS alias, so `cache:50052` and the other peer addresses in the manifests resolve as in
the cluster (podman ignores Services and probes). Jaeger and Prometheus are left out: their
images come from registries this machine cannot reach, so the OTLP endpoint is dropped too.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers.podman import Podman, grpc_port, target_of, wait_for

pytestmark = pytest.mark.containers

# Started first to last: upstream before the services that call it.
ORDER = ("simulator", "dispatcher", "batcher", "cache", "compressor", "router")


def pod_manifest(podman: Podman, deployment: dict[str, Any], configmaps: dict[str, Any]) -> str:
    """The Deployment as kube play takes it: our local image, a name unique to this run, the
    ConfigMaps it mounts beside it (kube play makes each a volume, removed after the test), and
    no OTLP endpoint (no Jaeger here)."""
    deployment = copy.deepcopy(deployment)
    name = deployment["metadata"]["name"]
    deployment["metadata"]["name"] = f"{podman.run_id}-{name}"
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        target = target_of(deployment)
        assert target is not None
        container["image"] = podman.image(target)
        container["env"] = [
            e for e in container.get("env", []) if e["name"] != "OTEL_EXPORTER_OTLP_ENDPOINT"
        ]
    used = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    podman.volumes += [c for c in used if c not in podman.volumes]
    return yaml.safe_dump_all([*(configmaps[c] for c in used), deployment])


def play(podman: Podman, tmp_path: Path, overlay: list[dict[str, Any]]) -> dict[str, str]:
    """Plays each of our Deployments; returns its server container by Deployment name."""
    network = podman.network()
    configmaps = {d["metadata"]["name"]: d for d in overlay if d["kind"] == "ConfigMap"}
    deployments = {
        d["metadata"]["name"]: d for d in overlay if d["kind"] == "Deployment" and target_of(d)
    }
    assert set(deployments) == set(ORDER), sorted(deployments)
    servers: dict[str, str] = {}
    for name in ORDER:
        path = tmp_path / f"{name}.yaml"
        path.write_text(pod_manifest(podman, deployments[name], configmaps))
        out = podman("kube", "play", "--network", f"{network}:alias={name}", str(path)).stdout
        lines = [line.strip() for line in out.splitlines()]
        pod_id = lines[lines.index("Pod:") + 1]
        podman.pods.append(pod_id)
        container_id = lines[lines.index("Container:") + 1]
        servers[name] = container_id
    return servers


def ask(podman: Podman, router: str, question: str) -> dict[str, Any]:
    """A chat completion through the router's OpenAI front door, from inside its container."""
    reply = podman.http(
        router,
        "POST",
        "http://127.0.0.1:8080/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": question}]},
        key="dev",
    )
    assert reply["status"] == 200, reply
    body: dict[str, Any] = reply["body"]
    return body


def stage(answer: dict[str, Any], name: str) -> dict[str, Any]:
    lines = [line for line in answer["sluice"]["stages"] if line["stage"] == name]
    assert len(lines) == 1, answer["sluice"]["stages"]
    return lines[0]


def test_dev_overlay_answers_with_costs_and_survives_a_dead_cache(
    podman: Podman, tmp_path: Path, dev_overlay: list[dict[str, Any]]
) -> None:
    servers = play(podman, tmp_path, dev_overlay)
    router = servers["router"]
    deployments = {d["metadata"]["name"]: d for d in dev_overlay if d["kind"] == "Deployment"}
    try:
        # Every gRPC service by its Service name, from the router's network namespace.
        for name in ("router", "cache", "compressor", "batcher", "dispatcher"):
            address = f"{name}:{grpc_port(deployments[name])}"
            wait_for(name, partial(podman.health, router, address), "SERVING")
        wait_for(
            "simulator",
            lambda: str(podman.http(router, "GET", "http://simulator:8700/healthz")["status"]),
            "200",
        )
    except AssertionError:
        raise AssertionError({n: podman.logs(c) for n, c in servers.items()}) from None

    answer = ask(podman, router, "What is the capital of France?")
    assert answer["choices"][0]["message"]["content"]
    sluice = answer["sluice"]
    assert sluice["tier"] and sluice["trace_id"]
    assert sluice["cost_usd"] > 0 and sluice["baseline_cost_usd"] > 0
    assert stage(answer, "cache")["outcome"] != "skipped", sluice["stages"]
    tiers = [line for line in sluice["stages"] if line["stage"] == "tier"]
    assert tiers and all(line["model"] and line["region"] for line in tiers), tiers

    podman("kill", servers["cache"])
    wait_for("the killed cache", lambda: podman.state(servers["cache"]), "exited", timeout=30)

    answer = ask(podman, router, "Name three rivers in Europe.")
    assert answer["choices"][0]["message"]["content"]
    assert stage(answer, "cache")["outcome"] == "skipped", answer["sluice"]["stages"]
    assert answer["sluice"]["cost_usd"] > 0
    # Still down: the router answered without it, nobody restarted it.
    assert podman.state(servers["cache"]) == "exited"
