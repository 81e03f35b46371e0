"""`Gate.check` means what `decide_log` and replay mean: on the shared corpus, and under Hypothesis for windows.

A gate sees calls as they arrive, so a log is fed to it in arrival order: by timestamp, log order among
equal timestamps (a stable sort). That is exactly the set `decide_log` counts for each call (the calls
earlier in the log, plus later ones with a strictly earlier timestamp), so the two must agree on every
decision, rule, error, tier, reason and detail, whatever order the log itself is in.
"""

from __future__ import annotations

import dataclasses

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit import Gate, Policy, decide, parse_policy
from gatekit.action import parse_ts
from gatekit.enforce.gate import PINNED
from gatekit.policy.decide import Decision, decide_log
from gatekit.policy.names import variant_of
from policy.corpus import load_all
from policy.harness import run_sql

from .conftest import Clock

CASES = [case for f in load_all() for case in f.cases]
BASE = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _ts(action: dict[str, Any]) -> float:
    ts = action.get("ts")
    if ts is None:
        return 0.0
    return (parse_ts(ts) if isinstance(ts, str) else ts).timestamp()


def arrival_order(actions: list[dict[str, Any]]) -> list[int]:
    return sorted(range(len(actions)), key=lambda i: _ts(actions[i]))  # stable: log order among ties


def pinned(record: dict[str, Any]) -> dict[str, Any]:
    """The recorded `ts`, `agent`, `session`, `user` and `context`, as a host replaying its own log asserts
    them (a gate never takes them from the payload)."""
    return {name: record[name] for name in PINNED if name in record}


def through_gate(policy: Policy, actions: list[dict[str, Any]]) -> list[Any]:
    """Each action's decision by one gate fed the log in arrival order, reported in log order."""
    gate = Gate(policy, mode="enforce", clock=Clock())
    out: list[Any] = [None] * len(actions)
    for i in arrival_order(actions):
        out[i] = gate.check(actions[i], **pinned(actions[i]))
    return out


def gated(policy: Policy, actions: list[dict[str, Any]]) -> list[Decision]:
    """`decide_log`'s decisions, except that a tool differing from a policy's only by case or Unicode form
    is denied (enforce mode's variant check), with the same rules, errors and details."""
    out = decide_log(policy, actions)
    for i, action in enumerate(actions):
        tool = action.get("tool")
        variant = variant_of(policy, tool) if isinstance(tool, str) else None
        if variant is not None:
            d = out[i]
            out[i] = dataclasses.replace(
                d, decision="deny", tier=None,
                reasons=(f"tool `{tool}` differs from `{variant}` only by case or Unicode form",))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_agrees_with_decide_log_on_the_corpus(case) -> None:
    assert through_gate(case.policy, case.actions) == gated(case.policy, case.actions)


def test_the_corpus_has_tool_variants_the_gate_denies() -> None:
    found = []
    for case in CASES:
        for action, got in zip(case.actions, through_gate(case.policy, case.actions)):
            tool = action.get("tool")
            if isinstance(tool, str) and variant_of(case.policy, tool) is not None:
                assert got.decision == "deny", case.id
                found.append(case.id)
    assert found  # the exception in `gated` is exercised, not vacuous


def test_the_corpus_has_window_cases_in_and_out_of_order() -> None:
    window_cases = [c for c in CASES if c.file.startswith("windows")]
    assert window_cases
    assert any(arrival_order(c.actions) != list(range(len(c.actions))) for c in window_cases)


# ---- Hypothesis: window rules -----------------------------------------------------------------------------
TOOLS = ["a", "a.x", "b"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5),
    st.sampled_from([0.1, 0.2, 0.3, 0.7, 1e16, -1e16, 1e-300, 2.5, 1e308, float("nan"), float("inf")]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["0.1", " 2e3 ", "1,810", "x", "1e400"]), st.just([1]), st.just({"k": 1}),
)


