"""Red team of the batched PostgreSQL statements (gatekit/server/postgres.py, approvals.py, audit.py): values
bound by psycopg's client-side cursor, RETURNING in place of re-reads, the outcome's conditional UPDATE,
the chain's entries sent with the COMMIT. Each test runs the attack on both stores (SQLite and a real
PostgreSQL) through `Service` and asserts what must hold on the rows and the chain:

- SQL-looking text (quotes, backslashes, `%s`, `?`, `$1`, `;`, comments, JSON with NUL escapes and unicode
  line separators) in every value a client controls is stored as sent and runs nothing;
- a request id or consume key with a NUL or a lone surrogate is a refusal (400), not a store error (503):
  PostgreSQL's driver cannot send either, and a store error inside a group commit failed every other write
  of its batch with it (one agent's bad id made other agents' submissions fail) — fixed;
- an outcome for a request never approved, pending, withdrawn, denied, another agent's, or recorded twice,
  and a consume of a withdrawn, denied, used, replaced or other request's token: refused, nothing written;
- the transaction's connection killed by the server just before its COMMIT message: nothing of the write
  is kept, the chain verifies, the write is not applied twice.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from gatekit.enforce.tokens import action_digest
from gatekit.errors import StoreError
from gatekit.server.approvals import Service
from gatekit.server.ledger import Ledger
from gatekit.server.registry import Refusal
from gatekit.server.store import open_store
from tests.server.test_redteam_locks import POLICY, Clock

NASTY = ["x'); DROP TABLE votes; --", "a\\'b\\\\c", "%s %% %(x)s ? ?? $1 :name", "'; COMMIT; DELETE FROM audit; --",
         "\u2028\u2029\ufeff\u202e ☃ 𝔘", "E'\\x00'", '"quoted" \\"', "/* c */ -- d\n;"]


def _service(own: Path, url: str | None, clock: Clock) -> Service:
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    (own / "policy.yaml").write_text(POLICY)
    svc = Service(Ledger(own, store=open_store(url, own), clock=clock), own / "policy.yaml", max_pending=1000)
    svc.start()
    return svc


@pytest.fixture
def svc(tmp_path: Path, store_url: str | None) -> Any:
    service = _service(tmp_path / "state", store_url, Clock())
    yield service
    service.ledger.close()


def _code(fn: Any) -> str:
    try:
        fn()
    except Refusal as exc:
        return exc.code
    return "ok"


def _rows(svc: Service, sql: str, params: tuple = ()) -> list[Any]:
    with svc.store.read() as con:
        return con.execute(sql, params).fetchall()


def _people(svc: Service) -> tuple[Any, Any, Any, Any]:
    reg = svc.registry
    return (svc.authenticate(reg.add("agent", "bot")), svc.authenticate(reg.add("agent", "other")),
            svc.authenticate(reg.add("reviewer", "rev")), svc.authenticate(reg.add("executor", "exe")))


def _approved(svc: Service, bot: Any, rev: Any, n: int) -> dict[str, Any]:
    req = svc.submit(bot, {"action": {"tool": "pay.one", "args": {"n": n}}})
    svc.vote(rev, req["id"], "approve", evidence=req["digest"])
    return svc.get(bot, req["id"])


def test_sql_in_every_client_value_is_stored_as_sent(svc: Service) -> None:
    bot, _, rev, _ = _people(svc)
    before = {t: _rows(svc, f"SELECT count(*) FROM {t}")[0][0] for t in ("votes", "principals")}
    for i, text in enumerate(NASTY):
        args = {text: text, "n": i, "nul": "a\x00b", "nested": [{"k": text}]}
        req = svc.submit(bot, {"action": {"tool": "pay.one", "args": args, "session": text,
                                          "context": {"c": text}},
                               "claimed": {"note": text}, "decision": {"reasons": [text], "rules": [text]}})
        assert req["action"]["args"] == args and req["session"] == text
        row = _rows(svc, "SELECT action, digest, session FROM requests WHERE id = ?", (req["id"],))[0]
        assert json.loads(row[0])["args"] == args and row[2] == text
        assert action_digest(json.loads(row[0])) == row[1] == req["digest"]
        decision = "deny" if i % 2 else "approve"
        voted = svc.vote(rev, req["id"], decision, evidence=req["digest"], reason=text)
        assert voted["votes"][0]["reason"] == text
        assert _rows(svc, "SELECT reason FROM votes WHERE request_id = ?", (req["id"],)) == [(text,)]
        if decision == "approve":
            token = svc.get(bot, req["id"])["token"]
            svc.consume(bot, token, key=("k" * 8 + text)[:128])
            svc.outcome(bot, req["id"], "failed", error=text)
            assert svc.get(bot, req["id"])["outcome"] == "failed"
        else:
            assert svc.get(bot, req["id"])["status"] == "denied"
        _code(lambda: svc.withdraw(bot, req["id"], reason=text))
    assert _rows(svc, "SELECT count(*) FROM votes")[0][0] == before["votes"] + len(NASTY)
    assert _rows(svc, "SELECT count(*) FROM principals")[0][0] == before["principals"]
    assert svc.verify().ok


@pytest.mark.parametrize("bad", ["x\x00y", "x\ud800y", "\x00", "r\udfff"])
def test_an_unsendable_request_id_or_key_is_a_refusal_not_a_store_error(svc: Service, bad: str) -> None:
    bot, _, rev, exe = _people(svc)
    req = _approved(svc, bot, rev, 1)
    calls = {
        "get": lambda: svc.get(bot, bad), "get_reviewer": lambda: svc.get(rev, bad),
        "vote": lambda: svc.vote(rev, bad, "approve", evidence="sha256:" + "0" * 64),
        "withdraw": lambda: svc.withdraw(bot, bad), "outcome": lambda: svc.outcome(bot, bad, "executed"),
        "consume_key": lambda: svc.consume(bot, req["token"], key="k" * 8 + bad),
        "consume_key_exe": lambda: svc.consume(exe, req["token"], key="k" * 8 + bad),
    }
    assert {name: _code(fn) for name, fn in calls.items()} == {name: "bad_request" for name in calls}
    assert svc.get(bot, req["id"])["status"] == "approved"  # the token still works, once
    svc.consume(bot, req["token"], key="good-key-1")
    assert svc.verify().ok


def test_a_bad_id_first_in_a_group_commit_does_not_fail_the_writes_batched_with_it(svc: Service) -> None:
    """One transaction for the writes queued while one commits; when it fails each is retried alone, and a
    store error of the first one alone used to fail the rest too (read as "the store is down")."""
    bot, other, rev, _ = _people(svc)
    ledger = svc.ledger
    inside, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def hold(con: Any, now: int, audit: list) -> None:
        inside.set()
        assert release.wait(30)

    def run(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001  what is looked for
            results[name] = exc

    def queued() -> int:
        with ledger._turn:
            return len(ledger._queue)

    threads = [threading.Thread(target=run, args=("hold", lambda: ledger.write(hold)), daemon=True)]
    threads[0].start()
    assert inside.wait(30)
    steps = [("bad", lambda: svc.withdraw(bot, "x\x00y")),
             ("good", lambda: svc.submit(other, {"action": {"tool": "pay.one", "args": {"n": 7}}}))]
    for n, (name, fn) in enumerate(steps, start=1):
        threads.append(threading.Thread(target=run, args=(name, fn), daemon=True))
        threads[-1].start()
        while queued() < n:  # the write is in the queue behind the held one (no timing)
            threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert isinstance(results["good"], dict) and results["good"]["status"] == "pending", results["good"]
    assert isinstance(results["bad"], Refusal) and results["bad"].code == "bad_request", results["bad"]
    assert svc.verify().ok


def test_an_outcome_or_consume_the_request_never_earned_is_refused_and_writes_nothing(svc: Service) -> None:
    bot, other, rev, exe = _people(svc)
    pending = svc.submit(bot, {"action": {"tool": "pay.one", "args": {"n": 1}}})
    withdrawn = svc.submit(bot, {"action": {"tool": "pay.one", "args": {"n": 2}}})
    svc.withdraw(bot, withdrawn["id"])
    approved = _approved(svc, bot, rev, 3)
    pulled = _approved(svc, bot, rev, 4)
    svc.withdraw(bot, pulled["id"])
    denied = svc.submit(bot, {"action": {"tool": "pay.one", "args": {"n": 5}}})
    svc.vote(rev, denied["id"], "deny", evidence=denied["digest"])
    used = _approved(svc, bot, rev, 6)
    svc.consume(bot, used["token"], key="first-key")
    theirs = _approved(svc, other, rev, 7)
    svc.consume(other, theirs["token"], key="their-key")
    snapshot = _rows(svc, "SELECT id, status, outcome, consumed_at FROM requests ORDER BY id")
    chain = _rows(svc, "SELECT count(*) FROM audit WHERE kind = 'outcome'")[0][0]

    outcomes = {name: _code(lambda rid=rid: svc.outcome(bot, rid, "executed")) for name, rid in (
        ("pending", pending["id"]), ("withdrawn", withdrawn["id"]), ("approved", approved["id"]),
        ("pulled", pulled["id"]), ("denied", denied["id"]), ("unknown", "no-such-request"))}
    assert outcomes == {name: "not_consumed" for name in outcomes} | {"unknown": "unknown_request"}
    assert _code(lambda: svc.outcome(bot, theirs["id"], "executed")) == "unknown_request"  # not its request
    assert _code(lambda: svc.outcome(exe, used["id"], "executed")) == "unknown_request"  # only the agent
    assert _code(lambda: svc.outcome(rev, used["id"], "executed")) == "not_consumed"
    consumes = {name: _code(lambda t=t, k=k: svc.consume(who, t, key=k)) for name, who, t, k in (
        ("pulled", bot, pulled["token"], "key-pulled"), ("used_again", bot, used["token"], "other-key"),
        ("used_by_executor", exe, used["token"], "first-key"), ("theirs", bot, theirs["token"], "their-key"))}
    assert consumes == {"pulled": "withdrawn", "used_again": "used", "used_by_executor": "used",
                        "theirs": "unknown_request"}
    assert _rows(svc, "SELECT id, status, outcome, consumed_at FROM requests ORDER BY id") == snapshot
    assert _rows(svc, "SELECT count(*) FROM audit WHERE kind = 'outcome'")[0][0] == chain

    svc.outcome(bot, used["id"], "executed")
    assert _code(lambda: svc.outcome(bot, used["id"], "failed")) == "not_consumed"  # recorded once
    assert _rows(svc, "SELECT outcome FROM requests WHERE id = ?", (used["id"],)) == [("executed",)]
    assert _rows(svc, "SELECT count(*) FROM audit WHERE kind = 'outcome'")[0][0] == chain + 1
    assert svc.verify().ok


def test_a_connection_killed_before_its_commit_message_leaves_no_half_write(tmp_path: Path, pg_url: str) -> None:
    """The server ends the write's backend (pg_terminate_backend from another connection) after the vote's
    statements ran and before the message with the chain's entries, the checkpoint and the COMMIT is sent:
    the vote is not kept, no entry of it is, the chain verifies, and the vote cast again counts once."""
    import psycopg

    svc = _service(tmp_path / "state", pg_url, Clock())
    try:
        bot, _, rev, _ = _people(svc)
        req = svc.submit(bot, {"action": {"tool": "pay.one", "args": {"n": 1}}})
        audit_before = _rows(svc, "SELECT count(*) FROM audit")[0][0]
        store = svc.store
        original = type(store).defer
        killed = []

        def defer_then_kill(self: Any, con: Any, sql: str, params: Any = ()) -> None:
            original(self, con, sql, params)
            if not killed:
                pid = con._con.info.backend_pid
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed.append(pid)

        type(store).defer = defer_then_kill  # type: ignore[method-assign]
        try:
            with pytest.raises(StoreError):
                svc.vote(rev, req["id"], "approve", evidence=req["digest"])
        finally:
            type(store).defer = original  # type: ignore[method-assign]
        assert killed
        assert _rows(svc, "SELECT count(*) FROM votes WHERE request_id = ?", (req["id"],)) == [(0,)]
        assert _rows(svc, "SELECT status, token FROM requests WHERE id = ?", (req["id"],)) == [("pending", None)]
        assert _rows(svc, "SELECT count(*) FROM audit")[0][0] == audit_before
        assert svc.verify().ok
        svc.vote(rev, req["id"], "approve", evidence=req["digest"])
        assert _rows(svc, "SELECT count(*) FROM votes WHERE request_id = ?", (req["id"],)) == [(1,)]
        assert _rows(svc, "SELECT count(*) FROM audit WHERE kind = 'approve' AND request_id = ?",
                     (req["id"],)) == [(1,)]
        assert svc.verify().ok
    finally:
        svc.ledger.close()


def test_the_service_on_another_replica_verifies_after_the_attacks(tmp_path: Path, pg_url: str) -> None:
    """The chain written with the batched messages verifies from a second replica's state directory."""
    first = _service(tmp_path / "r0", pg_url, Clock())
    try:
        bot, _, rev, _ = _people(first)
        req = _approved(first, bot, rev, 1)
        first.consume(bot, req["token"], key="a-key-123")
        first.outcome(bot, req["id"], "executed")
    finally:
        first.ledger.close()
    (tmp_path / "r1").mkdir(mode=0o700)
    for name in ("service.key", "service.pub"):
        shutil.copy(tmp_path / "r0" / name, tmp_path / "r1" / name)
    second = _service(tmp_path / "r1", pg_url, Clock())
    try:
        assert second.verify().count > 0
        assert second.get(bot, req["id"])["outcome"] == "executed"
    finally:
        second.ledger.close()
