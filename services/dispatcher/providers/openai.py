"""Client for OpenAI-compatible `/v1/chat/completions` servers over httpx.

Every call is made with `"stream": true`, also when the caller wants the whole answer at once:
a non-streamed reply arrives in one piece when the model has finished, so only a stream shows
the time to the first token, which is what hedging waits on, and only a stream can be cancelled
midway with the tokens received so far known (a lost hedge is billed for those). A server that
ignores `stream` and answers with one JSON body is accepted too.

Copes with the quirks real providers show: usage missing from streams (llama.cpp), 500 for
malformed bodies, 429 with Retry-After (seconds or an HTTP date), error objects inside a stream,
and SSE chunks with empty `choices`. Key values are scrubbed from every upstream message before
it can reach a log, a span or a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from services.dispatcher.calls import Delta, LogprobSummary, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from shared.chat import Choice, ChoiceDelta, Finish, ToolCallDelta
from shared.openai_chat import StreamedChoices, chat_body, choice_from_body
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter

# A connection that takes longer than this is broken, whatever time the request has left.
_CONNECT_TIMEOUT_S = 5.0
# How long to read on after [DONE] for the end of the body, to keep the connection.
_DRAIN_AFTER_DONE_S = 1.0


class UpstreamError(Exception):
    """An attempt at one endpoint failed; `retryable` says whether another endpoint may help."""

    def __init__(
        self,
        endpoint: str,
        kind: str,
        message: str,
        *,
        status: int = 0,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{endpoint}: {kind}{f' {status}' if status else ''}: {message}")
        self.endpoint = endpoint
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        # 4xx other than 429 means the request itself is wrong; another region will say the same.
        return (
            self.kind in {"timeout", "connect", "protocol"}
            or self.status == 429
            or (self.status >= 500)
        )

    @property
    def counts_against_endpoint(self) -> bool:
        """Server errors, timeouts and broken connections make an endpoint an outlier; a 429
        is the endpoint working as configured, and a 4xx is the request's fault."""
        return self.retryable and self.status != 429


def upstream_error(
    endpoint: Endpoint, env: Mapping[str, str], kind: str, message: str, **extra: Any
) -> UpstreamError:
    """An attempt's failure, with the endpoint's key scrubbed from the message: some servers
    echo the request's key header in errors, and the key must go no further (every provider
    client builds its errors here)."""
    key = endpoint.api_key(env)
    scrubbed = message.replace(key, "[redacted]") if key else message
    return UpstreamError(endpoint.name, kind, scrubbed, **extra)


def estimated_usage(tokens: TokenCounter, call: ModelRequest, content: str) -> TokenUsage:
    """Tokens of the prompt and of the text received, counted with cl100k, for a provider that
    reported no usage (or a call cut short)."""
    prompt = tokens.count_chat(t.content for t in call.turns)
    return TokenUsage(prompt, tokens.count(content) if content else 0)


def request_body(call: ModelRequest, *, stream: bool) -> dict[str, Any]:
    body = chat_body(
        call.model,
        call.turns,
        call.sampling,
        call.response_format,
        call.tools,
        end_user=call.end_user,
        gate_logprobs=call.logprobs,
    )
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def summarise_logprobs(call: ModelRequest, choices: tuple[Choice, ...]) -> LogprobSummary | None:
    """The first choice's token logprobs, summarised for the router's `logprob` gate; None when
    the call did not ask for them or the provider sent none."""
    values = [entry.logprob for entry in choices[0].logprobs] if choices else []
    if not call.logprobs or not values:
        return None
    return LogprobSummary(sum(values) / len(values), min(values), len(values))


def _call_pieces(choice: Choice) -> tuple[ToolCallDelta, ...]:
    return tuple(
        ToolCallDelta(index, call.id, call.name, call.arguments)
        for index, call in enumerate(choice.tool_calls)
    )


