"""Settings of the UOF adapter (``ODDSFLOW_UOF_*``), apart from the engine's own Settings."""

from __future__ import annotations

import os

from pydantic_settings import BaseSettings, SettingsConfigDict

from oddsflow.domain.provider_settlement import CertaintyPolicy


class UofConfigError(ValueError):
    """A setting the adapter needs is missing or wrong; the message says which."""


class UofSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ODDSFLOW_UOF_", frozen=True, extra="ignore")

    # The provider name the canonical records carry (and the HTTP path's {provider} for replay).
    provider: str = "sportradar"
    # AMQP: no default outside dev mode (a URL carries credentials); in dev mode the private
    # node `oddsflow.services_rabbitmq` starts.
    amqp_url: str | None = None
    exchange: str = "unifiedfeed"
    # A durable queue survives the consumer (no loss across crashes). Empty: a server-named
    # exclusive queue, as Sportradar's own broker requires - it dies with the connection, so
    # what it held is recovered through Sportradar's recovery API, not redelivered.
    queue: str = "oddsflow.uof"
    # Declare the exchange (a local broker); false: it must exist (Sportradar's broker).
    declare_exchange: bool = True
    routing_key: str = "#"
    prefetch: int = 200
    # Producer health: a producer whose `alive` stops for longer than this is down.
    alive_timeout_s: float = 20.0
    # UOF products whose odds are in-play (1 LO live odds, 4 BetPal, 5 PremiumCricket).
    live_products: str = "1,4,5"
    # Which certainty settles (the engine side reads it; see domain.provider_settlement).
    certainty_policy: CertaintyPolicy = CertaintyPolicy.SETTLE_LIVE_RESETTLE_CONFIRMED
    # Messages taken per Kafka flush (then acknowledged together on AMQP).
    batch_max: int = 500
    # Crash-test hook: SIGKILL this process right after the Nth Kafka flush, before that
    # batch's AMQP ack (0: never). It makes "records on Kafka, delivery not acked" repeatable.
    crash_after_flush: int = 0

    def live_product_ids(self) -> frozenset[int]:
        try:
            return frozenset(int(p) for p in self.live_products.split(",") if p.strip())
        except ValueError:
            raise UofConfigError(
                f"ODDSFLOW_UOF_LIVE_PRODUCTS must be comma-separated ints, got {self.live_products!r}"
            ) from None

    def effective_amqp_url(self) -> str:
        if self.amqp_url:
            return self.amqp_url
        if os.environ.get("ODDSFLOW_ENV") == "dev":
            from oddsflow.services_rabbitmq import RabbitSettings

            r = RabbitSettings()
            return f"amqp://guest:guest@{r.host}:{r.port}/"
        raise UofConfigError(
            "ODDSFLOW_UOF_AMQP_URL is not set (no default outside ODDSFLOW_ENV=dev)"
        )
