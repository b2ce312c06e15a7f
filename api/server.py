"""Run the API on uvicorn (uvloop), on a socket we bind ourselves (port 0 picks a free one)."""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn

from oddsflow.api.app import create_app
from oddsflow.api.settings import ApiSettings, check_production_ready
from oddsflow.settings import Settings


def bind(api: ApiSettings) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in api.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if api.socket_sndbuf_bytes:
        # Accepted sockets inherit it: a client that stops reading fills this, not our memory.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, api.socket_sndbuf_bytes)
    sock.bind((api.host, api.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, api: ApiSettings, log_level: str = "warning") -> None:
    check_production_ready(api)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    sock = bind(api)
    host, port = sock.getsockname()[:2]
    app = create_app(settings, api)
    app.state.on_ready = lambda: print(
        f"oddsflow api ready on http://{host}:{port} (instance {api.instance_id})", flush=True
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        log_level=log_level,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=api.forwarded_allow_ips,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=int(api.keepalive_s),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)
