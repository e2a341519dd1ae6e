"""The opt-in `code_tests` gate: run the answer's code, with the tests the prompt states.

A code answer that does not even run is wrong whatever it looks like, and a prompt that states
its tests (`assert f(2) == 4` lines, as MBPP's original prompts do) says exactly what right
means. The answer's fenced Python is written to a temporary folder with the prompt's assert
lines after it and run in a child interpreter (`python -I`, stdin closed) under limits:
- no network: in a fresh network namespace (`unshare -rn`) when the kernel allows it, else with
  `socket.socket` replaced by a function that raises, before the answer's code runs;
- a wall-clock limit (the child is killed), and CPU, memory, file-size and process limits
  through `resource` in the child before it execs.
Opt-in because it runs untrusted text as code: the limits bound the damage, they are not a
container. The gate fails an answer with no code in it, code that raises, or a failing test.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_TAGGED = re.compile(r"\[PYTHON\](.*?)\[/PYTHON\]", re.DOTALL)
_ASSERT = re.compile(r"^\s*(assert\s.+)$", re.MULTILINE)
_NO_SOCKETS = (
    "import socket as _s\n"
    "def _blocked(*a, **k):\n"
    "    raise OSError('network access is blocked in the code_tests gate')\n"
    "_s.socket = _blocked\n_s.create_connection = _blocked\n"
)
_MEMORY_BYTES = 512 * 2**20
_FILE_BYTES = 2**20
_OUTPUT_CHARS = 300


@dataclass(frozen=True)
class CodeLimits:
    wall_s: float = 5.0
    memory_bytes: int = _MEMORY_BYTES


@dataclass(frozen=True)
class CodeResult:
    passed: bool
    reason: str


def extract_code(answer: str) -> str | None:
    """The answer's Python: every fenced or [PYTHON]-tagged block, in order; None if none."""
    blocks = _FENCE.findall(answer) or _TAGGED.findall(answer)
    code = "\n".join(block.strip("\n") for block in blocks)
    return code if code.strip() else None


def stated_tests(prompt: str) -> list[str]:
    """The assert lines the prompt states, e.g. MBPP's `assert remove_Occ("hello","l") ==
    "heo"`."""
    return [line.strip() for line in _ASSERT.findall(prompt)]


def network_isolation() -> tuple[str, ...]:
    """The command prefix that runs a child without network, or () when the kernel refuses
    unprivileged namespaces (then the socket block in the program is the only fence)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run(  # one short probe at start, not per request
        [unshare, "-rn", "true"], capture_output=True, timeout=10, check=False
    )
    return (unshare, "-rn") if probe.returncode == 0 else ()


class CodeRunner:
    def __init__(self, limits: CodeLimits, isolation: tuple[str, ...]) -> None:
        self._limits = limits
        self._isolation = isolation

    def _limit_child(self) -> None:
        cpu = int(self._limits.wall_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = self._limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_BYTES, _FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    async def check(self, prompt: str, answer: str) -> CodeResult:
        code = extract_code(answer)
        if code is None:
            return CodeResult(False, "the answer holds no fenced Python code")
        tests = stated_tests(prompt)
        program = "\n".join([_NO_SOCKETS, code, *tests, ""])
        with tempfile.TemporaryDirectory(prefix="sluice-code-") as folder:
            path = Path(folder) / "answer.py"
            path.write_text(program, encoding="utf-8")
            process = await asyncio.create_subprocess_exec(
                *self._isolation,
                sys.executable,
                "-I",
                str(path),
                cwd=folder,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=self._limit_child,
            )
            try:
                _, stderr = await asyncio.wait_for(process.communicate(), self._limits.wall_s)
            except TimeoutError:
                process.kill()
                await process.wait()
                return CodeResult(False, f"the code ran past {self._limits.wall_s:g} s")
        what = f"{len(tests)} stated tests" if tests else "the answer's own code"
        if process.returncode == 0:
            return CodeResult(True, f"{what} ran clean")
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return CodeResult(False, f"{what} failed: {last[0][:_OUTPUT_CHARS]}")
