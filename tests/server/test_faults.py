"""The approvals service failing: unreachable, slow, answering garbage, killed -9, corrupt, stopped. An
escalated call is then denied, never run; allow and deny need no service; a restart loses no approval
and issues nothing twice. And the commands an operator and a reviewer use against a running service."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gatekit import Denied, Gate, load_policy
from gatekit.enforce.client import ApprovalsClient
from gatekit.enforce.tokens import Approval, action_digest, sign_approval
from tests.server.conftest import POLICY, Served
from tests.server.test_attacks import PAY, approve, audit_kinds, denial, new_agent, new_reviewer, refusal, store

ALLOWED = {"tool": "payment.send", "args": {"amount": 20, "recipient": "ACME"}}
DENIED = {"tool": "payment.send", "args": {"amount": 20, "recipient": "EVIL"}}


# ---- a service that is not there, or not right -------------------------------------------------------
class Fake:
    """A loopback HTTP server answering every request with `answer(handler, body)`; `hits` is what reached it."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, Any], None]) -> None:
        self.hits: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.hits.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    answer(self, json.loads(raw) if raw else None)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Callable[..., Fake]]:
    made: list[Fake] = []

    def make(answer: Callable[[BaseHTTPRequestHandler, Any], None]) -> Fake:
        made.append(Fake(answer))
        return made[-1]
    yield make
    for f in made:
        f.close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str = "application/json") -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gate_at(url: str, tmp_path: Path, *, timeout: float = 2.0, http_timeout: float = 0.5, **kwargs: Any) -> Gate:
    path = tmp_path / "policy.yaml"
    if not path.exists():
        path.write_text(POLICY)
    return Gate(load_policy(path), mode="enforce", approvals=ApprovalsClient(url, "gk_a_" + "x" * 43,
                timeout=http_timeout), agent="billing-bot", timeout=timeout, poll=0.02, **kwargs)


def never_runs(gate: Gate, call: dict[str, Any] = PAY) -> Denied:
    ran: list[Any] = []
    refused = denial(lambda: gate.run(call, ran.append))
    assert ran == []
    return refused


def test_an_unreachable_service_denies_the_escalation(tmp_path: Path) -> None:
    gate = gate_at(f"http://127.0.0.1:{closed_port()}", tmp_path)
    refused = never_runs(gate)
    assert refused.code == "error" and "cannot reach" in str(refused)


def test_a_slow_service_denies_the_escalation(fake: Callable[..., Fake], tmp_path: Path) -> None:
    slow = fake(lambda h, body: (time.sleep(3), reply(h, 201, b"{}")))
    started = time.monotonic()
    assert never_runs(gate_at(slow.url, tmp_path, http_timeout=0.3)).code == "error"
    assert time.monotonic() - started < 2.5


def _pending_then(after: Callable[[BaseHTTPRequestHandler], None]) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    """Files the call as asked (with its digest), then answers every later request with `after`."""
    def answer(h: BaseHTTPRequestHandler, body: Any) -> None:
        if h.command == "POST" and h.path == "/v1/requests":
            reply(h, 201, json.dumps({"id": "req-1", "status": "pending", "digest": action_digest(body["action"]),
                                      "expires_at": "2999-01-01T00:00:00Z"}).encode())
        else:
            after(h)
    return answer


def test_a_service_that_goes_slow_while_the_gate_waits_denies(fake: Callable[..., Fake], tmp_path: Path) -> None:
    slow = fake(_pending_then(lambda h: (time.sleep(3), reply(h, 200, b"{}"))))
    started = time.monotonic()
    assert never_runs(gate_at(slow.url, tmp_path, timeout=1.0, http_timeout=0.3)).code in ("timed_out", "error")
    assert time.monotonic() - started < 3


