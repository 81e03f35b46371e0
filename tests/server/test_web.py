"""The approvals page against `gatekit serve` on loopback, over plain HTTP and in real Chromium: who may log in,
that every POST needs this origin and the session's CSRF token, what the session cookie is, that a call's
arguments cannot inject markup, and that a reviewer's click releases a waiting gate's call exactly once.

The browser test needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`) and is skipped
without it. Its screenshots are also copied to /tmp/gatekit-web-*.png for a person to look at.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from gatekit import Denied

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "x-frame-options": "DENY", "referrer-policy": "same-origin", "cache-control": "no-store",
}
_ids = itertools.count()


# -- a browser, as far as cookies and forms go ---------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: Message
    text: str

    def set_cookie(self, name: str) -> str | None:
        """The `Set-Cookie` header this reply sent for `name`, if any."""
        found = [c for c in self.headers.get_all("set-cookie") or [] if c.startswith(f"{name}=")]
        return found[-1] if found else None

    def field(self, name: str) -> str:
        """The value of the first form input named `name` on the page."""
        match = re.search(rf'name="{name}" value="([^"]*)"', self.text)
        assert match, f"no input `{name}` on the page:\n{self.text[:2000]}"
        return match.group(1)


class _Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the tests look at redirects themselves


class Web:
    """Keeps the cookies the service sets and sends them back; a POST says it comes from this origin unless
    told otherwise (`origin=None` sends no Origin header, as some clients do)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cookies: dict[str, str] = {}
        self.opener = urllib.request.build_opener(_Stay(), urllib.request.ProxyHandler({}))

    def get(self, path: str) -> Reply:
        return self._send("GET", path, None, {})

    def post(self, path: str, form: dict[str, str], *, origin: str | None = "self",
             referer: str | None = None) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin is not None:
            headers["Origin"] = self.url if origin == "self" else origin
        if referer is not None:
            headers["Referer"] = referer
        return self._send("POST", path, urllib.parse.urlencode(form).encode(), headers)

    def login(self, credential: str) -> Reply:
        token = self.get("/login").field("csrf")
        return self.post("/login", {"csrf": token, "credential": credential})

    def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Reply:
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        if self.cookies:
            request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            with self.opener.open(request, timeout=30) as r:
                reply = Reply(r.status, r.headers, r.read().decode())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, exc.headers, exc.read().decode())
        for header in reply.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in header or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply


@dataclass
class Case:
    """Fresh principals on the shared service: an agent and its gate (user `user`), a reviewer."""

    served: Any
    agent: str
    agent_credential: str
    reviewer: str
    credential: str
    user: str

    def file(self, args: dict[str, Any] | None = None, **fields: Any) -> str:
        gate = self.served.gate(self.agent, self.agent_credential, user=self.user, context={"env": "prod"})
        call = {"tool": "payment.send", "args": args or {"amount": 250, "recipient": "ACME"}, **fields}
        return gate.submit(call).request_id

    def votes(self, rid: str) -> list[dict[str, Any]]:
        return self.served.client(self.credential).get(rid)["votes"]

    def web(self, *, logged_in: bool = True) -> Web:
        web = Web(self.served.url)
        if logged_in:
            assert web.login(self.credential).status == 303
        return web


@pytest.fixture
def case(shared_service) -> Case:
    n = next(_ids)
    agent = f"web-bot-{n}"
    return Case(shared_service, agent, shared_service.add("agent", agent), f"web-alice-{n}",
                shared_service.add("reviewer", f"web-alice-{n}", "finance"), f"u-web-{n}")


def vote_form(page: Reply) -> dict[str, str]:
    return {"csrf": page.field("csrf"), "evidence": page.field("evidence")}


# -- logging in ----------------------------------------------------------------------------------------
def test_not_logged_in_every_page_sends_you_to_login(case) -> None:
    web = case.web(logged_in=False)
    rid = case.file()
    for path in ("/", f"/requests/{rid}"):
        reply = web.get(path)
        assert (reply.status, reply.headers["location"]) == (303, "/login")
    form = web.get("/login")
    assert form.status == 200 and 'type="password"' in form.text and 'name="credential"' in form.text
    assert rid not in form.text


