"""Domain errors and their gRPC status codes, mapped in this one place.

Services raise these from domain code (which never imports grpc); servicers turn them into a
status with `abort_with`. Every status a Sluice service sends carries the trailing metadata
`sluice-error-origin`, naming the service that produced it, so a caller can tell "the peer
answered with an error" from "the peer is unreachable" (a transport failure has no origin).
"""

from __future__ import annotations

from typing import NoReturn

import grpc

ORIGIN_METADATA_KEY = "sluice-error-origin"


class SluiceError(Exception):
    """Base of all domain errors; subclasses pick the status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(SluiceError):
    """The request is malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SluiceError):
    """The request names something that does not exist, e.g. an unknown cache namespace."""

    code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(SluiceError):
    """The caller presented no API key or an unknown one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class BudgetExhausted(SluiceError):
    """The request would exceed its cost cap or its tenant's budget."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SluiceError):
    """A required dependency (a service or every upstream region) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(SluiceError):
    """The request's deadline ran out before an answer was ready."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotReady(SluiceError):
    """The service is still starting (e.g. loading its model)."""

    code = grpc.StatusCode.UNAVAILABLE


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], origin: str, error: SluiceError
) -> NoReturn:
    """Ends the RPC with the error's status, tagging which service produced it."""
    context.set_trailing_metadata(((ORIGIN_METADATA_KEY, origin),))
    await context.abort(error.code, str(error))
    raise AssertionError("context.abort returned")  # it always raises; this satisfies NoReturn


def error_origin(error: grpc.aio.AioRpcError) -> str | None:
    """The Sluice service that produced a status, or None for transport-level failures."""
    trailing = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == ORIGIN_METADATA_KEY:
            return value if isinstance(value, str) else value.decode()
    return None


_BY_CODE: dict[grpc.StatusCode, type[SluiceError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        NotFound,
        Unauthenticated,
        BudgetExhausted,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_status(error: grpc.aio.AioRpcError) -> SluiceError:
    """Re-raises a peer's status as the matching domain error, keeping its message."""
    return _BY_CODE.get(error.code(), SluiceError)(error.details() or error.code().name)


# Messages quote what the caller sent so they can find it, but never more than this: a 10k
# character model name must not come back 10k characters long (nor fill the logs).
QUOTE_LIMIT = 64


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a caller's value for an error message, cut to `limit` characters with an
    ellipsis."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
