"""The rule verifier: reject a candidate when any enabled check finds a mismatch.

No training, no model file: each check (features.CHECKS) is a reason on its own to believe the
two questions need different answers. Its precision is high, but paraphrases that happen to
differ in one of these details are lost (and everything the checks cannot see passes), so it is
the fallback when the learned model file is missing and the basis of the ablation.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.features import CHECKS, mismatches
from services.cache.verifiers.signals_cache import SignalsCache
from services.cache.verify import ACCEPT, Verdict


class RuleVerifier:
    """Rejects look-alike candidates by the named checks; optionally a per-namespace cosine bar.

    checks: which of features.CHECKS to apply (all by default; the ablation turns them off one
    at a time). calibrator: scores are cosines; None keeps the cache's own threshold only.
    """

    def __init__(
        self,
        checks: Iterable[str] = CHECKS,
        *,
        calibrator: NamespaceCalibrator | None = None,
        signals: SignalsCache | None = None,
    ) -> None:
        self._checks = tuple(checks)
        unknown = set(self._checks) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; known: {', '.join(CHECKS)}")
        self._calibrator = calibrator
        self._signals = signals or SignalsCache()

    def verify(self, query: str, candidate: str, similarity: float, namespace: str) -> Verdict:
        if query == candidate:
            return ACCEPT
        if self._calibrator is not None and similarity < self._calibrator.threshold(namespace):
            return Verdict(False, "namespace_threshold")
        found = mismatches(self._signals(query), self._signals(candidate))
        for check in self._checks:
            if check in found:
                return Verdict(False, check)
        return ACCEPT

    def record_feedback(
        self, query: str, candidate: str, similarity: float, namespace: str, correct: bool
    ) -> None:
        """A labelled outcome for this namespace's threshold; a no-op without a calibrator."""
        if self._calibrator is not None:
            self._calibrator.record(namespace, similarity, correct)
