"""The images without the embedding model install the package with no extras: every server
module they run must import from such an install, or the image cannot start (issue 17 found the
router importing redis, which only an extra brought).

This builds a wheel-based install of the repository into a fresh venv, with pip as the image's
Dockerfile runs it, and imports each slim service's server module from outside the checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.k8s.manifests import ROOT

# The images whose Dockerfile stage installs `.` without the `embeddings` extra.
SLIM_SERVICES = ("router", "batcher", "dispatcher", "simulator")


def test_slim_services_import_from_an_install_without_extras(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    imports = "; ".join(f"import services.{name}.server" for name in SLIM_SERVICES)
    # The install really is slim: torch, which only the embeddings extra brings, is absent.
    script = f"{imports}; import importlib.util; print(importlib.util.find_spec('torch'))"
    imported = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip() == "None", imported.stdout
