"""``POST /feeds/{provider}/uof``: UOF XML over HTTP, for providers or tools that push.

Mounted by :mod:`oddsflow.streams.http_ingest` with one line in ``create_app``::

    app.router.add_post("/feeds/{provider}/uof", post_uof)

(``from oddsflow.streams.uof.http import post_uof``). Same bearer-token auth as the JSON feed
(the app's ``Ingestor.check_auth``) and the same producer. The body is one UOF message, or
several inside ``<uof_messages>``. The answer is sent only after Kafka confirmed every record
and dead letter of the request::

    202 {"accepted": n, "records": r, "rejected": [{"index": i, "reason": "..."}]}
    400 the body is not usable XML, or every message was rejected   401/403 auth
    503 Kafka did not take it (retry: a retry is harmless, the records carry the same seq)
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from aiohttp import web

from oddsflow.streams.uof.parse import UofError, split_messages
from oddsflow.streams.uof.settings import UofSettings
from oddsflow.streams.uof.sink import UofSink

# One adapter (its ordering and producer-health memories) per ingestor, i.e. per app.
_SINKS: weakref.WeakKeyDictionary[Any, tuple[UofSink, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _json(status: int, payload: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers or None,
    )


def _sink_for(ingestor: Any) -> tuple[UofSink, asyncio.Lock]:
    entry = _SINKS.get(ingestor)
    if entry is None:
        entry = _SINKS[ingestor] = (
            UofSink(ingestor.settings, UofSettings(), producer=ingestor.producer),
            asyncio.Lock(),
        )
    return entry


async def post_uof(request: web.Request) -> web.Response:
    from oddsflow.streams.http_ingest import INGESTOR_KEY  # late: http_ingest imports this module

    ingestor = request.app[INGESTOR_KEY]
    provider = request.match_info["provider"]
    denied = ingestor.check_auth(provider, request.headers.get("Authorization"))
    if denied is not None:
        status, reason = denied
        extra = {"WWW-Authenticate": 'Bearer realm="oddsflow-feeds"'} if status == 401 else {}
        return _json(status, {"error": reason}, **extra)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _json(413, {"error": "body too large"})
    sink, lock = _sink_for(ingestor)
    source = f"http:{provider}:uof"
    try:
        parts = split_messages(body)
    except UofError as exc:
        async with lock:
            sink.dead_letter(body, source, 0, exc.reason, exc.code)
            try:
                await asyncio.get_running_loop().run_in_executor(None, sink.flush)
            except Exception as kafka_exc:
                return _json(503, {"error": f"Kafka did not take it, retry: {kafka_exc}"})
        return _json(400, {"error": exc.reason})
    accepted = records = 0
    rejected: list[dict[str, Any]] = []
    async with lock:
        for index, part in enumerate(parts):
            handled = sink.handle(part, source, index)
            if handled.translation is None:
                rejected.append({"index": index, "reason": handled.reason})
            else:
                accepted += 1
                records += len(handled.translation.records)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sink.flush)
        except Exception as exc:
            return _json(503, {"error": f"Kafka did not take the messages, retry: {exc}"})
    status = 400 if rejected and not accepted else 202
    return _json(status, {"accepted": accepted, "records": records, "rejected": rejected})