def test_an_agent_credential_cannot_log_in(case) -> None:
    web = case.web(logged_in=False)
    reply = web.login(case.agent_credential)
    assert reply.status == 403 and "only reviewers log in here" in reply.text
    assert reply.set_cookie("gatekit_session") is None
    assert web.get("/").status == 303


def test_a_wrong_credential_is_refused(case) -> None:
    web = case.web(logged_in=False)
    for wrong in ("gk_r_" + "x" * 43, case.credential + "x", "", "alice"):
        reply = web.login(wrong)
        assert reply.status == 401 and "not valid" in reply.text
        assert reply.set_cookie("gatekit_session") is None
    assert web.get("/").headers["location"] == "/login"


def test_the_login_form_is_csrf_protected(case) -> None:
    web = case.web(logged_in=False)
    token = web.get("/login").field("csrf")
    foreign = Web(case.served.url)  # a login form rendered for another browser
    assert foreign.post("/login", {"csrf": token, "credential": case.credential}).status == 403
    assert "gatekit_session" not in foreign.cookies
    assert web.post("/login", {"credential": case.credential}).status == 403  # no token
    evil = web.post("/login", {"csrf": token, "credential": case.credential}, origin="http://evil.example")
    assert evil.status == 403 and "gatekit_session" not in web.cookies
    assert web.post("/login", {"csrf": token, "credential": case.credential}).status == 303


def test_the_session_cookie_is_httponly_samesite_strict_and_stored_only_as_a_hash(case) -> None:
    web = case.web(logged_in=False)
    reply = web.login(case.credential)
    assert (reply.status, reply.headers["location"]) == (303, "/")
    cookie = reply.set_cookie("gatekit_session")
    assert cookie is not None
    flags = [f.strip() for f in cookie.split(";")[1:]]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/" in flags
    assert "Secure" not in flags  # plain http on loopback; `--tls-cert` turns it on
    value = web.cookies["gatekit_session"]
    assert len(value) >= 43  # 32 random bytes
    with sqlite3.connect(f"file:{case.served.state / 'approvals.sqlite'}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT id_hash, principal, csrf FROM sessions WHERE principal = ?",
                           (case.reviewer,)).fetchall()
    assert [r[0] for r in rows] == [hashlib.sha256(value.encode()).hexdigest()]
    assert value not in repr(rows)
    page = web.get("/")
    assert page.status == 200 and case.reviewer in page.text


def test_logging_in_again_rotates_the_session(case) -> None:
    web = case.web()
    old = web.cookies.pop("gatekit_session")
    token = web.get("/login").field("csrf")
    web.cookies["gatekit_session"] = old  # a browser that still holds a session logs in
    assert web.post("/login", {"csrf": token, "credential": case.credential}).status == 303
    assert web.cookies["gatekit_session"] != old
    assert web.get("/login").headers["location"] == "/"  # logged in: no login form
    stale = Web(case.served.url)
    stale.cookies["gatekit_session"] = old
    assert stale.get("/").status == 303


# -- voting --------------------------------------------------------------------------------------------
def test_approving_through_the_page_records_the_vote_on_the_evidence_shown(case) -> None:
    rid = case.file()
    web = case.web()
    page = web.get(f"/requests/{rid}")
    reply = web.post(f"/requests/{rid}/approve", {**vote_form(page), "reason": "invoice matches"})
    assert (reply.status, reply.headers["location"]) == (303, f"/requests/{rid}")
    (vote,) = case.votes(rid)
    assert (vote["reviewer"], vote["decision"], vote["role"], vote["reason"]) == (
        case.reviewer, "approve", "finance", "invoice matches")
    assert vote["evidence"] == page.field("evidence") == case.served.client(case.credential).get(rid)["digest"]
    after = web.get(f"/requests/{rid}")
    assert "approved" in after.text and "invoice matches" in after.text and 'name="evidence"' not in after.text


def test_a_post_without_the_csrf_token_is_refused(case) -> None:
    rid = case.file()
    web = case.web()
    page = web.get(f"/requests/{rid}")
    for decision in ("approve", "deny"):
        reply = web.post(f"/requests/{rid}/{decision}", {"evidence": page.field("evidence")})
        assert reply.status == 403 and "CSRF" in reply.text
    assert case.votes(rid) == []


