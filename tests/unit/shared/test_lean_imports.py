"""Libraries a service needs only for an optional feature are imported when the feature is used,
not when the service starts: each costs RSS in every replica (issue 18, mesh RSS <= 700 MB)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# service module -> top-level packages it must not import by itself
NOT_AT_START = {
    # httpx and its OpenTelemetry instrumentation (~16 MB): only jobs sent to a provider use it.
    "services.batcher.server": ("httpx", "redis"),
    # The redis client (~10 MB): only with a Redis ledger, usage log or cache store.
    "services.router.server": ("redis",),
    "services.cache.server": ("redis",),
    "services.dispatcher.server": ("redis",),
    "services.compressor.server": ("redis", "httpx"),
}


@pytest.mark.parametrize("module", sorted(NOT_AT_START))
def test_a_service_imports_no_optional_library_at_start(module: str) -> None:
    code = (
        f"import sys, {module}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [name for name in NOT_AT_START[module] if name in loaded] == []
