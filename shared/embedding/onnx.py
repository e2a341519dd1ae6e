"""all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as sentence-transformers, ~3x faster.

Measured on this 2-core machine, one thread each, single queries: torch 23.4 ms p50 and ONNX
Runtime 7.3 ms p50; batches of 32: 139 vs 325 sentences/s; largest absolute difference between
the two backends' vectors 1.9e-7 (cosine > 0.9999996) over single, padded and truncated
batches (README.md, "Embedding backend"). The service imports neither torch nor
sentence-transformers on this path, so it also starts in ~1 s instead of ~5-10 s.

The ONNX graph is exported from the installed model by `python -m shared.embedding.onnx_export`
(run at build time, or by `load()` in a subprocess on the first start) into a cache directory,
under a name derived from the model files, so a model update makes a new export. Every export
is checked against torch before it is kept. FallbackEmbedder uses torch when the export or
the ONNX session cannot be had.

Two variants of the export exist: "fp32" (torch's vectors) and "int8" (weights quantised
dynamically, per channel: ~4x smaller, faster, but its vectors differ from torch's by a
cosine of ~0.99). Vectors of one are never compared with the other's: every embedder names
itself with `identity` (model digest and variant), which the cache records with its store.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.embedding.files import hash_model_files, model_identity, model_path
from shared.embedding.minilm import (
    MINILM_DIM,
    Embedder,
    IdentifiedEmbedder,
    MiniLmEmbedder,
    Vectors,
    identity_of,
    plans_calls,
)

Backend = Literal["onnx", "torch"]
Variant = Literal["fp32", "int8"]
VARIANTS: tuple[Variant, ...] = ("fp32", "int8")

LOG = logging.getLogger(__name__)
# Texts x tokens of a model call past which the memory it freed is handed back to the OS: with
# no arena, glibc still keeps freed activations in its heap (one batch of 32 x 256 tokens left
# ~230 MB resident; malloc_trim returned it). Single queries stay far below, so they never pay.
TRIM_AFTER_TOKENS = 2048
# How the texts of one embed() are split into model calls (length_groups). A call costs a fixed
# part, the graph's few hundred small operators, plus a part per padded token: measured with one
# thread, ~4.5 ms + ~0.15 ms per token for 16-64-token texts, so the fixed part is worth
# CALL_TOKENS tokens of padding. Texts of 32 tokens cost 9.4 ms one by one and 5.4 ms each in a
# call of 8; a 17-token text padded to 51 costs three times its own tokens.
CALL_TOKENS = 30
# Padded tokens per call past which a call got no cheaper per text (64-token texts: 10.6 ms each
# in calls of 4 or 8, 11.7 ms in a call of 16). It also bounds the activations of one call, so
# the memory a call takes no longer grows with the number of texts. Of 10/30/60 and 256/512/1024
# (the cache's batches of 16 paraphrases), 30 and 512 cost least: 6.7-6.9 ms a text against
# 8.3-9.4 ms in the fixed runs of 4 this replaces and 13.4 ms padded to the batch's longest.
MAX_CALL_TOKENS = 512
# Bumped when the exported graph changes (inputs, pooling), so old exports are not reused.
EXPORT_VERSION = 1
EXPORT_TIMEOUT_S = 600


def default_model_dir(env: Mapping[str, str]) -> Path:
    """A per-user cache, not a service's data dir: the export is the same for every store, and
    tests that start many services with fresh data dirs then export the model only once."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "sluice" / "models"


def export_path(model_dir: Path, variant: Variant = "fp32") -> Path:
    """Where the export of the installed model lives: named by a digest of its files (the
    fp32 name is the one used before variants existed, so existing exports stay valid)."""
    digest = hashlib.sha256(f"export-v{EXPORT_VERSION}".encode())
    hash_model_files(digest)
    suffix = "" if variant == "fp32" else f"-{variant}"
    return model_dir / f"all-MiniLM-L6-v2-{digest.hexdigest()[:16]}{suffix}.onnx"


