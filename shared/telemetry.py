"""OpenTelemetry set-up and the attribute names Sluice puts on spans.

Export is OTLP over gRPC, configured by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); with neither set, spans are still created (so trace ids
reach responses) but not exported. gRPC spans come from opentelemetry-instrumentation-grpc's
interceptors, passed explicitly to servers and channels rather than patched in globally.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    filters,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from shared.streams import StreamsInTheirOwnTask

# OpenTelemetry GenAI semantic conventions.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"

# OpenInference conventions, which Arize Phoenix reads to show a span as an LLM call or a step
# of a chain (`sluice up --trace-ui`). Set beside the GenAI names, never instead of them; the
# prompt and answer attributes (`input.value`, `llm.input_messages`, ...) are never set. Every
# span with GenAI names says its kind: Phoenix takes one without a kind for an LLM call, and
# adds up the tokens of LLM calls, so only the dispatcher's provider call is one.
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
SPAN_KIND_LLM = "LLM"
SPAN_KIND_CHAIN = "CHAIN"
LLM_SYSTEM = "llm.system"
LLM_PROVIDER = "llm.provider"
LLM_MODEL_NAME = "llm.model_name"
LLM_PROMPT_TOKENS = "llm.token_count.prompt"
LLM_COMPLETION_TOKENS = "llm.token_count.completion"
LLM_TOTAL_TOKENS = "llm.token_count.total"
LLM_COST_TOTAL = "llm.cost.total"

# Sluice's own attributes.
STAGE = "sluice.stage"
TIER = "sluice.tier"
REGION = "sluice.region"
COST_USD = "sluice.cost.usd"
COST_AVOIDED_USD = "sluice.cost_avoided.usd"
TENANT = "sluice.tenant"
POLICY_VERSION = "sluice.policy_version"
CACHE_HIT = "sluice.cache.hit"
CACHE_HIT_KIND = "sluice.cache.hit_kind"
CACHE_SIMILARITY = "sluice.cache.similarity"
GATE_FAILED = "sluice.gate.failed"
STAGE_SKIPPED = "sluice.stage.skipped"
COMPRESSOR_TOKENS_SAVED = "sluice.compressor.tokens_saved"
BATCH_GROUP_SIZE = "sluice.batch.size"
BATCH_SHARED = "sluice.batch.shared"
DISPATCH_ATTEMPTS = "sluice.dispatch.attempts"
DISPATCH_ENDPOINT = "sluice.dispatch.endpoint"
BUDGET_DOWNGRADED = "sluice.budget.downgraded"
LATENCY_ESCALATED = "sluice.tier.latency_escalated"
SHADOW_POLICY_VERSION = "sluice.shadow.policy_version"
SHADOW_TIERS = "sluice.shadow.tiers"
SHADOW_DIFFERS = "sluice.shadow.differs"
SHADOW_NOTE = "sluice.shadow.note"

_HEALTH_SERVICE = "grpc.health.v1.Health"
_REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
# The routers' long poll of the cache's change feed (services/router/exact_feed.py): one call a
# second per router, part of no request, so untraced like the probes.
_CHANGE_FEED = "/sluice.cache.v1.SemanticCacheService/Changes"


# Request-scoped facts the router puts in W3C baggage; every service copies them onto its spans,
# so each span of a trace says which tenant and policy version it served.
PROPAGATED_ATTRIBUTES = (TENANT, POLICY_VERSION)


class BaggageAttributes(SpanProcessor):
    """Copies the propagated Sluice baggage entries onto every span as it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        for key in PROPAGATED_ATTRIBUTES:
            value = entries.get(key)
            if isinstance(value, str) and value:
                span.set_attribute(key, value)


def with_request_baggage(
    tenant: str, policy_version: str, context: Context | None = None
) -> Context:
    """A context carrying the request's tenant and policy version to every downstream hop:
    `context` (by default the current one) plus those two entries."""
    context = baggage.set_baggage(TENANT, tenant, context)
    return baggage.set_baggage(POLICY_VERSION, policy_version, context)


class CancelledCallsEndTheirSpan(grpc.aio.UnaryUnaryClientInterceptor):
    """Sits inside the tracing interceptor, which waits for a unary call's status by itself and,
    when its caller is cancelled meanwhile, neither cancels the call nor ends the call's span
    (opentelemetry-python-contrib#3271): the server works on for nobody, and the span is never
    exported, so the server's half of the trace hangs from a parent that does not exist.
    Awaiting the call here cancels it with its caller, and a cancelled call's span ends."""

    def __init__(self, traced: Callable[[Any], bool]) -> None:
        self._traced = traced

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        call = await continuation(client_call_details, request)
        # Inside the tracing interceptor its span is the current one, for calls it traces.
        span = trace.get_current_span() if self._traced(client_call_details) else None
        try:
            await call
        except grpc.aio.AioRpcError:
            pass  # the tracing interceptor reads the status from the call, as it would anyway
        except asyncio.CancelledError:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, "cancelled by the caller"))
                span.end()
            raise
        return call


@dataclass(frozen=True)
class Telemetry:
    """A process's tracer provider and the interceptors that carry its context over gRPC."""

    provider: TracerProvider

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name)

    def server_interceptors(self) -> Sequence[grpc.aio.ServerInterceptor]:
        # Health probes and reflection would otherwise fill the trace store with noise.
        quiet = filters.negate(
            filters.any_of(
                filters.service_name(_HEALTH_SERVICE),
                filters.service_name(_REFLECTION_SERVICE),
                filters.full_method_name(_CHANGE_FEED),
            )
        )
        return [
            # First, so the tracing interceptor's stream wrappers run (and close) in one task.
            StreamsInTheirOwnTask(),
            aio_server_interceptor(tracer_provider=self.provider, filter_=quiet),  # type: ignore[no-untyped-call]
        ]

    def client_interceptors(self) -> Sequence[Any]:
        quiet = filters.negate(
            filters.any_of(
                filters.service_name(_HEALTH_SERVICE), filters.full_method_name(_CHANGE_FEED)
            )
        )
        interceptors = aio_client_interceptors(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=quiet
        )
        return [*interceptors, CancelledCallsEndTheirSpan(quiet)]

    def shutdown(self) -> None:
        """Flushes buffered spans; called on graceful shutdown."""
        self.provider.shutdown()


def init_telemetry(service_name: str) -> Telemetry:
    """Builds the tracer provider for one process, exporting over OTLP when configured."""
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BaggageAttributes())
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        # Imported only when exporting: the exporter pulls in a gRPC client of its own.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Telemetry(provider=provider)


def usd(nano_usd: int) -> float:
    """Converts integer nano-USD to the float USD that span attributes carry."""
    return nano_usd / 1e9


def llm_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """A model call's token counts under the OpenInference names. Phoenix adds up the counts
    of LLM spans only, so a CHAIN span (a router tier) can carry them too without counting a
    provider call twice."""
    return {
        LLM_PROMPT_TOKENS: input_tokens,
        LLM_COMPLETION_TOKENS: output_tokens,
        LLM_TOTAL_TOKENS: input_tokens + output_tokens,
    }


def current_trace_id() -> str:
    """The current span's trace id as 32 hex characters, or "" outside a trace."""
    return trace_id_of(trace.get_current_span())


def trace_id_of(span: trace.Span) -> str:
    """The span's trace id as 32 hex characters, or "" for a span outside any trace."""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