def _error_message(response_body: bytes) -> str:
    try:
        parsed = orjson.loads(response_body)
        return str(parsed["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response_body[:200].decode(errors="replace") or "no body"


def retry_after_s(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _reported_cost(usage_raw: Any) -> float | None:
    if isinstance(usage_raw, Mapping) and isinstance(usage_raw.get("cost"), int | float):
        return float(usage_raw["cost"])
    return None


class OpenAICompatibleClient:
    """Streams chat completions from endpoints over one pooled httpx client."""

    def __init__(
        self, http: httpx.AsyncClient, tokens: TokenCounter, env: Mapping[str, str] = os.environ
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._env = env

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        key = endpoint.api_key(self._env)
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _error(self, endpoint: Endpoint, kind: str, message: str, **extra: Any) -> UpstreamError:
        return upstream_error(endpoint, self._env, kind, message, **extra)

    def estimate_usage(self, call: ModelRequest, content: str) -> TokenUsage:
        return estimated_usage(self._tokens, call, content)

    def _usage(self, call: ModelRequest, raw: Any, content: str) -> TokenUsage:
        if isinstance(raw, Mapping) and "prompt_tokens" in raw:
            details = raw.get("prompt_tokens_details") or {}
            return TokenUsage(
                int(raw.get("prompt_tokens") or 0),
                int(raw.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0),
            )
        # No usage (llama.cpp streams): count it ourselves so cost is never silently zero.
        return self.estimate_usage(call, content)

    async def stream(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        """Yields text deltas as they arrive, then one ProviderAnswer with the whole text.

        timeout_s bounds the connection, the wait for the first byte and each gap between
        chunks; the caller bounds the whole call by its deadline.
        """
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
        try:
            async with self._http.stream(
                "POST",
                endpoint.chat_url,
                content=orjson.dumps(request_body(call, stream=True)),
                headers=self._headers(endpoint),
                timeout=timeout,
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise self._error(
                        endpoint,
                        "http",
                        _error_message(body),
                        status=response.status_code,
                        retry_after_s=retry_after_s(response.headers),
                    )
                if "application/json" in response.headers.get("content-type", ""):
                    async for event in self._whole(endpoint, call, await response.aread()):
                        yield event
                    return
                async for event in self._events(endpoint, call, response):
                    yield event
        except httpx.TimeoutException:
            raise self._error(endpoint, "timeout", f"no data for {timeout_s:.2f}s") from None
        except httpx.TransportError as error:
            raise self._error(endpoint, "connect", type(error).__name__) from None

    async def _events(
        self, endpoint: Endpoint, call: ModelRequest, response: httpx.Response
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        choices = StreamedChoices()
        usage_raw: Any = None
        model = call.model
        done = False
        async for chunk in self._sse_events(endpoint, response):
            if chunk is None:
                done = True
                break
            if isinstance(chunk.get("error"), Mapping):
                message = str(chunk["error"].get("message") or chunk["error"])
                raise self._error(endpoint, "http", f"error in stream: {message}", status=500)
            model = str(chunk.get("model") or model)
            usage_raw = chunk.get("usage") or usage_raw
            for raw_choice in chunk.get("choices") or ():
                piece = choices.add(raw_choice) if isinstance(raw_choice, Mapping) else None
                if piece is not None:
                    yield Delta.of(piece)
        if not done and not choices.finished:
            # The connection ended cleanly but the answer did not: a cut, not a short answer.
            raise self._error(endpoint, "protocol", "stream ended before the answer finished")
        yield self._answer(call, choices.choices(), model, usage_raw)

    def _answer(
        self, call: ModelRequest, choices: tuple[Choice, ...], model: str, usage_raw: Any
    ) -> ProviderAnswer:
        first = choices[0] if choices else Choice(0, "", Finish.UNKNOWN)
        generated = "".join(
            c.content + c.refusal + "".join(t.name + t.arguments for t in c.tool_calls)
            for c in choices
        )
        return ProviderAnswer(
            content=first.content,
            finish=first.finish,
            model=model,
            usage=self._usage(call, usage_raw, generated),
            reported_cost_usd=_reported_cost(usage_raw),
            logprobs=summarise_logprobs(call, choices),
            choices=choices,
        )

    async def _whole(
        self, endpoint: Endpoint, call: ModelRequest, raw: bytes
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        """A server that ignored `stream`: the whole answer as one delta, then the answer."""
        try:
            payload = orjson.loads(raw)
            choices = tuple(
                choice_from_body(raw_choice, position)
                for position, raw_choice in enumerate(payload["choices"])
            )
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            raise self._error(endpoint, "protocol", "malformed completion body") from None
        if not choices:
            raise self._error(endpoint, "protocol", "malformed completion body: no choices")
        for choice in choices:
            piece = ChoiceDelta(choice.index, choice.content, _call_pieces(choice), choice.refusal)
            if piece.content or piece.tool_calls or piece.refusal:
                yield Delta.of(piece)
        model = str(payload.get("model") or call.model)
        yield self._answer(call, choices, model, payload.get("usage"))

    async def _sse_events(
        self, endpoint: Endpoint, response: httpx.Response
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Parses `data:` lines of a server-sent event stream; None stands for [DONE]."""
        lines = response.aiter_lines()
        async for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                # Read on to the end of the body (only the chunked terminator is left): a
                # response closed half-read takes its connection with it, and every call would
                # then pay a new TCP connection to the provider. A server that keeps the body
                # open after [DONE] only loses its connection, never the answer.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_AFTER_DONE_S):
                        async for _ in lines:
                            pass
                yield None
                return
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise self._error(endpoint, "protocol", "malformed SSE chunk") from None
            if isinstance(event, dict):
                yield event
