"""Exports all-MiniLM-L6-v2 to ONNX and keeps the file only if it gives torch's vectors.

`python -m shared.embedding.onnx_export [PATH]` writes the export (default: the path the
service looks for under SLUICE_CACHE_MODEL_DIR), e.g. in an image build step; the service runs
it by itself on the first start otherwise. The graph is the whole sentence-transformers
pipeline after tokenisation: BERT, mean pooling over the attention mask, L2 normalisation.

`--variant int8` writes the int8 variant instead: the fp32 export (made first if missing) with
its weights quantised dynamically per output channel by ONNX Runtime's quantiser; it is kept
only if its vectors stay within MIN_INT8_COSINE of torch's on every probe.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from shared.embedding.minilm import MiniLmEmbedder
from shared.embedding.onnx import (
    VARIANTS,
    Variant,
    default_model_dir,
    export_path,
    load_tokenizer,
    open_session,
    run_session,
)
from shared.settings import env_path

# Largest absolute difference per vector component accepted between ONNX and torch.
MAX_ABS_DIFF = 1e-5
# Smallest cosine accepted between the int8 variant's vector and torch's for one probe; on
# 600 QQP questions the per-channel int8 export measured 0.985 at worst, 0.994 on average.
MIN_INT8_COSINE = 0.97
# Probe texts: short, long enough to be truncated at 256 tokens, non-ASCII, empty, and
# batches with padding, which exercise every dynamic axis of the graph.
PROBES = (
    "What is the capital of France?",
    "hi",
    "Ünïcödé — emoji 🎉 and 中文字符 in one question?",
    "Explain the difference between TCP and UDP. " * 40,
    "",
    "What's the capital city of France?",
)


class ExportMismatch(RuntimeError):
    """The exported graph does not reproduce torch's vectors."""


def export_minilm(target: Path, *, threads: int = 1) -> float:
    """Exports, checks against torch, then atomically moves into place; returns the max diff."""
    torch_embedder = MiniLmEmbedder(threads=threads)
    torch_embedder.load()
    with _scratch(target) as scratch:
        _trace(torch_embedder.model, scratch)
        worst = max(float(np.abs(e - g).max()) for e, g in _probe(torch_embedder, scratch))
        if worst >= MAX_ABS_DIFF:
            raise ExportMismatch(f"ONNX vectors differ from torch by up to {worst:.2e}")
        _publish(scratch, target)
    return worst


def export_int8(target: Path, fp32: Path, *, threads: int = 1) -> float:
    """Quantises the fp32 export (made first if missing) into target; returns the smallest
    cosine to torch's vectors over the probes."""
    from onnxruntime.quantization import (  # type: ignore[import-untyped]  # no type information
        QuantType,
        quantize_dynamic,
    )

    if not fp32.exists():
        export_minilm(fp32, threads=threads)
    torch_embedder = MiniLmEmbedder(threads=threads)
    torch_embedder.load()
    with _scratch(target) as scratch:
        quantize_dynamic(fp32, scratch, weight_type=QuantType.QInt8, per_channel=True)
        worst = min(float((e * g).sum(axis=1).min()) for e, g in _probe(torch_embedder, scratch))
        if worst < MIN_INT8_COSINE:
            raise ExportMismatch(f"int8 vectors reach only cosine {worst:.4f} to torch's")
        _publish(scratch, target)
    return worst


def _probe(torch_embedder: MiniLmEmbedder, path: Path) -> list[tuple[Any, Any]]:
    """(torch's, the export's) vectors for single, truncated and padded batches of probes."""
    session = open_session(path, 1)
    tokenizer = load_tokenizer()
    return [
        (torch_embedder.embed(batch), run_session(session, tokenizer, batch))
        for batch in ([PROBES[0]], [PROBES[3]], list(PROBES))
    ]


@contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    """A temporary name in the target's directory, so the final rename is atomic and two
    processes exporting at once both end with a complete file; removed unless published."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(handle)
    try:
        yield Path(scratch)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def _publish(scratch: Path, target: Path) -> None:
    # mkstemp makes the file private; an image may export as one user and serve as another.
    os.chmod(scratch, 0o644)
    os.replace(scratch, target)


def _trace(model: Any, path: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):
        """BERT, then mean pooling over real tokens and L2 normalisation, as in the model's
        1_Pooling and 2_Normalize modules."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            tokens = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    sample = load_tokenizer().encode_batch(["hello world", "what is the capital of france"])
    inputs = tuple(
        torch.tensor([getattr(e, name) for e in sample], dtype=torch.int64)
        for name in ("ids", "attention_mask", "type_ids")
    )
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        # The TorchScript tracer warns about Python branches on tensor values inside
        # transformers' masking code; the parity check above is what proves the graph right
        # for other batch sizes and lengths.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(model[0].auto_model).eval(),
            inputs,
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="where to write the .onnx file")
    parser.add_argument("--variant", choices=VARIANTS, default="fp32")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the export already exists"
    )
    args = parser.parse_args(argv)
    variant: Variant = args.variant
    model_dir = env_path(
        os.environ, "SLUICE_CACHE_MODEL_DIR", default_model_dir(os.environ), must_exist=False
    )
    target = args.path or export_path(model_dir, variant)
    if args.if_missing and target.exists():
        print(f"{target} already exported")
        return 0
    if variant == "fp32":
        worst = export_minilm(target)
        print(f"exported {target} (max abs diff vs torch {worst:.1e})")
        return 0
    # The fp32 export is the quantiser's input; it sits beside the target, under its own name.
    cosine = export_int8(target, export_path(target.parent, "fp32"))
    print(f"exported {target} (smallest cosine to torch {cosine:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
