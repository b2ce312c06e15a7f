"""`oddsflow api [--port N]` serves the bet API; `oddsflow api token ACCOUNT` prints a token."""

from __future__ import annotations

import typer

from oddsflow.api.auth import Role, mint_token
from oddsflow.api.settings import ApiConfigError, ApiSettings, check_production_ready


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    api_app = typer.Typer(help="The bet API for apps and partners (FastAPI on uvicorn)")

    @api_app.callback(invoke_without_command=True)
    def api(
        ctx: typer.Context,
        port: int = typer.Option(
            None, "--port", help="listen port (default ODDSFLOW_API_PORT; 0: any free)"
        ),
        host: str = typer.Option(None, "--host", help="listen address (default ODDSFLOW_API_HOST)"),
        log_level: str = typer.Option("warning", "--log-level"),
    ) -> None:
        """Serve the API (stateless: run as many as you like behind a load balancer)."""
        if ctx.invoked_subcommand is not None:
            return
        from oddsflow.api.server import serve
        from oddsflow.settings import get_settings

        updates = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
        try:
            settings = ApiSettings().model_copy(update=updates)
            check_production_ready(settings)
        except ApiConfigError as exc:
            _fail(str(exc))
        serve(get_settings(), settings, log_level=log_level)

    @api_app.command("token")
    def token(
        account: str = typer.Argument(..., help="the account id (the token's sub)"),
        operator: bool = typer.Option(
            False, "--operator", help="an operator token (reads any account)"
        ),
        ttl_s: int = typer.Option(None, "--ttl", help="lifetime in seconds"),
    ) -> None:
        """Print an HS256 token for local use (the token alone on stdout)."""
        try:
            typer.echo(
                mint_token(
                    ApiSettings(),
                    account,
                    role=Role.OPERATOR if operator else Role.CUSTOMER,
                    ttl_s=ttl_s,
                )
            )
        except ApiConfigError as exc:
            _fail(str(exc))

    app.add_typer(api_app, name="api")
