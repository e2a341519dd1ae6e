"""OpenAI's Batch API, simulated per region: upload a JSONL file, create a batch, poll it, fetch
its output file. Batches are billed at the catalogue's batch price (50% off for the seed models).

| method and path                                  | what it does                                |
|--------------------------------------------------|---------------------------------------------|
| `POST /<region>/v1/files`                         | multipart upload: `purpose=batch`, `file`  |
| `GET  /<region>/v1/files?purpose=batch`           | the region's files, newest first           |
| `GET  /<region>/v1/files/{id}/content`            | a file's bytes (input, output or error)    |
| `POST /<region>/v1/batches`                       | creates a batch from an uploaded file      |
| `GET  /<region>/v1/batches?limit=&after=`         | the region's batches, newest first, paged  |
| `GET  /<region>/v1/batches/{id}`                  | a batch; runs it once its delay has passed |
| `POST /<region>/v1/batches/{id}/cancel`           | cancels a batch that has not run yet       |
| `GET  /admin/batches`                             | counters and the completion delay          |
| `POST /admin/batches`                             | `{"completion_delay_s": 2.5}` sets the delay |
| `POST /admin/batches/reset`                       | zeroes the counters                        |

A region in an outage answers 503 here too. Multipart bodies are parsed with the standard
library's email parser, so the simulator needs no multipart package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.simulator.batch_work import (
    CHAT_URL,
    BatchRunner,
    BatchStats,
    RegionBatches,
    StoredBatch,
    StoredFile,
    new_id,
    now_s,
    validate_input,
)
from services.simulator.composer import Composer
from services.simulator.request import BadRequest
from services.simulator.scenario import Scenario
from services.simulator.state import SimulatorState
from services.simulator.wire import error_body
from shared.pricing import PriceCatalogue
from shared.tokens import TokenCounter

DEFAULT_COMPLETION_DELAY_S = 1.0


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _error(status: int, message: str, code: str) -> Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return _json(error_body(message, code, kind), status)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields by name: (filename or None, bytes)."""
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest("the body must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    return fields


class BatchApi:
    """Files and Batches endpoints for every region of the scenario."""

    def __init__(
        self,
        scenario: Scenario,
        composer: Composer,
        serves: Callable[[str], bool],
        state: SimulatorState,
        tokens: TokenCounter,
        catalogue: PriceCatalogue,
    ) -> None:
        self._state = state
        self._runner = BatchRunner(composer.compose, serves, tokens, catalogue)
        self._regions = {name: RegionBatches() for name in scenario.regions}
        self.stats = BatchStats()
        self.completion_delay_s = DEFAULT_COMPLETION_DELAY_S

    def routes(self) -> list[Route]:
        return [
            Route("/admin/batches", self.admin_stats, methods=["GET"]),
            Route("/admin/batches", self.admin_configure, methods=["POST"]),
            Route("/admin/batches/reset", self.admin_reset, methods=["POST"]),
            Route("/{region}/v1/files", self.upload, methods=["POST"]),
            Route("/{region}/v1/files", self.list_files, methods=["GET"]),
            Route("/{region}/v1/files/{file_id}/content", self.content, methods=["GET"]),
            Route("/{region}/v1/batches", self.create, methods=["POST"]),
            Route("/{region}/v1/batches", self.list_batches, methods=["GET"]),
            Route("/{region}/v1/batches/{batch_id}", self.get, methods=["GET"]),
            Route("/{region}/v1/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
        ]

    def _region(self, request: Request) -> RegionBatches | Response:
        name = request.path_params["region"]
        if name not in self._regions:
            return _error(404, f"unknown region {name!r}", "region_not_found")
        if self._state.regions[name].faults.outage:
            return _error(503, f"region {name} is unavailable (simulated outage)", "outage")
        return self._regions[name]

    async def upload(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except BadRequest as error:
            return _error(400, str(error), "invalid_request")
        purpose = fields.get("purpose", (None, b""))[1].decode(errors="replace")
        if purpose != "batch":
            return _error(400, "'purpose' must be 'batch'", "invalid_request")
        if "file" not in fields:
            return _error(400, "'file' is required", "invalid_request")
        filename, content = fields["file"]
        stored = StoredFile(new_id("file"), filename or "upload.jsonl", purpose, content, now_s())
        region.files[stored.id] = stored
        self.stats.files_uploaded += 1
        return _json(stored.as_json())

    async def list_files(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        purpose = request.query_params.get("purpose")
        files = [f for f in reversed(region.files.values()) if purpose in (None, f.purpose)]
        return _json({"object": "list", "data": [f.as_json() for f in files], "has_more": False})

    async def content(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        stored = region.files.get(request.path_params["file_id"])
        if stored is None:
            return _error(404, "no such file", "file_not_found")
        return Response(stored.content, media_type="application/jsonl")

    async def create(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "the body is not valid JSON", "invalid_request")
        problem = _create_problem(body, region)
        if problem:
            return _error(404 if "no such file" in problem else 400, problem, "invalid_request")
        lines, errors = validate_input(region.files[body["input_file_id"]].content)
        batch = StoredBatch(
            id=new_id("batch"),
            input_file_id=body["input_file_id"],
            created_at=now_s(),
            due_at=asyncio.get_running_loop().time() + self.completion_delay_s,
            metadata=dict(body.get("metadata") or {}),
            status="failed" if errors else "in_progress",
            total=len(lines),
            errors=errors,
            finished_at=now_s() if errors else None,
        )
        region.batches[batch.id] = batch
        self.stats.batches_created += 1
        return _json(batch.as_json())

    async def list_batches(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        try:
            limit = min(100, max(1, int(request.query_params.get("limit", "20"))))
        except ValueError:
            return _error(400, "'limit' must be an integer", "invalid_request")
        batches = list(reversed(region.batches.values()))
        after = request.query_params.get("after")
        if after:
            ids = [b.id for b in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        page = batches[:limit]
        payload = {
            "object": "list",
            "data": [b.as_json() for b in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(batches) > limit,
        }
        return _json(payload)

    async def get(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        batch = region.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "no such batch", "batch_not_found")
        if batch.status == "in_progress" and asyncio.get_running_loop().time() >= batch.due_at:
            await self._run(request.path_params["region"], region, batch)
        return _json(batch.as_json())

    async def _run(self, name: str, region: RegionBatches, batch: StoredBatch) -> None:
        """Answers every line once; reads meanwhile see `finalizing`."""
        batch.status = "finalizing"
        lines, _ = validate_input(region.files[batch.input_file_id].content)
        output, errors, failed = await asyncio.to_thread(self._runner.run, name, lines)
        for content, attribute in ((output, "output_file_id"), (errors, "error_file_id")):
            if content:
                filename = f"{batch.id}_{attribute}.jsonl"
                stored = StoredFile(new_id("file"), filename, "batch_output", content, now_s())
                region.files[stored.id] = stored
                setattr(batch, attribute, stored.id)
        batch.completed, batch.failed = len(lines) - failed, failed
        batch.status, batch.finished_at = "completed", now_s()
        self.stats.batches_completed += 1
        self.stats.requests_answered += len(lines) - failed
        self.stats.requests_failed += failed

    async def cancel(self, request: Request) -> Response:
        region = self._region(request)
        if isinstance(region, Response):
            return region
        batch = region.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "no such batch", "batch_not_found")
        if batch.status == "in_progress":
            batch.status, batch.finished_at = "cancelled", now_s()
            self.stats.batches_cancelled += 1
        return _json(batch.as_json())

    async def admin_stats(self, _: Request) -> Response:
        return _json({**self.stats.as_json(), "completion_delay_s": self.completion_delay_s})

    async def admin_configure(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            delay = body["completion_delay_s"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            usage = 'the body must be {"completion_delay_s": <seconds>}'
            return _error(400, usage, "invalid_request")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            return _error(400, "'completion_delay_s' must be a number >= 0", "invalid_request")
        self.completion_delay_s = float(delay)
        return await self.admin_stats(request)

    async def admin_reset(self, request: Request) -> Response:
        self.stats = BatchStats()
        return await self.admin_stats(request)


def _create_problem(body: Any, region: RegionBatches) -> str:
    if not isinstance(body, Mapping):
        return "the body must be a JSON object"
    if body.get("endpoint") != CHAT_URL:
        return f"'endpoint' must be {CHAT_URL!r}"
    if body.get("completion_window") != "24h":
        return "'completion_window' must be '24h'"
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(v, str) for v in metadata.values())
    ):
        return "'metadata' must map strings to strings"
    if body.get("input_file_id") not in region.files:
        return f"no such file: {body.get('input_file_id')!r}"
    return ""
