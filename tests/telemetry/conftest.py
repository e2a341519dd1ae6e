"""The telemetry tests read the spans of the shared integration mesh."""

from tests.integration.conftest import channel, mesh, mesh_and_traces

__all__ = ["channel", "mesh", "mesh_and_traces"]
