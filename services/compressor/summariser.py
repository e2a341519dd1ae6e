"""The Summariser that asks a cheap model, through the dispatcher's Dispatch RPC, for a summary.

This is the compressor's only gRPC client; it maps the call and its failures to the domain's
Summary and SummaryUnavailable so abstractive.py and history.py stay free of gRPC.
"""

from __future__ import annotations

import time

import grpc
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.compressor.abstractive import INSTRUCTIONS, Summary, SummaryUnavailable
from shared.chat import Role, Turn
from shared.convert import turns_to_proto

# Without a caller's deadline a summary still must not hold the request for long: the router
# gives the whole compressor stage 5 s.
DEFAULT_TIMEOUT_S = 4.0


class DispatcherSummariser:
    """Summaries from `model` through the dispatcher, at temperature 0."""

    def __init__(
        self, stub: dispatcher_grpc.RegionalDispatcherServiceAsyncStub, model: str
    ) -> None:
        self._stub = stub
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def summarise(
        self, text: str, question: str, max_tokens: int, deadline: float | None
    ) -> Summary:
        timeout = DEFAULT_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            raise SummaryUnavailable("no time left before the request's deadline")
        turns = (
            Turn(Role.SYSTEM, INSTRUCTIONS.format(tokens=max_tokens)),
            Turn(Role.USER, f"Question: {question}\n\nContext:\n{text}"),
        )
        call = common_pb2.ModelCall(
            model=self._model,
            messages=turns_to_proto(turns),
            sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=max_tokens),
        )
        try:
            response = await self._stub.Dispatch(
                dispatcher_pb.DispatchRequest(call=call), timeout=timeout
            )
        except grpc.aio.AioRpcError as error:
            raise SummaryUnavailable(
                f"dispatcher answered {error.code().name}: {error.details()}"
            ) from None
        completion = response.completion
        return Summary(text=completion.content, cost_nano_usd=completion.cost_nano_usd)