@st.composite
def window_policies(draw: Any) -> str:
    rules = []
    for i in range(draw(st.integers(1, 3))):
        tool = draw(st.sampled_from(["a", "a*", "[ab]", "b", "*"]))
        per = draw(st.sampled_from([None, "agent", "session", "user", "tool"]))
        window = draw(st.sampled_from(["1s", "3s", "10s", "1m"]))
        op = draw(st.sampled_from(["gt", "gte"]))
        per_text = f"per: {per}, " if per else ""
        if draw(st.booleans()):
            n = draw(st.integers(0, 4))
            when = f"{{rate: {{{per_text}window: {window}, {op}: {n}}}}}"
        else:
            t = draw(st.sampled_from([0, 0.3, 0.6, 1, 1.0000000000000002, 3, 1e16, 2e16, -0.1]))
            when = f"{{sum: {{field: args.v, {per_text}window: {window}, {op}: {t!r}}}}}"
        action = draw(st.sampled_from(["allow", "escalate", "deny"]))
        mode = draw(st.sampled_from(["", ", mode: shadow"]))
        rules.append(f"  - {{id: w{i}, tool: '{tool}', action: {action}{mode}, when: {when}}}")
    return "version: 1\nname: windows\ndefault: allow\nrules:\n" + "\n".join(rules) + "\n"


@st.composite
def logs(draw: Any, spread: int = 15) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 30))):
        call: dict[str, Any] = {"tool": draw(st.sampled_from(TOOLS)),
                                "ts": BASE + timedelta(seconds=draw(st.integers(0, spread)),
                                                       milliseconds=draw(st.sampled_from([0, 0, 1, 500, 999])))}
        for key in ("agent", "session", "user"):
            value = draw(st.sampled_from(["A", "B", None]))
            if value is not None:
                call[key] = value
        if draw(st.integers(0, 4)):
            call["args"] = {"v": draw(VALUES)}
        out.append(call)
    return out


def outcomes(decisions: list[Any]) -> list[tuple[Any, ...]]:
    return [(d.decision, tuple(d.rules), tuple(d.errors), d.tier) for d in decisions]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=window_policies(), actions=logs())
def test_gate_agrees_with_decide_log_on_windows(text: str, actions: list[dict[str, Any]]) -> None:
    policy = parse_policy(text)
    assert through_gate(policy, actions) == decide_log(policy, actions)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(text=window_policies(), actions=logs())
def test_gate_agrees_with_replay_on_windows(text: str, actions: list[dict[str, Any]]) -> None:
    policy = parse_policy(text)
    assert outcomes(through_gate(policy, actions)) == run_sql(policy, actions)


@given(text=window_policies(), actions=logs(spread=8))
def test_out_of_order_arrivals_count_what_arrived_before(text: str, actions: list[dict[str, Any]]) -> None:
    """Fed in log order, a gate counts the calls that arrived before each one (in its window), as `decide`
    given that history does: nothing is dropped while every call is within a window of the newest."""
    policy = parse_policy(text.replace("window: 1s", "window: 1m").replace("window: 3s", "window: 1m")
                          .replace("window: 10s", "window: 1m"))
    gate = Gate(policy, clock=Clock())
    for i, action in enumerate(actions):
        assert gate.check(action, **pinned(action)) == decide(policy, action, actions[:i])


def test_float_rounding_near_a_threshold_matches_exactly() -> None:
    """Ten 0.1s add up (in ascending order, as doubles) to 0.9999999999999999, below 1, though their exact
    sum is above it: the gate must not take the shortcut of its exact sums here."""
    policy = parse_policy("version: 1\nname: f\nrules:\n"
                          "  - {id: s, tool: a, action: deny, when: {sum: {field: args.v, window: 1h, gte: 1}}}\n")
    log = [{"tool": "a", "ts": BASE + timedelta(seconds=i), "args": {"v": 0.1}} for i in range(11)]
    assert math.fsum([0.1] * 10) > 0.9999999999999999  # the exact and the float sums really differ
    got = [d.decision for d in through_gate(policy, log)]
    assert got == [d.decision for d in decide_log(policy, log)] == ["allow"] * 10 + ["deny"]


def test_a_busy_window_is_decided_from_exact_sums() -> None:
    policy = parse_policy("version: 1\nname: f\nrules:\n"
                          "  - {id: s, tool: a, action: deny, when: {sum: {field: args.v, per: agent, window: 1h, gt: 50000}}}\n"
                          "  - {id: r, tool: a, action: escalate, when: {rate: {per: agent, window: 1h, gte: 300}}}\n")
    log = [{"tool": "a", "agent": "A", "ts": BASE + timedelta(seconds=i), "args": {"v": (i * 37) % 211 + 0.01}}
           for i in range(600)]
    assert through_gate(policy, log) == decide_log(policy, log)
