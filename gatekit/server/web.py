"""The approvals page: reviewers log in with their credential, see the pending requests with their evidence,
and approve or deny them. Plain HTML forms, no JavaScript.

A login starts a server-side session: the cookie holds 32 random bytes and the store only their sha256, with
a CSRF token of the session's own. Every POST must come from this origin (its `Origin`, or failing that its
`Referer`) and carry the CSRF token (the login form a pre-session one, double-submitted), so another site
can neither vote as a reviewer nor log a reviewer in as someone else. A vote carries the digest of the call
the page showed, so a call changed after the page was drawn is refused, not approved.

>>> app = Starlette(routes=routes(service, secure_cookies=True))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import zip_longest
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gatekit.enforce.identity import visible
from gatekit.errors import GatekitError
from gatekit.server.approvals import PENDING, Service
from gatekit.server.registry import Principal, Refusal

log = logging.getLogger("gatekit.server.web")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE, LOGIN_COOKIE = "gatekit_session", "gatekit_login"
SESSION_TTL_US = 8 * 3600 * 1_000_000  # a working day, then log in again
LOGIN_TTL_S = 3600
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
ELSEWHERE = "this form was not sent from this page (its `Origin` or `Referer` is missing or another site's)"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")  # what secrets.token_urlsafe(32) looks like


@dataclass(frozen=True)
class Session:
    id_hash: str
    reviewer: Principal
    csrf: str
    expires_at: int


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


class Sessions:
    """Reviewer sessions in the service's store; a cookie value is never stored, only its sha256.

    >>> cookie, session = Sessions(service).start(alice)
    """

    def __init__(self, service: Service, ttl_us: int = SESSION_TTL_US) -> None:
        self.service, self.ttl_us = service, ttl_us

    def start(self, reviewer: Principal, replacing: str | None = None) -> tuple[str, Session]:
        """A new session for `reviewer` (ending the one `replacing` names): its cookie value and itself."""
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        id_hash = _digest(value)

        def login(con: Any, now: int, audit: list) -> int:
            con.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            if replacing and _TOKEN.fullmatch(replacing):
                con.execute("DELETE FROM sessions WHERE id_hash = ?", (_digest(replacing),))
            con.execute("INSERT INTO sessions (id_hash, principal, csrf, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?)", (id_hash, reviewer.id, csrf, now, now + self.ttl_us))
            audit.append(("login", {"reviewer": reviewer.id, "session": id_hash[:16],
                                    "expires_at": now + self.ttl_us}, None))
            return now + self.ttl_us
        expires = self.service.ledger.write(login)
        return value, Session(id_hash, reviewer, csrf, expires)

    def find(self, value: str | None) -> Session | None:
        """The live session a cookie value names, with its reviewer as the registry has them now."""
        if not value or not _TOKEN.fullmatch(value):
            return None
        with self.service.store.read() as con:
            row = con.execute(
                "SELECT s.id_hash, s.csrf, s.expires_at, p.id, p.kind, p.roles, p.break_glass FROM sessions s "
                "JOIN principals p ON p.id = s.principal WHERE s.id_hash = ? AND p.disabled = 0",
                (_digest(value),)).fetchone()
        if row is None or row[2] <= self.service.now_us() or row[4] != "reviewer":
            return None
        return Session(row[0], Principal(row[3], row[4], tuple(json.loads(row[5])), bool(row[6])), row[1], row[2])

    def end(self, session: Session) -> None:
        def logout(con: Any, now: int, audit: list) -> None:
            con.execute("DELETE FROM sessions WHERE id_hash = ?", (session.id_hash,))
            audit.append(("logout", {"reviewer": session.reviewer.id, "session": session.id_hash[:16]}, None))
        self.service.ledger.write(logout)


def routes(service: Service, *, secure_cookies: bool = False) -> list[BaseRoute]:
    """The approvals page's routes, to mount in the service's app."""
    pages = _Pages(service, secure_cookies)
    return [
        Route("/", _endpoint(pages.index)),
        Route("/login", _endpoint(pages.login_form), methods=["GET"]),
        Route("/login", _endpoint(pages.login), methods=["POST"]),
        Route("/logout", _endpoint(pages.logout), methods=["POST"]),
        Route("/requests/{rid}", _endpoint(pages.request)),
        Route("/requests/{rid}/approve", _endpoint(lambda r: pages.vote(r, "approve")), methods=["POST"]),
        Route("/requests/{rid}/deny", _endpoint(lambda r: pages.vote(r, "deny")), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _endpoint(fn: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
    """Read a POST's form first, then run the blocking page in the thread pool."""
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form(max_files=0, max_fields=16)
            request.state.form = {k: v for k, v in form.items() if isinstance(v, str)}
        return await run_in_threadpool(fn, request)
    return endpoint


