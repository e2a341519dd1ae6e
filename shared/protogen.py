"""Generates the Python stubs in shared/gen from protos/, or checks they have not drifted.

`python -m shared.protogen` regenerates; `python -m shared.protogen --check` exits 1 when the
committed stubs differ from what the protos generate. Both use grpcio-tools' bundled protoc and
mypy-protobuf's plugins, so no system protoc or buf binary is needed.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
GEN_ROOT = REPO_ROOT / "shared" / "gen"


def _plugin(name: str) -> str:
    """Finds a protoc plugin installed beside this interpreter."""
    scripts = Path(sysconfig.get_path("scripts"))
    candidate = scripts / name
    found = candidate if candidate.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"protoc plugin {name} not found; install the dev extra (mypy-protobuf)")
    return str(found)


def generate(out_dir: Path) -> None:
    """Runs protoc over every .proto file under protos/ into out_dir."""
    from grpc_tools import protoc  # imported here: only generation needs grpcio-tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    _add_package_markers(out_dir)


def _add_package_markers(out_dir: Path) -> None:
    """Makes every generated folder a regular package so mypy and pytest resolve `sluice.*`."""
    for folder in [out_dir / "sluice", *(p for p in (out_dir / "sluice").rglob("*") if p.is_dir())]:
        marker = folder / "__init__.py"
        if not marker.exists():
            marker.write_text("")
        typed = folder / "py.typed"
        if folder == out_dir / "sluice" and not typed.exists():
            typed.write_text("")


def drifted_files(committed: Path, fresh: Path) -> list[str]:
    """Lists files that differ, or exist on only one side, between two stub trees."""
    problems: list[str] = []
    compare = [filecmp.dircmp(committed, fresh, ignore=["__pycache__"])]
    while compare:
        cmp = compare.pop()
        rel = Path(cmp.left).relative_to(committed)
        problems += [f"{rel / n}: only in committed stubs" for n in cmp.left_only]
        problems += [f"{rel / n}: missing from committed stubs" for n in cmp.right_only]
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        problems += [f"{rel / n}: differs from the protos" for n in mismatch + errors]
        compare.extend(cmp.subdirs.values())
    return sorted(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs drifted")
    args = parser.parse_args(argv)
    if not args.check:
        shutil.rmtree(GEN_ROOT / "sluice", ignore_errors=True)
        generate(GEN_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        problems = drifted_files(GEN_ROOT, Path(tmp))
    for problem in problems:
        print(f"stub drift: {problem}", file=sys.stderr)
    if problems:
        print("run `make proto` and commit the result", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
