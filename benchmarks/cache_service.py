"""The cache service the issue-16 suites talk to, and the gRPC messages they send it.

The long-prompt suite (cache_long_prompts.py) and the error-bound replay (cache_bound.py) run
against `python -m services.cache` on loopback, as cache_quality.py does. Which service they
get is a `CacheService`: given the SLUICE_CACHE_* settings it yields the address of a serving
cache. `cache_process` starts the real process (benchmarks.common.running_service); tests pass
an in-process server instead, so the suites' counting is tested without a model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeAlias

from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from benchmarks.common import REPO, running_service

CacheService = Callable[[Mapping[str, str]], AbstractContextManager[str]]
# The async stub exists only in the generated .pyi, so the alias is a string at run time.
Stub: TypeAlias = "pb_grpc.SemanticCacheServiceAsyncStub"
MODEL_CLASS = "bench"
# Enough for the benchmarks' namespaces (the bound replay stores ~24k entries over 15 tenants),
# so nothing is evicted mid-run; entries live in memory only.
BENCH_ENV = {"SLUICE_CACHE_STORE": "memory://", "SLUICE_CACHE_MAX_ENTRIES": "100000"}


def cache_process(
    repo: Path = REPO, log_dir: Path | None = None, name: str = "cache"
) -> CacheService:
    """Starts `python -m services.cache` from `repo` with the given settings (over BENCH_ENV),
    its log `name`.log in `log_dir` (a temporary folder, removed afterwards, when None)."""

    @contextmanager
    def start(env: Mapping[str, str]) -> Iterator[str]:
        settings = {**BENCH_ENV, **env}
        if log_dir is not None:
            log = Path(log_dir) / f"{name}.log"
            with running_service("cache", settings, repo=repo, log_path=log) as address:
                yield address
            return
        with tempfile.TemporaryDirectory(prefix="sluice-cache-") as logs:
            log = Path(logs) / "cache.log"
            with running_service("cache", settings, repo=repo, log_path=log) as address:
                yield address

    return start


def user_turn(text: str) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]


def tenant(name: str) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(tenant_id=name)
