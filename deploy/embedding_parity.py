"""Proves at image build time that the slim embedding images give torch's vectors.

`python embedding_parity.py save FILE` (in the builder stage, which has torch) writes the
torch vectors of the export's probe texts; `python embedding_parity.py check FILE` (in the
serving stage, which has no torch) embeds the same texts with the service's ONNX Runtime
embedder from SLUICE_CACHE_MODEL_DIR and fails unless every component is within the export's
own tolerance.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from shared.embedding.onnx_export import MAX_ABS_DIFF, PROBES


def save(path: Path) -> None:
    from shared.embedding.minilm import MiniLmEmbedder

    embedder = MiniLmEmbedder(threads=1)
    embedder.load()
    np.save(path, embedder.embed(list(PROBES)))


def check(path: Path) -> None:
    from shared.embedding.onnx import OnnxMiniLmEmbedder, export_path

    if importlib.util.find_spec("torch") is not None:
        raise SystemExit("torch is installed in the serving stage")
    model_dir = Path(os.environ["SLUICE_CACHE_MODEL_DIR"])
    if not export_path(model_dir).exists():
        raise SystemExit(f"no ONNX export in {model_dir}")
    embedder = OnnxMiniLmEmbedder(model_dir, threads=1)
    embedder.load()
    worst = float(np.abs(embedder.embed(list(PROBES)) - np.load(path)).max())
    if worst >= MAX_ABS_DIFF:
        raise SystemExit(f"ONNX vectors differ from torch by up to {worst:.2e}")
    print(f"serving stage: ONNX Runtime vectors within {worst:.1e} of torch, torch absent")


if __name__ == "__main__":
    mode, file = sys.argv[1:]
    {"save": save, "check": check}[mode](Path(file))
