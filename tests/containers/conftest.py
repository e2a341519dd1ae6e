"""Fixtures of the container tests (`pytest -m containers`, or `make test-containers`).

They build the six images with `make images`' script and run them with podman, which takes
minutes and a podman install, so they run only when `-m` names the `containers` marker; a
plain `pytest` or `make test` skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.containers.podman import ROOT, TAG, Podman, render_dev_overlay


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "containers" in str(config.getoption("markexpr", "")):
        return
    skip = pytest.mark.skip(reason="container tests run only with `-m containers`")
    for item in items:
        if item.get_closest_marker("containers"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built_images() -> None:
    """All six images, built (or found up to date in the layer cache) by deploy/images.sh, which
    also installs and sets up podman where it is missing."""
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.fail("podman is not installed, and installing it needs root")
    result = subprocess.run(
        [str(ROOT / "deploy" / "images.sh")],
        cwd=ROOT,
        env={**os.environ, "IMAGE_TAG": TAG, "CONTAINER_ENGINE": "podman"},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])


@pytest.fixture(scope="session")
def dev_overlay() -> list[dict[str, Any]]:
    return render_dev_overlay()


@pytest.fixture
def podman(built_images: None) -> Iterator[Podman]:
    """A podman runner whose pods, containers and networks go away after the test, whatever
    its outcome."""
    runner = Podman()
    try:
        yield runner
    finally:
        runner.cleanup()
