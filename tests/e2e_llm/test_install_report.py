"""A failed llama.cpp build fails the LLM tests with pip's own output; it never skips them."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.e2e_llm import conftest


def test_a_failed_build_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_installed", lambda distribution, version: False)
    ran: list[list[str]] = []

    def failing_pip(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        assert kwargs["env"]["CMAKE_ARGS"] == "-DLLAVA_BUILD=OFF"
        return subprocess.CompletedProcess(args, 1, "", "CMake Error: no compiler found")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)could not install.*no compiler found"):
        conftest.ensure_llama_installed()
    assert ran and conftest.LLAMA in ran[0] and conftest.GEMMA in ran[0]


def test_nothing_is_installed_when_both_are_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_installed", lambda distribution, version: True)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    conftest.ensure_llama_installed()
