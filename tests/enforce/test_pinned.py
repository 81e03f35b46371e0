"""Pinned calls: what a prompt-injected agent writes into a call's payload never decides.

The model writes the payload, so its `ts`, `agent`, `session`, `user` and `context` are only claimed: the
gate decides on its own configuration, `scope` and host code's keyword assertions, stamps `ts` from its
clock, and records what the payload claimed in the decision receipt. Also here: non-object `args`, and
tool names that differ from the policy's only by case or Unicode form.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit import Action, Denied, Gate, decide, parse_policy
from gatekit.enforce import Broker, Receipts, Refused
from gatekit.enforce.gate import PINNED

from .conftest import Clock

POLICY = """
version: 1
name: pinned
default: allow
tiers:
  standard: {approvals: 1, timeout: 1h}
rules:
  - {id: pay, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 100}}}
  - {id: prod-db, tool: "db.*", action: deny, when: {context.env: prod}}
  - {id: mail-burst, tool: email.send, action: deny, when: {rate: {per: agent, window: 10m, gt: 3}}}
  - {id: search-burst, tool: kb.search, action: deny, when: {rate: {per: session, window: 10m, gt: 2}}}
  - {id: export-ann, tool: report.export, action: deny, when: {user: {ne: u-ann}}}
  - {id: read-file, tool: fs.readFile, action: escalate, tier: standard}
"""
FAR = "2999-01-01T00:00:00Z"


@pytest.fixture
def pinned_policy():
    return parse_policy(POLICY, source="pinned")


@pytest.fixture
def receipts(tmp_path: Path) -> Receipts:
    return Receipts(tmp_path / "audit.db", durable=False)


def decisions(receipts: Receipts) -> list[dict[str, Any]]:
    """The decision receipts' bodies, in order."""
    return [r.body for r in receipts.entries() if r.kind == "decision"]


def attempt(gate: Gate, call: dict[str, Any] | Action, **asserted: Any) -> str:
    """`executed`, or the code of the `Denied` that refused it."""
    try:
        gate.run(call, lambda a: None, **asserted)
    except Denied as exc:
        return exc.code
    return "executed"


# ---- the payload's identity is claimed, not used ---------------------------------------------------------------
def test_a_payload_user_cannot_make_a_self_approval_look_like_someone_elses(tmp_path: Path, pinned_policy,
                                                                               clock: Clock) -> None:
    broker = Broker(tmp_path / "approvals.db", durable=False, clock=clock)
    gate = Gate(pinned_policy, broker=broker, agent="billing-bot", user="u-alice", sleep=clock.sleep)
    pending = gate.submit({"tool": "payment.send", "user": "u-bob", "args": {"amount": 250}})
    request = broker.get(pending.request_id)
    assert request.user == "u-alice" and request.agent == "billing-bot"
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "u-alice")
    assert err.value.code == "self_approval"
    assert broker.approve(request.id, "u-bob").status == "approved"  # u-bob really is someone else
    [body] = decisions(broker.receipts)
    assert body["action"]["user"] == "u-alice" and body["claimed"] == {"user": "u-bob"}
    broker.close()


def test_a_payload_user_does_not_decide(receipts: Receipts, pinned_policy) -> None:
    gate = Gate(pinned_policy, receipts=receipts, user="u-eve")
    assert gate.check({"tool": "report.export", "user": "u-ann"}).decision == "deny"
    assert attempt(gate, {"tool": "report.export", "user": "u-ann"}) == "policy"
    assert attempt(gate, Action(tool="report.export", user="u-ann")) == "policy"  # an Action is a payload too
    assert [(b["action"]["user"], b["claimed"]) for b in decisions(receipts)] == [("u-eve", {"user": "u-ann"})] * 2


def test_rotating_the_payload_agent_does_not_dodge_a_per_agent_rate_limit(receipts: Receipts, pinned_policy,
                                                                          clock: Clock) -> None:
    gate = Gate(pinned_policy, receipts=receipts, agent="bot", clock=clock)
    outcomes = [attempt(gate, {"tool": "email.send", "agent": f"bot-{i}"}) for i in range(6)]
    assert outcomes == ["executed"] * 3 + ["policy"] * 3
    bodies = decisions(receipts)
    assert {b["action"]["agent"] for b in bodies} == {"bot"}
    assert [b["claimed"] for b in bodies] == [{"agent": f"bot-{i}"} for i in range(6)]
    assert [b["decision"]["rules"] for b in bodies] == [[]] * 3 + [["mail-burst"]] * 3


