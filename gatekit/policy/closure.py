"""The closure evaluator: a policy specialised, tool by tool, into plain Python closures (enforce mode's).

`decide` (decide.py) is the reference scalar evaluator; this is the fourth evaluator, built for the gate's
microsecond budget and held to the same corpus, the same semantics table and the same Hypothesis properties
(tests/policy). What it does differently, and only for speed:

- per tool name, a *plan*: the rules whose tool patterns match it (looked up once per name), each a closure
  that returns a plain bool; the decision of each combination of matched rules is built once, by decide's
  `_decision` (precedence, tiers and reasons are semantics.py's), and kept in a list indexed by a bit mask;
- each test reads its field with a getter specialised for the field (a key of `args` or `context`, a top
  field) and answers the common plain values (exact `str`, finite `float`, `int`) itself, with its operand
  pre-typed; a regex answer is remembered per string (RE2 is pure, its call from Python is not cheap);
- everything else, on every value: decide's own compiled leaf for that test (the table's cells), which is
  also what answers when a value is missing, null, of another kind or hostile.

Errors are rare, so they are not built here: a test whose value errors (decide's leaf gives a `RuleError`)
raises, and so does any unexpected exception; the whole call is then decided again by decide's `Evaluator`
(the reference, with its own fail-closed handling of evaluator faults), so every error, message and code is
decide's by construction. Conditions are pure (a window only reads the history), so deciding twice is safe.

Core layer: pure Python, no duckdb, polars or pandas.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from gatekit.action import Action
from gatekit.policy import semantics as sem
from gatekit.policy._history import Windows
from gatekit.policy._ops import DecideBackend, fast_test
from gatekit.policy._view import View, getter
from gatekit.policy.conditions import All, Any_, Cond, Field, Not, Test, Window
from gatekit.policy.decide import COMPILERS, Evaluator, Scan, evaluator
from gatekit.policy.decision import Decision
from gatekit.policy.model import Policy, Rule
from gatekit.policy.timezones import zone
from gatekit.policy.values import _ABSENT, compile_re2

__all__ = ["BACKEND", "ClosureEvaluator", "closure", "closure_log", "decide_closure"]

Fast = Callable[[View, Windows], bool]  # a compiled condition: True or False, or it raises (then: decide)
_BIG_INT = 1 << 1000  # as _ops.fast_test: an int below this in magnitude is a finite float
_INF = math.inf
_MEMO = 4096  # strings remembered per regex test
_MEMO_LEN = 256  # longer strings are not remembered
_PLANS = 65536  # tool names remembered (as decide's candidate cache)


class _Slow(Exception):
    """A test met a value it leaves to decide (an error): the call is decided by decide's evaluator."""


_SLOW = _Slow()


def _reference(node: Cond, tz: ZoneInfo, rule: Rule) -> Fast:
    """decide's own compiled condition, as a bool that raises on an error."""
    run = COMPILERS[type(node)](node, tz, rule)

    def ref(view: View, hist: Windows) -> bool:
        value, err = run(view, hist)
        if err is not None:
            raise _SLOW
        return value
    return ref


def _dict_key(root: str, key: str) -> Callable[[View], Any]:
    """A reader of `args.key` / `context.key`: the value, or `_ABSENT` (missing, or not a plain dict)."""
    if root == "args":
        def read(view: View) -> Any:
            obj = view.args
            return obj.get(key, _ABSENT) if type(obj) is dict else _ABSENT
    else:
        def read(view: View) -> Any:
            obj = view.context
            return obj.get(key, _ABSENT) if type(obj) is dict else _ABSENT
    return read


def _reader(field: Field, tz: ZoneInfo) -> Callable[[View], Any]:
    """How this evaluator reads a field: the value, or something no fast path takes (then decide reads it).

    Only an exact `str`, `float` or `int` is answered here; `_ABSENT`, None or anything else goes to decide.
    """
    if field.root in ("args", "context") and len(field.path) == 1:
        return _dict_key(field.root, field.path[0])  # not a plain dict (a subclass, say): decide reads it
    if field.root in ("tool", "agent", "session", "user"):
        return operator.attrgetter(field.root)
    return getter(field, tz)


