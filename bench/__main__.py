"""`python -m oddsflow.bench [--quick] [--scenario NAME ...]`."""

from __future__ import annotations

import sys

import typer

from oddsflow.bench.cli import register


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, help="oddsflow benchmark")
    register(app)
    # a single command: typer runs it directly, so `python -m oddsflow.bench --quick` works
    app(args=argv if argv is not None else sys.argv[1:], prog_name="python -m oddsflow.bench")


if __name__ == "__main__":
    main()
