"""The approvals service over HTTP: a JSON API for gates and reviewers, the approvals page, and `/healthz`.

Every API call carries a credential (`Authorization: Bearer gk_...`); what it may do comes from the
principal the registry says it is, never from the request body. Requests whose `Host` is not one the
service answers to, or whose `Origin` is another site's, are refused before any route runs.

>>> app = create_app(Service(Path("state"), "policy.yaml"), origin="http://127.0.0.1:8470")
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gatekit.enforce.tokens import public_key_text
from gatekit.errors import GatekitError
from gatekit.server.approvals import LIST_MAX, PENDING, Principal, Refusal, Service
from gatekit.server.waiters import Waiters

log = logging.getLogger("gatekit.server")
MAX_BODY = 1 << 20  # 1 MiB: a call and its arguments, not a data set
SAFE = ("GET", "HEAD", "OPTIONS")
REREAD = 2.0  # a long poll re-reads this often even unwoken: a notification lost with the database is not a hang


def error(message: str, code: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


class OriginCheck:
    """Refuse state-changing requests that a browser sent from another origin (or with an oversized body)."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app, self.origin = app, origin.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin")
            if origin is not None and origin.rstrip("/") != self.origin:
                await error(f"origin `{origin}` is not this service", "bad_origin", 403)(scope, receive, send)
                return
            length = headers.get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY:
                await error("request body too large", "too_large", 413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(service: Service, *, origin: str, allowed_hosts: list[str] | None = None,
               secure_cookies: bool = False, housekeeping: float = 0.5) -> Starlette:
    """The ASGI app for `service`, answering as `origin` (scheme://host:port)."""
    from gatekit.server import web

    waiters = Waiters()
    api = _Api(service, waiters)
    parts = urlsplit(origin)
    hosts = allowed_hosts or sorted({parts.hostname or "127.0.0.1", "127.0.0.1", "localhost", "::1"})
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = threading.Thread(target=_housekeep, args=(service, stop, housekeeping), daemon=True,
                                  name="gatekit-housekeeping")
        worker.start()
        unlisten = service.store.listen(waiters.wake)  # votes on any replica wake this one's long polls
        yield
        unlisten()
        stop.set()
        worker.join(timeout=5)

    routes = [
        Route("/healthz", api.healthz),
        Route("/v1/public-key", api.public_key),
        Route("/v1/whoami", api.authed(api.whoami)),
        Route("/v1/requests", api.authed(api.submit), methods=["POST"]),
        Route("/v1/requests", api.authed(api.list), methods=["GET"]),
        Route("/v1/requests/{rid}", api.get),
        Route("/v1/requests/{rid}/votes", api.authed(api.vote), methods=["POST"]),
        Route("/v1/requests/{rid}/outcome", api.authed(api.outcome), methods=["POST"]),
        Route("/v1/requests/{rid}/withdraw", api.authed(api.withdraw), methods=["POST"]),
        Route("/v1/consume", api.authed(api.consume), methods=["POST"]),
        *web.routes(service, secure_cookies=secure_cookies),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts), Middleware(OriginCheck, origin=origin)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={Refusal: _refusal, GatekitError: _gatekit_error, Exception: _unexpected})
    app.state.service = service
    return app


def _housekeep(service: Service, stop: threading.Event, every: float) -> None:
    """Reload a changed policy and settle requests whose time is up, in the background."""
    while not stop.wait(every):
        try:
            service.maybe_reload()
            service.expire()
        except Exception:  # noqa: BLE001  the next round tries again; requests settle lazily anyway
            log.exception("housekeeping failed")


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return error(str(exc), exc.code, exc.status)


async def _gatekit_error(request: Request, exc: Exception) -> Response:
    log.error("request failed: %s", exc)
    return error(str(exc), "unavailable", 503)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error")
    return error("internal error", "internal", 500)