class _Pages:
    def __init__(self, service: Service, secure_cookies: bool) -> None:
        self.service, self.secure = service, secure_cookies
        self.sessions = Sessions(service)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, finalize=_visible)
        self.env.filters.update(pretty=_pretty, compact=_compact, when=_when, ticks=_ticks, path=_path)

    # -- responses ---------------------------------------------------------------------------------------
    def render(self, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        now = datetime.fromtimestamp(self.service.now_us() / 1e6, timezone.utc)
        html = self.env.get_template(name).render(
            reviewer=session.reviewer if session else None, csrf=session.csrf if session else None,
            ago=lambda iso: _ago(iso, now), **context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def message(self, session: Session | None, status: int, title: str, text: str) -> HTMLResponse:
        return self.render("message.html", session, status, title=title, text=text)

    def refused(self, session: Session | None, status: int, text: str) -> HTMLResponse:
        return self.message(session, status, "Refused", text)

    @staticmethod
    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=HEADERS)

    def cookie(self, response: Response, name: str, value: str, max_age: int, path: str = "/") -> None:
        # written by hand: Starlette spells it `SameSite=strict`, and the flags are the point here
        parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
        response.headers.append("set-cookie", "; ".join(parts + (["Secure"] if self.secure else [])))

    def guarded(self, request: Request, fn: Callable[[Session | None], Response]) -> Response:
        """`fn(session)`, with refusals and failures shown as a page (never a traceback)."""
        session = None
        try:
            session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
            return fn(session)
        except Refusal as exc:
            return self.refused(session, exc.status, str(exc))
        except GatekitError as exc:
            log.error("approvals page failed: %s", exc)
            return self.message(session, 503, "Unavailable", f"the approvals service cannot answer now: {exc}")
        except Exception:  # noqa: BLE001  logged; the reviewer sees a page, not a traceback
            log.exception("approvals page failed")
            return self.message(session, 500, "Internal error", "the approvals service failed; see its log")

    def posted(self, request: Request, session: Session | None) -> Response | None:
        """Why this POST is refused (another origin, no session, a missing or foreign CSRF token), or None."""
        if not _same_origin(request):
            return self.refused(session, 403, ELSEWHERE)
        if session is None:
            return self.refused(None, 403, "your session has ended: log in again")
        if not hmac.compare_digest(request.state.form.get("csrf", "").encode(), session.csrf.encode()):
            return self.refused(session, 403, "this form's CSRF token is not your session's: reload the page "
                                              "and try again")
        return None

    # -- pages -------------------------------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        def page(session: Session | None) -> Response:
            if session is None:
                return self.redirect("/login")
            pending = self.service.list(session.reviewer, PENDING)
            return self.render("index.html", session, requests=[_shown(r) for r in pending])
        return self.guarded(request, page)

    def request(self, request: Request) -> Response:
        def page(session: Session | None) -> Response:
            if session is None:
                return self.redirect("/login")
            return self.show(session, request.path_params["rid"])
        return self.guarded(request, page)

    def show(self, session: Session, rid: str, status: int = 200, error: str | None = None) -> Response:
        view = _shown(self.service.get(session.reviewer, rid))
        return self.render("request.html", session, status, r=view, error=error, open=view["status"] == PENDING)

    def vote(self, request: Request, decision: str) -> Response:
        def act(session: Session | None) -> Response:
            refused = self.posted(request, session)
            if refused is not None:
                return refused
            assert session is not None
            form, rid = request.state.form, request.path_params["rid"]
            try:
                self.service.vote(session.reviewer, rid, decision, evidence=form.get("evidence"),
                                  role=form.get("role") or None, reason=form.get("reason", "").strip() or None)
            except Refusal as exc:
                if exc.code == "unknown_request":
                    raise
                return self.show(session, rid, exc.status, str(exc))
            return self.redirect(f"/requests/{quote(rid, safe='')}")
        return self.guarded(request, act)

    def login_form(self, request: Request) -> Response:
        def page(session: Session | None) -> Response:
            if session is not None:
                return self.redirect("/")
            return self.login_page(request)
        return self.guarded(request, page)

    def login_page(self, request: Request, status: int = 200, error: str | None = None) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or ""
        if not _TOKEN.fullmatch(token):
            token = secrets.token_urlsafe(32)
        response = self.render("login.html", None, status, login_token=token, error=error)
        self.cookie(response, LOGIN_COOKIE, token, LOGIN_TTL_S, path="/login")
        return response

    def login(self, request: Request) -> Response:
        def act(_: Session | None) -> Response:
            form = request.state.form
            if not _same_origin(request):
                return self.refused(None, 403, ELSEWHERE)
            expected = request.cookies.get(LOGIN_COOKIE) or ""
            if not expected or not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
                return self.login_page(request, 403, "the login form expired: enter your credential again")
            who = self.service.authenticate(form.get("credential", "").strip())
            if who is None:
                return self.login_page(request, 401, "that credential is not valid")
            if who.kind != "reviewer":
                return self.login_page(request, 403, f"only reviewers log in here; this is an {who.kind} "
                                                     "credential")
            value, _ = self.sessions.start(who, replacing=request.cookies.get(SESSION_COOKIE))
            response = self.redirect("/")
            self.cookie(response, SESSION_COOKIE, value, self.sessions.ttl_us // 1_000_000)
            self.cookie(response, LOGIN_COOKIE, "", 0, path="/login")
            return response
        return self.guarded(request, act)

    def logout(self, request: Request) -> Response:
        def act(session: Session | None) -> Response:
            refused = self.posted(request, session)
            if refused is not None:
                return refused
            assert session is not None
            self.sessions.end(session)
            response = self.redirect("/login")
            self.cookie(response, SESSION_COOKIE, "", 0)
            return response
        return self.guarded(request, act)


def _same_origin(request: Request) -> bool:
    """The POST names this origin: in `Origin` if sent, else in `Referer` (a POST with neither is refused)."""
    here = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        return hmac.compare_digest(origin.rstrip("/").encode(), here.encode())
    parts = urlsplit(request.headers.get("referer", ""))
    return bool(parts.scheme) and f"{parts.scheme}://{parts.netloc}" == here


def _shown(view: dict[str, Any]) -> dict[str, Any]:
    """A request as the page shows it: the approvals that count, what is still missing, and each rule with
    its reason."""
    quorum = view["quorum"]
    why = [{"rule": rule, "reason": reason} for rule, reason in zip_longest(view["rules"], view["reasons"])]
    still = quorum["summary"].split("; ", 1)[1] if view["status"] == "pending" and "; " in quorum["summary"] else ""
    return {**view, "approved": quorum["counted"], "required": quorum["required"], "still": still,
            "not_counting": quorum["not_counting"], "why": why}


def _visible(value: Any) -> Any:
    """Every value the page prints, with what a reviewer cannot see (bidi overrides, zero-width characters,
    controls) written as escapes: the agent writes the tool, the arguments, the session and some reasons."""
    if isinstance(value, Markup):
        return Markup(visible(str(value)))  # escapes add no markup
    return visible(value) if isinstance(value, str) else value


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _compact(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _when(iso: str | None) -> str:
    return "-" if not iso else iso[:19].replace("T", " ") + " UTC"


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return ""
    seconds = (datetime.fromisoformat(iso) - now).total_seconds()
    minutes = abs(seconds) / 60
    span = "<1 min" if minutes < 1 else f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def _ticks(text: Any) -> Markup:
    """A message with its `backticked` parts as code (escaped first, so nothing in them is markup)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _path(rid: str) -> str:
    return "/requests/" + quote(rid, safe="")
