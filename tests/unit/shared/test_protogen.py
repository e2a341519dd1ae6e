"""The committed stubs match what the protos generate, and every generated module imports."""

import importlib
import pkgutil
from pathlib import Path

import sluice

from shared.protogen import GEN_ROOT, drifted_files, generate


def test_committed_stubs_have_not_drifted(tmp_path: Path) -> None:
    generate(tmp_path)
    assert drifted_files(GEN_ROOT, tmp_path) == []


def test_drift_is_detected(tmp_path: Path) -> None:
    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    generate(fresh)
    generate(committed)
    target = committed / "sluice" / "router" / "v1" / "router_service_pb2.py"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    (committed / "sluice" / "extra_pb2.py").write_text("")
    problems = drifted_files(committed, fresh)
    assert any("router_service_pb2.py: differs" in p for p in problems)
    assert any("extra_pb2.py: only in committed" in p for p in problems)


def test_every_generated_module_imports() -> None:
    names = [m.name for m in pkgutil.walk_packages(sluice.__path__, "sluice.")]
    assert "sluice.router.v1.router_service_pb2_grpc" in names
    for name in names:
        importlib.import_module(name)
