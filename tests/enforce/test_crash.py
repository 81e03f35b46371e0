"""kill -9 a process inside its write transaction (paused there by the store's test hook), restart: nothing
lost, nothing approved or run that was not, the store unlocked and the audit chain intact."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from gatekit import Action, Denied, Gate, decide, parse_policy
from gatekit.enforce import Broker

POLICY = """
version: 1
name: crash
tiers:
  pair: {approvals: 2, timeout: 1h}
rules:
  - {id: deletes, tool: db.delete, action: escalate, tier: pair}
"""
CALL = {"tool": "db.delete", "agent": "bot", "user": "u-req", "args": {"table": "orders"}}


def pause_in(name: str, marker: str) -> Callable[[str], None]:
    """A hook that, in the named transaction, says so and then never commits."""
    def hook(txn: str) -> None:
        if txn == name:
            Path(marker).write_text(txn)
            time.sleep(600)
    return hook


def _approve(db: str, marker: str, request_id: str) -> None:
    Broker(db, durable=False, hook=pause_in("vote", marker)).approve(request_id, "bob")


def _release(db: str, marker: str, request_id: str) -> None:
    gate = Gate(parse_policy(POLICY), broker=Broker(db, durable=False, hook=pause_in("release", marker)))
    gate.resume(request_id).run(lambda a: Path(marker + ".ran").write_text("ran"))


def _submit(db: str, marker: str) -> None:
    gate = Gate(parse_policy(POLICY), broker=Broker(db, durable=False, hook=pause_in("submit", marker)))
    gate.submit(CALL)


def kill_inside(target: Callable[..., None], *args: str, marker: Path) -> None:
    """Run `target` in a child process, wait until it is paused inside its transaction, kill -9 it."""
    proc = mp.get_context("fork").Process(target=target, args=(*args[:1], str(marker), *args[1:]))
    proc.start()
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.is_alive() and time.monotonic() < deadline, "the child never reached its transaction"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL


@pytest.fixture
def filed(tmp_path: Path) -> tuple[str, str, Broker]:
    db = str(tmp_path / "approvals.db")
    broker = Broker(db, durable=False)
    gate = Gate(parse_policy(POLICY), broker=broker)
    request = gate.submit(CALL).request
    broker.approve(request.id, "alice")  # one of the two approvals, committed
    return db, request.id, broker


def test_reviewer_killed_mid_approval(filed, tmp_path: Path) -> None:
    db, rid, _ = filed
    kill_inside(_approve, db, rid, marker=tmp_path / "voting")
    after = Broker(db, durable=False, busy_timeout=2)  # a lock left behind would time out here
    request = after.get(rid)
    assert request.status == "pending"  # bob's approval never committed: not approved
    assert [v.reviewer for v in request.votes] == ["alice"]  # and alice's is not lost
    assert after.receipts.verify().ok
    assert [r.kind for r in after.receipts.entries()] == ["decision", "request", "vote"]
    assert after.approve(rid, "bob").status == "approved"  # bob can vote again: the store is not locked
    assert after.receipts.verify().ok


def test_agent_killed_while_releasing_its_approval(filed, tmp_path: Path) -> None:
    db, rid, broker = filed
    broker.approve(rid, "carol")
    marker = tmp_path / "releasing"
    kill_inside(_release, db, rid, marker=marker)
    assert not Path(f"{marker}.ran").exists()
    after = Broker(db, durable=False, busy_timeout=2)
    assert after.get(rid).status == "approved" and after.get(rid).used_at is None  # still usable, once
    restarted = Gate(parse_policy(POLICY), broker=after)
    ran: list[str] = []
    assert restarted.resume(rid).run(lambda a: ran.append(a.action_id) or "done") == "done"
    with pytest.raises(Denied) as err:
        restarted.resume(rid).run(lambda a: ran.append("again"))
    assert err.value.code == "replay" and len(ran) == 1
    assert after.receipts.verify().ok


def test_agent_killed_while_filing_leaves_no_half_request(tmp_path: Path) -> None:
    db = str(tmp_path / "approvals.db")
    Broker(db, durable=False).close()
    kill_inside(_submit, db, marker=tmp_path / "submitting")
    after = Broker(db, durable=False, busy_timeout=2)
    assert after.list(None) == []
    kinds = [r.kind for r in after.receipts.entries()]
    assert kinds == ["decision"]  # the decision was recorded; the request and its receipt were not
    assert after.receipts.verify().ok
    request = after.submit(Action.from_record({**CALL, "action_id": "a-2"}),
                           decide(parse_policy(POLICY), CALL), parse_policy(POLICY).tiers["pair"])
    assert after.get(request.id).status == "pending"
