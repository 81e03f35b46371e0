"""The scalar evaluator's own surface: calls without timestamps, `history`, and the shared value helpers."""

from __future__ import annotations

import pytest

from gatekit.policy import decide, parse_policy
from gatekit.policy.decide import decide_log
from gatekit.policy.values import compile_re2, glob_to_re2, numeric_string, parse_duration

TIME = parse_policy("""
version: 1
name: time
rules:
  - {id: hour, tool: t, action: escalate, when: {time.hour: {gte: 0}}}
  - {id: no-hour, tool: t, action: allow, when: {time.hour: {exists: false}}}
  - {id: burst, tool: b, action: deny, when: {rate: {window: 1m, gte: 2}}}
""")


def test_a_call_without_a_timestamp_has_no_time_fields() -> None:
    d = decide(TIME, {"tool": "t"})
    assert (d.decision, d.rules, d.errors) == ("allow", ("no-hour",), ())


def test_a_call_without_a_timestamp_never_matches_a_window() -> None:
    history = [{"tool": "b", "ts": "2026-01-01T00:00:00Z"}] * 3
    assert decide(TIME, {"tool": "b"}, history).decision == "allow"


def test_history_counts_earlier_calls_in_the_window() -> None:
    now = {"tool": "b", "ts": "2026-01-01T00:01:00Z"}
    assert decide(TIME, now, [{"tool": "b", "ts": "2026-01-01T00:00:00.000001Z"}]).decision == "deny"
    assert decide(TIME, now, [{"tool": "b", "ts": "2026-01-01T00:00:00Z"}]).decision == "allow"
    assert decide(TIME, now, [{"tool": "x", "ts": "2026-01-01T00:00:30Z"}]).decision == "allow"


def test_decide_log_is_decide_with_the_log_as_history() -> None:
    log = [{"tool": "b", "ts": "2026-01-01T00:00:05Z"}, {"tool": "b", "ts": "2026-01-01T00:00:00Z"},
           {"tool": "b", "ts": "2026-01-01T00:00:05Z"}]
    got = [d.decision for d in decide_log(TIME, log)]
    # line 0 sees line 1 (an earlier instant, later in the log) but not line 2 (same instant, later line)
    assert got == ["deny", "allow", "deny"]
    assert decide(TIME, log[0], [log[1]]).decision == "deny"


def test_decision_carries_reasons_and_details() -> None:
    policy = parse_policy("""
version: 1
name: r
rules:
  - {id: big, tool: pay, action: escalate, reason: Payments over 100, when: {args.amount: {gt: 100}}}
""")
    d = decide(policy, {"tool": "pay", "args": {"amount": "1,810"}})
    assert (d.decision, d.errors) == ("escalate", ("big",))
    assert d.details and d.details[0].startswith("big: ")
    d = decide(policy, {"tool": "pay", "args": {"amount": 500}})
    assert d.reasons == ("Payments over 100",) and d.to_dict()["rules"] == ["big"]


@pytest.mark.parametrize("text,value", [
    ("1810.00", 1810.0), (" 2e3 ", 2000.0), ("\t-0\n", -0.0), ("1E+2", 100.0), ("0.5", 0.5),
    ("1,810", None), ("0x10", None), ("1_000", None), ("NaN", None), ("Infinity", None), ("+1", None),
    ("01", None), (".5", None), ("5.", None), ("", None), ("\u00a01", None), ("\uff11", None),
    ("1e999", False), ("-1e999", False),
])
def test_numeric_strings(text: str, value: object) -> None:
    assert numeric_string(text) == value


@pytest.mark.parametrize("glob,name,hit", [
    ("db.*", "db.read", True), ("db.*", "db.", True), ("db.*", "dbxread", False), ("db.*", "DB.read", False),
    ("fs.rea?", "fs.read", True), ("fs.rea?", "fs.rea", False), ("[ab]x", "bx", True), ("[!ab]x", "bx", False),
    ("[!ab]x", "cx", True), ("v[0-9]", "v5", True), ("odd[x", "odd[x", True), ("a+b", "a+b", True),
    ("a+b", "aab", False), ("*", "", True), ("*", "a\nb", True), ("?", "é", True), ("[]]", "]", True),
])
def test_globs(glob: str, name: str, hit: bool) -> None:
    assert (compile_re2(glob_to_re2(glob)).fullmatch(name) is not None) is hit


@pytest.mark.parametrize("text,us", [
    ("500ms", 500_000), ("30s", 30_000_000), ("10m", 600_000_000), ("4h", 14_400_000_000),
    ("1d", 86_400_000_000), ("2w", 1_209_600_000_000), ("1h30m", 5_400_000_000), (90, 90_000_000),
])
def test_durations(text: object, us: int) -> None:
    assert parse_duration(text) == us


@pytest.mark.parametrize("text", ["", "0s", "-5m", "4 hours", "1.5h", "h", True, None, 0, -3, "10m ago"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
