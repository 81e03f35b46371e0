"""Red team of the closure evaluator (gatekit/policy/closure.py, what `Gate.check` runs).

Two kinds of attack:

- differential: values a Python host can hand the gate that JSON never produces (str/int/float subclasses,
  enums, Decimal, tuples, dicts with non-str keys, bytes, tool-name look-alikes) must get decide's very
  Decision from the closure, on any generated policy (Hypothesis, reusing tests/policy's generators);
- stateful values: an object that raises the first time it is compared and answers the second time. The
  closure used to hand such a call to decide, which re-read the value and saw no error: the gate allowed
  what a single evaluation (decide's) denies. Now the error the closure saw still counts.
"""

from __future__ import annotations

import decimal
import enum
import fractions
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gatekit import Gate, decide
from gatekit.policy import parse_policy
from gatekit.policy.closure import closure, closure_log, decide_closure
from gatekit.policy.decide import decide_log
from gatekit.policy.model import LEVEL

from tests.policy.test_agreement import DENSE, TOOL_NAMES, leaf_values, policy_dicts, to_policy, window_policies


# ---- values JSON never produces ------------------------------------------------------------------------
class S(str):
    """A pure str subclass: behaves as its text, but is not `str` (the closure leaves it to decide)."""


class I(int):  # noqa: E742
    pass


class F(float):
    pass


class Color(enum.IntEnum):
    ONE = 1
    TWO = 2


class Word(str, enum.Enum):
    PROD = "prod"
    A = "a"


class L(list):
    pass


class D(dict):
    pass


_SCALARS = [True, False, 1, 0, -0.0, 0.0, 1.0, 100, 101, 100.25, 2 ** 53, 2 ** 53 + 1, 2 ** 1000 - 1, 2 ** 1000,
            -(2 ** 1000), 10 ** 400, float("nan"), float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308,
            "1_000", "+5", " 5", "5 ", "\t5\n", "\u00a05", "NaN", "Infinity", ".5", "5.", "0x10", "1e999", "-0",
            "\uff11", "\u0663", "a\u200b", "prod", "prod ", "PROD", "\ud800", "", "ab", "a", "1", "1.50", "true"]
_WRAPS = [S, I, F, lambda v: (v,), lambda v: [v], L, lambda v: {"a": v}, D, lambda v: {1: v}, lambda v: {("a",): v},
          lambda v: {None: v, "a": v}]


def _wrap(v: Any, how: int) -> Any:
    fn = _WRAPS[how]
    if fn is S:
        return S(v) if isinstance(v, str) else v
    if fn is I:
        return I(v) if type(v) is int else v
    if fn is F:
        return F(v) if type(v) is float else v
    if fn is L:
        return L([v])
    if fn is D:
        return D(a=v)
    return fn(v)


hostless = st.one_of(
    st.sampled_from(_SCALARS),
    st.builds(_wrap, st.sampled_from(_SCALARS), st.integers(0, len(_WRAPS) - 1)),
    st.sampled_from([Color.ONE, Color.TWO, Word.PROD, Word.A, decimal.Decimal("101"), decimal.Decimal("NaN"),
                     fractions.Fraction(201, 2), b"prod", bytearray(b"a"), 1 + 0j, frozenset({"a"}), object(),
                     range(3), ...]),
    leaf_values,
)
py_values = st.recursive(hostless, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.sampled_from(["a", "b", "0", "1", "", S("a")]), inner, max_size=3)), max_leaves=6)

_LOOKALIKES = TOOL_NAMES + ["PAY.SEND", "pay.send ", " pay.send", "pay\u200b.send", "\uff50ay.send", "pay.sen\u0064",
                            "pay.se\u0301nd", "db.drop\n", "e\u0301.x", "\u00e9.x", "*", "", "pay.*"]
tools = st.one_of(st.sampled_from(_LOOKALIKES), st.sampled_from(_LOOKALIKES).map(S),
                  st.sampled_from([None, 1, b"pay.send", ("pay.send",)]))
ids = st.one_of(st.none(), st.sampled_from(["A", "B", ""]), st.sampled_from(["A", "B"]).map(S), st.just(1))
args_roots = st.one_of(
    st.fixed_dictionaries({}, optional={"a": py_values, "b": py_values, "l": py_values, "c": py_values}),
    st.builds(lambda a: D(a=a), py_values),
    st.builds(lambda a: {S("a"): a}, py_values),
    st.sampled_from([None, [], "a", (("a", 1),)]),
)


@st.composite
def py_actions(draw: st.DrawFn, windowed: bool = False) -> dict[str, Any]:
    action: dict[str, Any] = {"tool": draw(tools) if not windowed else draw(st.sampled_from(TOOL_NAMES[:3]))}
    if windowed:
        action["ts"] = draw(st.sampled_from(DENSE)).isoformat()
    for key in ("agent", "session", "user"):
        if draw(st.booleans()):
            action[key] = draw(ids)
    action["args"] = draw(args_roots)
    if draw(st.booleans()):
        action["context"] = draw(st.one_of(st.fixed_dictionaries({}, optional={"c": py_values}), args_roots))
    return action


