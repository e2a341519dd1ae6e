"""`sluice ask`: one request through the router, printed with its cost table and trace id."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

_STAGE = {
    common_pb2.STAGE_CACHE: "cache",
    common_pb2.STAGE_COMPRESSOR: "compressor",
    common_pb2.STAGE_BATCHER: "batcher",
    common_pb2.STAGE_TIER: "tier",
    common_pb2.STAGE_JUDGE: "judge",
}
_OUTCOME = {
    common_pb2.STAGE_OUTCOME_USED: "used",
    common_pb2.STAGE_OUTCOME_PASSED: "passed",
    common_pb2.STAGE_OUTCOME_REJECTED: "rejected",
    common_pb2.STAGE_OUTCOME_SKIPPED: "SKIPPED",
    common_pb2.STAGE_OUTCOME_NOT_APPLICABLE: "n/a",
}


def usd(nano: int) -> str:
    return f"${nano / 1e9:.9f}"


def cost_table(response: pb.CompleteResponse) -> str:
    cost = response.cost
    rows = [
        f"{'stage':<12}{'outcome':<10}{'model':<20}{'region':<10}{'tokens in/out':>14}"
        f"{'cost (USD)':>16}  detail"
    ]
    for line in cost.stages:
        name = _STAGE.get(line.stage, "?") + (f" {line.tier}" if line.tier else "")
        tokens = (
            f"{line.usage.input_tokens}/{line.usage.output_tokens}"
            if line.usage.input_tokens or line.usage.output_tokens
            else ""
        )
        rows.append(
            f"{name:<12}{_OUTCOME.get(line.outcome, '?'):<10}{line.model[:19]:<20}"
            f"{line.region:<10}{tokens:>14}{usd(line.cost_nano_usd):>16}  {line.detail}"
        )
    rows.append(f"{'total':<66}{usd(cost.total_cost_nano_usd):>16}")
    saved = cost.cost_avoided_nano_usd
    share = f" ({saved / cost.baseline_cost_nano_usd:.1%})" if cost.baseline_cost_nano_usd else ""
    rows.append(
        f"baseline {cost.baseline_model} would cost {usd(cost.baseline_cost_nano_usd)}; "
        f"cost avoided {usd(saved)}{share}"
    )
    return "\n".join(rows)


def summary(response: pb.CompleteResponse) -> str:
    """Who answered, the cost table and the trace id: everything but the answer itself."""
    who = (
        "the cache"
        if response.cache_hit
        else f"tier {response.tier} · {response.model} · region {response.region}"
    )
    return (
        f"answered by {who} · policy {response.policy_version}\n\n"
        f"{cost_table(response)}\n\ntrace {response.trace_id}"
    )


def describe(response: pb.CompleteResponse) -> str:
    return f"{response.content}\n\n{summary(response)}"


def _request(args: argparse.Namespace) -> pb.CompleteRequest:
    messages = []
    if args.system:
        messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=args.system))
    messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=args.prompt))
    return pb.CompleteRequest(
        model_class=args.model_class,
        messages=messages,
        cache_mode=pb.CACHE_MODE_BYPASS if args.no_cache else pb.CACHE_MODE_UNSPECIFIED,
    )


def _stream(
    stub: pb_grpc.RouterServiceStub,
    request: pb.CompleteRequest,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
) -> pb.CompleteResponse:
    streamed = pb.CompleteStreamRequest(
        context=request.context,
        model_class=request.model_class,
        messages=request.messages,
        sampling=request.sampling,
        cache_mode=request.cache_mode,
    )
    attempt = 0
    summary = pb.CompleteResponse()
    for event in stub.CompleteStream(streamed, metadata=metadata, timeout=timeout):
        if event.HasField("delta"):
            if event.delta.attempt != attempt and attempt:
                print(f"\n[tier {event.delta.tier} retries: the previous answer failed a gate]")
            attempt = event.delta.attempt
            print(event.delta.text, end="", flush=True)
        else:
            summary = event.summary
    print("\n")
    return summary


def run_ask(args: argparse.Namespace, state: Path) -> int:
    metadata = (("x-api-key", args.api_key),)
    with grpc.insecure_channel(args.router) as channel:
        stub = pb_grpc.RouterServiceStub(channel)
        try:
            if args.stream:
                # The answer was printed as it streamed; only the summary is left to show.
                response = _stream(stub, _request(args), metadata, args.timeout)
                print(summary(response))
            else:
                response = stub.Complete(_request(args), metadata=metadata, timeout=args.timeout)
                print(describe(response))
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    if (state / "traces.jsonl").exists():
        print(f"see it: .venv/bin/sluice trace {response.trace_id}")
    return 0
