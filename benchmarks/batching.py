"""What the batcher saves, measured through the running mesh on loopback: singleflight on a
duplicate-heavy workload, packing of short classification prompts that share a long system
prompt, and the same prompts as one deferrable Batch API job.

    python -m benchmarks.batching [--data ../shared/data] [--prompts 1000] [--rate 200]

The mesh is the real processes (shared/mesh.py): simulator, dispatcher, batcher and router; the
cache and compressor are left out (the router skips them), so nothing but the batcher can save.
The prompts are BANKING77 test messages (synthetic tickets if the data is missing), each asking
for one intent label under a ~1,500-token system prompt of instructions, the 77 labels and
labelled training examples. The simulator answers them with keyword rules from a scenario file
this script writes, so answers are short labels and deterministic: every packed answer is
checked against the unpacked answer to the same prompt.

- Singleflight: distinct prompts, each sent several times at once through the router, cache
  bypassed, with a slow upstream so the copies overlap. Without singleflight every request would
  be an upstream call.
- Packing: the prompts as an open-loop stream at --rate per second to BatcherService.Execute,
  packable and not. A --sabotage fraction carries `[sim:pack-drop]`, which makes the simulator
  leave that request out of a packed reply, so the fallback to individual calls is exercised.
- Batch API: the same prompts as one BatcherService.Submit job, polled with Get; its cost is
  compared with the cost of the interactive (unpacked) calls.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from benchmarks.common import DEFAULT_DATA, hash_order, markdown_table
from services.simulator.scenario import DEFAULT_SCENARIO
from shared.mesh import Mesh, free_ports
from shared.tokens import TokenCounter

MODEL = "Qwen/Qwen3-8B"
SERVICES = ("simulator", "dispatcher", "batcher", "router")
DEV_KEY = (("x-api-key", "dev"),)
PACK_WINDOW_MS = 50
PACK_MAX_ITEMS = 16
# Keyword rules standing in for a classifier: the label depends on the message, deterministically.
RULES = (
    (r"(?is)^message:.*\bcard\b.*\b(arriv|deliver|receiv|come|post)", "card_arrival"),
    (r"(?is)^message:.*exchange rate", "exchange_rate"),
    (r"(?is)^message:.*top.?up", "top_up_failed"),
    (r"(?is)^message:.*refund", "request_refund"),
    (r"(?is)^message:.*transfer", "transfer_not_received_by_recipient"),
    (r"(?is)^message:.*\bpin\b", "change_pin"),
    (r"(?is)^message:.*(cash|atm)", "cash_withdrawal_charge"),
    (r"(?is)^message:.*(fee|charge)", "extra_charge_on_statement"),
    (r"(?is)^message:", "card_payment_not_recognised"),
)


@dataclass(frozen=True)
class Workload:
    system: str
    prompts: list[str]


def load_workload(data: Path, count: int, sabotage: float, tokens: TokenCounter) -> Workload:
    """BANKING77 test messages under a ~1,500-token system prompt built from its training set."""
    folder = data / "banking77"
    if (folder / "test.csv").exists():
        with (folder / "test.csv").open(newline="") as handle:
            texts = sorted((row["text"] for row in csv.DictReader(handle)), key=hash_order)
        with (folder / "train.csv").open(newline="") as handle:
            examples = sorted(csv.DictReader(handle), key=lambda row: hash_order(row["text"]))
        labels = json.loads((folder / "categories.json").read_text())
    else:
        print(f"no BANKING77 under {data}; using synthetic tickets", file=sys.stderr)
        texts = [f"My card payment number {n} was declined, why?" for n in range(count)]
        examples = [{"text": f"Example request {n}", "category": "other"} for n in range(400)]
        labels = ["other"]
    system = (
        "You are the intent classifier of a bank's support desk. Reply with exactly one label "
        "from the list below and nothing else.\n\nLabels: " + ", ".join(labels) + "\n\nExamples:\n"
    )
    for example in examples:
        if tokens.count(system) >= 1500:
            break
        system += f"- {example['text']} => {example['category']}\n"
    prompts = [f"Message: {text}" for text in (texts * (count // len(texts) + 1))[:count]]
    step = round(1 / sabotage) if sabotage > 0 else 0
    if step:
        prompts = [
            p + " [sim:pack-drop]" if n % step == step - 1 else p for n, p in enumerate(prompts)
        ]
    return Workload(system, prompts)


def write_scenario(directory: Path) -> Path:
    """The default scenario with the classification rules in place of its own."""
    scenario = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    scenario["rules"] = [
        {"match": match, "models": [MODEL], "answer": label} for match, label in RULES
    ]
    path = directory / "batching-scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


class Sim:
    def __init__(self, mesh: Mesh) -> None:
        self._base = f"http://{mesh.address('simulator')}"

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(self._base + path, json=body or None, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def upstream_calls(self) -> int:
        regions = httpx.get(self._base + "/admin/stats", timeout=10).json()["regions"]
        return sum(int(r["received"]) for r in regions.values())


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def singleflight(mesh: Mesh, sim: Sim, distinct: int, copies: int) -> dict[str, Any]:
    """Copies of each prompt at once through the router; one upstream call per prompt is ideal."""
    sim.post("/admin/reset")
    for region in ("us-east", "eu-west", "ap-south"):
        sim.post(f"/admin/regions/{region}", ttft_median_ms=300, ttft_p99_ms=400)
    tag = uuid.uuid4().hex[:6]
    topics = [f"Explain topic {n} of distributed systems ({tag})" for n in range(distinct)]
    order = [t for t in topics for _ in range(copies)]
    random.Random(7).shuffle(order)
    async with grpc.aio.insecure_channel(mesh.address("router")) as channel:
        stub = router_grpc.RouterServiceStub(channel)

        async def ask(text: str) -> tuple[str, int]:
            message = common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)
            request = router_pb.CompleteRequest(
                messages=[message], cache_mode=router_pb.CACHE_MODE_BYPASS
            )
            reply = await stub.Complete(request, metadata=DEV_KEY, timeout=60)
            return text, reply.cost.total_cost_nano_usd

        answered = await asyncio.gather(*(ask(text) for text in order))
    upstream = sim.upstream_calls()
    sim.post("/admin/reset")
    # Without singleflight every copy would have paid what the copy that went upstream paid.
    leader = {text: max(c for t, c in answered if t == text) for text in topics}
    return {
        "requests": len(order),
        "upstream_calls": upstream,
        "saving": 1 - upstream / len(order),
        "cost_nano_usd": sum(cost for _, cost in answered),
        "unshared_cost_nano_usd": sum(leader[text] for text in order),
    }


@dataclass(frozen=True)
class Run:
    answers: list[str]
    input_tokens: int
    cost_nano_usd: int
    upstream_calls: int
    packed: int
    fallbacks: int
    latencies_s: list[float]
    saved_tokens: int


def execute_request(workload: Workload, index: int, packable: bool) -> pb.ExecuteRequest:
    messages = [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=workload.system),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=workload.prompts[index]),
    ]
    call = common_pb2.ModelCall(
        model=MODEL, messages=messages, sampling=common_pb2.SamplingParams(max_tokens=16)
    )
    context = common_pb2.RequestContext(tenant_id="bench", request_id=f"bench-{index}")
    return pb.ExecuteRequest(context=context, call=call, packable=packable)


async def stream(mesh: Mesh, sim: Sim, workload: Workload, rate: float, packable: bool) -> Run:
    """The prompts as an open-loop stream: request i is sent at i / rate seconds."""
    sim.post("/admin/reset")
    async with grpc.aio.insecure_channel(mesh.address("batcher")) as channel:
        stub = pb_grpc.BatcherServiceStub(channel)
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def one(index: int) -> tuple[pb.ExecuteResponse, float]:
            await asyncio.sleep(max(0.0, began + index / rate - loop.time()))
            sent = loop.time()
            reply = await stub.Execute(execute_request(workload, index, packable), timeout=60)
            return reply, loop.time() - sent

        results = await asyncio.gather(*(one(i) for i in range(len(workload.prompts))))
    replies = [reply for reply, _ in results]
    return Run(
        answers=[r.completion.content for r in replies],
        input_tokens=sum(r.completion.usage.input_tokens for r in replies),
        cost_nano_usd=sum(r.completion.cost_nano_usd for r in replies),
        upstream_calls=sim.upstream_calls(),
        packed=sum(1 for r in replies if r.packed_size and not r.pack_fallback_reason),
        fallbacks=sum(1 for r in replies if r.pack_fallback_reason),
        latencies_s=[latency for _, latency in results],
        saved_tokens=sum(r.input_tokens_saved for r in replies),
    )


async def batch_job(mesh: Mesh, sim: Sim, workload: Workload) -> tuple[pb.BatchJob, float]:
    """The prompts as one deferrable job; returns the finished job and its wall time."""
    sim.post("/admin/batches/reset")
    sim.post("/admin/batches", completion_delay_s=2.0)
    items = [
        pb.BatchItem(custom_id=f"p{index}", call=execute_request(workload, index, False).call)
        for index in range(len(workload.prompts))
    ]
    context = common_pb2.RequestContext(tenant_id="bench", request_id=uuid.uuid4().hex)
    started = time.monotonic()
    async with grpc.aio.insecure_channel(mesh.address("batcher")) as channel:
        stub = pb_grpc.BatcherServiceStub(channel)
        submitted = await stub.Submit(pb.SubmitRequest(context=context, items=items), timeout=60)
        while True:
            await asyncio.sleep(0.25)
            job = (await stub.Get(pb.GetRequest(context=context, job_id=submitted.job.job_id))).job
            if job.status not in (pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_IN_PROGRESS):
                return job, time.monotonic() - started


def start_mesh(root: Path) -> Mesh:
    env = {
        "SLUICE_SIMULATOR_CONFIG": str(write_scenario(root)),
        "SLUICE_BATCHER_DATA_DIR": str(root / "batcher"),
        "SLUICE_BATCHER_PACK_WINDOW_MS": str(PACK_WINDOW_MS),
        "SLUICE_BATCHER_PACK_MAX_ITEMS": str(PACK_MAX_ITEMS),
        "SLUICE_BATCHER_POLL_INTERVAL_S": "0.25",
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.1",
        "SLUICE_LOG_LEVEL": "WARNING",
    }
    mesh = Mesh.plan(free_ports(), root / "logs", env)
    for name in SERVICES:
        mesh.start(name)
    mesh.wait_ready(SERVICES, timeout_s=120)
    return mesh


def differing(expected: list[str], actual: list[str]) -> int:
    return sum(a != b for a, b in zip(expected, actual, strict=True))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def measure(mesh: Mesh, workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    sim = Sim(mesh)
    flights = await singleflight(mesh, sim, args.distinct, args.copies)
    alone = await stream(mesh, sim, workload, args.rate, packable=False)
    packed = await stream(mesh, sim, workload, args.rate, packable=True)
    job, job_s = await batch_job(mesh, sim, workload)
    batch_answers = [r.completion.content for r in job.results]
    return {
        "singleflight_requests": flights["requests"],
        "singleflight_upstream_calls": flights["upstream_calls"],
        "singleflight_saving": round(flights["saving"], 4),
        "singleflight_cost_saving": round(
            1 - flights["cost_nano_usd"] / max(1, flights["unshared_cost_nano_usd"]), 4
        ),
        "prompts": len(workload.prompts),
        "system_prompt_tokens": TokenCounter().count(workload.system),
        "input_tokens_unpacked": alone.input_tokens,
        "input_tokens_packed": packed.input_tokens,
        "packing_input_token_saving": round(1 - packed.input_tokens / alone.input_tokens, 4),
        "packing_cost_saving": round(1 - packed.cost_nano_usd / alone.cost_nano_usd, 4),
        "cost_unpacked_usd": alone.cost_nano_usd / 1e9,
        "cost_packed_usd": packed.cost_nano_usd / 1e9,
        "upstream_calls_unpacked": alone.upstream_calls,
        "upstream_calls_packed": packed.upstream_calls,
        "packed_answers": packed.packed,
        "split_failures": packed.fallbacks,
        "packed_answers_differing": sum(
            a != b for a, b in zip(alone.answers, packed.answers, strict=True)
        ),
        "latency_p50_ms_unpacked": ms(statistics.median(alone.latencies_s)),
        "latency_p50_ms_packed": ms(statistics.median(packed.latencies_s)),
        "latency_p95_ms_unpacked": ms(percentile(alone.latencies_s, 0.95)),
        "latency_p95_ms_packed": ms(percentile(packed.latencies_s, 0.95)),
        "packing_added_latency_p50_ms": ms(
            statistics.median(packed.latencies_s) - statistics.median(alone.latencies_s)
        ),
        "batch_status": pb.JobStatus.Name(job.status),
        "batch_completed": job.completed,
        "batch_cost_usd": job.cost_nano_usd / 1e9,
        "batch_cost_ratio": round(job.cost_nano_usd / alone.cost_nano_usd, 4),
        # The same usage priced both ways: the catalogue's batch discount alone, without the
        # hedges and retries the direct calls also paid for.
        "batch_cost_ratio_same_usage": round(
            job.cost_nano_usd / max(1, job.interactive_cost_nano_usd), 4
        ),
        "batch_input_tokens": sum(r.completion.usage.input_tokens for r in job.results),
        "batch_answers_differing": sum(
            a != b for a, b in zip(alone.answers, batch_answers, strict=True)
        ),
        "batch_wall_s": round(job_s, 2),
    }


def table(f: dict[str, Any]) -> str:
    """The figures as the README shows them."""
    copies = f["singleflight_requests"] // max(1, f["singleflight_upstream_calls"])
    rows = [
        (
            "singleflight",
            f"{f['singleflight_requests']} requests, {copies} copies each",
            "",
            f"{f['singleflight_upstream_calls']} upstream calls",
            f"saves {f['singleflight_saving']:.1%} of calls, {f['singleflight_cost_saving']:.1%}"
            " of cost",
        ),
        (
            "direct calls",
            f"{f['prompts']} prompts, {f['upstream_calls_unpacked']} upstream calls",
            f"{f['input_tokens_unpacked']:,}",
            f"${f['cost_unpacked_usd']:.6f}",
            f"p50 {f['latency_p50_ms_unpacked']} ms, p95 {f['latency_p95_ms_unpacked']} ms",
        ),
        (
            "packed",
            f"{f['upstream_calls_packed']} upstream calls, {f['split_failures']} split failures",
            f"{f['input_tokens_packed']:,}",
            f"${f['cost_packed_usd']:.6f}",
            f"p50 {f['latency_p50_ms_packed']} ms, p95 {f['latency_p95_ms_packed']} ms; saves "
            f"{f['packing_input_token_saving']:.1%} of input tokens",
        ),
        (
            "Batch API job",
            f"{f['batch_completed']} answered in {f['batch_wall_s']} s",
            f"{f['batch_input_tokens']:,}",
            f"${f['batch_cost_usd']:.6f}",
            f"{f['batch_cost_ratio']:.3f} of the direct calls' cost",
        ),
    ]
    return markdown_table(("mode", "workload", "input tokens", "cost", "notes"), rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="packing stream, requests/s")
    parser.add_argument("--sabotage", type=float, default=0.01)
    parser.add_argument("--distinct", type=int, default=50)
    parser.add_argument("--copies", type=int, default=4)
    args = parser.parse_args(argv)
    workload = load_workload(args.data, args.prompts, args.sabotage, TokenCounter())
    with tempfile.TemporaryDirectory(prefix="sluice-batching-") as tmp:
        mesh = start_mesh(Path(tmp))
        try:
            figures = asyncio.run(measure(mesh, workload, args))
        finally:
            mesh.stop_all()
    print(table(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
