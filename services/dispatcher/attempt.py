"""One upstream call, run as its own task so that it can race a hedge and be cancelled.

The task streams the call and puts each event, tagged with its attempt, on the flight's queue;
the flight reads that one queue for every call it has in flight, so "whichever speaks first" is
simply the first event to arrive. Cancelling the task leaves the `async with` of the HTTP stream,
which closes the connection, and the upstream stops generating for the loser.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from opentelemetry import trace

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.providers.openai import UpstreamError
from services.dispatcher.providers.select import ProviderClient
from services.dispatcher.selection import EndpointState

LOG = logging.getLogger(__name__)
Event = Delta | ProviderAnswer | UpstreamError
Tagged = tuple["Attempt", Event]


class Attempt:
    """A call to one endpoint; `first_token_at` and `text` say how far it got."""

    def __init__(
        self,
        state: EndpointState,
        call: ModelRequest,
        client: ProviderClient,
        queue: asyncio.Queue[Tagged],
        span: trace.Span,
        clock: Callable[[], float],
        timeout_s: float,
        *,
        hedge: bool,
        probe: bool,
    ) -> None:
        self.state = state
        self.span = span
        self.hedge = hedge
        self.probe = probe
        self.started = clock()
        # Set when the first event (a token, or a whole answer) arrives.
        self.first_token_at: float | None = None
        self.hedge_at: float | None = None
        # No first token by then counts as a timeout (the attempt timeout, or less near the
        # request's deadline).
        self.first_token_by = self.started + timeout_s
        self.text: list[str] = []
        self._call = call
        self._client = client
        self._queue = queue
        self._clock = clock
        self._timeout_s = timeout_s
        self.task = asyncio.create_task(self._pump(), name=f"upstream {state.name}")

    async def _pump(self) -> None:
        with trace.use_span(self.span, end_on_exit=False):
            try:
                async for event in self._client.stream(
                    self.state.endpoint, self._call, self._timeout_s
                ):
                    if self.first_token_at is None:
                        self.first_token_at = self._clock()
                    if isinstance(event, Delta):
                        self.text.append(event.text)
                    self._queue.put_nowait((self, event))
            except UpstreamError as error:
                self._queue.put_nowait((self, error))
            except Exception as error:
                # A body no parser expected (a list where a chunk should be, say) must end this
                # call as a failure the flight can fail over from, not leave it waiting forever.
                LOG.exception("unexpected error streaming from %s", self.state.name)
                self._queue.put_nowait(
                    (self, UpstreamError(self.state.name, "protocol", type(error).__name__))
                )

    async def cancel(self) -> None:
        """Stops the call and waits until its connection is closed."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
