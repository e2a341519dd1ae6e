"""The guarded and banded verifiers: deterministic vetoes first, the cross-encoder after them.

A learned model alone trades look-alikes against paraphrases along one curve: every step of
its bar that turns away "8 am" for "8 pm" also turns away "8 p.m." (benchmarks/README.md,
issue 16). The vetoes (vetoes.py) read the words that decide an answer and reject a candidate
that differs in one of them, whatever its score; the cross-encoder (crossenc.py) only has to
judge what is left, the pairs that agree on every such word, so its bar can sit low enough to
serve most paraphrases. Vetoed pairs are never sent to the model, which also keeps a lookup
cheap. Feedback and per-namespace thresholds are the cross-encoder's own.

`banded`, the default, asks the model less: above BAND_TOP the vetoes alone decide (as
`vetoes` does at that cosine); in the band below it, down to the cache's floor, the model must
also agree, at a bar well above `guarded`'s. The vetoes alone at 0.90 miss paraphrases that
score 0.82-0.90, and lowering their floor serves more wrong answers among the pooled
questions; the model in the band turns most of those away while serving the paraphrases.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.crossenc import CrossEncoder, CrossEncoderVerifier, VerifierFileError
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verifiers.signals_cache import TextCache
from services.cache.verifiers.vetoes import Reading, reading_vetoes
from services.cache.verify import ACCEPT, Pair, Verdict

# `banded`: candidates at or above BAND_TOP are served on the vetoes alone; below it the
# cross-encoder must give at least BAND_BAR. Chosen with the cache's floor
# (config.BANDED_MIN_SIMILARITY) on the fit halves by benchmarks/cache_quality_band.py: the
# point that serves at least 70% of the look-alike set's paraphrases, at most 1% of its
# look-alikes and no long-document question another's answer, with the fewest wrong pooled
# hits. The bar belongs to the shipped cross-encoder file; another file needs its own.
BAND_TOP = 0.90
BAND_BAR = 0.6


def first_veto(readings: TextCache[Reading], pair: Pair) -> str:
    """The first category the pair's two questions differ in, or "" (read through `readings`,
    so a stored question is read once for all its lookups)."""
    if pair.query == pair.candidate:
        return ""
    found = reading_vetoes(readings(pair.query), readings(pair.candidate))
    return found[0] if found else ""


class GuardedVerifier:
    """Rejects a pair the vetoes name; otherwise the cross-encoder's bar decides."""

    def __init__(self, model: CrossEncoderVerifier) -> None:
        self._model = model
        self._readings: TextCache[Reading] = TextCache(Reading)
        self.feedback_scale = "guarded:" + model.model.info.digest

    @classmethod
    def from_model(cls, model: CrossEncoder) -> GuardedVerifier:
        """The verifier at the bar the file names for this use (its `guarded_threshold`)."""
        info = model.info
        if info.guarded_threshold is None:
            raise VerifierFileError(
                f"{model.path}: no guarded_threshold in its metadata "
                "(python -m benchmarks.cache_quality_crossenc --write sets it)"
            )
        bar = NamespaceCalibrator(info.guarded_threshold, target_wrong_rate=info.target_wrong_rate)
        return cls(CrossEncoderVerifier(model, calibrator=bar))

    @property
    def model(self) -> CrossEncoderVerifier:
        return self._model

    @property
    def calibrator(self) -> NamespaceCalibrator:
        return self._model.calibrator

    def vetoed(self, pair: Pair) -> str:
        """The first category the two questions differ in, or ""."""
        return first_veto(self._readings, pair)

    def prepare(self, pairs: Sequence[Pair]) -> None:
        """Scores, in one batch, only the pairs no veto rejects (call it off the event loop)."""
        self._model.prepare([p for p in pairs if not self.vetoed(p)])

    def verify(self, pair: Pair) -> Verdict:
        if pair.query == pair.candidate:
            return ACCEPT
        check = self.vetoed(pair)
        if check:
            return Verdict(False, check, vetoed=True)
        return self._model.verify(pair)

    def feedback_score(self, pair: Pair) -> float:
        return self._model.feedback_score(pair)

    def record_feedback(self, pair: Pair, correct: bool) -> float | None:
        return self._model.record_feedback(pair, correct)


class VetoVerifier(RuleVerifier):
    """The vetoes alone, behind the cache's cosine threshold (the default before `banded`).

    Every veto only turns hits away, so at the old default's cosine (0.90) it serves what
    `rules` served less the look-alikes: on the held-back halves 1.0% of look-alikes against
    36.1%, with 66.4% of paraphrases (62.9%), and 9.3% of pooled hits wrong (9.8%). `guarded`
    doubles the pooled hits at a cosine of 0.8, but with 14.8% of them wrong, another
    question's answer on long-document questions, and GPTCache's paraphrases lost
    (benchmarks/README.md, issue 16), so it is opt-in. Feedback is on the cosine, as `rules`.
    """

    def __init__(self, *, calibrator: NamespaceCalibrator | None = None) -> None:
        super().__init__(calibrator=calibrator)
        self._readings: TextCache[Reading] = TextCache(Reading)

    def vetoed(self, pair: Pair) -> str:
        return first_veto(self._readings, pair)


class BandedVerifier(VetoVerifier):
    """The default: the vetoes at every cosine; below `top`, the cross-encoder's `bar` too.

    On the fit halves (benchmarks/cache_quality_band.py) the vetoes alone at 0.90 serve 57.5%
    of the look-alike set's paraphrases; at a floor of 0.82 with the model's agreement below
    0.90, 70.1%, no look-alike, and 30.6% pooled hits at 9.6% wrong (0.90 alone: 18.7% at
    9.6%). The model scores only the band's unvetoed candidates, in one batch per lookup
    (`prepare`). A pair short of the bar is a miss the shadow checks may read, not a veto.
    Feedback stays on the cosine, as for `vetoes`.
    """

    def __init__(
        self,
        model: CrossEncoder,
        *,
        top: float = BAND_TOP,
        bar: float = BAND_BAR,
        calibrator: NamespaceCalibrator | None = None,
    ) -> None:
        super().__init__(calibrator=calibrator)
        self._model = CrossEncoderVerifier(model)
        self.top, self.bar = top, bar

    @property
    def model(self) -> CrossEncoderVerifier:
        return self._model

    def in_band(self, pair: Pair) -> bool:
        return pair.query != pair.candidate and pair.similarity < self.top

    def prepare(self, pairs: Sequence[Pair]) -> None:
        """Scores, in one batch, the band's pairs no veto rejects (call it off the event loop)."""
        self._model.prepare([p for p in pairs if self.in_band(p) and not self.vetoed(p)])

    def verify(self, pair: Pair) -> Verdict:
        verdict = super().verify(pair)
        if not verdict.accepted or not self.in_band(pair):
            return verdict
        if self._model.score(pair) >= self.bar:
            return ACCEPT
        return Verdict(False, "crossenc_band")
