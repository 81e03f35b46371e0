"""Red team on the local broker's waiting loop and seat quorum (branch `enforceux`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gatekit import Gate, parse_policy
from gatekit.enforce import Broker
from gatekit.enforce.broker import Refused
from tests.enforce.conftest import POLICY

BIG = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}


def test_a_wait_with_a_timeout_returns_when_the_gate_clock_is_injected(tmp_path: Path) -> None:
    """A gate replaying recorded calls has a clock that does not follow the wall clock; `wait(timeout)` must
    still return after about `timeout` seconds (it did before the waiting reports: the broker timed it)."""
    gate = Gate(parse_policy(POLICY), mode="enforce", broker=Broker(tmp_path / "b.db"), agent="bot",
                clock=lambda: 1_790_000_000.0)
    pending = gate.submit(BIG)
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(pending.wait(timeout=0.3)), daemon=True)
    worker.start()
    worker.join(5)
    assert out == ["pending"], "Pending.wait(timeout=0.3) still running after 5 s"


def test_the_local_broker_seats_one_approval_per_reviewer_and_role(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b.db")
    broker.add_reviewer("ann", "finance", "security")
    broker.add_reviewer("bob", "finance")
    gate = Gate(parse_policy(POLICY), mode="enforce", broker=broker, agent="bot")
    rid = gate.submit(BIG).request_id
    assert broker.approve(rid, "ann").status == "pending"  # the first missing role she holds: security
    with pytest.raises(Refused) as caught:
        broker.approve(rid, "ann", role="finance")
    assert caught.value.code == "already_voted"
    with pytest.raises(Refused) as caught:
        broker.approve(rid, "bob", role="security")
    assert caught.value.code == "role_not_held"
    assert broker.approve(rid, "bob").status == "approved"
