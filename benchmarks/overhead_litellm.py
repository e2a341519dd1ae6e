"""LiteLLM's proxy for the overhead benchmark: its own venv, its config, and its process.

LiteLLM is not a dependency of Sluice, so it lives in a venv of its own under
`.sluice/bench/litellm-venv`, created with `python -m venv` and `pip install 'litellm[proxy]'`
on first use and reused afterwards. The proxy runs with its default settings; the only
environment it gets is `LITELLM_LOCAL_MODEL_COST_MAP=True`, because without it LiteLLM fetches
its price map from GitHub at start-up, which this machine cannot reach.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.common import REPO, stop_process
from shared.mesh import free_port

DEFAULT_VENV = REPO / ".sluice" / "bench" / "litellm-venv"
# LiteLLM refuses to start without a master key; clients send it as their bearer token.
MASTER_KEY = "sk-sluice-overhead-bench-0123456789abcdef"
# The proxy imports a great deal (FastAPI, pydantic models for every provider); a busy 2-core
# machine takes tens of seconds.
START_TIMEOUT_S = 180.0


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The venv's `litellm` executable, creating the venv and installing LiteLLM if needed."""
    executable = venv / "bin" / "litellm"
    if executable.exists():
        return executable
    print(f"creating {venv} and installing litellm[proxy] from PyPI", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
        check=True,
    )
    if not executable.exists():
        raise RuntimeError(f"pip installed litellm[proxy] but {executable} does not exist")
    return executable


def litellm_version(venv: Path = DEFAULT_VENV) -> str:
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m;"
         "print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return found.stdout.strip() or "unknown"


def proxy_config(model: str, upstream_base: str, *, cache: bool) -> dict[str, object]:
    """One deployment pointing at the simulator; with cache, LiteLLM's in-memory cache.

    LiteLLM's semantic caches need Redis or Qdrant plus an embedding model served over an API,
    so only its exact (local, in-memory) cache is measured.
    """
    config: dict[str, object] = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream_base,
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    if cache:
        config["litellm_settings"] = {"cache": True, "cache_params": {"type": "local"}}
    return config


@contextmanager
def running_litellm(
    executable: Path, config: dict[str, object], work_dir: Path, name: str
) -> Iterator[str]:
    """Starts the proxy on a free loopback port; yields its base URL."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / f"{name}.yaml"
    # JSON is YAML, and keeps this free of a YAML writer.
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "OTEL_"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    log_path = work_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "--config", str(config_path), "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=work_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base, log_path)
        yield base
    finally:
        stop_process(process)


def _wait_ready(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"litellm exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"litellm at {base} not ready after {START_TIMEOUT_S}s")
        time.sleep(0.5)
