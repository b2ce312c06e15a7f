"""Typer commands of the feed ingestors; the lead mounts them with ``register(app)``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from oddsflow.settings import get_settings


def _print_counts(title: str, counts: Counter[str]) -> None:
    typer.echo(title)
    for k in sorted(counts):
        typer.echo(f"  {k:<20} {counts[k]:>9}")


def _progress(counts: Counter[str]) -> None:
    typer.echo(f"  ... {sum(v for k, v in counts.items())} events sent", err=True)


def register(app: typer.Typer) -> None:
    """Add ``replay``, ``simulate`` and ``ingest-http`` to ``app``."""

    @app.command("replay")
    def replay_cmd(
        file: Path = typer.Argument(
            ..., exists=True, dir_okay=False, help="football-data style CSV"
        ),
        speedup: float = typer.Option(
            0.0, "--speedup", help="timeline seconds per wall second; 0 = as fast as possible"
        ),
        limit: int = typer.Option(None, "--limit", help="replay only the first N matches"),
        bets_per_match: int = typer.Option(
            0, "--bets-per-match", help="synthetic bet requests per match"
        ),
        steps: int = typer.Option(3, "--steps", help="price updates from opening to closing price"),
    ) -> None:
        """Replay a CSV of matches (fixtures, prices open -> close, results) into Kafka."""
        from oddsflow.streams.replay import replay

        counts = replay(
            get_settings(),
            file,
            speedup=speedup,
            limit=limit,
            bets_per_match=bets_per_match,
            steps=steps,
            progress=_progress,
        )
        _print_counts(f"replayed {file.name}:", counts)

    @app.command("simulate")
    def simulate_cmd(
        fixtures: int = typer.Option(20, "--fixtures"),
        accounts: int = typer.Option(200, "--accounts"),
        bets: int = typer.Option(2000, "--bets"),
        seed: int = typer.Option(1, "--seed"),
        rate: float = typer.Option(
            0.0, "--rate", help="events per second; 0 = as fast as possible"
        ),
        in_play: bool = typer.Option(True, "--in-play/--pre-match-only"),
    ) -> None:
        """Produce a synthetic match day (deterministic per seed) into Kafka."""
        from oddsflow.streams.simulate import simulate

        counts = simulate(
            get_settings(),
            fixtures=fixtures,
            accounts=accounts,
            bets=bets,
            seed=seed,
            rate_per_s=rate,
            in_play=in_play,
            progress=_progress,
        )
        _print_counts(f"simulated match day (seed {seed}):", counts)

    @app.command("ingest-http")
    def ingest_http_cmd(
        port: int = typer.Option(None, "--port", help="default: ODDSFLOW_INGEST_PORT"),
        host: str = typer.Option("127.0.0.1", "--host"),
    ) -> None:
        """Serve POST /feeds/{provider}/events, /healthz and /metrics."""
        from oddsflow.streams.http_ingest import IngestConfigError, run_http_ingest

        try:
            run_http_ingest(get_settings(), host=host, port=port)
        except IngestConfigError as exc:  # a setup mistake: one line, no traceback
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
