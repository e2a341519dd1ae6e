"""Every overlay renders with kustomize and validates against the Kubernetes JSON schemas.

The schemas ship inside the kubernetes-validate wheel, so this runs offline. Strict mode
rejects unknown fields, which is what catches a misspelt `readinesProbe` that a cluster would
silently ignore.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.k8s.manifests import OVERLAYS, Manifest, name_of, render

# The oldest Kubernetes the manifests promise to work on (native gRPC probes are GA since 1.27;
# matchLabelKeys in topology spread constraints is on by default since 1.27), and the newest
# whose schemas the pinned kubernetes-validate bundles.
OLDEST_SUPPORTED = "1.30.0"
NEWEST = kubernetes_validate.latest_version()


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, NEWEST])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_schemas(
    rendered: dict[str, list[Manifest]], overlay: str, version: str
) -> None:
    errors = []
    for manifest in rendered[overlay]:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{name_of(manifest)}: {path}: {error.message}")
    assert not errors, "\n".join(errors)


def test_base_renders_on_its_own(base: list[Manifest]) -> None:
    kinds = Counter(m["kind"] for m in base)
    assert kinds["Deployment"] == kinds["Service"] == kinds["ServiceAccount"] == 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lives_in_the_overlays_namespace(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    namespaces = [m for m in manifests if m["kind"] == "Namespace"]
    assert len(namespaces) == 1, "each overlay creates its own namespace"
    namespace = namespaces[0]["metadata"]["name"]
    # The pods meet the restricted Pod Security Standard; the namespace makes the API server
    # hold them to it.
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    strays = [
        name_of(m)
        for m in manifests
        if m["kind"] != "Namespace" and m["metadata"].get("namespace") != namespace
    ]
    assert not strays


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_labelled_part_of_sluice(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    unlabelled = [
        name_of(m)
        for m in rendered[overlay]
        if m["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "sluice"
    ]
    assert not unlabelled


def test_a_broken_kustomization_fails_loudly(tmp_path: Path) -> None:
    """The render helper must surface kustomize's error, not return an empty list."""
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(AssertionError, match="kustomize failed"):
        render(tmp_path)
