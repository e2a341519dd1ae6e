"""Compressor settings from SLUICE_COMPRESSOR_* environment variables, validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from shared.embedding.onnx import Backend, Variant, default_model_dir
from shared.metrics import env_metrics_listen
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import SettingsError, env_address, env_float, env_int, env_path, env_str

_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
_BACKENDS = ("onnx", "torch")
# int8 first, so the default: the compressor's vectors are never stored or compared with
# another service's, and on benchmarks/compression.py (202 questions) int8 retained as many
# gold answers as fp32 at 2x, 4x and 8x taken together, for ~63 MB less RSS (a 31 MB session
# instead of 94 MB) and ~4x faster embedding.
_EMBED_VARIANTS: tuple[Variant, ...] = ("int8", "fp32")


@dataclass(frozen=True)
class Settings:
    listen: str
    # Prompts with fewer tokens than this pass through untouched: there is little to cut, and
    # every cut risks dropping what the answer needs.
    min_tokens: int
    # Fraction of the compressible (context) tokens kept, in (0, 1], when a request names none.
    target_ratio: float
    # Intra-op threads for the embedding model; more than the pod's cores hurts latency.
    embed_threads: int
    # Vectors of recently seen chunks kept in memory (~1.6 KB each): follow-up turns resend the
    # same documents, and a remembered chunk skips the model. 0 turns the cache off.
    embed_cache_size: int
    # "onnx" (torch as its fallback) or "torch"; both give the same vectors.
    embed_backend: Backend
    # Where the ONNX export of the model is kept (made on first start when missing).
    model_dir: Path
    # Price catalogue used to price a saving at the target model's input price.
    catalogue_file: Path
    # Dispatcher for the abstractive strategy; "" leaves abstractive summaries off.
    dispatcher_addr: str
    # Cheap model that writes abstractive summaries.
    summary_model: str
    # What extractive compression is taken to cost per prompt token, in nano-USD: CPU time is
    # not free, and a non-zero price keeps compression from running where it saves nothing.
    extractive_nano_usd_per_token: float
    # Turns kept verbatim by history trimming when a request names no number.
    keep_last_turns: int
    log_level: str
    # Where Prometheus reads /metrics; "" serves none (the figures are still counted).
    metrics_listen: str = ""
    # The ONNX export variant: int8 (quantised, the default) or fp32 (torch's vectors).
    embed_variant: Variant = "int8"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        ratio = env_float(env, "SLUICE_COMPRESSOR_TARGET_RATIO", 0.5, minimum=0.0, maximum=1.0)
        if not 0.0 < ratio <= 1.0:  # also rejects "nan", which passes the range check
            raise SettingsError(f"SLUICE_COMPRESSOR_TARGET_RATIO={ratio} must be within (0, 1]")
        dispatcher = env_str(env, "SLUICE_COMPRESSOR_DISPATCHER_ADDR", "")
        if dispatcher:
            dispatcher = env_address(env, "SLUICE_COMPRESSOR_DISPATCHER_ADDR", dispatcher)
        return cls(
            listen=env_address(env, "SLUICE_COMPRESSOR_LISTEN", "127.0.0.1:50053"),
            min_tokens=env_int(env, "SLUICE_COMPRESSOR_MIN_TOKENS", 1500, minimum=0),
            target_ratio=ratio,
            embed_threads=env_int(env, "SLUICE_COMPRESSOR_EMBED_THREADS", 1, minimum=1),
            embed_cache_size=env_int(env, "SLUICE_COMPRESSOR_EMBED_CACHE_SIZE", 10_000, minimum=0),
            embed_backend=cast(Backend, _choice(env, "SLUICE_COMPRESSOR_EMBED_BACKEND", _BACKENDS)),
            model_dir=env_path(
                env, "SLUICE_COMPRESSOR_MODEL_DIR", default_model_dir(env), must_exist=False
            ),
            catalogue_file=env_path(
                env, "SLUICE_COMPRESSOR_CATALOGUE", DEFAULT_CATALOGUE, must_exist=True
            ),
            dispatcher_addr=dispatcher,
            summary_model=env_str(env, "SLUICE_COMPRESSOR_SUMMARY_MODEL", "Qwen/Qwen3-8B"),
            extractive_nano_usd_per_token=env_float(
                env, "SLUICE_COMPRESSOR_EXTRACTIVE_NANO_USD_PER_TOKEN", 0.5, minimum=0.0
            ),
            keep_last_turns=env_int(env, "SLUICE_COMPRESSOR_KEEP_LAST_TURNS", 4, minimum=0),
            log_level=_choice(env, "SLUICE_LOG_LEVEL", ("INFO", *sorted(_LOG_LEVELS - {"INFO"}))),
            metrics_listen=env_metrics_listen(
                env, "SLUICE_COMPRESSOR_METRICS_LISTEN", "127.0.0.1:0"
            ),
            embed_variant=cast(
                Variant, _choice(env, "SLUICE_COMPRESSOR_EMBED_VARIANT", _EMBED_VARIANTS)
            ),
        )


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """The variable's value, case-insensitively one of `choices`; the first is the default."""
    value = env_str(env, name, choices[0])
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
