"""Callers' verdicts on served hits (the ReportHit RPC), kept for per-namespace calibration.

A served semantic hit that a user or the router's quality gate reports wrong (or confirms)
is a labelled outcome at the score the verifier gave it; NamespaceCalibrator turns enough of
them into the namespace's own threshold (verifiers/calibration.py). So is a shadow report: on
a miss, Lookup names the nearest candidate verification turned down, the caller compares its
answer with the fresh one and reports the verdict with `shadow` set. It is scored and recorded
the same way, but never removes the entry (it was not served) and is no verification failure.
Shadow reports are the only evidence below the bar, so the only way a namespace's bar falls.

The outcomes are counted in the entry store before memory, so a namespace's threshold survives
a restart, and they are filed under the verifier's `feedback_scale` (its kind and model
digest): a probability from one model file says nothing about another's, so counts from an
older model are not reloaded.

Each outcome is also counted for its entry (`EntryEvidence`), which a tenant's error bound
reads (`admits`; the rule is in verifiers/calibration.py). Those counts go in the same feedback
rows, under the pseudo-namespace `entry:<entry_id>`, so they survive a restart and reach the
other replicas on the same stream without a schema change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from services.cache.entries import Entry, EntryTable
from services.cache.keys import RequestKeys
from services.cache.model import QueryEmbedder
from services.cache.store import FEEDBACK_BINS, EntryStore, FeedbackCount, StoreUnavailable
from services.cache.verifiers.calibration import EntryEvidence, NamespaceCalibrator, bin_of
from services.cache.verify import HitVerifier, Pair, clamp_similarity
from shared.errors import InvalidRequest, NotFound, Unavailable

LOG = logging.getLogger(__name__)
# Feedback rows of one entry (not a namespace) carry this before the entry id.
ENTRY_ROW = "entry:"


@runtime_checkable
class Calibrated(Protocol):
    """A verifier with per-namespace thresholds that feedback can move."""

    feedback_scale: str

    @property
    def calibrator(self) -> NamespaceCalibrator | None: ...

    def feedback_score(self, pair: Pair) -> float:
        """The score (in [0, 1]) the namespace's threshold is compared with for this pair."""
        ...

    def vetoed(self, pair: Pair) -> str:
        """The check that turns this pair down whatever its score, or "" when none does."""
        ...


@dataclass(frozen=True)
class HitReport:
    namespace: str
    removed: bool
    calibrated: bool
    threshold: float  # the namespace's threshold after the report; 0 when not calibrated


def reported_entry(table: EntryTable, tenant_id: str, keys: RequestKeys, entry_id: str) -> Entry:
    """The served entry a report names, checked against the request it was served to."""
    if not entry_id:
        raise InvalidRequest("entry_id is required: the LookupResponse.entry_id of the hit")
    namespace = table.namespaces.get(keys.namespace)
    if namespace is None or namespace.tenant_id != tenant_id:
        raise NotFound(
            f"namespace {keys.namespace} of this request holds no entries of tenant {tenant_id!r}"
        )
    entry = table.by_id.get(entry_id)
    if entry is None or entry.namespace != keys.namespace:
        raise NotFound(
            f"entry {entry_id!r} is not in namespace {keys.namespace} (removed, expired, "
            "already reported wrong, or served for another request)"
        )
    return entry


def served_pair(
    keys: RequestKeys, entry: Entry, vector: NDArray[np.float32], stored: NDArray[np.float32]
) -> Pair:
    """The pair verification judged when it served (or, for a shadow report, turned down)
    `entry` for the request with `keys`."""
    similarity = clamp_similarity(float(vector @ stored))
    query, answer = keys.query or "", entry.answer.content
    return Pair(query, entry.query or "", similarity, keys.namespace, vector, stored, answer)


async def judged(
    table: EntryTable,
    embedder: QueryEmbedder,
    tenant_id: str,
    keys: RequestKeys,
    entry_id: str,
    *,
    shadow: bool,
) -> tuple[Entry, Pair | None]:
    """The reported entry and, when it matched semantically, the pair verification judged;
    None for an exact hit, which teaches no threshold. A shadow report on the exact entry is
    refused: Lookup would have served it, so it cannot be a miss's rejected candidate."""
    entry = reported_entry(table, tenant_id, keys, entry_id)
    if shadow and entry.exact_key == keys.exact:
        # Only the exact entry shares the namespace of a request without a user turn, so this
        # also covers those: a shadow report is always about a semantic candidate.
        raise InvalidRequest(
            f"shadow: entry {entry_id!r} was stored for exactly this request, so Lookup serves "
            "it as an exact hit; a shadow report is about a miss's nearest_rejected entry"
        )
    if entry.exact_key == keys.exact or not keys.query or entry.vector_id is None:
        return entry, None
    stored = table.namespaces[entry.namespace].index.vector(entry.vector_id)
    vector = await embedder.embed(keys.query)
    # Looked up again after the await: a concurrent report may have removed it.
    entry = reported_entry(table, tenant_id, keys, entry_id)
    return entry, served_pair(keys, entry, vector, stored)


