"""The `oddsflow` command line (typer)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer

from oddsflow.settings import get_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="oddsflow: odds and settlement engine"
)
services_app = typer.Typer(no_args_is_help=True, help="Local Kafka (KRaft) + Postgres + chdb")
topology_app = typer.Typer(no_args_is_help=True, help="topology.yaml: check and apply")
app.add_typer(services_app, name="services")
app.add_typer(topology_app, name="topology")


def _register_components() -> None:
    # Components own their commands; the core CLI only mounts them.
    from oddsflow.api.cli import register as register_api
    from oddsflow.bench.cli import register as register_bench
    from oddsflow.sinks.cli import register as register_sinks
    from oddsflow.streams.cli import register as register_streams
    from oddsflow.streams.uof.cli import uof_app

    app.add_typer(uof_app, name="uof")

    register_sinks(app)
    register_streams(app)
    register_bench(app)
    register_api(app)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@services_app.command("up")
def services_up() -> None:
    """Start Kafka and Postgres (idempotent) and wait until they answer."""
    from oddsflow import services

    try:
        for st in services.up(get_settings()):
            typer.echo(f"{st.name:<11} up   {st.where}  {st.detail}")
    except services.ServiceError as exc:
        _fail(str(exc))


@services_app.command("down")
def services_down() -> None:
    """Stop Kafka and Postgres (data is kept under .run/)."""
    from oddsflow import services

    services.down(get_settings())
    typer.echo("services stopped")


@services_app.command("status")
def services_status() -> None:
    from oddsflow import services

    sts = services.status(get_settings())
    for st in sts:
        typer.echo(f"{st.name:<11} {'up  ' if st.running else 'down'} {st.where}  {st.detail}")
    if not all(s.running for s in sts):
        raise typer.Exit(3)


@services_app.command("reset")
def services_reset() -> None:
    """Stop the services and delete their data."""
    from oddsflow import services

    s = get_settings()
    services.Kafka(s).reset()
    services.Postgres(s).reset()
    typer.echo("services reset")


@topology_app.command("check")
def topology_check() -> None:
    """Validate topology.yaml: schemas exist, topics exist, co-partitioning holds."""
    from oddsflow import topology

    problems = topology.current().check()
    for p in problems:
        typer.echo(f"problem: {p}", err=True)
    if problems:
        raise typer.Exit(1)
    t = topology.current()
    typer.echo(f"topology ok: {len(t.topics)} topics, {len(t.agents)} agents, {len(t.sinks)} sinks")


@topology_app.command("apply")
def topology_apply() -> None:
    """Create or update the topics in Kafka (idempotent)."""
    from oddsflow import topology

    try:
        actions = topology.apply(topology.current(), get_settings().kafka_bootstrap)
    except topology.TopologyError as exc:
        _fail(str(exc))
    for a in actions:
        typer.echo(a)
    typer.echo(f"topology applied ({len(actions)} changes)")


@app.command()
def tail(
    topic: str = typer.Argument(
        ..., help="topic key or name, e.g. bet_decisions or bets.decisions"
    ),
    from_beginning: bool = typer.Option(True, "--from-beginning/--latest"),
    max_messages: int = typer.Option(0, "--max", help="stop after N messages (0: follow)"),
    idle_timeout_s: float = typer.Option(
        0.0, "--idle-timeout", help="stop after N idle seconds (0: never)"
    ),
) -> None:
    """Decode a topic's Avro events and print them as JSON lines."""
    from oddsflow.tail import TailError, tail_topic

    try:
        tail_topic(
            topic,
            from_beginning=from_beginning,
            max_messages=max_messages,
            idle_timeout_s=idle_timeout_s,
        )
    except TailError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def settle(
    bets: Path = typer.Option(
        ..., "--bets", exists=True, dir_okay=False, help="bets as JSON lines"
    ),
    results: Path = typer.Option(
        ..., "--results", exists=True, dir_okay=False, help="results as JSON lines"
    ),
) -> None:
    """Settle bets against results: one JSON line per bet line, in input order."""
    from oddsflow.domain.contract import settle_lines

    with bets.open() as b, results.open() as r:
        for line in settle_lines(b, r):
            sys.stdout.write(line + "\n")


@app.command()
def price(
    odds: list[str] = typer.Option(
        ..., "--odds", help="provider decimal odds, e.g. --odds 2.10 3.40 3.60"
    ),
    method: str = typer.Option(
        "proportional", "--method", help="proportional | additive | power | shin"
    ),
    margin: str = typer.Option("0.05", "--margin", help="the book's target overround, e.g. 0.05"),
) -> None:
    """Remove the provider's overround and apply the book's margin."""
    from oddsflow.domain.contract import price_json
    from oddsflow.domain.errors import DomainError

    try:
        out = price_json(method, margin, odds)
    except DomainError as exc:
        _fail(str(exc))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


@app.command()
def worker(
    loglevel: str = typer.Option("warn", "--loglevel", "-l"),
    metrics_port: int = typer.Option(
        None, "--metrics-port", help="serve /metrics here (default from settings; 0 disables)"
    ),
) -> None:
    """Run one stream-processing worker (all agents); start several to scale out."""
    from oddsflow.processors.app import run_worker

    s = get_settings()
    if metrics_port is not None:
        s = s.model_copy(update={"metrics_port": metrics_port})
    run_worker(s, loglevel=loglevel)


@app.command()
def demo(
    fixtures: int = typer.Option(12, help="simulated fixtures"),
    accounts: int = typer.Option(150, help="simulated customer accounts"),
    bets: int = typer.Option(3000, help="simulated bet requests"),
    workers: int = typer.Option(1, help="worker processes"),
    source: str = typer.Option(
        "simulate", help="simulate | epl (replay ../shared/data/epl-odds-results.csv)"
    ),
    epl_limit: int = typer.Option(60, help="matches to replay with --source epl"),
    seed: int = typer.Option(7),
    duration_s: float = typer.Option(
        60.0, "--duration", help="seconds the compressed match day lasts"
    ),
    via_api: bool = typer.Option(
        True,
        "--api/--no-api",
        help="place the bets through the bet API (default) or straight to Kafka",
    ),
) -> None:
    """The main job: the whole pipeline on local services, then a reconciled summary."""
    from oddsflow.demo import run_demo

    summary = run_demo(
        get_settings(),
        fixtures=fixtures,
        accounts=accounts,
        bets=bets,
        workers=workers,
        source=source,
        epl_limit=epl_limit,
        seed=seed,
        duration_s=duration_s,
        via_api=via_api,
    )
    if not summary.get("ok"):
        raise typer.Exit(1)


_register_components()


def main() -> None:
    # `--odds 2.10 3.40 3.60`: typer wants --odds repeated; accept the space-separated form too.
    argv = sys.argv[1:]
    if "--odds" in argv:
        i = argv.index("--odds")
        j = i + 1
        values = []
        while j < len(argv) and not argv[j].startswith("--"):
            values.append(argv[j])
            j += 1
        argv = argv[:i] + [x for v in values for x in ("--odds", v)] + argv[j:]
    app(args=argv, prog_name="oddsflow")


if __name__ == "__main__":
    main()
