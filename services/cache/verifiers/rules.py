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
from services.cache.verify import ACCEPT, Pair, Verdict


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

    # Feedback is recorded on the cosine, so it stays valid whatever model file is loaded.
    feedback_scale = "cosine"

    def verify(self, pair: Pair) -> Verdict:
        if pair.query == pair.candidate:
            return ACCEPT
        check = self.vetoed(pair)
        calibrator = self._calibrator
        if calibrator is not None and pair.similarity < calibrator.threshold(pair.namespace):
            # Short of the bar; still marked vetoed when a check would turn it down at any bar,
            # so a miss never offers it for a shadow check the cache would not count.
            return Verdict(False, "namespace_threshold", vetoed=bool(check))
        return Verdict(False, check, vetoed=True) if check else ACCEPT

    def vetoed(self, pair: Pair) -> str:
        """The first enabled check the pair fails, or ""."""
        found = mismatches(self._signals(pair.query), self._signals(pair.candidate))
        return next((check for check in self._checks if check in found), "")

    @property
    def calibrator(self) -> NamespaceCalibrator | None:
        return self._calibrator

    def feedback_score(self, pair: Pair) -> float:
        return pair.similarity

    def record_feedback(self, pair: Pair, correct: bool) -> float | None:
        """A labelled outcome for this namespace's threshold; a no-op without a calibrator."""
        if self._calibrator is None:
            return None
        self._calibrator.record(pair.namespace, pair.similarity, correct)
        return pair.similarity
