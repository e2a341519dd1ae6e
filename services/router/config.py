"""Router settings from SLUICE_ROUTER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from services.router.exact_local import LocalBounds
from services.router.http_limits import MIB, DoorLimits
from services.router.learning.scorer import MODELS_DIR
from shared.metrics import env_metrics_listen
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import (
    SettingsError,
    env_address,
    env_float,
    env_int,
    env_path,
    env_str,
)

DEFAULT_POLICY = Path(__file__).resolve().parent / "policies" / "default.yaml"


@dataclass(frozen=True)
class Settings:
    listen: str
    # The OpenAI-compatible HTTP front door.
    http_listen: str
    policy_file: Path
    catalogue_file: Path
    cache_addr: str
    compressor_addr: str
    batcher_addr: str
    dispatcher_addr: str
    # Requests whose prompt is longer than this are rejected before any work is done.
    max_prompt_tokens: int
    # Used when the caller sets no gRPC deadline.
    default_deadline_s: float
    # Optional stages get short timeouts: a slow cache must not cost more than it can save.
    cache_timeout_s: float
    compressor_timeout_s: float
    # A candidate policy rolled out beside the live one: SLUICE_ROUTER_ROLLOUT is
    # "canary:<percent>" (sticky share of traffic) or "shadow" (evaluated, never served).
    candidate_policy_file: Path | None
    rollout: str
    log_level: str
    # The learned answer scorer and start-tier prior (answer_scorer.json, start_tier.json);
    # loaded only when a policy uses the `scorer` gate or `learned_start`.
    learning_dir: Path = MODELS_DIR
    # Where tenant spend is counted: memory:// (this replica only) or redis://host:port/db
    # (shared by every router replica; services/router/budgets_redis.py).
    ledger_url: str = "memory://"
    # What one HTTP caller may cost the front door: body and header sizes, read timeouts.
    door: DoorLimits = field(default_factory=DoorLimits)
    # The largest gRPC request the router reads; bigger ones end RESOURCE_EXHAUSTED before
    # any parsing. The same bound as the HTTP body, for the same reason.
    grpc_max_message_bytes: int = 8 * MIB
    # Where Prometheus reads /metrics; "" serves none (the figures are still counted).
    metrics_listen: str = ""
    # Where the usage record `sluice report` reads is kept (services/router/usage.py):
    # memory:// (this replica), redis://host:port/db (every replica) or sqlite:///<file>.
    usage_url: str = "memory://"
    # Tenants whose API keys may read every tenant's usage (GetUsage with all_tenants).
    usage_admin_tenants: frozenset[str] = frozenset()
    # The router's own copies of exact cache entries (exact_local.py); 0 entries turns them off.
    exact_copies: LocalBounds = field(default_factory=LocalBounds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, "SLUICE_ROUTER_LISTEN", "127.0.0.1:50051"),
            http_listen=env_address(env, "SLUICE_ROUTER_HTTP_LISTEN", "127.0.0.1:8080"),
            policy_file=env_path(env, "SLUICE_ROUTER_POLICY", DEFAULT_POLICY, must_exist=True),
            catalogue_file=env_path(
                env, "SLUICE_ROUTER_CATALOGUE", DEFAULT_CATALOGUE, must_exist=True
            ),
            cache_addr=env_address(env, "SLUICE_ROUTER_CACHE_ADDR", "127.0.0.1:50052"),
            compressor_addr=env_address(env, "SLUICE_ROUTER_COMPRESSOR_ADDR", "127.0.0.1:50053"),
            batcher_addr=env_address(env, "SLUICE_ROUTER_BATCHER_ADDR", "127.0.0.1:50054"),
            dispatcher_addr=env_address(env, "SLUICE_ROUTER_DISPATCHER_ADDR", "127.0.0.1:50055"),
            max_prompt_tokens=env_int(env, "SLUICE_ROUTER_MAX_PROMPT_TOKENS", 128_000, minimum=1),
            default_deadline_s=env_float(
                env, "SLUICE_ROUTER_DEFAULT_DEADLINE_S", 60.0, minimum=0.1
            ),
            cache_timeout_s=env_float(env, "SLUICE_ROUTER_CACHE_TIMEOUT_S", 2.0, minimum=0.01),
            compressor_timeout_s=env_float(
                env, "SLUICE_ROUTER_COMPRESSOR_TIMEOUT_S", 5.0, minimum=0.01
            ),
            candidate_policy_file=_candidate(env),
            rollout=env_str(env, "SLUICE_ROUTER_ROLLOUT", ""),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
            learning_dir=env_path(env, "SLUICE_ROUTER_LEARNING_DIR", MODELS_DIR, must_exist=True),
            ledger_url=_ledger_url(env),
            door=_door_limits(env),
            grpc_max_message_bytes=env_int(
                env, "SLUICE_ROUTER_GRPC_MAX_MESSAGE_BYTES", 8 * MIB, minimum=1024
            ),
            metrics_listen=env_metrics_listen(env, "SLUICE_ROUTER_METRICS_LISTEN", "127.0.0.1:0"),
            usage_url=_usage_url(env),
            usage_admin_tenants=frozenset(
                t.strip() for t in env_str(env, "SLUICE_ROUTER_USAGE_ADMIN_TENANTS", "").split(",")
            )
            - {""},
            exact_copies=_exact_copies(env),
        )


def _exact_copies(env: Mapping[str, str]) -> LocalBounds:
    default = LocalBounds()
    return LocalBounds(
        max_entries=env_int(
            env, "SLUICE_ROUTER_EXACT_COPIES_MAX_ENTRIES", default.max_entries, minimum=0
        ),
        max_bytes=env_int(
            env, "SLUICE_ROUTER_EXACT_COPIES_MAX_BYTES", default.max_bytes, minimum=0
        ),
        max_age_s=env_float(
            env, "SLUICE_ROUTER_EXACT_COPIES_MAX_AGE_S", default.max_age_s, minimum=0.1
        ),
        feed_stale_s=env_float(
            env, "SLUICE_ROUTER_EXACT_FEED_STALE_S", default.feed_stale_s, minimum=1.5
        ),
    )


def _door_limits(env: Mapping[str, str]) -> DoorLimits:
    default = DoorLimits()
    return DoorLimits(
        max_body_bytes=env_int(
            env, "SLUICE_ROUTER_HTTP_MAX_BODY_BYTES", default.max_body_bytes, minimum=1024
        ),
        max_header_bytes=env_int(
            env, "SLUICE_ROUTER_HTTP_MAX_HEADER_BYTES", default.max_header_bytes, minimum=1024
        ),
        header_timeout_s=env_float(
            env, "SLUICE_ROUTER_HTTP_HEADER_TIMEOUT_S", default.header_timeout_s, minimum=0.1
        ),
        body_timeout_s=env_float(
            env, "SLUICE_ROUTER_HTTP_BODY_TIMEOUT_S", default.body_timeout_s, minimum=0.1
        ),
        keep_alive_s=env_int(
            env, "SLUICE_ROUTER_HTTP_KEEP_ALIVE_S", default.keep_alive_s, minimum=1
        ),
        max_connections=env_int(
            env, "SLUICE_ROUTER_HTTP_MAX_CONNECTIONS", default.max_connections, minimum=1
        ),
    )


def _ledger_url(env: Mapping[str, str]) -> str:
    name = "SLUICE_ROUTER_LEDGER"
    value = env_str(env, name, "memory://")
    if value == "memory://" or (
        value.startswith(("redis://", "rediss://")) and urlsplit(value).hostname
    ):
        return value
    raise SettingsError(f"{name}={value!r} must be memory:// or redis://<host>:<port>/<db>")


def _usage_url(env: Mapping[str, str]) -> str:
    """The usage record's store; by default the ledger's (memory, or the same Redis)."""
    name = "SLUICE_ROUTER_USAGE"
    value = env_str(env, name, "") or _ledger_url(env)
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    try:
        return _ledger_url({"SLUICE_ROUTER_LEDGER": value})
    except SettingsError:
        raise SettingsError(
            f"{name}={value!r} must be memory://, redis://<host>:<port>/<db> or "
            "sqlite:///<path to a file>"
        ) from None


def _candidate(env: Mapping[str, str]) -> Path | None:
    if not env_str(env, "SLUICE_ROUTER_CANDIDATE_POLICY", ""):
        return None
    path = env_path(env, "SLUICE_ROUTER_CANDIDATE_POLICY", DEFAULT_POLICY, must_exist=True)
    if not env_str(env, "SLUICE_ROUTER_ROLLOUT", ""):
        raise SettingsError(
            "SLUICE_ROUTER_CANDIDATE_POLICY is set but SLUICE_ROUTER_ROLLOUT is not"
        )
    return path
