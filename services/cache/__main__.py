"""Runs the semantic cache: `python -m services.cache`."""

from services.cache.config import Settings
from services.cache.server import serve
from shared.runner import run_service

run_service(Settings.from_env, serve)
