"""Cache settings from SLUICE_CACHE_* environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast
from urllib.parse import urlsplit

from services.cache.store_sqlite import SyncMode
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH
from shared.embedding.onnx import VARIANTS, Backend, Variant, default_model_dir
from shared.metrics import env_metrics_listen
from shared.settings import SettingsError, env_address, env_float, env_int, env_path, env_str

# Calibrated on the real all-MiniLM-L6-v2 vectors (see README.md, "Calibration"): paraphrases
# of a question score 0.91-0.98 against it, while the same question about another entity or
# attribute scores 0.66-0.77 and a narrower variant ("... in 1700?") 0.87. On a 3,000-pair QQP
# sample, 0.90 keeps 42% of true paraphrases while 18% of hits are wrong; lower thresholds buy
# recall with more wrong answers, and until hits are verified (a later stage) a wrong answer
# costs more than a miss, so the default leans to precision.
DEFAULT_MIN_SIMILARITY = 0.90
# The `guarded` verifier (vetoes, then the cross-encoder) reads every candidate at or above
# this cosine: the floor benchmarks/cache_quality_crossenc.py chose with it on the fit
# halves (written into the model file as guarded_min_similarity; a test checks they agree).
# It is `guarded`'s floor only; SLUICE_CACHE_MIN_SIMILARITY overrides any of them.
GUARDED_MIN_SIMILARITY = 0.8
# The default verifier (`banded`) reads candidates from this cosine: at or above 0.90
# (guarded.BAND_TOP, this module's DEFAULT_MIN_SIMILARITY) on its vetoes alone, below it only
# when the cross-encoder agrees too. Chosen with the model's bar on the fit halves
# (benchmarks/cache_quality_band.py): the vetoes alone at 0.90 serve 57.5% of the look-alike
# set's fit-half paraphrases, this band 70.1%, at the same 9.6% of pooled hits wrong.
BANDED_MIN_SIMILARITY = 0.82
DEFAULT_TTL_S = 86_400.0
# An entry holds a 1.5 KB vector plus its texts (~2-3 KB stored), and ~1 KB of Python objects
# in memory; 500k entries or 1 GiB of payload keep a replica at a few GB of RSS.
DEFAULT_MAX_ENTRIES = 500_000
DEFAULT_MAX_BYTES = 1 << 30
# Namespaces past this many live vectors move from exact to HNSW search (adaptive.py).
DEFAULT_ANN_THRESHOLD = 20_000
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_BACKENDS = ("onnx", "torch")
_SYNC_MODES = ("normal", "full")
# What a store whose vectors another embedder made gets: its queries re-embedded (default), or
# a refusal to start (embedder_check.py).
_MISMATCH = ("reembed", "refuse")
MismatchPolicy = Literal["reembed", "refuse"]
# The first is the default. `banded` (the vetoes at every cosine, the cross-encoder too between
# 0.82 and 0.90) was chosen on the fit halves to serve at least 70% of the look-alike set's
# paraphrases at no more wrong pooled answers than `vetoes` at 0.90, the default before it;
# `vetoes` serves 66.4% of the held-back paraphrases, short of issue 16's 70%. `guarded` reaches
# 74.1% at a cosine of 0.8 but serves half again as many wrong answers on the pooled data and
# another question's answer on long-document questions, so it is opt-in (benchmarks/README.md).
_VERIFIERS = ("banded", "vetoes", "guarded", "rules", "none", "learned", "crossenc")
# Each verifier's own cosine floor; the others read from DEFAULT_MIN_SIMILARITY.
_FLOORS: Mapping[str, float] = MappingProxyType(
    {"guarded": GUARDED_MIN_SIMILARITY, "banded": BANDED_MIN_SIMILARITY}
)

StoreKind = Literal["sqlite", "memory", "redis"]


@dataclass(frozen=True)
class StoreSpec:
    """Where entries are kept: a SQLite file path, a Redis URL, or nothing (memory)."""

    kind: StoreKind
    location: str = ""


@dataclass(frozen=True)
class Settings:
    listen: str
    # Cosine similarity in [0, 1] a semantic match needs to count as a hit.
    min_similarity: float
    # Lifetime of an entry whose Store request sets no TTL.
    ttl_s: float
    # Entries kept over all namespaces before the least recently used one is evicted.
    max_entries: int
    # Approximate stored bytes (texts + vectors) kept over all namespaces.
    max_bytes: int
    ann_threshold: int
    # Intra-op threads for the embedding model; 1 because two threads collapse when the
    # other core of a 2-core node is busy (DESIGN.md, measured on this machine kind).
    embed_threads: int
    embed_backend: Backend
    # Where the ONNX export of the model is cached between starts.
    model_dir: Path
    store: StoreSpec
    sqlite_sync: SyncMode
    # Hit verifier after the vector search: banded (default), vetoes, guarded, rules, learned,
    # crossenc or none (services/cache/verifiers; measured in benchmarks/README.md).
    verify: str
    # The learned verifier's model file (`python -m benchmarks.cache_quality --train` writes it).
    verifier_model: Path
    # The cross-encoder's ONNX file. Not checked here: loading it at start stops the service
    # with a message naming the file when it is missing or not a cross-encoder.
    crossenc_model: Path
    log_level: str
    # Where Prometheus reads /metrics; "" serves none (the figures are still counted).
    metrics_listen: str = ""
    # The ONNX export variant (fp32: torch's vectors; int8: quantised, see README "Memory").
    embed_variant: Variant = "fp32"
    embedder_mismatch: MismatchPolicy = "reembed"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        data_dir = env_path(env, "SLUICE_CACHE_DATA_DIR", Path(".sluice/cache"), must_exist=False)
        verify = _choice(env, "SLUICE_CACHE_VERIFY", _VERIFIERS)
        return cls(
            listen=env_address(env, "SLUICE_CACHE_LISTEN", "127.0.0.1:50052"),
            min_similarity=_similarity(env, _FLOORS.get(verify, DEFAULT_MIN_SIMILARITY)),
            ttl_s=_positive(
                env_float(env, "SLUICE_CACHE_TTL_S", DEFAULT_TTL_S), "SLUICE_CACHE_TTL_S"
            ),
            max_entries=env_int(env, "SLUICE_CACHE_MAX_ENTRIES", DEFAULT_MAX_ENTRIES, minimum=1),
            max_bytes=env_int(env, "SLUICE_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=4096),
            ann_threshold=env_int(
                env, "SLUICE_CACHE_ANN_THRESHOLD", DEFAULT_ANN_THRESHOLD, minimum=2
            ),
            embed_threads=env_int(env, "SLUICE_CACHE_EMBED_THREADS", 1, minimum=1),
            embed_backend=cast(Backend, _choice(env, "SLUICE_CACHE_EMBED_BACKEND", _BACKENDS)),
            model_dir=env_path(
                env, "SLUICE_CACHE_MODEL_DIR", default_model_dir(env), must_exist=False
            ),
            store=_store(env, data_dir),
            sqlite_sync=cast(SyncMode, _choice(env, "SLUICE_CACHE_SQLITE_SYNC", _SYNC_MODES)),
            verify=verify,
            verifier_model=env_path(
                env, "SLUICE_CACHE_VERIFIER_MODEL", DEFAULT_MODEL_PATH, must_exist=True
            ),
            crossenc_model=env_path(
                env, "SLUICE_CACHE_CROSSENC_MODEL", DEFAULT_CROSSENC_PATH, must_exist=False
            ),
            log_level=_log_level(env),
            metrics_listen=env_metrics_listen(env, "SLUICE_CACHE_METRICS_LISTEN", "127.0.0.1:0"),
            embed_variant=cast(Variant, _choice(env, "SLUICE_CACHE_EMBED_VARIANT", VARIANTS)),
            embedder_mismatch=cast(
                MismatchPolicy, _choice(env, "SLUICE_CACHE_EMBEDDER_MISMATCH", _MISMATCH)
            ),
        )


def _store(env: Mapping[str, str], data_dir: Path) -> StoreSpec:
    name = "SLUICE_CACHE_STORE"
    value = env_str(env, name, f"sqlite:///{data_dir / 'cache.db'}")
    if value == "memory://":
        return StoreSpec("memory")
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return StoreSpec("sqlite", value[len("sqlite:///") :])
    if value.startswith(("redis://", "rediss://")) and urlsplit(value).hostname:
        return StoreSpec("redis", value)
    raise SettingsError(
        f"{name}={value!r} must be sqlite:///<path>, redis://<host>:<port>/<db> or memory://"
    )


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env_str(env, name, choices[0]).lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _similarity(env: Mapping[str, str], default: float) -> float:
    name = "SLUICE_CACHE_MIN_SIMILARITY"
    value = env_float(env, name, default, minimum=0.0, maximum=1.0)
    # env_float's range check lets NaN through (every comparison with it is false).
    if math.isnan(value):
        raise SettingsError(f"{name}=nan must be within [0.0, 1.0]")
    return value


def _positive(value: float, name: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{name}={value} must be a finite number greater than 0")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    # Checked here so that a typo fails at start-up with the variable's name, not as a
    # traceback from logging.setLevel inside serve().
    level = env_str(env, "SLUICE_LOG_LEVEL", "INFO").upper()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"SLUICE_LOG_LEVEL={level!r} must be one of {', '.join(_LOG_LEVELS)}")
    return level