def _test(node: Test, tz: ZoneInfo, rule: Rule) -> Fast:
    ref = _reference(node, tz, rule)
    op, operand, field = node.op, node.operand, node.field
    read = _reader(field, tz)
    if op == "matches":
        regex = compile_re2(operand)
        memo: dict[str, bool] = {}

        def matches(view: View, hist: Windows) -> bool:
            v = read(view)
            if type(v) is str:
                hit = memo.get(v)
                if hit is None:
                    hit = regex.search(v) is not None  # the table's `regex` primitive on a string
                    if len(memo) < _MEMO and len(v) <= _MEMO_LEN:
                        memo[v] = hit
                return hit
            return ref(view, hist)
        return matches
    if op in ("eq", "ne") and type(operand) is str:
        want = op == "eq"

        def equal(view: View, hist: Windows) -> bool:
            v = read(view)
            if type(v) is str:
                return (v == operand) is want
            return ref(view, hist)
        return equal
    if op in ("in", "not_in") and isinstance(operand, tuple) and all(type(x) is str for x in operand):
        members, want = frozenset(operand), op == "in"

        def member(view: View, hist: Windows) -> bool:
            v = read(view)
            if type(v) is str:
                return (v in members) is want
            return ref(view, hist)
        return member
    if op in ("gt", "gte", "lt", "lte") and field.name != "time.date" and type(operand) in (int, float):
        x = operand  # compared as _ops.fast_test compares it (decide's answer on these values)
        cmp = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}[op]

        def order(view: View, hist: Windows) -> bool:
            v = read(view)
            t = type(v)
            if t is float:
                if -_INF < v < _INF:
                    return cmp(v, x)
            elif t is int and -_BIG_INT < v < _BIG_INT:
                return cmp(float(v), x)
            return ref(view, hist)
        return order
    if op in ("startswith", "endswith", "contains") and type(operand) is str:
        method = {"startswith": str.startswith, "endswith": str.endswith, "contains": str.__contains__}[op]

        def text(view: View, hist: Windows) -> bool:
            v = read(view)
            if type(v) is str:
                return method(v, operand)
            return ref(view, hist)
        return text
    return ref


def _all(node: All | Any_, tz: ZoneInfo, rule: Rule) -> Fast:
    parts = tuple(_fast(item, tz, rule) for item in node.items)
    # every part is evaluated, as decide does: an error in any of them must reach decide
    if isinstance(node, All):
        if not parts:
            return lambda view, hist: True
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            a, b = parts

            def both(view: View, hist: Windows) -> bool:
                x = a(view, hist)
                return b(view, hist) and x
            return both

        def every(view: View, hist: Windows) -> bool:
            value = True
            for part in parts:
                if not part(view, hist):
                    value = False
            return value
        return every
    if not parts:
        return lambda view, hist: False
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts

        def either(view: View, hist: Windows) -> bool:
            x = a(view, hist)
            return b(view, hist) or x
        return either

    def some(view: View, hist: Windows) -> bool:
        value = False
        for part in parts:
            if part(view, hist):
                value = True
        return value
    return some


def _not(node: Not, tz: ZoneInfo, rule: Rule) -> Fast:
    inner = _fast(node.item, tz, rule)
    return lambda view, hist: not inner(view, hist)


FAST: dict[type, Callable[[Any, ZoneInfo, Rule], Fast]] = {
    Test: _test,
    Window: _reference,  # the history does the work: decide's window test as it is
    All: _all,
    Any_: _all,
    Not: _not,
}


def _fast(node: Cond, tz: ZoneInfo, rule: Rule) -> Fast:
    return FAST[type(node)](node, tz, rule)