def test_rotating_the_payload_session_does_not_dodge_a_per_session_rate_limit(receipts: Receipts, pinned_policy,
                                                                              clock: Clock) -> None:
    gate = Gate(pinned_policy, receipts=receipts, session="s-1", clock=clock)
    outcomes = [attempt(gate, {"tool": "kb.search", "session": f"s-{i + 100}"}) for i in range(4)]
    assert outcomes == ["executed"] * 2 + ["policy"] * 2
    assert [(b["action"]["session"], b["claimed"]) for b in decisions(receipts)] == \
        [("s-1", {"session": f"s-{i + 100}"}) for i in range(4)]


def test_a_payload_context_cannot_turn_the_gates_prod_into_staging(receipts: Receipts, pinned_policy) -> None:
    gate = Gate(pinned_policy, receipts=receipts, context={"env": "prod"})
    call = {"tool": "db.drop", "context": {"env": "staging"}}
    assert gate.check(call).decision == "deny"
    ran: list[Action] = []
    with pytest.raises(Denied) as err:
        gate.run(call, ran.append)
    assert err.value.code == "policy" and err.value.decision.rules == ("prod-db",) and not ran
    with gate.scope(context={"note": "a scope adds keys"}):
        assert attempt(gate, {"tool": "db.drop", "context": {"env": "dev", "note": "x"}}) == "policy"
    [first, second] = decisions(receipts)
    assert first["action"]["context"] == {"env": "prod"} and first["claimed"] == {"context": {"env": "staging"}}
    assert second["action"]["context"] == {"env": "prod", "note": "a scope adds keys"}
    assert second["claimed"] == {"context": {"env": "dev", "note": "x"}}


def test_a_payload_ts_in_2999_does_not_disable_the_rate_windows(receipts: Receipts, pinned_policy,
                                                                clock: Clock) -> None:
    """One far-future call used to move every window of the gate past all the others, for every key."""
    gate = Gate(pinned_policy, receipts=receipts, agent="bot", clock=clock)
    assert attempt(gate, {"tool": "email.send", "ts": FAR}, agent="other") == "executed"
    clock.advance(1)
    far = datetime(2999, 1, 1, tzinfo=timezone.utc)
    outcomes = [attempt(gate, {"tool": "email.send", "ts": far if i % 2 else FAR}) for i in range(5)]
    assert outcomes == ["executed"] * 3 + ["policy"] * 2  # the window still counts: the 4th call is denied
    bodies = decisions(receipts)
    assert {b["action"]["ts"][:4] for b in bodies} == {"2026"}  # the gate's clock stamped every call
    assert [b["claimed"] for b in bodies] == [{"ts": FAR}] * 6  # a datetime is recorded as its ISO text
    clock.advance(600)
    assert attempt(gate, {"tool": "email.send"}) == "executed"  # the gate's own clock moves its windows


def test_an_unchanged_claim_is_not_recorded(receipts: Receipts, pinned_policy) -> None:
    gate = Gate(pinned_policy, receipts=receipts, agent="bot", user="u-ann", context={"env": "dev"})
    attempt(gate, {"tool": "kb.search", "agent": "bot", "user": "u-ann", "context": {"env": "dev"}})
    attempt(gate, {"tool": "kb.search", "agent": "bot", "user": "u-cy"})
    assert [b.get("claimed") for b in decisions(receipts)] == [None, {"user": "u-cy"}]


