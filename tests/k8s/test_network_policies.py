"""The prod NetworkPolicies, evaluated on the rendered manifests.

Policies are additive allow-lists on top of a default deny, so each rule below asks: of all
the policies that select this pod, does any allow the traffic in question?
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.k8s.manifests import MESH_SERVICES, Manifest, of_kind, our_containers

# Allowed to take traffic from outside the namespace, and to reach the internet.
FRONT_DOOR = {"router"}
INTERNET = {"dispatcher", "batcher"}
# The mesh's call graph (DESIGN.md): caller -> callees.
EDGES = {
    "router": {"cache", "compressor", "batcher", "dispatcher"},
    "batcher": {"dispatcher"},
    "compressor": {"dispatcher"},
}


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and the In/NotIn/Exists operators) against labels."""
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def pod_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
        for w in of_kind(manifests, "Deployment", "StatefulSet")
    }


def policies_for(
    manifests: list[Manifest], labels: Mapping[str, str], direction: str
) -> list[dict[str, Any]]:
    """The Ingress or Egress rules of every policy that selects a pod with these labels."""
    rules: list[dict[str, Any]] = []
    for policy in of_kind(manifests, "NetworkPolicy"):
        spec = policy["spec"]
        if direction in spec["policyTypes"] and matches(spec["podSelector"], labels):
            rules.extend(spec.get(direction.lower(), []))
    return rules


def reaches_outside_namespace(peers: list[dict[str, Any]] | None) -> bool:
    """A rule with no peers admits everything; a namespaceSelector or ipBlock peer admits
    sources or destinations beyond the namespace. A bare podSelector stays inside it."""
    if not peers:
        return True
    return any("namespaceSelector" in p or "ipBlock" in p for p in peers)


def reaches_internet(peers: list[dict[str, Any]] | None) -> bool:
    """Only an ipBlock (or no peer at all) can match an address outside the cluster."""
    return not peers or any("ipBlock" in p for p in peers)


def allows(rules: list[dict[str, Any]], peer: Mapping[str, str], port: int, key: str) -> bool:
    """Whether any rule admits a same-namespace pod with labels `peer` on TCP `port`."""
    for rule in rules:
        ports = {p.get("port") for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        peers = rule.get(key)
        if not peers or any(
            "podSelector" in p and "namespaceSelector" not in p and matches(p["podSelector"], peer)
            for p in peers
        ):
            return True
    return False


@pytest.fixture
def prod(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered["prod"]


def test_everything_is_denied_by_default(prod: list[Manifest]) -> None:
    deny = [
        p
        for p in of_kind(prod, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1


def test_only_the_router_accepts_traffic_from_outside_the_namespace(
    prod: list[Manifest],
) -> None:
    open_to_outside = {
        name
        for name, labels in pod_labels(prod).items()
        if any(
            reaches_outside_namespace(rule.get("from"))
            for rule in policies_for(prod, labels, "Ingress")
        )
    }
    assert open_to_outside == FRONT_DOOR


def test_only_the_dispatcher_and_batcher_reach_the_internet(prod: list[Manifest]) -> None:
    online = {
        name
        for name, labels in pod_labels(prod).items()
        if any(reaches_internet(rule.get("to")) for rule in policies_for(prod, labels, "Egress"))
    }
    assert online == INTERNET


def test_internet_egress_excludes_private_and_metadata_ranges(prod: list[Manifest]) -> None:
    for name in INTERNET:
        labels = pod_labels(prod)[name]
        blocks = [
            peer["ipBlock"]
            for rule in policies_for(prod, labels, "Egress")
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert blocks, name
        for block in blocks:
            excepted = set(block.get("except", []))
            assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= excepted


def test_every_mesh_edge_is_allowed_both_ways(prod: list[Manifest]) -> None:
    labels = pod_labels(prod)
    grpc_ports = {
        c.image_target: c.ports["grpc"] for c in our_containers(prod) if "grpc" in c.ports
    }
    for caller, callees in EDGES.items():
        for callee in callees:
            port = grpc_ports[callee]
            egress = policies_for(prod, labels[caller], "Egress")
            ingress = policies_for(prod, labels[callee], "Ingress")
            assert allows(egress, labels[callee], port, "to"), f"{caller} -> {callee} egress"
            assert allows(ingress, labels[caller], port, "from"), f"{caller} -> {callee} ingress"


def test_no_hop_accepts_calls_from_a_service_that_does_not_call_it(prod: list[Manifest]) -> None:
    labels = pod_labels(prod)
    for callee in set(MESH_SERVICES) - FRONT_DOOR:
        callers = {c for c, callees in EDGES.items() if callee in callees}
        for other in set(labels) - callers - {callee}:
            ingress = policies_for(prod, labels[callee], "Ingress")
            for port in range(50051, 50056):
                assert not allows(ingress, labels[other], port, "from"), f"{other} -> {callee}"


def test_every_pod_can_resolve_names(prod: list[Manifest]) -> None:
    for name, labels in pod_labels(prod).items():
        dns_ports = {
            (p.get("protocol", "TCP"), p["port"])
            for rule in policies_for(prod, labels, "Egress")
            for p in rule.get("ports", [])
        }
        assert {("UDP", 53), ("TCP", 53)} <= dns_ports, name


def test_only_the_cache_and_the_router_talk_to_redis(prod: list[Manifest]) -> None:
    labels = pod_labels(prod)
    ingress = policies_for(prod, labels["redis"], "Ingress")
    for name in labels:
        allowed = name in ("cache", "router")
        assert allows(ingress, labels[name], 6379, "from") == allowed, name
        assert allows(policies_for(prod, labels[name], "Egress"), labels["redis"], 6379, "to") == (
            allowed
        ), name
