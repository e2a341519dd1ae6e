"""The body of every service's `__main__`: load settings, fail fast on bad config, serve."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import uvloop

from shared.grpc_server import AddressInUseError
from shared.settings import ConfigError

S = TypeVar("S")

# glibc gives every thread that allocates an arena of its own, up to 8 per core, and each keeps
# the freed memory of its own peak: the cache's lookup threads (ONNX Runtime activations) held
# ~15 MB more after the overhead benchmark's traffic than with two arenas, the dispatcher ~5 MB
# (benchmarks/mesh_memory.py). Two, because the pods have two cores.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_malloc_arenas(env: Mapping[str, str] = os.environ, arenas: int = MALLOC_ARENAS) -> bool:
    """Caps glibc's malloc arenas; True when applied. MALLOC_ARENA_MAX in the environment, read
    by glibc itself, wins; other C libraries (musl, macOS) have nothing to cap."""
    if "MALLOC_ARENA_MAX" in env:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_ARENA_MAX, arenas))


def run_service(
    load_settings: Callable[[], S], serve: Callable[[S], Coroutine[Any, Any, None]]
) -> None:
    """Runs serve(settings) on uvloop. Invalid configuration, whether an env variable or a policy,
    catalogue or endpoints file, exits 2 with one line naming the problem, not a traceback; a
    listen address that is taken exits 1 with one line naming the address."""
    limit_malloc_arenas()
    try:
        uvloop.run(serve(load_settings()))
    except ConfigError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except AddressInUseError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
