"""Runs the compressor: `python -m services.compressor`."""

from services.compressor.config import Settings
from services.compressor.server import serve
from shared.runner import run_service

# run_service, like every other service: uvloop, and exit status 2 naming a bad setting.
run_service(Settings.from_env, serve)