def _plan(reference: Evaluator, rules: list[tuple[Rule, Fast]]) -> Callable[[View, Windows], Decision]:
    """One tool's decision: its rules' closures, and the decision of each set of matched rules, built once."""
    slow = reference.evaluate
    if not rules:
        none = reference._decision([], [])
        return lambda view, hist: none
    matched_of = [[r for i, (r, _) in enumerate(rules) if m >> i & 1] for m in range(1 << len(rules))] \
        if len(rules) <= 8 else None
    decisions: Any = [None] * (1 << len(rules)) if matched_of is not None else {}
    conds = tuple((1 << i, cond) for i, (_, cond) in enumerate(rules))

    def decided(mask: int) -> Decision:
        matched = matched_of[mask] if matched_of is not None else [
            r for i, (r, _) in enumerate(rules) if mask >> i & 1]
        decision = reference._decision(matched, [])
        if matched_of is not None or len(decisions) < 65536:
            decisions[mask] = decision
        return decision

    if len(rules) == 1:
        (_, only), = conds
        # decisions[0] and decisions[1], built on first use
        def one(view: View, hist: Windows) -> Decision:
            try:
                mask = 1 if only(view, hist) else 0
            except Exception:  # noqa: BLE001  an error or a fault: decide's evaluator, as it is
                return slow(view, hist)
            return decisions[mask] or decided(mask)
        return one

    if matched_of is not None:
        def plan(view: View, hist: Windows) -> Decision:
            mask = 0
            try:
                for bit, cond in conds:
                    if cond(view, hist):
                        mask |= bit
            except Exception:  # noqa: BLE001  an error or a fault: decide's evaluator, as it is
                return slow(view, hist)
            return decisions[mask] or decided(mask)
        return plan

    def big(view: View, hist: Windows) -> Decision:
        mask = 0
        try:
            for bit, cond in conds:
                if cond(view, hist):
                    mask |= bit
        except Exception:  # noqa: BLE001
            return slow(view, hist)
        return decisions.get(mask) or decided(mask)
    return big


class ClosureEvaluator:
    """A policy compiled to one closure per tool name. `evaluate(view, history)` is decide's, faster.

    `windows` is decide's (a `History` is built from either); `reference` is decide's `Evaluator`, which
    decides any call a closure leaves to it.
    """

    def __init__(self, policy: Policy) -> None:
        tz = zone(policy.timezone)
        self.policy = policy
        self.reference = evaluator(policy)
        self.windows = self.reference.windows
        self._rules = [(r, compile_re2(r.tool_regex), _fast(r.when, tz, r)) for r in policy.rules]
        self._plans: dict[str, Callable[[View, Windows], Decision]] = {}
        self._none = _plan(self.reference, [])

    def plan(self, tool: Any) -> Callable[[View, Windows], Decision]:
        """The closure deciding calls of `tool` (built on first sight of the name)."""
        if type(tool) is not str:
            return self._none
        found = self._plans.get(tool)
        if found is None:
            found = _plan(self.reference, [(r, c) for r, rx, c in self._rules if rx.fullmatch(tool) is not None])
            if len(self._plans) < _PLANS:
                self._plans[tool] = found
        return found

    def evaluate(self, view: View, history: Windows) -> Decision:
        """Decide one call; `history` is what its windows count: a `History`, or a `Scan` of a list."""
        tool = view.tool
        found = self._plans.get(tool) if type(tool) is str else None
        if found is None:
            found = self.plan(tool)
        return found(view, history)


def closure(policy: Policy) -> ClosureEvaluator:
    """The policy's closure evaluator, built once per policy object (held in its `compiled` cache)."""
    ev = policy.compiled.get("closure")
    if ev is None:
        ev = policy.compiled.setdefault("closure", ClosureEvaluator(policy))
    return ev


def decide_closure(policy: Policy, action: Action | Mapping[str, Any],
                   history: Iterable[Action | Mapping[str, Any]] = ()) -> Decision:
    """`decide`, through the closure evaluator: the same Decision."""
    hist = [h if isinstance(h, View) else View(h) for h in history] if policy.rules else []
    return closure(policy).evaluate(View(action), Scan(hist))


def closure_log(policy: Policy, actions: list[Action | Mapping[str, Any]]) -> list[Decision]:
    """`decide_log` through the closure evaluator (windows over the log as replay counts them)."""
    views = [View(a) for a in actions]
    ev = closure(policy)
    out = []
    for i, view in enumerate(views):
        hist = views[:i] + [w for w in views[i + 1:]
                            if w.ts_us is not None and view.ts_us is not None and w.ts_us < view.ts_us]
        out.append(ev.evaluate(view, Scan(hist)))
    return out


class ClosureBackend(DecideBackend):
    """The `semantics.Backend` of the closure evaluator: Python values, decide's primitives (its own fast
    paths give the same answers on plain values; tests/policy/test_semantics.py runs every cell on it)."""

    name = "closure"


BACKEND = ClosureBackend()
