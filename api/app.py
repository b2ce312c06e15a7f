"""The FastAPI application: routes, auth, protection, the WebSocket stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oddsflow.api import metrics
from oddsflow.api.auth import AuthError, Principal, Role, bearer
from oddsflow.api.bridge import ProduceError
from oddsflow.api.errors import ApiError, api_error_handler, validation_handler
from oddsflow.api.models import (
    BetIn,
    BetList,
    BetOut,
    BetStatus,
    ErrorCode,
    ErrorOut,
    EventList,
    EventOut,
    MarketList,
    WalletOut,
)
from oddsflow.api.protection import retry_after_header
from oddsflow.api.runtime import Runtime, decision_out
from oddsflow.api.settings import ApiSettings
from oddsflow.api.stream import ALL_ACCOUNTS, Connection, _ms_iso, market_out, receive_ops, watchdog
from oddsflow.api.validation import (
    BodyError,
    bet_id_for,
    body_fingerprint,
    parse_body,
    to_request,
)
from oddsflow.settings import Settings

log = logging.getLogger("oddsflow.api")
access_log = logging.getLogger("oddsflow.api.access")

_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the IETF draft's examples
_PREFER_WAIT_RE = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "unauthorized: missing, expired or invalid token"},
    422: {"model": ErrorOut, "description": "validation_error (the field is named)"},
}


def _unauthorized(message: str) -> ApiError:
    return ApiError.of(
        401,
        ErrorCode.UNAUTHORIZED,
        message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


_bearer_scheme = HTTPBearer(auto_error=False, description="JWT whose `sub` is the account id")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def principal(
    request: Request,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
) -> Principal:
    try:
        who: Principal = runtime(request).verifier.verify(
            bearer(request.headers.get("authorization"))
        )
        return who
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


def _target_account(p: Principal, account_id: str | None) -> str:
    if account_id is None or account_id == p.account_id:
        return p.account_id
    if p.role is not Role.OPERATOR:
        raise ApiError.of(403, ErrorCode.FORBIDDEN, "a customer reads only its own account")
    return account_id


class RequestContext:
    """Pure ASGI middleware: request id (echoed, logged), per-route metrics, body size cap."""

    def __init__(self, app: ASGIApp, body_max_bytes: int) -> None:
        self.app = app
        self.body_max_bytes = body_max_bytes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid_in = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = rid_in if _REQUEST_ID_RE.match(rid_in) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = [500]
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.body_max_bytes:
            resp = JSONResponse(
                {
                    "error": {
                        "code": ErrorCode.BODY_TOO_LARGE.value,
                        "message": f"body exceeds {self.body_max_bytes} bytes",
                    }
                },
                status_code=413,
                headers={"X-Request-ID": rid},
            )
            await resp(scope, receive, send)
            self._observe(scope, 413, start, rid)
            return

        async def send_wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            self._observe(scope, status[0], start, rid)

    def _observe(
        self, scope: MutableMapping[str, Any], status: int, start: float, rid: str
    ) -> None:
        elapsed = time.perf_counter() - start
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        metrics.REQUESTS.labels(path, method, str(status)).inc()
        metrics.REQUEST_SECONDS.labels(path, method).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO) or status >= 500:
            access_log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d %.1fms request_id=%s",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                rid,
            )


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError.of(413, ErrorCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_s(prefer: str | None, max_wait_s: float) -> float:
    if prefer:
        m = _PREFER_WAIT_RE.search(prefer)
        if m:
            return min(float(m[1]), max_wait_s)
    return max_wait_s


def _answer(bet: BetOut, engine_s: float | None = None) -> JSONResponse:
    location = {"Location": f"/v1/bets/{bet.bet_id}"}
    if engine_s is not None:
        # Server-Timing: how long this answer waited on Kafka and the engine (the rest is ours).
        location["Server-Timing"] = f"engine;dur={engine_s * 1000:.1f}"
    if bet.status is BetStatus.REJECTED:
        metrics.PLACEMENTS.labels("rejected").inc()
        raise ApiError(
            422, bet.reason or "REJECTED", bet.message or "rejected", bet=bet, headers=location
        )
    if bet.status is BetStatus.PENDING:
        metrics.PLACEMENTS.labels("pending").inc()
        return JSONResponse(bet.model_dump(mode="json"), status_code=202, headers=location)
    metrics.PLACEMENTS.labels("accepted").inc()
    return JSONResponse(bet.model_dump(mode="json"), status_code=201, headers=location)


def create_app(settings: Settings, api: ApiSettings) -> FastAPI:
    rt = Runtime(settings, api)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        on_ready = getattr(app.state, "on_ready", None)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(
        title="oddsflow bet API",
        version="1",
        description=(
            "Placement with Idempotency-Key, bets and wallet reads, fixtures and prices, and a "
            "WebSocket stream (`/v1/stream`) of odds, decisions and settlements. Rejections "
            "carry the engine's reason code (PRICE_CHANGED, MARKET_SUSPENDED, "
            "INSUFFICIENT_FUNDS, STAKE_TOO_HIGH, ...) as `error.code`."
        ),
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_middleware(RequestContext, body_max_bytes=api.body_max_bytes)

    @app.post(
        "/v1/bets",
        status_code=201,
        response_model=BetOut,
        summary="Place a bet (Idempotency-Key required)",
        responses={
            **_ERRORS,
            202: {
                "model": BetOut,
                "description": "pending: in-play delay or the wait ran out; see Location",
            },
            400: {"model": ErrorOut, "description": "idempotency_key_missing"},
            403: {"model": ErrorOut, "description": "forbidden: operators do not place bets"},
            413: {"model": ErrorOut, "description": "body_too_large"},
            422: {
                "model": ErrorOut,
                "description": "rejected by the engine (error.code is its reason, error.bet the bet), "
                "validation_error, or idempotency_key_reused",
            },
            429: {"model": ErrorOut, "description": "rate_limited (Retry-After)"},
            503: {
                "model": ErrorOut,
                "description": "overloaded: too many placements in flight (Retry-After)",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BetIn.model_json_schema()}},
            }
        },
    )
    async def place_bet(
        request: Request,
        p: Annotated[Principal, Depends(principal)],
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", description="client key; a retry reuses it"),
        ] = None,
        prefer: Annotated[
            str | None, Header(description="`wait=N`: answer within N seconds (RFC 7240)")
        ] = None,
    ) -> Response:
        if p.role is Role.OPERATOR:
            raise ApiError.of(403, ErrorCode.FORBIDDEN, "operators do not place bets")
        if idempotency_key is None:
            raise ApiError.of(
                400, ErrorCode.IDEMPOTENCY_KEY_MISSING, "the Idempotency-Key header is required"
            )
        if not _KEY_RE.match(idempotency_key):
            raise ApiError.of(
                400,
                ErrorCode.IDEMPOTENCY_KEY_MISSING,
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
        for scope_name, buckets, key in (
            ("account", rt.account_buckets, p.account_id),
            ("client", rt.client_buckets, request.client.host if request.client else "-"),
        ):
            retry_s = buckets.take(key)
            if retry_s:
                metrics.RATE_LIMITED.labels(scope_name).inc()
                raise ApiError.of(
                    429,
                    ErrorCode.RATE_LIMITED,
                    f"too many placements for this {scope_name}",
                    headers={"Retry-After": retry_after_header(retry_s)},
                )
        if not rt.inflight.try_enter():
            metrics.SHED.inc()
            raise ApiError.of(
                503,
                ErrorCode.OVERLOADED,
                "too many placements in flight; retry with the same Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        metrics.INFLIGHT.inc()
        try:
            return await _place(request, p, idempotency_key, prefer)
        finally:
            rt.inflight.leave()
            metrics.INFLIGHT.dec()

    async def _place(request: Request, p: Principal, key: str, prefer: str | None) -> Response:
        raw = await _read_body(request, api.body_max_bytes)
        try:
            body = parse_body(raw)
            bet_id = bet_id_for(p.account_id, key)
            record = to_request(
                body, account_id=p.account_id, bet_id=bet_id, placed_at_ms=int(time.time() * 1000)
            )
        except BodyError as exc:
            raise ApiError.of(422, ErrorCode.VALIDATION, exc.message, field=exc.field) from None
        fingerprint = body_fingerprint(record)
        placed = await rt.reads.claim(
            p.account_id, key, bet_id, fingerprint, record, api.instance_id
        )
        if placed.body_sha256 != fingerprint:
            raise ApiError.of(
                422,
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used with a different body",
                field="Idempotency-Key",
            )
        if not placed.created:
            # A retry: same request as first sent (its placed_at), answered from what is known.
            record = {**record, "placed_at": placed.request["placed_at"]}
            known = rt.recent.get(bet_id)
            if known is not None:
                return _answer(decision_out(known))
            stored = await rt.reads.bet(bet_id)
            if stored is not None and stored.status is not BetStatus.PENDING:
                return _answer(stored)
        fut = rt.waiter(bet_id)
        t_engine = time.perf_counter()
        try:
            assert rt.bridge is not None
            try:
                await rt.bridge.produce_request(record)
            except ProduceError as exc:
                raise ApiError.of(
                    503, ErrorCode.UNAVAILABLE, str(exc), headers={"Retry-After": "1"}
                ) from None
            wait_s = _wait_s(prefer, api.decision_wait_ms / 1000)
            try:
                decision = await asyncio.wait_for(asyncio.shield(fut), wait_s)
            except TimeoutError:
                return _answer(
                    BetOut(
                        bet_id=bet_id,
                        account_id=p.account_id,
                        status=BetStatus.PENDING,
                        stake_minor=record["stake_minor"],
                        currency=record["currency"],
                        requested_at=_ms_iso(record["placed_at"]),
                    ),
                    time.perf_counter() - t_engine,
                )
            return _answer(decision_out(decision), time.perf_counter() - t_engine)
        finally:
            rt.forget(bet_id, fut)

    @app.get(
        "/v1/bets/{bet_id}",
        response_model=BetOut,
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found (or not yours)"}},
    )
    async def get_bet(bet_id: str, p: Annotated[Principal, Depends(principal)]) -> BetOut:
        bet = await rt.reads.bet(bet_id)
        known = rt.recent.get(bet_id)
        if known is not None and (bet is None or bet.status is BetStatus.PENDING):
            bet = decision_out(known)  # this instance saw the decision before the sink wrote it
        if bet is None or not p.may_read(bet.account_id):
            # Another account's bet is indistinguishable from a missing one.
            raise ApiError.of(404, ErrorCode.NOT_FOUND, f"no bet {bet_id!r}")
        return bet

    @app.get(
        "/v1/bets",
        response_model=BetList,
        responses={**_ERRORS, 403: {"model": ErrorOut, "description": "forbidden"}},
    )
    async def list_bets(
        p: Annotated[Principal, Depends(principal)],
        status: Annotated[str | None, Query(pattern="^(open|settled)$")] = None,
        account_id: Annotated[str | None, Query(description="operators only")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> BetList:
        acct = _target_account(p, account_id)
        return BetList(bets=await rt.reads.bets(acct, status, limit))

    @app.get(
        "/v1/wallet",
        response_model=WalletOut,
        responses={**_ERRORS, 403: {"model": ErrorOut, "description": "forbidden"}},
    )
    async def wallet(
        p: Annotated[Principal, Depends(principal)],
        account_id: Annotated[str | None, Query(description="operators only")] = None,
    ) -> WalletOut:
        return await rt.reads.wallet(_target_account(p, account_id), settings.currency)

    @app.get("/v1/events", response_model=EventList, responses=_ERRORS)
    async def events(p: Annotated[Principal, Depends(principal)]) -> EventList:
        out = []
        for e in rt.book.event_ids():
            fx = rt.book.fixtures.get(e)
            out.append(
                EventOut(
                    event_id=e,
                    competition=fx["competition"] if fx else None,
                    home=fx["home"] if fx else None,
                    away=fx["away"] if fx else None,
                    kickoff=_ms_iso(fx["kickoff"]) if fx else None,
                    in_play=rt.book.in_play(e),
                    markets=len(rt.book.by_event.get(e, {})),
                )
            )
        return EventList(events=out)

    @app.get(
        "/v1/events/{event_id}/markets",
        response_model=MarketList,
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found"}},
    )
    async def markets(event_id: str, p: Annotated[Principal, Depends(principal)]) -> MarketList:
        ms = rt.book.event_markets(event_id)
        if not ms and event_id not in rt.book.fixtures:
            raise ApiError.of(404, ErrorCode.NOT_FOUND, f"no event {event_id!r}")
        return MarketList(event_id=event_id, markets=[market_out(m) for m in ms])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = rt.bridge is not None and rt.bridge.ready.is_set()
        with contextlib.suppress(Exception):
            ok = ok and await rt.reads.ping()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Subscribe with {"op": "subscribe", "events": [...]}; see the module docs."""
        token = ws.headers.get("authorization")
        try:
            if token is None and "token" in ws.query_params:
                token = f"Bearer {ws.query_params['token']}"
            who = rt.verifier.verify(bearer(token))
        except AuthError as exc:
            await ws.send_denial_response(
                JSONResponse(
                    {"error": {"code": ErrorCode.UNAUTHORIZED.value, "message": str(exc)}},
                    status_code=401,
                )
            )
            return
        await ws.accept()
        follows = ALL_ACCOUNTS if who.role is Role.OPERATOR else who.account_id
        c = Connection(ws, follows, api.ws_queue_max, api.ws_stall_max_s, api.ws_conflate_after)
        rt.hub.add(c)
        sender = asyncio.create_task(c.sender())
        dog = asyncio.create_task(watchdog(c, sender, api.ws_heartbeat_s))
        try:
            ops = asyncio.create_task(receive_ops(c, rt.hub, api.ws_subscriptions_max))
            await asyncio.wait({ops, dog, sender}, return_when=asyncio.FIRST_COMPLETED)
            if dog.done() and not ops.done():
                # Closed as slow: give the close handshake a moment, then stop reading.
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(ops, 15)
            for t in (ops, dog, sender):
                t.cancel()
        finally:
            rt.hub.remove(c)

    return app
