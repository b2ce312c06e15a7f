"""The API's own settings (``ODDSFLOW_API_*``), separate from the engine's :mod:`oddsflow.settings`.

Secrets: a built-in HS256 secret exists only for dev mode (``ODDSFLOW_ENV=dev``, which
``make demo`` and the tests set); anywhere else :func:`check_production_ready` refuses it.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Long enough for HS256 (RFC 7518 asks for >= 256 bits); shipped only for local use.
DEV_JWT_SECRET = "oddsflow-dev-only-jwt-secret-not-for-production"


class ApiConfigError(ValueError):
    """The API cannot start with these settings (one line for the operator)."""


def dev_mode() -> bool:
    return os.environ.get("ODDSFLOW_ENV", "") == "dev"


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ODDSFLOW_API_", env_file=".env", frozen=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8080
    # Names this process in metrics and logs; several instances run behind a load balancer.
    instance_id: str = f"{socket.gethostname()}-{os.getpid()}"

    # Auth: bearer JWTs whose `sub` is the account id.
    jwt_algorithms: str = "HS256"  # comma-separated; "none" is never accepted
    jwt_secret: SecretStr | None = None  # HS256 key; the dev secret applies only in dev mode
    jwt_public_key_file: Path | None = None  # PEM, for RS256 / ES256 tokens
    jwt_issuer: str = "oddsflow"
    jwt_audience: str = "oddsflow-api"
    jwt_leeway_s: int = 5
    token_ttl_s: int = 3600

    # Placement: how long POST /v1/bets waits for the engine's decision before answering 202.
    decision_wait_ms: int = 3000
    # Load shedding: placements waiting for a decision in this instance.
    inflight_max: int = 2000
    # Token buckets on placement, per account and per client address.
    rate_account_per_s: float = 50.0
    rate_account_burst: int = 100
    rate_client_per_s: float = 2000.0
    rate_client_burst: int = 4000
    # Addresses whose X-Forwarded-For is trusted (the load balancer), uvicorn's format.
    forwarded_allow_ips: str = "127.0.0.1"
    body_max_bytes: int = 16_384
    # Idle keep-alive connections are kept this long: longer than a load balancer's (60 s), so
    # the balancer, not us, closes them and never reuses one we just closed.
    keepalive_s: float = 75.0

    # WebSocket stream: per-connection queue bound, heartbeat, and how long a client may stall.
    ws_queue_max: int = 512
    ws_conflate_after: int = 32  # queued messages before market updates are conflated
    ws_heartbeat_s: float = 10.0
    ws_stall_max_s: float = 5.0
    ws_subscriptions_max: int = 200
    # Kernel send buffer of accepted sockets (0: the kernel's autotuning); bounds per-client memory.
    socket_sndbuf_bytes: int = 0

    # Postgres pool for the read models and idempotency records.
    pg_pool_max: int = 10

    def algorithms(self) -> list[str]:
        algs = [a.strip() for a in self.jwt_algorithms.split(",") if a.strip()]
        return [a for a in algs if a.lower() != "none"]

    def hs_secret(self) -> str | None:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEV_JWT_SECRET if dev_mode() else None


def check_production_ready(s: ApiSettings) -> None:
    """Outside dev mode, refuse a built-in or missing key (raises ApiConfigError, one line)."""
    if dev_mode():
        return
    secret = s.jwt_secret.get_secret_value() if s.jwt_secret is not None else None
    if secret == DEV_JWT_SECRET:
        raise ApiConfigError(
            "ODDSFLOW_API_JWT_SECRET is the built-in dev secret; set your own (or ODDSFLOW_ENV=dev)"
        )
    if secret is None and s.jwt_public_key_file is None:
        raise ApiConfigError(
            "no JWT key configured: set ODDSFLOW_API_JWT_SECRET or ODDSFLOW_API_JWT_PUBLIC_KEY_FILE "
            "(the built-in secret works only with ODDSFLOW_ENV=dev)"
        )
    if secret is not None and len(secret.encode()) < 32:
        raise ApiConfigError("ODDSFLOW_API_JWT_SECRET must be at least 32 bytes for HS256")


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
