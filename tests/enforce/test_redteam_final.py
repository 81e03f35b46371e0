"""Red team (final): quorum seats, waiting-log injection and Pending.wait bounds, local broker only."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from gatekit import Gate, parse_policy
from gatekit.enforce import Broker, Waiting
from gatekit.enforce.broker import Refused
from gatekit.errors import ApprovalError
from tests.enforce.conftest import POLICY

BIG = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}  # critical: security+finance
SMALL = {"tool": "payment.send", "args": {"amount": 500, "recipient": "ACME"}}  # standard: 1 approval
EVIL = ["a\nFAKE gatekit.enforce: approved", "a\r\nx", "a\x1b[2K\x1b[1Gx", "a\u202eEMCA", "a\u2028x",
        "a\u2066x\u2069", "a\x85x", "a\u200bx"]
BAD = ("\n", "\r", "\x1b", "\u202e", "\u2028", "\u2066", "\u2069", "\x85", "\u200b")


def _gate(tmp_path: Path, broker: Broker | None = None, **kw: Any) -> Gate:
    return Gate(parse_policy(POLICY), mode="enforce", broker=broker or Broker(tmp_path / "b.db"),
                agent="bot", user="u-ann", **kw)


def _not_approved(broker: Broker, rid: str, reviewer: str, **kw: Any) -> None:
    try:
        status = broker.approve(rid, reviewer, **kw).status
    except Refused:
        return
    assert status != "approved", f"{reviewer!r} {kw} met the quorum"


# (1) quorum -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("twin", ["Alice", "ALICE", "alice ", " alice", "\uff41lice", "alice\u200b"])
def test_same_reviewer_under_a_name_variant_fills_one_seat_only(tmp_path: Path, twin: str) -> None:
    broker = Broker(tmp_path / "b.db")  # no directory: any name may vote
    rid = _gate(tmp_path, broker).submit(BIG).request_id
    broker.approve(rid, "alice", role="finance")
    _not_approved(broker, rid, twin, role="security")


@pytest.mark.parametrize("me", ["Bot", "BOT", "bot ", "\uff42ot", "U-Ann"])
def test_the_agent_or_user_cannot_approve_under_a_name_variant(tmp_path: Path, me: str) -> None:
    broker = Broker(tmp_path / "b.db")
    rid = _gate(tmp_path, broker).submit(SMALL).request_id
    _not_approved(broker, rid, me)


@pytest.mark.parametrize("role", ["Security", "SECURITY", "security ", "\uff53ecurity"])
def test_a_role_variant_does_not_fill_a_role_not_held(tmp_path: Path, role: str) -> None:
    broker = Broker(tmp_path / "b.db")
    broker.add_reviewer("ann", "finance")
    broker.add_reviewer("bob", "finance")
    rid = _gate(tmp_path, broker).submit(BIG).request_id
    broker.approve(rid, "ann")
    _not_approved(broker, rid, "bob", role=role)
    _not_approved(broker, rid, "bob")


def test_a_role_variant_without_a_directory_does_not_fill_the_seat(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b.db")
    rid = _gate(tmp_path, broker).submit(BIG).request_id
    broker.approve(rid, "ann", role="finance")
    for i, role in enumerate(["Security", "security ", "\uff53ecurity", "finance"]):
        _not_approved(broker, rid, f"r{i}", role=role)


def test_a_deny_then_approvals_never_approve(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b.db")
    rid = _gate(tmp_path, broker).submit(BIG).request_id
    broker.deny(rid, "mallory")
    for who, role in (("ann", "finance"), ("carol", "security")):
        with pytest.raises(Refused):
            broker.approve(rid, who, role=role)
    assert broker.get(rid).status == "denied"


# (2) waiting log -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tool", EVIL)
@pytest.mark.parametrize("status", ["pending", "approved"])
def test_waiting_message_has_no_raw_controls(tool: str, status: str) -> None:
    msg = Waiting("req-1", tool, status, 1.0, 2.0, "0 of 1 approval", 1, ()).message
    assert not any(c in msg for c in BAD), repr(msg)


def test_the_waiting_log_line_escapes_an_escalated_tool_name(tmp_path: Path, caplog) -> None:
    policy = parse_policy(POLICY.replace("rules:\n", "rules:\n  - {id: all, tool: \"*\", action: escalate, tier: standard}\n"))
    heard: list[Waiting] = []
    gate = Gate(policy, mode="enforce", broker=Broker(tmp_path / "b.db"), agent="bot", on_wait=heard.append)
    caplog.set_level(logging.INFO, logger="gatekit.enforce")
    for tool in EVIL:
        try:
            pending = gate.submit({"tool": tool, "args": {}})
        except (ApprovalError, ValueError):
            continue  # refused outright: fine
        if pending.request is None:
            continue
        pending.wait(timeout=0)
    for line in [r.getMessage() for r in caplog.records if r.name == "gatekit.enforce"] + [h.message for h in heard]:
        assert not any(c in line for c in BAD), repr(line)


# (3) Pending.wait bounds ------------------------------------------------------------------------------------
def _bounded(pending: Any, timeout: float, limit: float = 5.0) -> list[Any]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(pending.wait(timeout=timeout)), daemon=True)
    t.start()
    t.join(limit)
    assert out, f"Pending.wait(timeout={timeout!r}) still running after {limit}s"
    return out


@pytest.mark.parametrize("timeout", [0, -1, 0.2, 1e-9])
def test_wait_with_a_small_or_negative_timeout_returns_pending(tmp_path: Path, timeout: float) -> None:
    pending = _gate(tmp_path, clock=lambda: 1_790_000_000.0).submit(BIG)
    assert _bounded(pending, timeout) == ["pending"]


@pytest.mark.parametrize("timeout", [math.nan, math.inf])
def test_wait_with_a_nan_or_inf_timeout_is_bounded_and_never_allows(tmp_path: Path, timeout: float) -> None:
    pending = _gate(tmp_path, broker=Broker(tmp_path / "b.db", default_timeout=1), timeout=1).submit(BIG)
    out = _bounded(pending, timeout, limit=6)
    assert out[0] in ("pending", "timed_out"), out


def test_wait_with_report_every_zero_is_bounded(tmp_path: Path) -> None:
    pending = _gate(tmp_path, report_every=0).submit(BIG)
    assert _bounded(pending, 0.3) == ["pending"]


def test_a_failing_broker_wait_runs_nothing(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    pending = gate.submit(BIG)

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("store down")

    gate.broker.wait = boom  # type: ignore[method-assign]
    ran: list[int] = []
    with pytest.raises(ApprovalError):
        pending.run(lambda a: ran.append(1))
    assert ran == []


def test_wait_returns_no_allowing_status_before_quorum(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b.db")
    pending = _gate(tmp_path, broker).submit(BIG)
    broker.approve(pending.request_id, "ann", role="finance")
    assert _bounded(pending, 0.2) == ["pending"]
    assert pending.status() == "pending"
