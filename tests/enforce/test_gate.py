"""The gate: the same decision as `decide`, acted on in shadow or enforce mode."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gatekit import Action, Denied, Gate, Pending, decide, parse_policy
from gatekit.enforce import MockBroker, Receipts
from gatekit.errors import PolicyError

from .conftest import POLICY, Clock

PAY = {"tool": "payment.send", "agent": "bot", "user": "u-ann", "args": {"amount": 250, "recipient": "ACME"}}
PINNED = ("ts", "agent", "session", "user", "context")


def pinned(call: dict) -> dict:
    """A call's identity, context and time as host code asserts them (the gate never reads the payload's)."""
    return {name: call[name] for name in PINNED if name in call}


def kinds(receipts: Receipts) -> list[str]:
    return [r.kind for r in receipts.entries()]


# ---- check ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    PAY,
    {"tool": "payment.send", "args": {"amount": "20000"}},
    {"tool": "payment.send", "args": {"amount": "1,810"}},
    {"tool": "payment.send", "args": {"amount": 5, "recipient": "mallory"}},
    {"tool": "db.drop_table", "context": {"env": "prod"}},
    {"tool": "deploy.api", "args": {"force": True}},
    {"tool": "kb.search"},
])
def test_check_is_decide(policy, call) -> None:
    assert Gate(policy, mode="enforce").check(call, **pinned(call)) == decide(policy, call)
    assert Gate(policy, mode="shadow").check(Action.from_record(call), **pinned(call)) == decide(policy, call)


def test_shadow_rules_never_decide_in_enforce_mode(policy) -> None:
    gate = Gate(policy, mode="enforce", receipts=None)
    call = {"tool": "deploy.api", "args": {"force": True}}
    d = gate.check(call)
    assert d.decision == "allow" and d.rules == ("weekend-deploy",)
    assert gate.run(call, lambda a: "deployed") == "deployed"


def test_windows_count_the_calls_the_gate_has_seen(policy, clock: Clock) -> None:
    gate = Gate(policy, clock=clock, agent="bot")
    mails = [gate.check({"tool": "email.send"}).decision for _ in range(5)]
    assert mails == ["allow", "allow", "allow", "deny", "deny"]
    assert gate.check({"tool": "email.send"}, agent="other").decision == "allow"
    clock.advance(600)
    assert gate.check({"tool": "email.send"}).decision == "allow"  # the window moved on


def test_check_is_thread_safe_for_windows(policy) -> None:
    gate = Gate(policy)
    ts = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
    results: list[str] = []
    lock = threading.Lock()

    def agent() -> None:
        for _ in range(50):
            d = gate.check({"tool": "email.send"}, agent="bot", ts=ts)
            with lock:
                results.append(d.decision)

    threads = [threading.Thread(target=agent) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("allow") == 3 and len(results) == 400


def test_identity_defaults_scope_and_context(policy) -> None:
    gate = Gate(policy, agent="bot", user="u-ann", context={"env": "prod"})
    assert gate.check({"tool": "db.delete"}).decision == "escalate"  # context filled: env prod
    assert gate.check({"tool": "db.delete", "context": {"env": "dev"}}).decision == "escalate"  # only claimed
    assert gate.check({"tool": "db.delete"}, context={"env": "dev"}).decision == "allow"  # host code's wins
    with gate.scope(context={"env": "dev"}):
        assert gate.check({"tool": "db.delete"}).decision == "allow"
    seen: list[Action] = []
    with gate.scope(user="u-bob", session="s-1"):
        gate.run({"tool": "kb.search"}, seen.append)
        gate.run({"tool": "kb.search"}, seen.append, user="u-cy")  # a keyword beats the scope
    gate.run({"tool": "kb.search", "agent": "explicit"}, seen.append)
    gate.run({"tool": "kb.search"}, seen.append, agent="explicit")
    assert (seen[0].agent, seen[0].user, seen[0].session) == ("bot", "u-bob", "s-1")
    assert (seen[1].agent, seen[1].user, seen[1].session) == ("bot", "u-cy", "s-1")
    assert (seen[2].agent, seen[2].user, seen[2].session) == ("bot", "u-ann", None)  # the payload's is claimed
    assert (seen[3].agent, seen[3].user, seen[3].session) == ("explicit", "u-ann", None)
    assert seen[0].ts is not None and seen[0].action_id.startswith("g-")
    d = gate.check({"tool": "kb.search"}, role="admin")  # not a call assertion: host code's bug, fail closed
    assert d.decision == "deny" and "unknown call assertions" in d.reasons[0]


def test_malformed_calls_are_denied(policy) -> None:
    gate = Gate(policy)
    calls = [({"tool": 5}, {}), ({"tool": ""}, {}), ({"args": {}}, {}), ({"tool": "kb.search", "args": [1]}, {}),
             ({"tool": "kb.search"}, {"agent": ["x"]}), ({"tool": "kb.search"}, {"ts": "yesterday"}),
             ({"tool": "kb.search"}, {"context": ["env", "prod"]})]
    for call, asserted in calls:
        assert gate.check(call, **asserted).decision == "deny", call
        ran: list[int] = []
        with pytest.raises(Denied) as err:
            gate.run(call, lambda a: ran.append(1), **asserted)
        assert not ran and err.value.code == "malformed"


def test_unreadable_claims_in_the_payload_neither_decide_nor_refuse(tmp_path: Path, policy) -> None:
    """The payload's `agent`, `ts` or `context` are only claimed: a value the gate could not read there is
    recorded as claimed, and the call is decided (and run) as the gate's own values say."""
    receipts = Receipts(tmp_path / "audit.db", durable=False)
    gate = Gate(policy, receipts=receipts, agent="bot")
    for claim in ({"agent": ["x"]}, {"ts": "yesterday"}, {"context": ["env", "prod"]}, {"ts": 5}):
        call = {"tool": "kb.search", **claim}
        assert gate.check(call).decision == "allow", claim
        assert gate.run(call, lambda a: a.agent) == "bot", claim
    claimed = [r.body["claimed"] for r in receipts.entries() if r.kind == "decision"]
    assert claimed == [{"agent": ["x"]}, {"ts": "yesterday"}, {"context": ["env", "prod"]}, {"ts": 5}]