def test_a_csrf_token_from_another_session_is_refused(case) -> None:
    rid = case.file()
    mine, other = case.web(), case.web()
    theirs = other.get(f"/requests/{rid}")
    reply = mine.post(f"/requests/{rid}/approve", vote_form(theirs))
    assert reply.status == 403
    assert case.votes(rid) == []
    assert mine.post("/logout", {"csrf": theirs.field("csrf")}).status == 403  # logout is checked too


def test_a_post_from_another_origin_is_refused(case) -> None:
    rid = case.file()
    web = case.web()
    form = vote_form(web.get(f"/requests/{rid}"))
    assert web.post(f"/requests/{rid}/approve", form, origin="http://evil.example").status == 403
    assert web.post(f"/requests/{rid}/approve", form, origin=None).status == 403  # neither Origin nor Referer
    assert web.post(f"/requests/{rid}/approve", form, origin=None,
                    referer="http://evil.example/requests").status == 403
    assert case.votes(rid) == []
    same = web.post(f"/requests/{rid}/approve", form, origin=None, referer=f"{case.served.url}/requests/{rid}")
    assert same.status == 303 and len(case.votes(rid)) == 1  # a same-origin Referer is enough


def test_a_refusal_is_a_page_with_the_services_message(case) -> None:
    rid = case.file()
    web = case.web()
    form = vote_form(web.get(f"/requests/{rid}"))
    changed = web.post(f"/requests/{rid}/approve", {**form, "evidence": "sha256:" + "0" * 64})
    assert changed.status == 409 and "is not the call you were shown" in changed.text
    assert changed.headers["content-type"].startswith("text/html") and "Traceback" not in changed.text
    role = web.post(f"/requests/{rid}/approve", {**form, "role": "security"})
    assert role.status == 403 and "does not hold the role" in role.text
    assert case.votes(rid) == []
    missing = web.get("/requests/req-nothing")
    assert missing.status == 404 and "no request" in missing.text


def test_the_calls_own_user_cannot_approve_it_through_the_page(case) -> None:
    rid = case.file()
    web = Web(case.served.url)
    assert web.login(case.served.add("reviewer", case.user)).status == 303
    reply = web.post(f"/requests/{rid}/approve", vote_form(web.get(f"/requests/{rid}")))
    assert reply.status == 403 and "no self-approval" in reply.text
    assert case.votes(rid) == []


def test_logout_ends_the_session(case) -> None:
    rid = case.file()
    web = case.web()
    page = web.get(f"/requests/{rid}")
    cookie, form = web.cookies["gatekit_session"], vote_form(page)
    reply = web.post("/logout", {"csrf": form["csrf"]})
    assert (reply.status, reply.headers["location"]) == (303, "/login")
    assert "Max-Age=0" in (reply.set_cookie("gatekit_session") or "")
    replayed = Web(case.served.url)
    replayed.cookies["gatekit_session"] = cookie  # the old cookie, kept by an attacker
    assert replayed.get("/").status == 303
    assert replayed.post(f"/requests/{rid}/approve", form).status == 403
    assert case.votes(rid) == []


# -- what the page shows -------------------------------------------------------------------------------
def test_arguments_are_escaped_not_markup(case) -> None:
    rid = case.file({"amount": 250, "recipient": "<script>alert(1)</script>", "memo": '"><img src=x>'})
    web = case.web()
    for path in ("/", f"/requests/{rid}"):
        text = web.get(path).text
        assert "<script>alert" not in text and "<img src=x>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_request_page_shows_the_call_its_evidence_and_why(case) -> None:
    rid = case.file({"amount": 250, "recipient": "ACME"}, user="u-mallory", context={"env": "staging"})
    web = case.web()
    listed = web.get("/").text
    assert rid in listed and "payment.send" in listed and case.agent in listed and case.user in listed
    assert "Payments over $100 need approval" in listed and "pay-100" in listed
    page = web.get(f"/requests/{rid}")
    digest = case.served.client(case.credential).get(rid)["digest"]
    assert digest in page.text and "&#34;recipient&#34;: &#34;ACME&#34;" in page.text
    assert '<option value="finance">' in page.text and page.text.count('name="evidence"') == 2
    claimed = page.text.split("Claimed by the call, not believed", 1)[1]  # shown apart from what decided
    assert "u-mallory" in claimed and "staging" in claimed
    context = page.text.split("<h2>Context</h2>", 1)[1].split("</pre>", 1)[0]
    assert "prod" in context and "staging" not in context


