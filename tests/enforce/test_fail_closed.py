"""Fail closed everywhere: whatever breaks on the way, the answer is deny (or the policy's on_error), never allow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekit import Denied, Gate, parse_policy
from gatekit.enforce import Broker
from gatekit.errors import StoreError

from .conftest import POLICY

PAY = {"tool": "payment.send", "agent": "bot", "args": {"amount": 250}}


def test_a_broker_file_that_is_not_a_database_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "approvals.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError):
        Broker(path)
    with pytest.raises(StoreError):
        Gate(parse_policy(POLICY), broker=path)


def test_an_unreachable_broker_store_refuses_to_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Broker(tmp_path / "no" / "such" / "dir" / "approvals.db")


def test_a_broker_store_corrupted_while_running_denies(tmp_path: Path, policy) -> None:
    path = tmp_path / "approvals.db"
    broker = Broker(path, durable=False)
    gate = Gate(policy, broker=broker)
    assert gate.run({"tool": "kb.search"}, lambda a: "ok") == "ok"
    broker.db.close()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").unlink()
    path.write_bytes(b"\0" * 4096 + os.urandom(4096))
    ran: list[int] = []
    for call in (PAY, {"tool": "kb.search"}):
        with pytest.raises(Denied) as err:
            gate.run(call, lambda a: ran.append(1))
        assert err.value.code == "error"
    assert not ran


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError):
        Broker(path)


def test_an_exception_while_evaluating_gets_on_error_never_allow(policy, monkeypatch) -> None:
    gate = Gate(policy)

    def boom(*args: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(gate._evaluator, "evaluate", boom)
    d = gate.check({"tool": "kb.search"})  # a call the policy allows
    assert d.decision == "escalate" and "injected" in d.reasons[0]  # the policy's on_error
    with pytest.raises(Denied):  # no broker to escalate to: denied
        gate.run({"tool": "kb.search"}, lambda a: 1)

    strict = Gate(parse_policy(POLICY.replace("on_error: escalate", "on_error: deny")))
    monkeypatch.setattr(strict._evaluator, "evaluate", boom)
    assert strict.check({"tool": "kb.search"}).decision == "deny"


def test_an_exception_inside_a_rule_gets_on_error(policy, monkeypatch) -> None:
    gate = Gate(policy)
    rules = gate._evaluator.candidates("payment.send")
    rule, _ = rules[0]

    def boom(view: object, hist: object) -> None:
        raise KeyError("injected")

    rules[0] = (rule, boom)
    d = gate.check({"tool": "payment.send", "args": {"amount": 1}})
    assert d.decision == "escalate" and d.errors == (rule.id,) and "internal error" in d.details[0]


def test_an_exception_in_the_window_history_never_allows(policy, monkeypatch) -> None:
    gate = Gate(policy, agent="bot")

    def boom(*args: object) -> None:
        raise MemoryError("injected")

    monkeypatch.setattr(type(gate._history), "calls", boom)
    d = gate.check({"tool": "email.send"})
    assert d.decision == "escalate" and d.errors == ("email-burst",)


def test_a_failing_notification_does_not_approve(tmp_path: Path, policy, clock) -> None:
    def down(request: object) -> None:
        raise OSError("no route to pager")

    broker = Broker(tmp_path / "approvals.db", durable=False, clock=clock, notify=[down])
    gate = Gate(policy, broker=broker, sleep=clock.sleep, timeout=30)
    with pytest.raises(Denied) as err:
        gate.run(PAY, lambda a: 1)
    assert err.value.code == "timed_out"
