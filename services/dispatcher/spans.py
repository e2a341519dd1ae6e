"""The dispatcher's spans: one `chat <model>` client span per upstream call.

Attributes follow the OpenTelemetry GenAI conventions (`gen_ai.*`) plus Sluice's own, and the
OpenInference names (`llm.*`) beside them, so Arize Phoenix shows each call as an LLM span with
its model, tokens and cost. Neither a prompt, an answer nor a key is ever put on a span: only
names, counts, costs and timings.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.dispatcher.calls import DispatchResult, ModelRequest
from services.dispatcher.endpoints import Endpoint
from services.dispatcher.providers.select import ANTHROPIC
from shared import telemetry as attrs

# Dispatcher-only attributes; the names shared by every hop live in shared.telemetry.
HEDGE = "sluice.dispatch.hedge"
HEDGED = "sluice.dispatch.hedged"
HEDGE_WON = "sluice.dispatch.hedge_won"
CANCELLED = "sluice.dispatch.cancelled"
CANCELLED_COST_USD = "sluice.dispatch.cancelled_cost.usd"
TTFT_S = "sluice.dispatch.ttft_s"
PROBE = "sluice.dispatch.probe"
RETRY_BUDGET_EXHAUSTED = "sluice.dispatch.retry_budget_exhausted"


def start_call_span(
    tracer: trace.Tracer, call: ModelRequest, endpoint: Endpoint, *, hedge: bool, probe: bool
) -> trace.Span:
    span = tracer.start_span(f"chat {call.model}", kind=SpanKind.CLIENT)
    span.set_attributes(
        {
            attrs.GEN_AI_OPERATION: "chat",
            attrs.GEN_AI_SYSTEM: endpoint.provider,
            attrs.GEN_AI_REQUEST_MODEL: call.model,
            attrs.OPENINFERENCE_SPAN_KIND: attrs.SPAN_KIND_LLM,
            attrs.LLM_SYSTEM: llm_system(endpoint),
            attrs.LLM_PROVIDER: endpoint.provider,
            attrs.LLM_MODEL_NAME: call.model,
            attrs.STAGE: "dispatch",
            attrs.TIER: call.tier,
            attrs.REGION: endpoint.region,
            attrs.DISPATCH_ENDPOINT: endpoint.name,
            HEDGE: hedge,
            PROBE: probe,
        }
    )
    return span


def llm_system(endpoint: Endpoint) -> str:
    """The API the call speaks, as OpenInference's `llm.system` names it: a `provider:
    anthropic` endpoint takes the Messages API, every other one OpenAI's chat completions.
    Who hosts the model (a reseller, vLLM, the simulator) is `llm.provider`."""
    return ANTHROPIC if endpoint.provider == ANTHROPIC else "openai"


def end_won(span: trace.Span, result: DispatchResult, own_cost_nano_usd: int) -> None:
    answer = result.answer
    span.set_attributes(
        {
            attrs.GEN_AI_RESPONSE_MODEL: answer.model,
            attrs.GEN_AI_INPUT_TOKENS: answer.usage.input_tokens,
            attrs.GEN_AI_OUTPUT_TOKENS: answer.usage.output_tokens,
            attrs.GEN_AI_FINISH_REASONS: [answer.finish.value],
            attrs.COST_USD: attrs.usd(own_cost_nano_usd),
            attrs.LLM_MODEL_NAME: answer.model,
            **attrs.llm_usage(answer.usage.input_tokens, answer.usage.output_tokens),
            attrs.LLM_COST_TOTAL: attrs.usd(own_cost_nano_usd),
            TTFT_S: result.ttft_s,
        }
    )
    span.end()


def end_cancelled(span: trace.Span, cost_nano_usd: int) -> None:
    """A call that lost a hedge race: not an error, but its estimated cost is recorded."""
    span.set_attributes(
        {CANCELLED: True, CANCELLED_COST_USD: attrs.usd(cost_nano_usd), attrs.COST_USD: 0.0}
    )
    span.end()


def end_failed(span: trace.Span, error: BaseException | str) -> None:
    span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


def result_attributes(result: DispatchResult) -> dict[str, str | bool | int | float]:
    """What the dispatcher's server span says about the whole dispatched request."""
    return {
        attrs.STAGE: "dispatch",
        attrs.OPENINFERENCE_SPAN_KIND: attrs.SPAN_KIND_CHAIN,
        attrs.REGION: result.region,
        attrs.DISPATCH_ENDPOINT: result.endpoint,
        attrs.GEN_AI_REQUEST_MODEL: result.answer.model,
        attrs.GEN_AI_INPUT_TOKENS: result.answer.usage.input_tokens,
        attrs.GEN_AI_OUTPUT_TOKENS: result.answer.usage.output_tokens,
        attrs.COST_USD: attrs.usd(result.cost_nano_usd),
        attrs.DISPATCH_ATTEMPTS: result.attempts,
        HEDGED: result.hedged,
        HEDGE_WON: result.hedge_won,
        CANCELLED_COST_USD: attrs.usd(result.cancelled_cost_nano_usd),
        TTFT_S: result.ttft_s,
    }
