"""Client for OpenAI-compatible `/v1/chat/completions` servers over httpx.

Copes with the quirks real providers show: usage missing from streams (llama.cpp), 500 for
malformed bodies, 429 with Retry-After, and SSE chunks with empty `choices`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from shared.chat import Finish
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter


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


def request_body(call: ModelRequest, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [
            {"role": t.role.value, "content": t.content, **({"name": t.name} if t.name else {})}
            for t in call.turns
        ],
        "stream": stream,
    }
    sampling = call.sampling
    if sampling.max_tokens:
        body["max_tokens"] = sampling.max_tokens
    if sampling.temperature is not None:
        body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _error_message(response_body: bytes) -> str:
    try:
        parsed = orjson.loads(response_body)
        return str(parsed["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response_body[:200].decode(errors="replace") or "no body"


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


class OpenAICompatibleClient:
    """Sends chat completions to endpoints over one pooled httpx client."""

    def __init__(
        self, http: httpx.AsyncClient, tokens: TokenCounter, env: Mapping[str, str] = os.environ
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._env = env

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        key = endpoint.api_key(self._env)
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _check(self, endpoint: Endpoint, response: httpx.Response, body: bytes) -> None:
        if response.status_code >= 400:
            raise UpstreamError(
                endpoint.name,
                "http",
                _error_message(body),
                status=response.status_code,
                retry_after_s=_retry_after(response.headers),
            )

    def _usage(self, call: ModelRequest, raw: Any, content: str) -> TokenUsage:
        if isinstance(raw, Mapping) and "prompt_tokens" in raw:
            details = raw.get("prompt_tokens_details") or {}
            return TokenUsage(
                int(raw.get("prompt_tokens") or 0),
                int(raw.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0),
            )
        # No usage (llama.cpp streams): count it ourselves so cost is never silently zero.
        prompt = self._tokens.count_chat(t.content for t in call.turns)
        return TokenUsage(prompt, self._tokens.count(content))

    async def chat(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> ProviderAnswer:
        try:
            response = await self._http.post(
                endpoint.chat_url,
                content=orjson.dumps(request_body(call, stream=False)),
                headers=self._headers(endpoint),
                timeout=timeout_s,
            )
        except httpx.TimeoutException:
            raise UpstreamError(
                endpoint.name, "timeout", f"no answer in {timeout_s:.2f}s"
            ) from None
        except httpx.TransportError as error:
            raise UpstreamError(endpoint.name, "connect", type(error).__name__) from None
        self._check(endpoint, response, response.content)
        try:
            payload = orjson.loads(response.content)
            choice = payload["choices"][0]
            content = str(choice["message"].get("content") or "")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamError(endpoint.name, "protocol", "malformed completion body") from None
        usage_raw = payload.get("usage")
        return ProviderAnswer(
            content=content,
            finish=Finish.parse(choice.get("finish_reason")),
            model=str(payload.get("model") or call.model),
            usage=self._usage(call, usage_raw, content),
            reported_cost_usd=_reported_cost(usage_raw),
        )

    async def stream(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        """Yields text deltas as they arrive, then one ProviderAnswer with the whole text."""
        parts: list[str] = []
        finish: str | None = None
        usage_raw: Any = None
        model = call.model
        try:
            async with self._http.stream(
                "POST",
                endpoint.chat_url,
                content=orjson.dumps(request_body(call, stream=True)),
                headers=self._headers(endpoint),
                timeout=timeout_s,
            ) as response:
                if response.status_code >= 400:
                    self._check(endpoint, response, await response.aread())
                async for chunk in _sse_events(response):
                    model = str(chunk.get("model") or model)
                    usage_raw = chunk.get("usage") or usage_raw
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if text:
                            parts.append(text)
                            yield Delta(text)
        except httpx.TimeoutException:
            raise UpstreamError(
                endpoint.name, "timeout", f"stream stalled ({timeout_s:.2f}s)"
            ) from None
        except httpx.TransportError as error:
            raise UpstreamError(endpoint.name, "connect", type(error).__name__) from None
        content = "".join(parts)
        yield ProviderAnswer(
            content=content,
            finish=Finish.parse(finish),
            model=model,
            usage=self._usage(call, usage_raw, content),
            reported_cost_usd=_reported_cost(usage_raw),
        )


def _reported_cost(usage_raw: Any) -> float | None:
    if isinstance(usage_raw, Mapping) and isinstance(usage_raw.get("cost"), int | float):
        return float(usage_raw["cost"])
    return None


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parses `data:` lines of a server-sent event stream until [DONE]."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("stream", "protocol", "malformed SSE chunk") from None
        if isinstance(event, dict):
            yield event