def test_every_html_response_carries_the_security_headers(case) -> None:
    rid = case.file()
    web = case.web(logged_in=False)
    replies = [web.get("/"), web.get("/login"), web.login("gk_r_wrong")]
    web.login(case.credential)
    replies += [web.get("/"), web.get(f"/requests/{rid}"), web.get("/requests/req-nothing"),
                web.post(f"/requests/{rid}/approve", {"evidence": "x"})]
    for reply in replies:
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers[name] == value, (reply.status, name)
    css = web.get("/static/gatekit.css")
    assert css.status == 200 and css.headers["content-type"].startswith("text/css") and "font" in css.text


# -- in Chromium ---------------------------------------------------------------------------------------
def _waiting(pending: Any, ran: list[Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """`pending.run` in a thread, as an agent blocks on its call; what happened lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = pending.run(lambda a: ran.append(a.args) or "paid")
        except Exception as exc:  # noqa: BLE001  the test looks at it
            outcome["error"] = exc
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


def _shot(page: Any, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{name}: a near-empty screenshot"
    shutil.copy(path, f"/tmp/gatekit-web-{name}.png")
    return path


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_a_reviewer_approves_and_denies_in_chromium(served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    agent = served.add("agent", "billing-bot")
    alice = served.add("reviewer", "alice", "finance")
    gate = served.gate("billing-bot", agent, user="u-bob", timeout=120)
    args = {"amount": 250, "recipient": "ACME Corp", "currency": "USD", "memo": "invoice 2024-117"}
    pay = gate.submit({"tool": "payment.send", "args": args})
    ran: list[Any] = []
    worker, outcome = _waiting(pay, ran)
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(served.url + "/")
            assert page.url == served.url + "/login"
            page.get_by_label("Reviewer credential").fill(alice)
            _shot(page, shots, "login")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(served.url + "/")

            row = page.locator("table.requests tbody tr", has_text=pay.request_id)
            shown = row.inner_text()
            assert "payment.send" in shown and "billing-bot" in shown and "u-bob" in shown
            assert '"recipient": "ACME Corp"' in shown and "Payments over $100 need approval" in shown
            _shot(page, shots, "list")

            row.get_by_role("link").click()
            page.wait_for_url(f"**/requests/{pay.request_id}")
            assert '"memo": "invoice 2024-117"' in page.locator("pre.json").first.inner_text()
            digest = served.client(alice).get(pay.request_id)["digest"]
            assert page.locator("code.digest").inner_text() == digest
            page.get_by_label("Reason").first.fill("matches invoice 2024-117")
            _shot(page, shots, "request")
            page.get_by_role("button", name="Approve").click()
            page.wait_for_url(f"**/requests/{pay.request_id}")
            assert page.locator("h1 .status").inner_text().lower() in ("approved", "executed")
            worker.join(timeout=60)
            assert outcome == {"result": "paid"} and ran == [args]  # the waiting gate ran it, once
            assert served.client(alice).get(pay.request_id)["status"] == "executed"
            page.reload()
            assert page.locator("h1 .status").inner_text().lower() == "executed"
            assert page.get_by_role("button", name="Approve").count() == 0
            _shot(page, shots, "approved")

            deny = gate.submit({"tool": "payment.send", "args": {"amount": 900, "recipient": "Unknown Ltd"}})
            denied_ran: list[Any] = []
            worker, outcome = _waiting(deny, denied_ran)
            page.goto(served.url + "/")
            page.locator("table.requests tbody tr", has_text=deny.request_id).get_by_role("link").click()
            page.wait_for_url(f"**/requests/{deny.request_id}")
            page.locator("form.deny").get_by_label("Reason").fill("unknown vendor")
            page.get_by_role("button", name="Deny").click()
            page.wait_for_url(f"**/requests/{deny.request_id}")
            assert page.locator("h1 .status").inner_text().lower() == "denied"
            _shot(page, shots, "denied")
            worker.join(timeout=60)
            assert isinstance(outcome.get("error"), Denied) and denied_ran == []
            assert blocked == []  # the stylesheet and forms pass the Content-Security-Policy

            page.get_by_role("button", name="Log out").click()
            page.wait_for_url(served.url + "/login")
            page.goto(served.url + "/")
            assert page.url == served.url + "/login"
        finally:
            browser.close()
    assert len(ran) == 1
