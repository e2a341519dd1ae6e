"""Proto mapping: the new Completion fields, and the response format forwarded upstream."""

import pytest
from sluice.common.v1 import common_pb2

from services.dispatcher.calls import DispatchResult, ProviderAnswer
from services.dispatcher.servicer import completion_to_proto, model_request
from shared.chat import Finish, FormatKind
from shared.errors import InvalidRequest
from shared.pricing import TokenUsage


def test_completion_carries_hedging_cost_and_ttft() -> None:
    answer = ProviderAnswer("hi", Finish.STOP, "m", TokenUsage(3, 1))
    result = DispatchResult(
        answer,
        endpoint="eu",
        region="eu-west",
        cost_nano_usd=1500,
        latency_s=0.25,
        attempts=2,
        ttft_s=0.125,
        hedged=True,
        hedge_won=True,
        cancelled_cost_nano_usd=500,
    )
    proto = completion_to_proto(result)
    assert (proto.hedged, proto.hedge_won, proto.attempts) == (True, True, 2)
    assert proto.cancelled_cost_nano_usd == 500 and proto.cost_nano_usd == 1500
    assert proto.time_to_first_token.ToNanoseconds() == 125_000_000
    assert proto.upstream_latency.ToNanoseconds() == 250_000_000


def test_model_request_forwards_the_format_and_rejects_a_broken_schema() -> None:
    message = common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")
    schema = common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema='{"type": "object"}'
    )
    call = common_pb2.ModelCall(model="m", messages=[message], response_format=schema)
    request = model_request(common_pb2.RequestContext(), call)
    assert request.response_format.kind is FormatKind.JSON_SCHEMA
    call.response_format.json_schema = "{nope"
    with pytest.raises(InvalidRequest, match="json_schema is not JSON"):
        model_request(common_pb2.RequestContext(), call)
