"""Libraries a service needs only for an optional feature are imported when the feature is used,
not when the service starts: each costs RSS in every replica (issue 18, mesh RSS <= 700 MB)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# service module -> top-level packages it must not import by itself
NOT_AT_START = {
    # httpx and its OpenTelemetry instrumentation (~16 MB): only jobs sent to a provider use it.
    # tiktoken (~4 MB mapped, ~26 MB once an encoding loads): counted only for packable calls.
    "services.batcher.server": ("httpx", "redis", "tiktoken"),
    # The redis client (~10 MB): only with a Redis ledger, usage log or cache store.
    "services.router.server": ("redis",),
    "services.cache.server": ("redis",),
    # tiktoken: counted only when a provider reports no usage or a hedge loses.
    "services.dispatcher.server": ("redis", "tiktoken"),
    # tiktoken: loaded by the first Compress call (services/compressor/server.py).
    "services.compressor.server": ("redis", "httpx", "tiktoken"),
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
