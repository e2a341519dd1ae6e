"""A unary request from its draft to its result, in the order it is answered.

A repeat of a request the router holds an exact copy of (exact_local.py) is answered from the
copy on the spot: the copy's key covers every field admission validates but three, so only
those are checked, and the prompt is not counted again. Anything else is admitted in full and
runs the pipeline (cache, compression, cascade) under its tenant's baggage.
"""

from __future__ import annotations

from opentelemetry.context import attach, detach

from services.router.admission import Admission, Draft
from services.router.model import ChatRequest, RouteResult
from services.router.pipeline import Pipeline, complete
from shared.telemetry import with_request_baggage


async def answer_unary(
    admission: Admission, pipeline: Pipeline, draft: Draft, deadline: float
) -> tuple[ChatRequest, RouteResult]:
    """The admitted request and its result; `deadline` is on time.monotonic()'s clock."""
    copy = pipeline.find_copy(draft.request, draft.copy_key)
    if copy is not None:
        chat = admission.admit_repeat(draft, copy.prompt_tokens)
        return chat, pipeline.serve_copy(chat, copy)
    chat = await admission.admit_draft(draft)
    return chat, await answer_admitted(pipeline, chat, deadline)


async def answer_admitted(pipeline: Pipeline, chat: ChatRequest, deadline: float) -> RouteResult:
    """An admitted unary request's result through the pipeline, with its tenant and policy
    version in the baggage; `deadline` is on time.monotonic()'s clock."""
    token = attach(with_request_baggage(chat.tenant.tenant_id, chat.policy_version))
    try:
        return await complete(pipeline, chat, deadline)
    finally:
        detach(token)
