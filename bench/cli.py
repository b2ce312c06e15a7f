"""`oddsflow bench [--quick] [--scenario NAME ...]`, mounted by :func:`register`."""

from __future__ import annotations

import typer

from oddsflow.bench.run import OPTIONAL, ORDER


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        quick: bool = typer.Option(False, "--quick", help="small sizes, one repetition (~4 min)"),
        scenario: list[str] = typer.Option(
            None,
            "--scenario",
            "-s",
            help=f"run only these (repeatable): {', '.join((*ORDER, *OPTIONAL))}",
        ),
    ) -> None:
        """Benchmark the engine against a plain Kafka passthrough; writes bench/results/."""
        from oddsflow.bench.run import run_bench
        from oddsflow.settings import get_settings

        try:
            # LATEST.md is the full run's table: a run of some scenarios only leaves it alone
            doc = run_bench(
                get_settings(), quick=quick, scenarios=scenario or None, write_latest=not scenario
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        if doc.get("errors"):
            raise typer.Exit(1)