# ---- host code's keyword assertions do decide -----------------------------------------------------------------
@pytest.mark.parametrize("tool, asserted, claims, expected", [
    ("report.export", {"user": "u-ann"}, {"user": "u-eve"}, "allow"),
    ("report.export", {"user": "u-eve"}, {"user": "u-ann"}, "deny"),
    ("db.drop", {"context": {"env": "staging"}}, {"context": {"env": "prod"}}, "allow"),
    ("db.drop", {"context": {"env": "prod"}}, {"context": {"env": "staging"}}, "deny"),
])
def test_keyword_assertions_decide(pinned_policy, tool: str, asserted: dict[str, Any], claims: dict[str, Any],
                                   expected: str) -> None:
    gate = Gate(pinned_policy, user="u-eve", context={"env": "prod"})
    d = gate.check({"tool": tool, **claims}, **asserted)
    assert d.decision == expected and d == decide(pinned_policy, {"tool": tool, **asserted})


def test_keyword_agents_and_times_are_the_hosts_to_assert(receipts: Receipts, pinned_policy, clock: Clock) -> None:
    """A host serving several agents through one gate (or replaying a log) asserts each call's agent and time."""
    gate = Gate(pinned_policy, receipts=receipts, agent="bot", clock=clock)
    ts = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
    outcomes = [attempt(gate, {"tool": "email.send", "agent": "bot"}, agent=f"agent-{i % 2}", ts=ts)
                for i in range(8)]
    assert outcomes == ["executed"] * 6 + ["policy"] * 2  # two agents, three calls each in the window
    bodies = decisions(receipts)
    assert [b["action"]["agent"] for b in bodies] == [f"agent-{i % 2}" for i in range(8)]
    assert {b["action"]["ts"] for b in bodies} == {"2026-11-02T12:00:00Z"}
    assert [b["claimed"] for b in bodies] == [{"agent": "bot"}] * 8  # the payload's, kept for the audit


def test_submit_and_arun_take_keyword_assertions(tmp_path: Path, pinned_policy, clock: Clock) -> None:
    broker = Broker(tmp_path / "approvals.db", durable=False, clock=clock)
    gate = Gate(pinned_policy, broker=broker, user="u-eve", sleep=clock.sleep, timeout=5)
    pending = gate.submit({"tool": "payment.send", "user": "u-mallory", "args": {"amount": 500}}, user="u-ann")
    assert broker.get(pending.request_id).user == "u-ann"

    async def main() -> list[str]:
        out = []
        for asserted in ({}, {"user": "u-ann"}):
            try:
                out.append(await gate.arun({"tool": "report.export", "user": "u-ann"}, lambda a: a.user, **asserted))
            except Denied as exc:
                out.append(exc.code)
        return out

    assert asyncio.run(main()) == ["policy", "u-ann"]
    broker.close()


# ---- a law: no payload claim changes a decision -----------------------------------------------------------------
CLAIMS = st.one_of(st.none(), st.text(max_size=6), st.integers(), st.sampled_from([FAR, "yesterday", "u-ann", ""]),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.sampled_from(["env", "x"]),
                                                                        st.sampled_from(["prod", "staging", 1])))
CALLS = st.lists(st.tuples(
    st.sampled_from(["payment.send", "db.drop", "email.send", "kb.search", "report.export", "fs.readFile"]),
    st.integers(0, 300), st.dictionaries(st.sampled_from(PINNED), CLAIMS), st.integers(0, 200)), max_size=25)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(calls=CALLS)
def test_no_claim_in_the_payload_changes_any_decision(calls: list[tuple[str, int, dict[str, Any], int]]) -> None:
    policy = parse_policy(POLICY)
    clock = Clock()
    config = {"agent": "bot", "session": "s-1", "user": "u-eve", "context": {"env": "prod"}, "clock": clock}
    claimed, bare = Gate(policy, **config), Gate(policy, **config)
    for tool, amount, claims, wait in calls:
        call = {"tool": tool, "args": {"amount": amount}}
        assert claimed.check({**call, **claims}) == bare.check(call), claims
        clock.advance(wait)


# ---- args must be an object -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [[1, 2], "amount=5", 5, 2.5, True, ["payment"]])
def test_non_object_args_are_refused_as_malformed(receipts: Receipts, pinned_policy, args: Any) -> None:
    gate = Gate(pinned_policy, receipts=receipts)
    call = {"tool": "kb.search", "args": args}
    d = gate.check(call)
    assert d.decision == "deny" and "`args` must be an object" in d.reasons[0]
    ran: list[Action] = []
    with pytest.raises(Denied) as err:
        gate.run(call, ran.append)
    assert err.value.code == "malformed" and not ran
    with pytest.raises(Denied) as err:
        gate.submit(call)
    assert err.value.code == "malformed"
    assert [b["decision"]["decision"] for b in decisions(receipts)] == ["deny", "deny"]


