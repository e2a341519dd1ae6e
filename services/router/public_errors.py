"""What a caller is told when a request fails, at both front doors (gRPC and HTTP).

Unavailability and internal errors are built deep in the mesh and carry its insides: peer
addresses, replica lists, raw upstream text. The caller gets a stable, useful message with the
trace id to look the request up; the detail goes to the router's log (and stays on the spans).
Every other error is the caller's own doing and its message already says what to fix.
"""

from __future__ import annotations

import logging

import grpc

from shared.errors import SluiceError, Unavailable
from shared.telemetry import current_trace_id

LOG = logging.getLogger(__name__)
UNAVAILABLE_MESSAGE = (
    "upstream unavailable: a service or model this request needs could not answer; retry later"
)
INTERNAL_MESSAGE = "internal error in the gateway; retry later"
_INTERNAL_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


class InternalError(SluiceError):
    """An error the caller cannot fix, told without its details."""


def _with_trace(message: str, trace_id: str) -> str:
    return f"{message} (trace_id {trace_id})" if trace_id else message


def public_error(error: SluiceError) -> SluiceError:
    """The error as the caller should see it; logs the detail when it is withheld."""
    trace_id = current_trace_id()
    if error.code is grpc.StatusCode.UNAVAILABLE:
        LOG.warning("answered UNAVAILABLE (trace_id %s): %s", trace_id or "-", error)
        return Unavailable(_with_trace(UNAVAILABLE_MESSAGE, trace_id))
    if error.code in _INTERNAL_CODES:
        LOG.error("answered %s (trace_id %s): %s", error.code.name, trace_id or "-", error)
        return InternalError(_with_trace(INTERNAL_MESSAGE, trace_id))
    return error
