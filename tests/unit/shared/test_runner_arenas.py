"""Services cap glibc's malloc arenas at start, unless MALLOC_ARENA_MAX already says how many."""

from __future__ import annotations

import platform

import pytest

from shared.runner import limit_malloc_arenas


def test_an_explicit_malloc_arena_max_wins() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc has malloc arenas")
def test_the_cap_is_applied_on_glibc() -> None:
    assert limit_malloc_arenas({}) is True
