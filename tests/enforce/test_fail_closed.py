"""Fail closed everywhere: whatever breaks on the way, the answer is deny (or the policy's on_error), never allow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import gatekit.policy.closure as closure_mod
from gatekit import Denied, Gate, decide, parse_policy
from gatekit.enforce import Broker
from gatekit.errors import StoreError
from gatekit.policy.conditions import Test as TestNode

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

    monkeypatch.setattr(gate._evaluator, "plan", lambda tool: boom)  # what the gate runs for every tool
    d = gate.check({"tool": "kb.search"})  # a call the policy allows
    assert d.decision == "escalate" and "injected" in d.reasons[0]  # the policy's on_error
    with pytest.raises(Denied):  # no broker to escalate to: denied
        gate.run({"tool": "kb.search"}, lambda a: 1)

    strict = Gate(parse_policy(POLICY.replace("on_error: escalate", "on_error: deny")))
    monkeypatch.setattr(strict._evaluator, "plan", lambda tool: boom)
    assert strict.check({"tool": "kb.search"}).decision == "deny"


def test_an_exception_inside_a_rule_gets_on_error(policy, monkeypatch) -> None:
    """A fault in a rule's closure hands the call to decide's evaluator (which decides it as it would have);
    a fault there too is that rule's internal error: the policy's on_error, never an allow."""
    def boom(view: object, hist: object) -> None:
        raise KeyError("injected")

    def faulty(node: object, src: Any, rule: object) -> str:  # every generated test calls `boom`
        out = src.var()
        src.line(f"{out} = {src.const(boom)}(view, hist)")
        return out

    monkeypatch.setitem(closure_mod.EMIT, TestNode, faulty)
    gate = Gate(policy)
    rule = policy.rules[0]  # pay-100 (amount > 100)
    call = {"tool": "payment.send", "args": {"amount": 250}}
    want = decide(policy, call)  # decided by the reference: still the escalation decide gives
    assert (gate.check(call).decision, gate.check(call).rules) == (want.decision, want.rules) == ("escalate", (rule.id,))
    rules = gate._evaluator.reference.candidates("payment.send")
    assert rules[0][0] is rule
    rules[0] = (rule, boom)  # and in the reference too: the rule errors
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


# ---- hostile values cannot make the closure evaluator allow -------------------------------------------
class _Hostile(str):
    """A str subclass whose comparisons, hashing and methods raise: what an in-process caller could pass."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    __ne__ = __lt__ = __gt__ = __le__ = __ge__ = __eq__  # type: ignore[assignment]

    def __hash__(self) -> int:
        raise RuntimeError("hostile __hash__")

    def startswith(self, *a: object) -> bool:  # type: ignore[override]
        raise RuntimeError("hostile startswith")

    endswith = startswith  # type: ignore[assignment]


class _Raises:
    def __eq__(self, other: object) -> bool:
        raise ValueError("hostile")

    def __float__(self) -> float:
        raise ValueError("hostile")


HOSTILE_POLICY = """
version: 1
name: hostile
default: allow
on_error: deny
rules:
  - {id: pay, tool: payment.send, action: escalate, when: {args.amount: {gt: 100}}}
  - {id: who, tool: payment.send, action: deny, when: {args.recipient: {in: [mallory, eve]}}}
  - {id: env, tool: "*", action: deny, when: {context.env: prod}}
  - {id: dest, tool: data.export, action: escalate, when: {args.dest: {matches: "external"}}}
  - {id: path, tool: vault.read, action: deny, when: {args.path: {startswith: "secret/"}}}
"""


def _deep(n: int) -> object:
    value: object = 1
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("call", [
    {"tool": "payment.send", "args": {"amount": _Raises()}},
    {"tool": "payment.send", "args": {"amount": _Hostile("500")}},
    {"tool": "payment.send", "args": {"recipient": _Hostile("mallory")}},
    {"tool": "payment.send", "args": {"recipient": _Raises()}},
    {"tool": "data.export", "args": {"dest": _Hostile("external")}},
    {"tool": "data.export", "args": {"dest": "\ud800 external"}},  # a lone surrogate: RE2 cannot encode it
    {"tool": "vault.read", "args": {"path": _Hostile("secret/x")}},
    {"tool": "payment.send", "args": {"amount": _deep(100_000)}},
    {"tool": "payment.send", "args": {"amount": 10 ** 5000}},
    {"tool": "data.export", "args": {"dest": "x" * 10_000_000 + "external"}},
], ids=["raising-object", "hostile-str-number", "hostile-str-member", "raising-member", "hostile-str-regex",
        "surrogate-regex", "hostile-str-prefix", "deep-list", "huge-int", "huge-string"])
def test_a_hostile_value_never_allows(call: dict) -> None:
    """Whatever a value does when compared, hashed or read, the gate decides it as decide does, and an error
    is the policy's on_error (deny here), never an allow."""
    policy = parse_policy(HOSTILE_POLICY)
    gate = Gate(policy)
    got = gate.check(call, context={"env": "dev"})
    want = decide(policy, {**call, "context": {"env": "dev"}})
    assert (got.decision, got.rules, got.errors) == (want.decision, want.rules, want.errors)
    assert got.decision != "allow"


def test_a_hostile_context_value_never_allows() -> None:
    gate = Gate(parse_policy(HOSTILE_POLICY))
    assert gate.check({"tool": "kb.search"}, context={"env": _Hostile("prod")}).decision == "deny"
    assert gate.check({"tool": "kb.search"}, context={"env": _Raises()}).decision == "deny"


def test_nothing_a_policy_says_becomes_code() -> None:
    """The closure evaluator generates Python per tool: operands, keys and patterns are namespace objects,
    never text, so a policy whose strings look like code decides as decide does and adds no code."""
    nasty = "x\\n') or __import__('os').system('false') or ('"
    policy = parse_policy(f"""
version: 1
name: nasty
default: allow
on_error: deny
rules:
  - {{id: a, tool: "*", action: deny, when: {{args.k: {{eq: {json.dumps(nasty)}}}}}}}
  - {{id: b, tool: "*", action: escalate, when: {{{json.dumps("args." + nasty)}: {{in: [{json.dumps(nasty)}]}}}}}}
  - {{id: c, tool: "*", action: escalate, when: {{args.k: {{startswith: {json.dumps(nasty)}}}}}}}
""")
    gate = Gate(policy)
    for args in ({"k": nasty}, {nasty: nasty}, {"k": nasty + "tail"}, {"k": "plain"}):
        call = {"tool": "t", "args": args}
        got, want = gate.check(call), decide(policy, call)
        assert (got.decision, got.rules, got.errors) == (want.decision, want.rules, want.errors)
    source = gate._evaluator.plan("t").source
    assert nasty not in source and "__import__" not in source and "system" not in source