class FeedbackBook:
    """Feeds reports to the verifier's calibrator, persisting each before applying it."""

    def __init__(self, verifier: HitVerifier, store: EntryStore) -> None:
        calibrated = isinstance(verifier, Calibrated) and verifier.calibrator is not None
        self._verifier: Calibrated | None = verifier if calibrated else None  # type: ignore[assignment]
        self._store = store
        self._entries = EntryEvidence()

    def admits(self, entry_id: str, pair: Pair, max_wrong_rate: float) -> bool:
        """Whether the evidence proves serving `entry_id` for `pair` keeps `max_wrong_rate`
        (verifiers/calibration.py); never without a calibrated verifier, whose outcomes are
        the only evidence there is."""
        calibrator = self._calibrator()
        if self._verifier is None or calibrator is None:
            return False
        score = self._verifier.feedback_score(pair)
        if self._entries.refuses(entry_id, score):
            return False
        if score >= calibrator.bound_threshold(pair.namespace, max_wrong_rate):
            return True
        return self._entries.proves(entry_id, score, max_wrong_rate)

    def vetoed(self, pair: Pair) -> str:
        """The verifier's check that turns `pair` down whatever its score; "" when none does
        (or the verifier has no checks)."""
        return "" if self._verifier is None else self._verifier.vetoed(pair)

    async def restore(self) -> int:
        """Loads the stored counts of this verifier's scale in place of what it had; returns
        the outcomes loaded. At start, and after the change feed had a gap. (An outcome another
        replica records while this one starts is both in the counts and replayed from the
        feed: counted twice, a handful at most.)"""
        calibrator = self._calibrator()
        if self._verifier is None or calibrator is None:
            return 0
        counts = await self._store.load_feedback(self._verifier.feedback_scale)
        calibrator.clear()
        self._entries.clear()
        for count in counts:
            self.apply(count)
        return sum(count.seen for count in counts)

    async def reload(self) -> None:
        """restore() for a running cache: a store that fails keeps the counts it had."""
        try:
            await self.restore()
        except StoreUnavailable as error:
            LOG.warning("could not reload feedback counts: %s", error)

    def apply(self, count: FeedbackCount) -> None:
        """Adds counts recorded elsewhere (another replica's report); other scales are not
        this verifier's scores and are ignored."""
        calibrator = self._calibrator()
        if self._verifier is None or calibrator is None:
            return
        if count.scale != self._verifier.feedback_scale:
            return
        score = (count.bin + 0.5) / FEEDBACK_BINS
        if count.namespace.startswith(ENTRY_ROW):
            entry_id = count.namespace.removeprefix(ENTRY_ROW)
            self._entries.restore(entry_id, score, seen=count.seen, wrong=count.wrong)
        else:
            calibrator.restore(count.namespace, score, seen=count.seen, wrong=count.wrong)

    async def record(
        self, pair: Pair, correct: bool, *, shadow: bool = False, entry_id: str = ""
    ) -> bool:
        """Counts one outcome, durably first; False when the verifier keeps no calibration, or
        for a shadow outcome on a pair a check vetoes: that candidate is turned down whatever
        the bar, so what its answer was says nothing about where the bar should be (and a
        wrong one, counted, would raise the bar against the paraphrases near it)."""
        calibrator = self._calibrator()
        if self._verifier is None or calibrator is None:
            return False
        if shadow and self._verifier.vetoed(pair):
            return False
        score = self._verifier.feedback_score(pair)
        scale, score_bin = self._verifier.feedback_scale, bin_of(score, FEEDBACK_BINS)
        try:
            await self._store.add_feedback(scale, pair.namespace, score_bin, not correct)
            if entry_id:
                await self._store.add_feedback(scale, ENTRY_ROW + entry_id, score_bin, not correct)
        except StoreUnavailable as error:
            raise Unavailable(f"the entry store failed: {error}") from None
        calibrator.record(pair.namespace, score, correct)
        if entry_id:
            self._entries.restore(entry_id, score, seen=1, wrong=0 if correct else 1)
        return True

    def threshold(self, namespace: str) -> float:
        calibrator = self._calibrator()
        return 0.0 if calibrator is None else calibrator.threshold(namespace)

    def _calibrator(self) -> NamespaceCalibrator | None:
        return None if self._verifier is None else self._verifier.calibrator
