"""``oddsflow uof ...``: the UOF adapter's commands (a typer sub-app).

Mounted in oddsflow/cli.py with ``app.add_typer(uof_app, name="uof")``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from oddsflow.settings import get_settings

uof_app = typer.Typer(no_args_is_help=True, help="Sportradar Unified Odds Feed (UOF) adapter")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@uof_app.command("consume")
def consume_cmd(
    queue: str = typer.Option(None, "--queue", help="default: ODDSFLOW_UOF_QUEUE"),
) -> None:
    """Consume UOF messages from AMQP into Kafka (ack only after Kafka confirmed)."""
    import logging

    from oddsflow.streams.uof.consume import run_consume
    from oddsflow.streams.uof.settings import UofConfigError, UofSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        uof = UofSettings() if queue is None else UofSettings(queue=queue)
        uof.effective_amqp_url()
        uof.live_product_ids()
    except (UofConfigError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
        return
    from aio_pika.exceptions import AMQPException

    try:
        counts = run_consume(get_settings(), uof)
    except OSError as exc:  # AMQP broker unreachable
        _fail(f"cannot reach the AMQP broker: {exc}")
        return
    except AMQPException as exc:  # refused login, missing exchange, access refused ...
        _fail(f"the AMQP broker refused: {exc!r}")
        return
    typer.echo(f"stopped: {dict(sorted(counts.items()))}")


@uof_app.command("replay")
def replay_cmd(
    path: Path = typer.Argument(..., help="a UOF XML file, or a directory of them"),
) -> None:
    """Replay recorded UOF messages into Kafka (message timestamps are the clock)."""
    from oddsflow.streams.uof.replay import ReplayError, replay

    try:
        counts = replay(get_settings(), path)
    except ReplayError as exc:
        _fail(str(exc))
        return
    typer.echo(f"replayed {path}:")
    for k in sorted(counts):
        typer.echo(f"  {k:<26} {counts[k]:>7}")


broker_app = typer.Typer(
    no_args_is_help=True, help="A private RabbitMQ node (Debian's rabbitmq-server) under .run/"
)
uof_app.add_typer(broker_app, name="broker")


@broker_app.command("up")
def broker_up() -> None:
    """Start the private RabbitMQ node (idempotent) and wait until it answers."""
    from oddsflow import services_rabbitmq as rmq

    try:
        st = rmq.up(get_settings())
    except rmq.RabbitError as exc:
        _fail(str(exc))
        return
    typer.echo(f"{st.name:<11} up   {st.where}  {st.detail}")


@broker_app.command("down")
def broker_down() -> None:
    """Stop the private RabbitMQ node (its data is kept under .run/rabbitmq)."""
    from oddsflow import services_rabbitmq as rmq

    rmq.down(get_settings())
    typer.echo("rabbitmq stopped")


@broker_app.command("status")
def broker_status() -> None:
    from oddsflow import services_rabbitmq as rmq

    st = rmq.RabbitMQ(get_settings()).status()
    typer.echo(f"{st.name:<11} {'up  ' if st.running else 'down'} {st.where}  {st.detail}")
    if not st.running:
        raise typer.Exit(3)
