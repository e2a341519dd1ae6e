"""Serves the simulator app with uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence

import uvicorn
import uvloop

from services.simulator.app import Simulation, build_app, load_simulation
from services.simulator.config import Settings
from services.simulator.replay import ReplayError
from services.simulator.scenario import ScenarioError
from shared.log import configure_logging
from shared.pricing import CatalogueError
from shared.settings import SettingsError

LOG = logging.getLogger(__name__)
# In-flight answers (and streams) get this long to finish after SIGTERM.
_DRAIN_GRACE_S = 5


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after its graceful shutdown, so the process would die
    by the signal; handling it on the loop instead lets the process exit with status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


async def serve(settings: Settings, simulation: Simulation) -> None:
    """Binds first (so port 0 can be reported), prints the address, then serves."""
    app = build_app(settings, simulation)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=_DRAIN_GRACE_S,
    )
    sock = config.bind_socket()
    # Listening before uvicorn starts queues early connections instead of refusing them.
    sock.listen(config.backlog)
    host, port = sock.getsockname()[:2]
    print(f"simulator listening on http://{host}:{port}", flush=True)
    LOG.info("simulator serving regions %s", ", ".join(simulation.scenario.regions))
    await _Server(config).serve(sockets=[sock])
    LOG.info("simulator stopped")


def main(argv: Sequence[str]) -> None:
    """Loads settings and data, failing fast with exit status 2 on bad configuration."""
    try:
        settings = Settings.from_env(argv=argv)
        configure_logging("simulator", settings.log_level)
        simulation = load_simulation(settings)
    except (SettingsError, ScenarioError, ReplayError, CatalogueError) as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    uvloop.run(serve(settings, simulation))