_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _note(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    note("policy: " + json.dumps(doc, ensure_ascii=False))
    for a in log:
        note(f"action: {a!r}")


@_SETTINGS
@given(doc=policy_dicts(), log=st.lists(py_actions(), min_size=1, max_size=4))
def test_python_values_get_decides_decision(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Whatever a Python host passes (subclasses, enums, Decimal, tuples, non-str keys, look-alike tool
    names, non-str tools), the closure gives decide's Decision, field for field."""
    _note(doc, log)
    policy = to_policy(doc)
    for action in log:
        assert decide_closure(policy, action) == decide(policy, action)


@_SETTINGS
@given(doc=window_policies(), log=st.lists(py_actions(windowed=True), min_size=1, max_size=8))
def test_python_values_in_windows_get_decides_decision(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Windows over such calls, timestamps out of order and tied (`sum` of a subclass, a bool, a Decimal)."""
    _note(doc, log)
    policy = to_policy(doc)
    assert closure_log(policy, log) == decide_log(policy, log)


@settings(_SETTINGS, max_examples=100)
@given(doc=policy_dicts(), log=st.lists(py_actions(), min_size=1, max_size=3))
def test_the_gate_is_never_laxer_than_decide(doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Through `Gate.check` (which refuses what it cannot read and denies tool-name look-alikes): decide's
    decision, or a stricter one; never an allow that decide would not give."""
    _note(doc, log)
    policy = to_policy(doc)
    for action in log:  # a fresh gate each (no history), at a pinned time (decide has no clock)
        who = {k: action.get(k) for k in ("agent", "session", "user", "context")}  # pinned, as decide reads them
        got = Gate(policy).check(action, ts=DENSE[0], **who)
        want = decide(policy, {**action, "ts": DENSE[0]})
        assert LEVEL[got.decision] >= LEVEL[want.decision], (got, want)
        if got.decision != want.decision:  # stricter only for a reason the gate names
            assert any(r.startswith(("malformed call", "tool `")) for r in got.reasons), got


# ---- stateful values: an error the closure saw must count ----------------------------------------------
class _Once:
    """Raises `exc` on the first call of a method, then answers `then`; a fresh instance per evaluation."""

    def __init__(self, exc: type[Exception], then: Any) -> None:
        self.exc, self.then, self.calls = exc, then, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise self.exc("first read")
        return self.then


def _flip_str(text: str, method: str, exc: type[Exception], then: Any) -> str:
    once = _Once(exc, then)
    attrs: dict[str, Any] = {method: lambda self, *a: once(*a)}
    if method == "__eq__":
        attrs["__hash__"] = str.__hash__
    return type("Flip", (str,), attrs)(text)


class _FlipKey(str):
    """A key that hashes as `to` and raises on its first comparison: `args.get("to")` raises once."""

    def __new__(cls, exc: type[Exception]) -> _FlipKey:
        self = super().__new__(cls, "zz")
        self.once = _Once(exc, False)  # type: ignore[attr-defined]
        return self

    def __hash__(self) -> int:
        return hash("to")

    def __eq__(self, other: object) -> bool:
        return self.once()  # type: ignore[attr-defined,no-any-return]


class _FlipArgs(dict):
    def __init__(self, exc: type[Exception], **kw: Any) -> None:
        super().__init__(**kw)
        self.once = _Once(exc, "nobody")

    def get(self, key: Any, default: Any = None) -> Any:
        return self.once()


STATEFUL_POLICY = """
version: 1
name: stateful
default: allow
on_error: deny
rules:
  - {id: who, tool: pay.send, action: deny, when: {args.to: {eq: mallory}}}
  - {id: list, tool: pay.send, action: deny, when: {args.to: {in: [eve, mallory]}}}
  - {id: pre, tool: vault.read, action: deny, when: {args.path: {startswith: "secret/"}}}
  - {id: suf, tool: vault.read, action: deny, when: {args.path: {endswith: ".pem"}}}
  - {id: sub, tool: vault.read, action: deny, when: {args.path: {contains: "key"}}}
  - {id: big, tool: pay.amount, action: deny, when: {args.amount: {gt: 100}}}
"""

STATEFUL = {
    "eq": lambda exc: {"tool": "pay.send", "args": {"to": _flip_str("mallory", "__eq__", exc, False)}},
    "startswith": lambda exc: {"tool": "vault.read", "args": {"path": _flip_str("secret/a", "startswith", exc, False)}},
    "endswith": lambda exc: {"tool": "vault.read", "args": {"path": _flip_str("a.pem", "endswith", exc, False)}},
    "contains": lambda exc: {"tool": "vault.read", "args": {"path": _flip_str("key", "__contains__", exc, False)}},
    "numeric-strip": lambda exc: {"tool": "pay.amount", "args": {"amount": _flip_str("500", "strip", exc, "5")}},
    "dict-key": lambda exc: {"tool": "pay.send", "args": {_FlipKey(exc): "mallory"}},
    "args-get": lambda exc: {"tool": "pay.send", "args": _FlipArgs(exc, to="mallory")},
}


@pytest.mark.parametrize("exc", [ValueError, TypeError, RuntimeError, KeyError], ids=lambda e: e.__name__)
@pytest.mark.parametrize("attack", sorted(STATEFUL))
def test_a_value_that_errs_once_never_allows(attack: str, exc: type[Exception]) -> None:
    """decide reads the value once and errs (on_error: deny); the gate must not do better for the caller by
    reading it again. Each evaluation gets a fresh value."""
    policy = parse_policy(STATEFUL_POLICY)
    want = decide(policy, STATEFUL[attack](exc))
    got = Gate(policy).check(STATEFUL[attack](exc))
    assert want.decision == "deny"
    assert got.decision == "deny", got
    also = decide_closure(policy, STATEFUL[attack](exc))
    assert also.decision == "deny" and also.errors, also


def test_a_stateful_value_keeps_decides_error_details() -> None:
    """When decide's second reading sees the error too, its Decision is returned as it is; when it does not,
    the error is the one the closure saw (a rule error of that rule, the policy's on_error)."""
    policy = parse_policy(STATEFUL_POLICY)
    got = closure(policy).evaluate
    from gatekit.policy._history import History
    from gatekit.policy._view import View

    ev = closure(policy)
    d = got(View(STATEFUL["eq"](ValueError)), History(ev))
    assert d.decision == "deny" and d.errors == ("who",) and d.error_details[0].rule == "who"
    assert "internal error" in d.error_details[0].message
    plain = {"tool": "pay.send", "args": {"to": "mallory"}}
    assert decide_closure(policy, plain) == decide(policy, plain)


# ---- made-up tool names: no generated function each ----------------------------------------------------
def test_made_up_tool_names_share_one_plan() -> None:
    """An agent making up tool names under a `*` rule used to cost a generated, compiled function each
    (about 40 KiB and milliseconds per name, and past the 65536 names remembered, a compile per call): names
    matching the same rules now share one plan, and decide still agrees on each."""
    policy = parse_policy("""
version: 1
name: star
default: allow
on_error: deny
rules:
  - {id: any, tool: "*", action: deny, when: {args.q: {matches: "drop$"}}}
  - {id: pay, tool: "pay.*", action: escalate, when: {args.amount: {gt: 100}}}
""")
    ev = closure(policy)
    plans = {id(ev.plan(f"made.up.{i}")) for i in range(300)}
    assert len(plans) == 1
    assert ev.plan("pay.x") is ev.plan("pay.y") is not ev.plan("made.up.0")
    assert len(ev._by_rules) == 2
    gate = Gate(policy)
    for i, args in enumerate([{"q": "x drop"}, {"q": "keep"}, {"amount": 500}, {"amount": 5}, {}]):
        for tool in (f"made.up.{i}", f"pay.{i}"):
            call = {"tool": tool, "args": args}
            assert decide_closure(policy, call) == decide(policy, call)
            got, want = gate.check(call), decide(policy, call)
            assert (got.decision, got.rules, got.errors) == (want.decision, want.rules, want.errors)


# ---- windows fed out of time order (clock skew, a host replaying with asserted times) -------------------
@settings(_SETTINGS, max_examples=80)
@given(doc=window_policies(), log=st.lists(py_actions(windowed=True), min_size=1, max_size=8))
def test_a_gate_fed_calls_out_of_time_order_counts_the_calls_before(doc: dict[str, Any],
                                                                   log: list[dict[str, Any]]) -> None:
    """Calls reach the gate in any time order (a skewed clock, a host asserting `ts`): each is decided on
    the calls the gate saw before it, as decide decides it with those as its history (its window frame
    keeps those in (ts - window, ts]); a later timestamp seen earlier never leaks into an earlier call."""
    _note(doc, log)
    policy = to_policy(doc)
    gate = Gate(policy)
    seen: list[dict[str, Any]] = []
    for action in log:
        who = {k: action[k] if type(action.get(k)) is str else None for k in ("agent", "session", "user")}
        ctx = action.get("context") if type(action.get("context")) is dict else None
        plain = {**action, **who, "context": ctx}
        got = gate.check({"tool": action["tool"], "args": action["args"]}, ts=action["ts"], context=ctx, **who)
        if any(r.startswith("malformed call") for r in got.reasons):
            continue  # args the gate cannot read (not an object): denied, and not counted
        want = decide(policy, plain, seen)
        seen.append(plain)
        if got.reasons and " only by case or Unicode form" in got.reasons[0]:
            assert got.decision == "deny"  # a look-alike of a rule's tool: denied (and counted), by design
            continue
        assert (got.decision, got.rules, got.errors, got.tier) == (want.decision, want.rules, want.errors,
                                                                  want.tier), (got, want)