def _raw(data: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True
    return answer


GARBAGE: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {
    "not json": lambda h: reply(h, 200, b"hello", "text/plain"),
    "json without id and status": lambda h: reply(h, 201, b'{"ok": true}'),
    "a json list": lambda h: reply(h, 201, b"[1, 2, 3]"),
    "html 500": lambda h: reply(h, 500, b"<html><body>Internal Server Error</body></html>", "text/html"),
    "json 500 with no error": lambda h: reply(h, 500, b'{"status": "approved"}'),
    "not http": _raw(b"garbage\r\n\r\n"),
    "a truncated body": _raw(b"HTTP/1.1 201 Created\r\nContent-Length: 500\r\n\r\n{\"id\": \"req-1\","),
    "another call filed": lambda h: reply(h, 201, json.dumps({"id": "req-1", "status": "approved", "digest":
                                                              "sha256:" + "0" * 64, "token": "gk1.a.b"}).encode()),
}


@pytest.mark.parametrize("answer", sorted(GARBAGE))
def test_garbage_from_the_service_denies(fake: Callable[..., Fake], tmp_path: Path, answer: str) -> None:
    at_submit = fake(lambda h, body: GARBAGE[answer](h))
    assert never_runs(gate_at(at_submit.url, tmp_path)).code == "error"
    while_waiting = fake(_pending_then(GARBAGE[answer]))
    assert never_runs(gate_at(while_waiting.url, tmp_path, timeout=1.0)).code in ("error", "timed_out")


def test_a_service_answering_the_wrong_shape_denies(fake: Callable[..., Fake], tmp_path: Path) -> None:
    def answer(h: BaseHTTPRequestHandler, body: Any) -> None:
        digest = action_digest(body["action"]) if body and "action" in body else "sha256:" + "0" * 64
        reply(h, 201, json.dumps({"id": "req-1", "status": "approved", "digest": digest, "expires_at": "soon",
                                  "action": "payment.send", "token": 7}).encode())
    odd = fake(answer)
    gate = gate_at(odd.url, tmp_path)
    assert never_runs(gate).code == "malformed"  # an "approved" answer whose token is not a token
    ran: list[Any] = []
    assert denial(lambda: gate.resume("req-1").run(ran.append)).code == "error" and ran == []


def test_an_impostor_service_cannot_approve_for_a_gate_that_pins_the_key(fake: Callable[..., Fake],
                                                                         tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gatekit.enforce.tokens import public_key_text

    theirs, ours = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    gate = gate_at("http://127.0.0.1:1", tmp_path)  # only for the fingerprint the impostor signs

    def answer(h: BaseHTTPRequestHandler, body: Any) -> None:
        if h.path == "/v1/public-key":
            reply(h, 200, json.dumps({"key": public_key_text(theirs.public_key())}).encode())
            return
        digest = action_digest(body["action"]) if h.path == "/v1/requests" else "sha256:" + "0" * 64
        claims = Approval("req-1", digest, "billing-bot", gate.policy.fingerprint, int((time.time() + 600) * 1e6),
                          "n" * 32, int(time.time() * 1e6), "k")
        reply(h, 201, json.dumps({"id": "req-1", "status": "approved", "digest": digest,
                                  "token": sign_approval(theirs, claims)}).encode())

    impostor = fake(answer)
    pinned = gate_at(impostor.url, tmp_path, public_key=public_key_text(ours.public_key()))
    assert never_runs(pinned).code == "signature"
    assert not any(hit.startswith("POST /v1/consume") for hit in impostor.hits)


def test_allow_and_deny_need_no_service(fake: Callable[..., Fake], tmp_path: Path) -> None:
    recording = fake(lambda h, body: reply(h, 503, b'{"error": "down", "code": "unavailable"}'))
    for url in (recording.url, f"http://127.0.0.1:{closed_port()}"):
        gate = gate_at(url, tmp_path)
        ran: list[Any] = []
        assert gate.run(ALLOWED, lambda a: ran.append(a) or "paid") == "paid" and len(ran) == 1
        assert gate.run({"tool": "search.web", "args": {"q": "x"}}, ran.append) is None and len(ran) == 2
        assert denial(lambda: gate.run(DENIED, ran.append)).code == "policy"
        assert denial(lambda: gate.run({"tool": "db.drop", "args": {}}, ran.append, context={"env": "prod"})
                      ).code == "policy"
        assert len(ran) == 2
    assert recording.hits == []  # no network on the hot path
    assert never_runs(gate_at(recording.url, tmp_path)).code == "error"
    assert recording.hits and all(hit.startswith("POST /v1/requests") for hit in recording.hits)


def test_a_flood_of_long_polls_does_not_hold_up_reviewers(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    rid = s.gate(bot, cred).submit(PAY).request_id
    agent = s.client(cred, timeout=30)
    polls = [threading.Thread(target=lambda: agent.get(rid, wait=8), daemon=True) for _ in range(80)]
    for poll in polls:
        poll.start()
    time.sleep(0.5)  # every long poll is in
    started = time.monotonic()
    assert s.http("GET", "/healthz")[0] == 200
    assert approve(alice, rid)["status"] == "approved"
    assert time.monotonic() - started < 3
    for poll in polls:
        poll.join(10)
    assert not any(poll.is_alive() for poll in polls)


def test_an_endless_body_is_refused_without_reading_it_all(shared_service: Served) -> None:
    host, port = shared_service.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/requests HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"x" * 65536
        for _ in range(24):  # 1.5 MiB, more than a body may be, and never the last chunk: the body has no end
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = sock.recv(4096)  # without a limit while reading, the service would wait for the rest forever
    assert answer.startswith(b"HTTP/1.1 413")


# ---- kill -9 and restarts ------------------------------------------------------------------------------
def _counts(s: Served, rid: str) -> dict[str, int]:
    kinds = audit_kinds(s, rid)
    return {k: kinds.count(k) for k in ("submit", "approve", "token", "consume")}


def test_kill_9_while_a_gate_waits_loses_no_approval(served: Served) -> None:
    bot, cred = new_agent(served)
    _, alice = new_reviewer(served)
    pending = served.gate(bot, cred, timeout=60).submit(PAY)
    ran: list[Any] = []
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(pending.run(lambda a: ran.append(a) or "paid")))
    worker.start()
    time.sleep(0.2)  # the gate is in its long poll when the service dies
    served.kill()
    served.start()  # the same port and state
    approve(alice, pending.request_id)
    worker.join(30)
    assert outcome == ["paid"] and len(ran) == 1
    assert served.client(cred).get(pending.request_id)["status"] == "executed"
    assert _counts(served, pending.request_id) == {"submit": 1, "approve": 1, "token": 1, "consume": 1}
    assert served.stop() == 0 and served.verify() == 0


def test_kill_9_between_votes_and_consume_issues_nothing_twice(served: Served) -> None:
    bot, cred = new_agent(served)
    _, alice = new_reviewer(served)
    _, bob = new_reviewer(served)
    gate = served.gate(bot, cred, context={"env": "staging"})
    pending = gate.submit({"tool": "db.drop", "args": {"table": "users"}})
    rid = pending.request_id
    assert approve(alice, rid)["status"] == "pending"
    served.kill()
    served.start()
    assert refusal(lambda: approve(alice, rid)).code == "already_voted"  # the vote survived, and counts once
    assert approve(bob, rid)["status"] == "approved"
    served.kill()
    served.start()
    ran: list[Any] = []
    pending.run(ran.append)
    assert len(ran) == 1
    assert denial(lambda: served.gate(bot, cred, context={"env": "staging"}).resume(rid).run(ran.append)
                  ).code == "replay"
    assert len(ran) == 1
    assert _counts(served, rid) == {"submit": 1, "approve": 1, "token": 1, "consume": 1}
    assert served.stop() == 0 and served.verify() == 0


def test_kill_9_after_a_consume_answers_the_retry_and_nothing_else(served: Served) -> None:
    bot, cred = new_agent(served)
    _, alice = new_reviewer(served)
    pending = served.gate(bot, cred).submit(PAY)
    approve(alice, pending.request_id)
    token = served.client(cred).get(pending.request_id)["token"]
    first = served.client(cred).consume(token, "attempt-1")  # its reply "lost" as the service dies
    served.kill()
    served.start()
    again = served.client(cred).consume(token, "attempt-1")
    assert (again["status"], again["consumed_at"]) == ("executed", first["consumed_at"])
    assert refusal(lambda: served.client(cred).consume(token, "attempt-2")).code == "used"
    assert _counts(served, pending.request_id)["consume"] == 1
    assert served.stop() == 0 and served.verify() == 0


@pytest.mark.parametrize("where", ["header", "a page"])
def test_a_corrupt_store_refuses_to_start(served: Served, where: str) -> None:
    bot, cred = new_agent(served)
    for _ in range(20):
        served.gate(bot, cred).submit(PAY)
    assert served.stop() == 0
    con = store(served)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    path = served.state / "approvals.sqlite"
    size = path.stat().st_size
    assert size > 8 * 4096
    with open(path, "r+b") as f:
        f.seek(0 if where == "header" else 4096 * 3)
        f.write(secrets.token_bytes(100 if where == "header" else 4096))
    with pytest.raises(RuntimeError):
        served.start()
    assert "Traceback" not in served.log.read_text()
    assert served.verify() == 1


def test_sigterm_stops_the_service_cleanly(served: Served) -> None:
    bot, cred = new_agent(served)
    served.gate(bot, cred).submit(PAY)
    assert served.stop() == 0
    assert "Traceback" not in served.log.read_text()
    assert served.verify() == 0
    served.start()
    assert served.client(cred).list()[0]["status"] == "pending"


# ---- the commands, against a running service -----------------------------------------------------------
def gatekit(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKIT_")}
    if token is not None:
        env["GATEKIT_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "gatekit.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_principals_add_prints_the_credential_alone_and_the_service_sees_it(shared_service: Served) -> None:
    s = shared_service
    name = f"carol-{secrets.token_hex(3)}"
    added = gatekit("principals", "add", "reviewer", name, "--role", "finance", "--state", str(s.state))
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("\n") == 1 and added.stdout.startswith("gk_r_")
    credential = added.stdout.strip()
    assert s.client(credential).whoami() == {"id": name, "kind": "reviewer", "roles": ["finance"],
                                             "break_glass": False}
    again = gatekit("principals", "add", "agent", name.upper(), "--state", str(s.state))
    assert again.returncode != 0 and again.stdout == "" and "Traceback" not in again.stderr
    assert "already registered" in again.stderr


def test_approvals_commands_list_as_json_and_refuse_cleanly(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, reviewer = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    listed = gatekit("approvals", "list", "--server", s.url, "--json", token=reviewer.credential)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert isinstance(found, list) and all({"id", "tool", "status"} <= set(r) for r in found)
    assert {"id": pending.request_id, "tool": "payment.send", "status": "pending"}.items() <= \
        next(r for r in found if r["id"] == pending.request_id).items()
    for args, token in ((("approve", pending.request_id), cred),  # an agent voting
                        (("approve", pending.request_id, "--reviewer", "bob"), reviewer.credential),
                        (("approve", "req-nope"), reviewer.credential),
                        (("approve", pending.request_id), "gk_r_" + "x" * 43),
                        (("list",), None)):
        out = gatekit("approvals", *args, "--server", s.url, token=token)
        assert out.returncode != 0 and "Traceback" not in out.stderr, (args, out.stderr)
    down = gatekit("approvals", "list", "--server", f"http://127.0.0.1:{closed_port()}", token=reviewer.credential)
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert reviewer.get(pending.request_id)["status"] == "pending"  # nothing was voted
