"""Hypothesis: random valid policies and random logs give the same outcome in `decide` and in the SQL.

Policies are built as dicts, dumped as JSON (which is YAML) and read with `parse_policy`, so every one goes
through the loader like a file would. Logs use tiny alphabets so windows, ties and per keys collide.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gatekit.action import parse_ts
from gatekit.policy import Policy, parse_policy
from gatekit.policy._history import History
from gatekit.policy._view import View
from gatekit.policy.closure import closure, closure_log
from gatekit.policy.decide import decide_log, evaluator
from gatekit.policy.model import VERDICTS

from .harness import details_python, details_sql, run_both, run_python, run_sql

# ---- policies ------------------------------------------------------------------------------------------
TOOL_NAMES = ["pay.send", "pay.refund", "db.drop", "Db.drop", "fs.read", "x", "é.x"]
TOOL_PATTERNS = TOOL_NAMES + ["pay.*", "*.drop", "?b.drop", "[Dd]b.*", "[!p]*", "*", "fs.rea?", "odd[x", "?.x"]
WORDS = ["a", "b", "ab", "A", "", "é", "🚀", "prod", "1", " 2e0 ", "1.50", "-0", "1e999", "1,810", "true"]
REGEXES = ["^a", "b$", "a|b", "(?i)A", ".", "^$", "\\d", "é", "^\\w+$", "a.b", "(?s)a.b", "^[^b]*$", "[\\x{e0}-\\x{ff}]"]
FIELDS = ["args.a", "args.b", "args.a.b", "args.l.0", "args.l.1.a", "context.c", "agent", "session", "user",
          "tool"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DURATIONS = ["1s", "2s", "5s", "30s", "1m", "10m", 3, "1m30s"]
PER = [None, "agent", "session", "user", "tool"]

numbers = st.one_of(st.integers(-3, 300), st.sampled_from([0.5, -1.5, 100.25, 1e20, -0.0, 1810.0]))
scalars = st.one_of(numbers, st.sampled_from(WORDS), st.booleans())
operand_lists = st.lists(st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=3)


def _tests_on(field: str) -> st.SearchStrategy[dict[str, Any]]:
    if field == "time.hour":
        hours = st.integers(0, 23)
        return st.one_of(
            st.builds(lambda op, h: {op: h}, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), hours),
            st.builds(lambda op, hs: {op: hs}, st.sampled_from(["in", "not_in"]), st.lists(hours, max_size=3)),
            st.builds(lambda b: {"exists": b}, st.booleans()),
            st.builds(lambda w: {"matches": w}, st.sampled_from(REGEXES)),
        )
    if field == "time.weekday":
        days = st.sampled_from(WEEKDAYS)
        return st.one_of(
            st.builds(lambda op, d: {op: d}, st.sampled_from(["eq", "ne"]), days),
            st.builds(lambda op, ds: {op: ds}, st.sampled_from(["in", "not_in"]), st.lists(days, max_size=3)),
            st.builds(lambda op, w: {op: w}, st.sampled_from(["startswith", "endswith", "contains"]),
                      st.sampled_from(["s", "t", "u", "on"])),
        )
    if field == "time.date":
        dates = st.sampled_from(["2026-01-14", "2026-01-15", "2026-01-16"])
        return st.builds(lambda op, d: {op: d}, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), dates)
    return st.one_of(
        st.builds(lambda op, o: {op: o}, st.sampled_from(["eq", "ne"]), st.one_of(scalars, operand_lists)),
        st.builds(lambda op, o: {op: o}, st.sampled_from(["gt", "gte", "lt", "lte"]), numbers),
        st.builds(lambda op, o: {op: o}, st.sampled_from(["in", "not_in"]), operand_lists),
        st.builds(lambda o: {"contains": o}, st.one_of(scalars, operand_lists)),
        st.builds(lambda o: {"matches": o}, st.sampled_from(REGEXES)),
        st.builds(lambda op, o: {op: o}, st.sampled_from(["startswith", "endswith"]), st.sampled_from(WORDS)),
        st.builds(lambda b: {"exists": b}, st.booleans()),
    )


# built once: Hypothesis validates a strategy on first use, which is slow to repeat for every draw
_TESTS_ON = {f: _tests_on(f) for f in FIELDS + ["time.hour", "time.weekday", "time.date"]}


@st.composite
def field_tests(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(sorted(_TESTS_ON)))
    tests = draw(st.lists(_TESTS_ON[field], min_size=1, max_size=2))
    merged: dict[str, Any] = {}
    for t in tests:
        merged.update(t)
    if len(merged) == 1 and "eq" in merged and draw(st.booleans()):
        return {field: merged["eq"]}  # the bare-value form
    return {field: merged}


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["rate", "sum"]))
    spec: dict[str, Any] = {"window": draw(st.sampled_from(DURATIONS))}
    per = draw(st.sampled_from(PER))
    if per:
        spec["per"] = per
    op = draw(st.sampled_from(["gt", "gte"]))
    if kind == "rate":
        spec[op] = draw(st.integers(0, 4))
    else:
        spec["field"] = draw(st.sampled_from(["args.a", "args.b", "context.c", "args.l.0"]))
        spec[op] = draw(st.sampled_from([0, 1, 2.5, 100, -1, 200, 0.3, 0.6]))
    return {kind: spec}


def _conditions(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(field_tests(), field_tests(), windows())
    if depth == 0:
        return leaf
    sub = _conditions(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda items: {"all": items}, st.lists(sub, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(sub, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, sub),
        # several entries in one mapping: all of them must hold
        st.builds(lambda a, b: {**a, **b}, field_tests(), windows()),
    )


CONDITIONS = _conditions(2)  # `when` trees of depth <= 3


@st.composite
def tiers(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    out = {}
    for i in range(draw(st.sampled_from([0, 1, 2, 3, 3]))):
        approvals = draw(st.integers(1, 3))
        spec: dict[str, Any] = {"approvals": approvals}
        roles = draw(st.lists(st.sampled_from(["sec", "fin", "ops"]), unique=True, max_size=approvals))
        if roles:
            spec["roles"] = roles
        timeout = draw(st.sampled_from([None, "10m", "1h", 3600, "4h"]))
        if timeout is not None:
            spec["timeout"] = timeout
        out[f"tier{i}"] = spec
    return out


_TOOLS = st.one_of(st.sampled_from(TOOL_PATTERNS), st.lists(st.sampled_from(TOOL_PATTERNS), min_size=1, max_size=3))


_TIERS = tiers()


@st.composite
def policy_dicts(draw: st.DrawFn) -> dict[str, Any]:
    tier_specs = draw(_TIERS)
    rules = []
    for i in range(draw(st.integers(1, 6))):
        tool = draw(_TOOLS)
        action = draw(st.sampled_from(VERDICTS))
        rule: dict[str, Any] = {"id": f"r{i}", "tool": tool, "action": action}
        if action == "escalate" and tier_specs and draw(st.integers(0, 3)) > 0:
            rule["tier"] = draw(st.sampled_from(sorted(tier_specs)))
        if draw(st.integers(0, 3)) == 0:
            rule["mode"] = "shadow"
        if draw(st.integers(0, 5)) > 0:
            rule["when"] = draw(CONDITIONS)
        rules.append(rule)
    doc: dict[str, Any] = {"version": 1, "name": "generated", "rules": rules}
    if tier_specs:
        doc["tiers"] = tier_specs
    for key, values in (("default", VERDICTS), ("on_error", ("escalate", "deny")),
                        ("timezone", ("UTC", "America/New_York", "Asia/Kolkata"))):
        if draw(st.booleans()):
            doc[key] = draw(st.sampled_from(values))
    return doc


def to_policy(doc: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps(doc, ensure_ascii=False, indent=1))


# ---- logs ----------------------------------------------------------------------------------------------
_BASE = datetime(2026, 1, 15, 4, 59, 58, tzinfo=timezone.utc)  # near midnight in New York
INSTANTS = [_BASE + timedelta(seconds=s) for s in (0, 0, 1, 1.000001, 2, 3, 5, 30, 60, 61, 600)]

text = st.text(alphabet="abAé🚀 \n0", max_size=4)
leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from([10**30, 10**400, -(10**400), 2**53 + 1]),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 0.5, 100.25, 2.5]),
    st.sampled_from(WORDS + ["NaN", "0x10", "1_000", " 100 ", "2e3", "a\nb", "🚀x"]),
    text,
)
values = st.recursive(
    leaf_values,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b", "0", "1", ""]), inner, max_size=3)),
    max_leaves=6,
)
objects = st.dictionaries(st.sampled_from(["a", "b", "l", "c"]), values, max_size=3)


@st.composite
def actions(draw: st.DrawFn) -> dict[str, Any]:
    action: dict[str, Any] = {"tool": draw(st.sampled_from(TOOL_NAMES)),
                              "ts": draw(st.sampled_from(INSTANTS)).isoformat()}
    for key in ("agent", "session", "user"):
        who = draw(st.sampled_from([None, "missing", "A", "B"]))
        if who != "missing":
            action[key] = who
    if draw(st.booleans()):
        action["args"] = draw(objects)
    if draw(st.booleans()):
        action["context"] = draw(objects)
    return action


logs = st.lists(actions(), min_size=1, max_size=12)


# ---- properties ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])


def _show(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    note("policy: " + json.dumps(doc, ensure_ascii=False))
    for a in log:
        note("action: " + json.dumps(a, ensure_ascii=False))


def _check_invariants(name: str, policy: Policy, outcomes: list) -> None:
    ids = [r.id for r in policy.rules]
    for decision, rules, errors, tier in outcomes:
        assert decision in VERDICTS, name
        assert not set(rules) & set(errors), f"{name}: a rule both matched and errored"
        assert list(rules) == [i for i in ids if i in rules], f"{name}: rules out of file order"
        assert list(errors) == [i for i in ids if i in errors], f"{name}: errors out of file order"
        assert tier is None or (decision == "escalate" and tier in policy.tiers), name


# the SQL reading the JSON, and reading the policy's paths shredded into typed columns (logs/shred.py)
PATHS = pytest.mark.parametrize("path", ["json", "shredded"])


@PATHS
@_SETTINGS
@given(doc=policy_dicts(), log=logs)
def test_evaluators_agree(con, path: str, doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    _show(doc, log)
    policy = to_policy(doc)
    py, sql = run_both(policy, log, con, path == "shredded")
    for i, (p, s) in enumerate(zip(py, sql)):
        assert p == s, f"action {i}: decide {p} != sql {s}"
    _check_invariants("sql", policy, sql)
    if any(p[2] for p in py):  # and the same structured errors (rule, field, test, code, message)
        assert details_python(policy, log) == details_sql(policy, log, con, path == "shredded")


# The laws below are checked on `decide`: test_evaluators_agree holds the SQL to the same outcomes over the
# same kinds of policies and logs, so it obeys them too (and this keeps the module within its time budget).
@_SETTINGS
@given(doc=policy_dicts(), log=logs)
def test_decision_is_a_verdict_and_a_match_is_never_an_error(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    _show(doc, log)
    policy = to_policy(doc)
    _check_invariants("decide", policy, run_python(policy, log))


@_SETTINGS
@given(doc=policy_dicts(), log=logs, data=st.data())
def test_shadow_rules_never_decide(doc: dict[str, Any], log: list[dict[str, Any]], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(doc["rules"]) - 1), label="rule")
    shadowed = json.loads(json.dumps(doc))
    shadowed["rules"][index]["mode"] = "shadow"
    removed = json.loads(json.dumps(doc))
    rule_id = removed["rules"].pop(index)["id"]
    _show(shadowed, log)
    with_shadow, without = run_python(to_policy(shadowed), log), run_python(to_policy(removed), log)
    for (d1, r1, e1, t1), (d2, r2, e2, t2) in zip(with_shadow, without):
        assert (d1, t1) == (d2, t2), "a shadow rule changed the decision or tier"
        assert tuple(r for r in r1 if r != rule_id) == r2
        assert tuple(e for e in e1 if e != rule_id) == e2


# ---- windows, densely ----------------------------------------------------------------------------------
DENSE = [_BASE + timedelta(microseconds=us) for us in (0, 0, 1, 999_999, 1_000_000, 1_000_001, 2_000_000,
                                                        5_000_000, 5_000_000, 60_000_000)]


@st.composite
def window_policies(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for i in range(draw(st.integers(1, 4))):
        when: Any = draw(windows())
        if draw(st.integers(0, 3)) == 0:
            when = {"not": when}
        elif draw(st.integers(0, 3)) == 0:
            when = {"any": [when, draw(field_tests())]}
        rules.append({"id": f"w{i}", "tool": draw(_TOOLS), "action": draw(st.sampled_from(VERDICTS)),
                      "when": when})
    return {"version": 1, "name": "windows", "rules": rules}


@st.composite
def dense_logs(draw: st.DrawFn) -> list[dict[str, Any]]:
    log = []
    for _ in range(draw(st.integers(1, 12))):
        action: dict[str, Any] = {"tool": draw(st.sampled_from(TOOL_NAMES[:3])),
                                  "ts": draw(st.sampled_from(DENSE)).isoformat()}
        for key in ("agent", "session", "user"):
            who = draw(st.sampled_from([None, "A", "A", "B"]))
            if who is not None:
                action[key] = who
        action["args"] = {"a": draw(leaf_values),
                          "b": draw(st.sampled_from([1, "2", None, 0.5, "x", 0.1, 0.2, 0.3, "0.1", 1e16, -1e16]))}
        action["context"] = {"c": draw(leaf_values)}
        log.append(action)
    return log


@PATHS
@_SETTINGS
@given(doc=window_policies(), log=dense_logs())
def test_windows_agree(con, path: str, doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    _show(doc, log)
    py, sql = run_both(to_policy(doc), log, con, path == "shredded")
    for i, (p, s) in enumerate(zip(py, sql)):
        assert p == s, f"action {i}: decide {p} != sql {s}"


@_SETTINGS
@given(doc=st.one_of(window_policies(), policy_dicts()), log=st.one_of(dense_logs(), logs))
def test_a_gate_history_counts_like_the_log(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Enforce mode feeds calls one by one into a History; for calls in time order it decides as replay."""
    log = sorted(log, key=lambda a: parse_ts(a["ts"]))  # stable: equal instants keep their log order
    _show(doc, log)
    policy = to_policy(doc)
    ev, fast = evaluator(policy), closure(policy)
    history, fast_history = History(ev), History(fast)
    live, fast_live = [], []
    for action in log:
        view = View(action)
        live.append(ev.evaluate(view, history))
        history.add(view)
        view = View(action)
        fast_live.append(fast.evaluate(view, fast_history))  # the gate's evaluator on the gate's history
        fast_history.add(view)
    replay = decide_log(policy, log)
    for i, (a, b) in enumerate(zip(live, replay)):
        assert (a.decision, a.rules, a.errors, a.tier) == (b.decision, b.rules, b.errors, b.tier), f"action {i}"
    assert fast_live == live


@_SETTINGS
@given(doc=st.one_of(policy_dicts(), window_policies()), log=st.one_of(logs, dense_logs()))
def test_the_closure_evaluator_decides_as_decide(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """The gate's closure evaluator gives decide's Decision, field for field (reasons, tiers, error details)."""
    _show(doc, log)
    policy = to_policy(doc)
    assert closure_log(policy, log) == decide_log(policy, log)


@given(ts=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()))
def test_a_views_microseconds_are_the_timedelta_division(ts: datetime) -> None:
    """`View` reads `ts_us` without dividing timedeltas (it is on the gate's hot path): the same integer."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert View({"tool": "t", "ts": ts}).ts_us == (ts - epoch) // timedelta(microseconds=1)
    assert View.of("t", None, None, None, ts, {}, {}).ts_us == View({"tool": "t", "ts": ts}).ts_us
