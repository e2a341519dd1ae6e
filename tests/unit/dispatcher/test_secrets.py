"""Provider keys never reach a log line, a span or an error status, even when an upstream
echoes the Authorization header back in its error body."""

import logging

import httpx
import pytest

from shared.errors import Unavailable
from shared.log import JsonFormatter
from tests.unit.dispatcher.upstream import CALL, Upstream, build

KEY = "sk-live-7f3c9a1e5b2d4c6a"
WITH_KEYS = """
endpoints:
  - {name: us, region: us-east, base_url: 'http://sim/us-east/v1', api_key_env: US_KEY, models: [m]}
  - {name: eu, region: eu-west, base_url: 'http://sim/eu-west/v1', api_key_env: EU_KEY, models: [m]}
"""


class EchoingUpstream(Upstream):
    """A careless server that puts the caller's Authorization header in its error message."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if "us-east" in request.url.path:
            self.calls.append("us-east")
            self.requests.append(request)
            echoed = request.headers["authorization"]
            return httpx.Response(500, json={"error": {"message": f"bad auth {echoed}"}})
        return await super().__call__(request)


async def test_keys_are_sent_but_never_logged_traced_or_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = EchoingUpstream()
    rig = build(upstream, endpoints=WITH_KEYS, env={"US_KEY": KEY, "EU_KEY": KEY + "-eu"})
    with caplog.at_level(logging.DEBUG):
        result = await rig.dispatcher.dispatch(CALL, None)
        upstream.set("eu-west", status=503, message="down")
        with pytest.raises(Unavailable) as caught:
            await rig.dispatcher.dispatch(CALL, None)
    # The key did go upstream, where it belongs.
    assert upstream.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert result.region == "eu-west"
    formatter = JsonFormatter("dispatcher")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "bad auth" in logged and "[redacted]" in logged
    traced = "\n".join(
        f"{span.name} {dict(span.attributes or {})} {span.status.description}"
        for span in rig.spans.get_finished_spans()
    )
    assert "bad auth" in traced
    for text in (logged, traced, str(caught.value), repr(rig.dispatcher.stats())):
        assert KEY not in text
