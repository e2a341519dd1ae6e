"""Runs the dispatcher: `python -m services.dispatcher`."""

from services.dispatcher.config import Settings
from services.dispatcher.server import serve
from shared.runner import run_service

run_service(Settings.from_env, serve)
