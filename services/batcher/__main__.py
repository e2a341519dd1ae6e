"""Runs the batcher: `python -m services.batcher`."""

from services.batcher.config import Settings
from services.batcher.server import serve
from shared.runner import run_service

run_service(Settings.from_env, serve)