def test_absent_or_null_args_are_an_empty_object(pinned_policy) -> None:
    gate = Gate(pinned_policy)
    assert gate.check({"tool": "kb.search"}).decision == gate.check({"tool": "kb.search", "args": None}).decision \
        == "allow"


# ---- tool names that differ only by case or Unicode form ----------------------------------------------------------
@pytest.mark.parametrize("tool", ["Payment.Send", "ｐａｙｍｅｎｔ.send", "payment.sEnd", "PAYMENT.SEND",
                                  "payment.ｓｅｎｄ"])
def test_a_variant_of_a_policy_tool_is_denied(receipts: Receipts, pinned_policy, tool: str) -> None:
    gate = Gate(pinned_policy, receipts=receipts)
    call = {"tool": tool, "args": {"amount": 5}}  # the exact name would be allowed at this amount
    d = gate.check(call)
    assert d.decision == "deny"
    assert d.reasons == (f"tool `{tool}` differs from `payment.send` only by case or Unicode form",)
    ran: list[Action] = []
    with pytest.raises(Denied) as err:
        gate.run(call, ran.append)
    assert err.value.code == "policy" and not ran
    [body] = decisions(receipts)
    assert body["action"]["tool"] == tool and body["decision"]["decision"] == "deny"


def test_the_exact_name_is_decided_normally(pinned_policy) -> None:
    gate = Gate(pinned_policy)
    for amount, expected in ((5, "allow"), (500, "escalate")):
        call = {"tool": "payment.send", "args": {"amount": amount}}
        assert gate.check(call) == decide(pinned_policy, call) and gate.check(call).decision == expected


def test_a_glob_rule_catches_a_variant(pinned_policy) -> None:
    gate = Gate(pinned_policy, context={"env": "dev"})  # not prod: `db.*` calls are allowed as written
    assert gate.check({"tool": "db.delete"}).decision == "allow"
    d = gate.check({"tool": "DB.delete"})
    assert d.decision == "deny" and d.reasons == ("tool `DB.delete` differs from `db.*` only by case or Unicode form",)
    assert gate.check({"tool": "ｄｂ.delete"}).decision == "deny"


def test_camel_case_names_the_policy_spells_are_decided_normally(pinned_policy) -> None:
    gate = Gate(pinned_policy)
    d = gate.check({"tool": "fs.readFile"})
    assert d.decision == "escalate" and d.rules == ("read-file",)
    for tool in ("fs.readfile", "FS.READFILE", "fs.ReadFile"):
        d = gate.check({"tool": tool})
        assert d.decision == "deny" and "differs from `fs.readFile`" in d.reasons[0], tool
    assert gate.check({"tool": "Weather.Get"}).decision == "allow"  # named by no rule in any spelling


def test_after_a_reload_the_variant_check_follows_the_new_policy(pinned_policy) -> None:
    gate = Gate(pinned_policy)
    assert gate.check({"tool": "Payment.Send", "args": {"amount": 5}}).decision == "deny"
    assert gate.check({"tool": "Mail.Send"}).decision == "allow"
    renamed = parse_policy(POLICY.replace("tool: payment.send", "tool: Payment.Send")
                           .replace("tool: email.send", "tool: mail.send"))
    gate.reload(renamed)
    assert gate.check({"tool": "Payment.Send", "args": {"amount": 500}}).decision == "escalate"  # now the name
    d = gate.check({"tool": "payment.send", "args": {"amount": 5}})
    assert d.decision == "deny" and "differs from `Payment.Send`" in d.reasons[0]  # and this the variant
    assert gate.check({"tool": "Mail.Send"}).decision == "deny"
    gate.reload(pinned_policy)
    assert gate.check({"tool": "payment.send", "args": {"amount": 5}}).decision == "allow"