# ---- shadow mode -------------------------------------------------------------------------------------------
def test_shadow_mode_never_blocks_and_records_the_would_be_decision(tmp_path: Path, policy) -> None:
    receipts = Receipts(tmp_path / "audit.db", durable=False)
    gate = Gate(policy, mode="shadow", receipts=receipts)
    assert gate.run({"tool": "payment.send", "args": {"amount": 5, "recipient": "mallory"}}, lambda a: "sent") == "sent"
    assert gate.run(PAY, lambda a: "sent") == "sent"
    decisions = [r.body for r in receipts.entries() if r.kind == "decision"]
    assert [(d["decision"]["decision"], d["mode"]) for d in decisions] == [("deny", "shadow"), ("escalate", "shadow")]
    assert kinds(receipts) == ["decision", "execution", "decision", "execution"]


def test_shadow_mode_asks_no_reviewer(policy) -> None:
    broker = MockBroker(lambda r: "deny")
    gate = Gate(policy, mode="shadow", broker=broker)
    assert gate.run(PAY, lambda a: "sent") == "sent" and broker.seen == []


def test_shadow_mode_keeps_running_when_receipts_fail(tmp_path: Path, policy) -> None:
    receipts = Receipts(tmp_path / "audit.db", durable=False)
    gate = Gate(policy, mode="shadow", receipts=receipts)
    receipts.db.close()
    (tmp_path / "audit.db").write_bytes(b"garbage" * 100)
    assert gate.run(PAY, lambda a: "sent") == "sent"
    assert gate.errors


# ---- enforce mode ------------------------------------------------------------------------------------------
def test_deny_raises_with_the_decision_and_runs_nothing(policy) -> None:
    gate = Gate(policy, broker=MockBroker(lambda r: "approve"))
    ran: list[int] = []
    with pytest.raises(Denied) as err:
        gate.run({"tool": "payment.send", "args": {"amount": 5000, "recipient": "mallory"}}, lambda a: ran.append(1))
    assert not ran
    d = err.value.decision
    assert err.value.code == "policy" and d.decision == "deny" and d.rules == ("pay-100", "pay-blocked")
    assert "Blocked recipient" in str(err.value) and "pay-blocked" in str(err.value)