class _Api:
    def __init__(self, service: Service, waiters: Waiters) -> None:
        self.service = service
        self.waiters = waiters

    def authed(self, fn: Callable[[Request, Principal], Any]) -> Callable[[Request], Any]:
        def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return _unauthenticated()
            return fn(request, who)
        return _sync(endpoint)

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        return self.service.authenticate(credential.strip()) if scheme.lower() == "bearer" else None

    def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def public_key(self, request: Request) -> Response:
        s = self.service
        return JSONResponse({"key": public_key_text(s.public_key), "key_id": s.key_id,
                             "policy": s.policy.name, "fingerprint": s.policy.fingerprint})

    def whoami(self, request: Request, who: Principal) -> Response:
        return JSONResponse({"id": who.id, "kind": who.kind, "roles": list(who.roles), "break_glass": who.break_glass})

    def submit(self, request: Request, who: Principal) -> Response:
        return JSONResponse(self.service.submit(who, _body(request)), status_code=201)

    def list(self, request: Request, who: Principal) -> Response:
        status = request.query_params.get("status", "pending")
        limit = request.query_params.get("limit", str(LIST_MAX))
        if not (limit.isascii() and limit.isdigit()) or len(limit) > 4:
            raise Refusal(f"`limit` is a whole number from 1 to {LIST_MAX}", "bad_request", 400)
        return JSONResponse({"requests": self.service.list(who, None if status == "all" else status, int(limit))})

    async def get(self, request: Request) -> Response:
        """One request; with `?wait=S`, once it is no longer pending or S seconds have passed. A long poll
        waits on the event loop, not in a worker thread, so any number of them leave votes their threads,
        and reads the store again only when the store says the request changed."""
        from starlette.concurrency import run_in_threadpool

        start = time.monotonic()
        rid = request.path_params["rid"]
        with self.waiters.watch(rid) as woken:  # before the read: a change after it still wakes this poll
            # the credential and the first read in one trip to a worker thread
            who, view = await run_in_threadpool(self._authed_get, request, rid)
            if who is None:
                return _unauthenticated()
            wait = request.query_params.get("wait")
            if wait is None:
                return JSONResponse(view)
            try:
                seconds = float(wait)
            except ValueError:
                return error("`wait` is a number of seconds", "bad_request", 400)
            deadline = start + max(0.0, min(seconds, 30.0))
            while True:
                left = deadline - time.monotonic()
                if view["status"] != PENDING or left <= 0:
                    return JSONResponse(view)
                await woken.wait(min(left, REREAD))
                view = await run_in_threadpool(self.service.get, who, rid)

    def _authed_get(self, request: Request, rid: str) -> tuple[Principal | None, Any]:
        who = self.principal(request)
        return (who, None) if who is None else (who, self.service.get(who, rid))

    def vote(self, request: Request, who: Principal) -> Response:
        body = _body(request)
        return JSONResponse(self.service.vote(
            who, request.path_params["rid"], body.get("decision"), evidence=body.get("evidence"),
            role=_text(body, "role"), reason=_text(body, "reason"), break_glass=body.get("break_glass") is True,
            duration=_text(body, "duration")))

    def outcome(self, request: Request, who: Principal) -> Response:
        body = _body(request)
        self.service.outcome(who, request.path_params["rid"], body.get("outcome"), body.get("error"))
        return JSONResponse({"ok": True})

    def withdraw(self, request: Request, who: Principal) -> Response:
        body = _body(request)
        return JSONResponse(self.service.withdraw(who, request.path_params["rid"], body.get("reason")))

    def consume(self, request: Request, who: Principal) -> Response:
        body = _body(request)
        action = body.get("action")
        return JSONResponse(self.service.consume(who, body.get("token"), body.get("key"),
                                                 action if isinstance(action, dict) else None))


def _unauthenticated() -> JSONResponse:
    return error("a valid credential is required (Authorization: Bearer ...)", "unauthenticated", 401)


def _sync(fn: Callable[[Request], Response]) -> Callable[[Request], Any]:
    """Run a blocking endpoint in the thread pool, with its body read first."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        if request.method not in SAFE:
            raw = bytearray()
            async for chunk in request.stream():  # counted as it comes: a chunked body declares no length
                raw += chunk
                if len(raw) > MAX_BODY:
                    return error("request body too large", "too_large", 413)
            request.state.raw = bytes(raw)
        return await run_in_threadpool(fn, request)
    return endpoint


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(getattr(request.state, "raw", b"") or b"null")
    except ValueError:
        raise Refusal("the body is not JSON", "bad_request", 400) from None
    if not isinstance(body, dict):
        raise Refusal("the body is a JSON object", "bad_request", 400)
    return body


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Refusal(f"`{key}` is text", "bad_request", 400)
    return value
