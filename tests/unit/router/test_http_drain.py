"""The HTTP front door's app drains the router's background cache stores when it shuts down."""

from __future__ import annotations

from typing import Any, cast

from starlette.testclient import TestClient

from services.router.http_api import FrontDoor, build_http_app


class DrainRecorder:
    """Stands in for FrontDoor: only what the app's lifespan uses."""

    def __init__(self) -> None:
        self.drained = 0

    async def drain(self) -> None:
        self.drained += 1

    async def chat_completions(self, request: Any) -> Any:  # never called here
        raise AssertionError

    models = model = messages = chat_asgi = chat_completions


def test_stores_are_drained_when_the_http_side_stops() -> None:
    door = DrainRecorder()
    app = build_http_app(cast(FrontDoor, door))
    with TestClient(app):
        assert door.drained == 0  # serving: nothing drained yet
    assert door.drained == 1