def load_tokenizer() -> Any:
    """The model's fast tokenizer, set up as sentence-transformers calls it.

    tokenizer.json itself pads every input to 128 tokens and truncates at 128; the model was
    configured for 256 (sentence_bert_config.json), and sentence-transformers pads only to the
    longest text in a batch, so both settings are replaced here.
    """
    from tokenizers import Tokenizer

    folder = model_path()
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def open_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; ORT's warnings about unused initialisers
    # ORT's CPU arena keeps the peak of every call for the life of the process: after one
    # batch of 32 texts of 256 tokens a session held ~650 MB instead of ~220 MB, and the
    # compressor embeds such batches. Plain malloc/free with no memory-pattern planning
    # measured no slower here (README, "Memory"); with the calls length_groups plans, the
    # cache's batches of 8-16 questions measured the same with and without the arena too.
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def length_groups(
    lengths: Sequence[int],
    *,
    call_tokens: int = CALL_TOKENS,
    max_tokens: int = MAX_CALL_TOKENS,
) -> list[list[int]]:
    """Row indices grouped into model calls at the least estimated cost: each call costs
    `call_tokens` plus its size times its longest text (every text is padded to that), and
    holds at most `max_tokens` padded tokens unless it is one text. Texts are taken in order of
    length, so each call is a run of neighbours in that order, and the best split of n texts
    is found by dynamic programming over where the runs end (n is a batch: tens at most)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0] + [-1] * len(order)  # least cost of the shortest j texts; -1: not reached yet
    start = [0] * (len(order) + 1)  # where the last call of that best split begins
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for first in range(end - 1, -1, -1):
            size = end - first
            if size > 1 and size * longest > max_tokens:
                break  # larger calls only get larger
            cost = best[first] + call_tokens + size * longest
            if best[end] < 0 or cost < best[end]:
                best[end], start[end] = cost, first
    groups: list[list[int]] = []
    end = len(order)
    while end > 0:
        groups.append(order[start[end] : end])
        end = start[end]
    return groups[::-1]


def run_session(
    session: Any, tokenizer: Any, texts: Sequence[str], trim: Callable[[], None] | None = None
) -> Vectors:
    """Embeds texts in the model calls length_groups plans, rows in input order; calls `trim`
    after a batch large enough to leave freed memory behind. A text's vector does not depend
    on the call it went in (padding is masked): the same within 1e-7."""
    if not texts:
        return np.empty((0, MINILM_DIM), dtype=np.float32)
    # Padded to the batch's longest, on the right: a call of shorter texts takes the columns
    # up to its own longest, exactly as if they had been tokenised on their own.
    encodings = tokenizer.encode_batch(list(texts))
    inputs = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    lengths = inputs["attention_mask"].sum(axis=1)
    vectors = np.empty((len(texts), MINILM_DIM), dtype=np.float32)
    for rows in length_groups(lengths.tolist()):
        width = int(lengths[rows].max())
        feeds = {name: array[rows, :width] for name, array in inputs.items()}
        vectors[rows] = session.run(None, feeds)[0]
    if trim is not None and inputs["input_ids"].size > TRIM_AFTER_TOKENS:
        del inputs
        trim()
    return vectors


def heap_trimmer() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), which returns the heap's free pages to the OS; None elsewhere
    (musl, macOS), where the memory simply stays with the process."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]

    def release() -> None:
        trim(0)

    return release


class OnnxMiniLmEmbedder:
    """all-MiniLM-L6-v2 through ONNX Runtime on the CPU."""

    # embed() splits a batch into calls by token length itself (length_groups), so a caller
    # should hand it the whole batch (EmbeddingBatcher reads this).
    plans_calls = True

    def __init__(self, model_dir: Path, *, threads: int = 1, variant: Variant = "fp32") -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._variant: Variant = variant
        self._session: Any = None
        self._tokenizer: Any = None
        self._trim: Callable[[], None] | None = None
        self._identity = ""

    @property
    def dim(self) -> int:
        return MINILM_DIM

    @property
    def identity(self) -> str:
        if not self._identity:
            self._identity = f"{model_identity()}/{self._variant}"
        return self._identity

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        path = export_path(self._model_dir, self._variant)
        if not path.exists():
            LOG.info("exporting all-MiniLM-L6-v2 to ONNX at %s (first start only)", path)
            _export_in_subprocess(path, self._variant)
        self._tokenizer = load_tokenizer()
        self._session = open_session(path, self._threads)
        self._trim = heap_trimmer()
        if self._trim is not None:
            self._trim()  # loading parsed the whole model file; those copies are garbage now

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self._session is None:
            raise RuntimeError("OnnxMiniLmEmbedder.embed called before load()")
        return run_session(self._session, self._tokenizer, texts, self._trim)


def _export_in_subprocess(path: Path, variant: Variant) -> None:
    # A separate process: the export needs torch and sentence-transformers (~1 GB of RSS and
    # ~10 s of imports) that the serving process then never has to carry. The timeout bounds
    # the first start: past it the fallback (torch) serves and the log says why.
    result = subprocess.run(
        [sys.executable, "-m", "shared.embedding.onnx_export", "--variant", variant, str(path)],
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"ONNX export failed (exit {result.returncode}): {tail}")


class FallbackEmbedder:
    """Loads the primary embedder, or the fallback when the primary cannot load."""

    def __init__(self, primary: Embedder, fallback: Embedder) -> None:
        self._primary = primary
        self._fallback = fallback
        self._active: Embedder | None = None

    @property
    def dim(self) -> int:
        return self._primary.dim

    @property
    def loaded(self) -> bool:
        return self._active is not None

    @property
    def active(self) -> Embedder | None:
        return self._active

    @property
    def plans_calls(self) -> bool:
        return plans_calls(self._active or self._primary)

    @property
    def identity(self) -> str:
        """The loaded embedder's: a fallback gives other vectors than an int8 primary."""
        return identity_of(self._active or self._primary)

    def load(self) -> None:
        try:
            self._primary.load()
            self._active = self._primary
        except Exception:
            LOG.exception("ONNX embedding backend unavailable; falling back to torch")
            self._fallback.load()
            self._active = self._fallback

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self._active is None:
            raise RuntimeError("FallbackEmbedder.embed called before load()")
        return self._active.embed(texts)


def build_minilm(
    backend: Backend, model_dir: Path, *, threads: int, variant: Variant = "fp32"
) -> IdentifiedEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime with torch as its fallback, or on torch alone."""
    torch_embedder = MiniLmEmbedder(threads=threads)
    if backend == "torch":
        return torch_embedder
    primary = OnnxMiniLmEmbedder(model_dir, threads=threads, variant=variant)
    return FallbackEmbedder(primary, torch_embedder)
