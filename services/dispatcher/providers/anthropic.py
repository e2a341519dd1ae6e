"""Client for upstreams that speak Anthropic's Messages API (`provider: anthropic`).

It keeps the OpenAI client's contract (providers/openai.py): every call streams, so time to
first token is seen and a lost hedge can be cancelled with the tokens received known; a whole
JSON body from a server that ignores `stream` is accepted too. The key goes in `x-api-key`
and every call names the API version in `anthropic-version`. Errors keep the OpenAI client's
classes: 429 with Retry-After, 5xx and Anthropic's 529 (overloaded) are retryable, an `error`
event inside a stream counts as a server error.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from services.dispatcher.providers.openai import (
    UpstreamError,
    estimated_usage,
    retry_after_s,
    upstream_error,
)
from shared.anthropic_chat import (
    API_VERSION,
    StreamedMessage,
    choice_from_message,
    messages_body,
    usage_from,
)
from shared.chat import Choice
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter

_CONNECT_TIMEOUT_S = 5.0


def request_body(call: ModelRequest, *, stream: bool) -> dict[str, Any]:
    body = messages_body(
        call.model,
        call.turns,
        call.sampling,
        call.response_format,
        call.tools,
        end_user=call.end_user,
    )
    body["stream"] = stream
    return body


def _error_message(raw: bytes) -> str:
    try:
        return str(orjson.loads(raw)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw[:200].decode(errors="replace") or "no body"


class AnthropicMessagesClient:
    """Streams Messages API answers from endpoints over one pooled httpx client."""

    def __init__(
        self, http: httpx.AsyncClient, tokens: TokenCounter, env: Mapping[str, str] = os.environ
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._env = env

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": API_VERSION,
        }
        key = endpoint.api_key(self._env)
        if key:
            headers["x-api-key"] = key
        return headers

    def _error(self, endpoint: Endpoint, kind: str, message: str, **extra: Any) -> UpstreamError:
        return upstream_error(endpoint, self._env, kind, message, **extra)

    def estimate_usage(self, call: ModelRequest, content: str) -> TokenUsage:
        return estimated_usage(self._tokens, call, content)

    def _answer(
        self, call: ModelRequest, choice: Choice, model: str, usage: TokenUsage | None
    ) -> ProviderAnswer:
        said = choice.content + "".join(c.name + c.arguments for c in choice.tool_calls)
        return ProviderAnswer(
            content=choice.content,
            finish=choice.finish,
            model=model,
            usage=usage or self.estimate_usage(call, said),
            choices=(choice,),
        )

    async def stream(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        """Yields deltas as they arrive, then one ProviderAnswer with the whole answer."""
        if call.sampling.n > 1:
            raise self._error(endpoint, "http", "the Messages API answers one choice", status=400)
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
        try:
            async with self._http.stream(
                "POST",
                endpoint.messages_url,
                content=orjson.dumps(request_body(call, stream=True)),
                headers=self._headers(endpoint),
                timeout=timeout,
            ) as response:
                if response.status_code >= 400:
                    raise self._error(
                        endpoint,
                        "http",
                        _error_message(await response.aread()),
                        status=response.status_code,
                        retry_after_s=retry_after_s(response.headers),
                    )
                if "application/json" in response.headers.get("content-type", ""):
                    yield self._whole(endpoint, call, await response.aread())
                    return
                async for event in self._events(endpoint, call, response):
                    yield event
        except httpx.TimeoutException:
            raise self._error(endpoint, "timeout", f"no data for {timeout_s:.2f}s") from None
        except httpx.TransportError as error:
            raise self._error(endpoint, "connect", type(error).__name__) from None

    def _whole(self, endpoint: Endpoint, call: ModelRequest, raw: bytes) -> ProviderAnswer:
        try:
            message = orjson.loads(raw)
            choice = choice_from_message(message)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise self._error(endpoint, "protocol", "malformed message body") from None
        usage = usage_from(message.get("usage")) if message.get("usage") else None
        return self._answer(call, choice, str(message.get("model") or call.model), usage)

    async def _events(
        self, endpoint: Endpoint, call: ModelRequest, response: httpx.Response
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        message = StreamedMessage(model=call.model)
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            try:
                event = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                raise self._error(endpoint, "protocol", "malformed SSE event") from None
            if not isinstance(event, dict):
                continue
            if event.get("type") == "error":
                detail = (event.get("error") or {}).get("message") or event
                raise self._error(endpoint, "http", f"error in stream: {detail}", status=500)
            piece = message.add(event)
            if piece is not None:
                yield Delta.of(piece)
            if message.stopped:
                break
        if not message.stopped:
            raise self._error(endpoint, "protocol", "stream ended before message_stop")
        usage = usage_from(message.usage) if message.usage else None
        yield self._answer(call, message.choice(), message.model, usage)