def test_escalation_runs_once_approved(policy) -> None:
    broker = MockBroker(lambda r: "approve")
    gate = Gate(policy, broker=broker)
    assert gate.run(PAY, lambda a: ("sent", a.args["amount"])) == ("sent", 250)
    request = broker.seen[0]
    assert broker.get(request.id).status == "executed" and request.rules == ("pay-100",)
    assert kinds(broker.receipts) == ["decision", "request", "vote", "resolution", "release", "execution"]


def test_escalation_denied_by_a_reviewer(policy) -> None:
    gate = Gate(policy, broker=MockBroker(lambda r: "deny"))
    ran: list[int] = []
    with pytest.raises(Denied) as err:
        gate.run(PAY, lambda a: ran.append(1))
    assert err.value.code == "denied" and not ran and err.value.request.status == "denied"


def test_escalation_times_out_closed(policy, clock: Clock) -> None:
    broker = MockBroker(lambda r: None, clock=clock)
    gate = Gate(policy, broker=broker, sleep=clock.sleep, timeout=60)
    ran: list[int] = []
    start = clock()
    with pytest.raises(Denied) as err:
        gate.run(PAY, lambda a: ran.append(1))
    assert err.value.code == "timed_out" and not ran
    assert 60 <= clock() - start < 62  # the gate's timeout capped the tier's 4h


def test_escalation_without_a_broker_is_denied(policy) -> None:
    with pytest.raises(Denied) as err:
        Gate(policy).run(PAY, lambda a: 1)
    assert err.value.code == "no_broker"


def test_pending_handle_poll_then_run_once(policy) -> None:
    broker = MockBroker(lambda r: None)
    gate = Gate(policy, broker=broker)
    pending = gate.submit(PAY)
    assert isinstance(pending, Pending) and pending.status() == "pending" and not pending.done()
    assert pending.wait(timeout=0) == "pending"
    broker.approve(pending.request_id, "alice")
    assert pending.done() and pending.status() == "approved"
    assert pending.run(lambda a: "sent") == "sent"
    with pytest.raises(Denied) as err:
        pending.run(lambda a: "again")
    assert err.value.code == "replay"
    resumed = gate.resume(pending.request_id)  # another process, same request: the broker refuses
    with pytest.raises(Denied) as err:
        resumed.run(lambda a: "again")
    assert err.value.code == "replay"
    assert [r.body["refusal"] for r in broker.receipts.entries() if r.kind == "refusal"] == ["replay", "replay"]


def test_allowed_calls_also_run_once_per_handle(policy) -> None:
    pending = Gate(policy).submit({"tool": "kb.search"})
    assert pending.status() == "allowed" and pending.run(lambda a: 1) == 1
    with pytest.raises(Denied):
        pending.run(lambda a: 2)


def test_a_call_changed_after_approval_is_refused_as_drift(policy) -> None:
    broker = MockBroker(lambda r: "approve")
    gate = Gate(policy, broker=broker)
    call = Action(tool="payment.send", agent="bot", args={"amount": 250, "recipient": "ACME"})
    pending = gate.submit(call)
    assert pending.status() == "approved"
    call.args["recipient"] = "mallory"  # the same dict, changed while the approval was pending
    ran: list[int] = []
    with pytest.raises(Denied) as err:
        pending.run(lambda a: ran.append(1))
    assert err.value.code == "drift" and not ran
    refusal = [r.body for r in broker.receipts.entries() if r.kind == "refusal"][0]
    assert refusal["refusal"] == "drift" and refusal["attempted_hash"] != refusal["evidence_hash"]


def test_execute_failure_is_recorded_and_raised(policy) -> None:
    broker = MockBroker(lambda r: "approve")
    gate = Gate(policy, broker=broker)
    with pytest.raises(ZeroDivisionError):
        gate.run({"tool": "kb.search"}, lambda a: 1 / 0)
    last = list(broker.receipts.entries())[-1]
    assert last.kind == "execution" and last.body["outcome"] == "failed" and "ZeroDivisionError" in last.body["error"]


