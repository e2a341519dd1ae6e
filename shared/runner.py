"""The body of every service's `__main__`: load settings, fail fast on bad config, serve."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from shared.grpc_server import AddressInUseError
from shared.settings import ConfigError

S = TypeVar("S")


def run_service(
    load_settings: Callable[[], S], serve: Callable[[S], Coroutine[Any, Any, None]]
) -> None:
    """Runs serve(settings) on uvloop. Invalid configuration, whether an env variable or a policy,
    catalogue or endpoints file, exits 2 with one line naming the problem, not a traceback; a
    listen address that is taken exits 1 with one line naming the address."""
    try:
        uvloop.run(serve(load_settings()))
    except ConfigError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except AddressInUseError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
