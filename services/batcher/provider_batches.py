"""Client for a provider's OpenAI-style Batch API over httpx: Files and Batches endpoints.

    POST {base}/files (multipart: purpose=batch, file)      GET {base}/files?purpose=batch
    GET  {base}/files/{id}/content
    POST {base}/batches        GET {base}/batches/{id}      GET {base}/batches?limit&after
    POST {base}/batches/{id}/cancel

`base` is an endpoint's base_url from the dispatcher's endpoints file (e.g.
`http://127.0.0.1:8700/us-east/v1`). The list calls exist for crash recovery: a job that may
have uploaded its file or created its batch before the process died looks for them by file name
and by `metadata.sluice_job_id` instead of sending them again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from services.batcher.jobs import CHAT_URL
from services.dispatcher.endpoints import Endpoint

if TYPE_CHECKING:
    import httpx

JOB_METADATA_KEY = "sluice_job_id"
# A batch created this long before its job is certainly not the job's: stop paging there.
_CLOCK_SKEW_S = 600.0
_MAX_PAGES = 50


class ProviderError(Exception):
    """A Batch API call failed; retryable says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int = 0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class ProviderBatch:
    """The fields of an OpenAI batch object the batcher uses."""

    id: str
    # validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    status: str
    output_file_id: str = ""
    error_file_id: str = ""
    errors: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProviderBatch:
        errors = (raw.get("errors") or {}).get("data") or []
        return cls(
            id=str(raw["id"]),
            status=str(raw.get("status", "")),
            output_file_id=str(raw.get("output_file_id") or ""),
            error_file_id=str(raw.get("error_file_id") or ""),
            errors=tuple(str(e.get("message", e)) for e in errors if isinstance(e, Mapping)),
        )


class BatchProvider(Protocol):
    """What the job runner needs from a provider; fakes implement it in tests."""

    async def find_file(self, endpoint: Endpoint, filename: str) -> str | None: ...
    async def upload(self, endpoint: Endpoint, filename: str, content: bytes) -> str: ...
    async def find_batch(
        self, endpoint: Endpoint, job_id: str, not_before: float
    ) -> ProviderBatch | None: ...
    async def create(self, endpoint: Endpoint, file_id: str, job_id: str) -> ProviderBatch: ...
    async def get(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch: ...
    async def cancel(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch: ...
    async def content(self, endpoint: Endpoint, file_id: str) -> bytes: ...


class EndpointTable:
    """Which endpoint a job runs at: one serving the model in the wanted region, else any."""

    def __init__(self, endpoints: Sequence[Endpoint], default_region: str) -> None:
        self._endpoints = tuple(endpoints)
        self._default_region = default_region

    def choose(self, model: str, region: str = "") -> Endpoint | None:
        serving = [e for e in self._endpoints if model in e.models]
        wanted = region or self._default_region
        return next((e for e in serving if e.region == wanted), serving[0] if serving else None)

    def named(self, name: str) -> Endpoint | None:
        return next((e for e in self._endpoints if e.name == name), None)


class OpenAIBatchClient:
    """The Batch API over one pooled httpx client, or one made by `http()` on the first call:
    a batcher whose jobs never reach a provider then never imports httpx (~16 MB of RSS with
    its OpenTelemetry instrumentation)."""

    def __init__(
        self,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._http = http
        self._env = env

    def _client(self) -> httpx.AsyncClient:
        if callable(self._http):
            self._http = self._http()
        return self._http

    async def _call(
        self, endpoint: Endpoint, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        key = endpoint.api_key(self._env)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        url = f"{endpoint.base_url.rstrip('/')}{path}"
        http = self._client()
        import httpx  # already loaded: the client is httpx's

        try:
            response = await http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            # Transport trouble: the request may or may not have arrived; the caller's state
            # machine looks before it repeats anything.
            raise ProviderError(
                f"{endpoint.name} {method} {path}: {type(error).__name__}", retryable=True
            ) from None
        if response.is_success:
            return response
        retryable = response.status_code == 429 or response.status_code >= 500
        raise ProviderError(
            f"{endpoint.name} {method} {path}: {response.status_code} {_message(response)}",
            retryable=retryable,
            status=response.status_code,
        )

    async def _json(self, endpoint: Endpoint, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(endpoint, method, path, **kwargs)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"{endpoint.name} {method} {path}: the reply is not JSON", retryable=True
            ) from None

    async def find_file(self, endpoint: Endpoint, filename: str) -> str | None:
        listing = await self._json(endpoint, "GET", "/files", params={"purpose": "batch"})
        for entry in listing.get("data") or []:
            if entry.get("filename") == filename and entry.get("status") != "error":
                return str(entry["id"])
        return None

    async def upload(self, endpoint: Endpoint, filename: str, content: bytes) -> str:
        uploaded = await self._json(
            endpoint,
            "POST",
            "/files",
            data={"purpose": "batch"},
            files={"file": (filename, content, "application/jsonl")},
        )
        return str(uploaded["id"])

    async def find_batch(
        self, endpoint: Endpoint, job_id: str, not_before: float
    ) -> ProviderBatch | None:
        """Pages through the batch list (newest first) for the job's batch."""
        after = ""
        for _ in range(_MAX_PAGES):
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self._json(endpoint, "GET", "/batches", params=params)
            entries = page.get("data") or []
            for entry in entries:
                if (entry.get("metadata") or {}).get(JOB_METADATA_KEY) == job_id:
                    return ProviderBatch.from_json(entry)
            too_old = any(e.get("created_at", 0) < not_before - _CLOCK_SKEW_S for e in entries)
            if not page.get("has_more") or not entries or too_old:
                return None
            after = str(entries[-1]["id"])
        return None

    async def create(self, endpoint: Endpoint, file_id: str, job_id: str) -> ProviderBatch:
        body = {
            "input_file_id": file_id,
            "endpoint": CHAT_URL,
            "completion_window": "24h",
            "metadata": {JOB_METADATA_KEY: job_id},
        }
        return ProviderBatch.from_json(await self._json(endpoint, "POST", "/batches", json=body))

    async def get(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch:
        return ProviderBatch.from_json(await self._json(endpoint, "GET", f"/batches/{batch_id}"))

    async def cancel(self, endpoint: Endpoint, batch_id: str) -> ProviderBatch:
        path = f"/batches/{batch_id}/cancel"
        return ProviderBatch.from_json(await self._json(endpoint, "POST", path))

    async def content(self, endpoint: Endpoint, file_id: str) -> bytes:
        return (await self._call(endpoint, "GET", f"/files/{file_id}/content")).content


def _message(response: httpx.Response) -> str:
    try:
        return str(orjson.loads(response.content)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response.text[:200]