# ---- guard ------------------------------------------------------------------------------------------------
def test_guard_builds_the_action_from_bound_arguments(policy) -> None:
    broker = MockBroker(lambda r: "approve")
    gate = Gate(policy, broker=broker, agent="bot")

    @gate.guard("payment.send")
    def send(amount: float, recipient: str = "ACME", *notes: str, **extra: object) -> str:
        return f"{amount} to {recipient}"

    assert send(250, memo="inv-1") == "250 to ACME"
    assert broker.seen[0].action["args"] == {"amount": 250, "recipient": "ACME", "notes": [], "memo": "inv-1"}
    with pytest.raises(Denied):
        send(5, "mallory")
    assert send.gate is gate and send.__name__ == "send"

    class Client:
        @gate.guard("db.delete")
        def delete(self, table: str) -> str:
            return f"deleted {table}"

    assert Client().delete("t") == "deleted t"

    @gate.guard("payment.send", args=lambda invoice: {"amount": invoice["total"]})
    def pay_invoice(invoice: dict) -> str:
        return "paid"

    assert pay_invoice({"total": 20}) == "paid"


def test_guard_on_async_functions_and_arun_do_not_block_the_loop(policy) -> None:
    broker = MockBroker(lambda r: None)
    gate = Gate(policy, broker=broker, poll=0.01, timeout=5)  # a blocked loop: the reviewer never runs, time out

    @gate.guard("payment.send")
    async def send(amount: float) -> str:
        await asyncio.sleep(0)
        return f"sent {amount}"

    async def reviewer() -> int:
        ticks = 0
        while not broker.list() or ticks < 10:  # send is waiting by now: only a free loop lets this run
            ticks += 1
            await asyncio.sleep(0.005)
        broker.approve(broker.list()[0].id, "alice")
        return ticks

    async def main() -> tuple[str, int, str]:
        result, ticks = await asyncio.gather(send(500), reviewer())
        allowed = await gate.arun({"tool": "kb.search"}, lambda a: "sync result")
        return result, ticks, allowed

    result, ticks, allowed = asyncio.run(main())
    assert result == "sent 500" and allowed == "sync result" and ticks >= 10


def test_async_denial(policy) -> None:
    gate = Gate(policy, broker=MockBroker(lambda r: "deny"))

    async def main() -> None:
        await gate.arun(PAY, lambda a: None)

    with pytest.raises(Denied):
        asyncio.run(main())


# ---- reload -----------------------------------------------------------------------------------------------
def test_reload_swaps_the_policy_and_keeps_the_window_history(tmp_path: Path, policy, clock: Clock) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    gate = Gate(path, clock=clock, agent="bot")
    for _ in range(3):
        gate.check({"tool": "email.send"})
    path.write_text(POLICY.replace("gt: 3}", "gt: 100}").replace("gt: 100}}, reason", "gt: 1000}}, reason"))
    gate.reload()
    assert gate.check(PAY).decision == "allow"  # the new threshold
    assert gate.check({"tool": "email.send"}).decision == "allow"
    path.write_text(POLICY)
    gate.reload()
    assert gate.check({"tool": "email.send"}).decision == "deny"  # 5 calls kept across reloads


def test_a_reload_that_fails_validation_keeps_the_old_policy(tmp_path: Path, policy) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    gate = Gate(path)
    old = gate.policy
    path.write_text(POLICY.replace("action: deny", "action: maybe"))
    with pytest.raises(PolicyError):
        gate.reload()
    assert gate.policy is old
    assert gate.check({"tool": "payment.send", "args": {"amount": 5, "recipient": "mallory"}}).decision == "deny"


def test_an_invalid_policy_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nname: x\nrules: [{id: r, tool: t, action: nope}]\n")
    with pytest.raises(PolicyError):
        Gate(path)
    with pytest.raises(ValueError):
        Gate(parse_policy(POLICY), mode="audit")
