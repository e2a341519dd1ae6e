"""Test-wide fixtures: an environment free of the developer's own Sluice and OTel settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Every test starts from the same environment, whatever the shell exported."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("SLUICE_", "OTEL_")):
            del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)
