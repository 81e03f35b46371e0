"""The approvals service end to end on loopback: a gate files, a reviewer approves, the call runs once.
Part of the store suite: each test runs on SQLite and on PostgreSQL (`gatekit serve --store`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from gatekit import Denied, verify_approval
from tests.server.conftest import Served


@pytest.fixture
def served(tmp_path: Path, store_url: str | None) -> Iterator[Served]:
    s = Served(tmp_path, store=store_url)
    yield s
    s.kill()


def test_an_approved_call_runs_once_with_a_token_bound_to_it(served) -> None:
    agent = served.add("agent", "billing-bot")
    alice = served.client(served.add("reviewer", "alice", "finance"))
    gate = served.gate("billing-bot", agent, user="u-bob")
    pending = gate.submit({"tool": "payment.send", "args": {"amount": 250, "recipient": "ACME"}})
    shown = alice.get(pending.request_id)
    assert shown["status"] == "pending" and shown["action"]["args"] == {"amount": 250, "recipient": "ACME"}
    assert "token" not in shown  # tokens go only to the agent that asked
    approved = alice.vote(pending.request_id, "approve", shown["digest"])
    assert approved["status"] == "approved" and approved["votes"][0]["reviewer"] == "alice"
    ran = []
    assert pending.run(lambda a: ran.append(a.args) or "paid") == "paid"
    assert ran == [{"amount": 250, "recipient": "ACME"}]
    with pytest.raises(Denied) as again:
        pending.run(lambda a: ran.append(a.args))
    assert again.value.code == "replay" and len(ran) == 1
    assert alice.get(pending.request_id)["status"] == "executed"
    assert served.verify() == 0


def test_waiting_gate_hears_the_decision_while_it_waits(served) -> None:
    agent = served.add("agent", "billing-bot")
    alice = served.client(served.add("reviewer", "alice"))
    gate = served.gate("billing-bot", agent)
    pending = gate.submit({"tool": "payment.send", "args": {"amount": 500}})
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(pending.run(lambda a: "ran")))
    worker.start()
    alice.vote(pending.request_id, "approve", alice.get(pending.request_id)["digest"])
    worker.join(timeout=20)
    assert result == ["ran"]


def test_the_token_verifies_for_its_call_and_no_other(served) -> None:
    from gatekit.enforce.tokens import TokenRefused

    agent = served.add("agent", "billing-bot")
    alice = served.client(served.add("reviewer", "alice"))
    gate = served.gate("billing-bot", agent)
    pending = gate.submit({"tool": "payment.send", "args": {"amount": 250, "recipient": "ACME"}})
    alice.vote(pending.request_id, "approve", alice.get(pending.request_id)["digest"])
    token = served.client(agent).get(pending.request_id)["token"]
    key = served.client(agent).public_key()["key"]
    call = {"tool": "payment.send", "agent": "billing-bot", "args": {"amount": 250, "recipient": "ACME"}}
    assert verify_approval(token, call, key).request_id == pending.request_id
    with pytest.raises(TokenRefused) as other:
        verify_approval(token, {**call, "args": {"amount": 9000, "recipient": "EVIL"}}, key)
    assert other.value.code == "action"


def test_a_withdrawn_request_ends_and_nothing_runs_for_it(served) -> None:
    agent = served.add("agent", "billing-bot")
    alice = served.client(served.add("reviewer", "alice"))
    gate = served.gate("billing-bot", agent)
    pending = gate.submit({"tool": "payment.send", "args": {"amount": 500}})
    assert pending.withdraw("the client disconnected") == "withdrawn"
    shown = alice.get(pending.request_id)
    assert shown["status"] == "withdrawn" and "client disconnected" in shown["note"]
    with pytest.raises(Exception) as late:  # an approval arriving after the caller gave up
        alice.vote(pending.request_id, "approve", shown["digest"])
    assert getattr(late.value, "code", None) == "not_pending"
    ran: list[object] = []
    with pytest.raises(Denied):
        pending.run(ran.append)
    assert ran == [] and served.verify() == 0
