"""Runs the router: `python -m services.router`."""

from services.router.config import Settings
from services.router.server import serve
from shared.runner import run_service

run_service(Settings.from_env, serve)
