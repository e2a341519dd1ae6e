"""Each overlay rendered once per session; the tests only read the result."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import K8S, OVERLAYS, Manifest, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Every overlay under k8s/overlays (a new one is checked without touching the tests)."""
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def base() -> list[Manifest]:
    return render(K8S / "base")
