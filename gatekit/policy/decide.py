"""`decide`: the scalar evaluator. Pure Python (no duckdb, polars or pandas), one call in microseconds.

A policy compiles once to closures (`Evaluator`, cached on the policy): every node type of conditions.py
has an entry in `COMPILERS` here; every test is built from the semantics table (semantics.py) by _ops.py,
decide's backend of it. The SQL compiler (compile.py) is the other backend, and tests/cases/ holds both to
one meaning; precedence (`semantics.decision_level`) and the window rule are semantics.py's too. The fast paths
live here too: a per-tool cache of candidate rules and a cache of decisions by matched rule ids.

What a caller that keeps its own state needs is public here: `evaluator(policy)` compiled once, a `View` of
each call (from _view.py) and a `History` of the calls before (from _history.py, the live window index), as
the enforce gate uses them: `evaluator(policy).evaluate(View(action), history)`.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from gatekit.action import Action
from gatekit.policy._history import History, Slot, Windows, WindowSpec, scaled
from gatekit.policy import semantics as sem
from gatekit.policy._ops import Unusable, absent_result, compile_test, fast_test, kind_name
from gatekit.policy._view import View, getter
from gatekit.policy.conditions import All, Any_, Cond, Field, Not, Test, Window, leaves
from gatekit.policy.decision import INTERNAL_ERROR, Decision, RuleError, error_message
from gatekit.policy.model import LEVEL, VERDICTS, Policy, Rule
from gatekit.policy.timezones import zone
from gatekit.policy.values import _ABSENT, compile_re2

__all__ = ["Decision", "Evaluator", "History", "RuleError", "Scan", "View", "decide", "decide_log", "evaluator"]

_MISSING = (_ABSENT, None)
_LEVELS = sem.PyLevels()


# ---- compiling a policy into closures ------------------------------------------------------------------
# A compiled condition: (view, windows) -> (value, the first error or None); every leaf is evaluated so
# that an error anywhere in a rule is seen, as the contract requires.
Compiled = Callable[[View, Windows], "tuple[bool, RuleError | None]"]


def _error(rule: Rule, field: Field, test: str, code: str, value: Any) -> RuleError:
    return RuleError(rule.id, field.name, test, code, error_message(field.name, test, code, kind_name(value)))


def _compile_test(node: Test, tz: ZoneInfo, rule: Rule) -> Compiled:
    get = getter(node.field, tz)
    op, field = node.op, node.field
    operand = compile_re2(node.operand) if op == "matches" else node.operand
    if op == "exists":  # the table's constants: one for a present value, one for a missing one
        present, absent = compile_test(op, operand)(0.0), absent_result(op, operand)
        return lambda view, hist: ((absent if get(view) in _MISSING else present), None)
    test = compile_test(op, operand, field.name)
    fast = fast_test(op, operand, field)
    absent = absent_result(op, operand, field.name)  # missing or JSON null: the table's constant

    def run(view: View, hist: Windows) -> tuple[bool, RuleError | None]:
        value = get(view)
        if value is _ABSENT or value is None:
            return absent, None
        if fast is not None:
            hit = fast(value)
            if hit is not None:
                return hit, None
        try:
            return test(value), None
        except Unusable as exc:
            return False, _error(rule, field, op, exc.code, value)
        except (TypeError, ValueError, UnicodeError, RecursionError) as exc:  # hostile values fail closed
            return False, RuleError(rule.id, field.name, op, INTERNAL_ERROR,
                                    f"`{field.name}` {op}: internal error: {type(exc).__name__}")
    return run


_READ_SUM = compile_test("sum", None)  # the table's `sum` row: a call's summed value, raising Unusable


def _amount_of(value_of: Callable[[View], Any]) -> Callable[[View], "float | None"]:
    """The summed value of one call: missing counts 0; None when present but unusable."""
    def amount(view: View) -> float | None:
        try:
            return _READ_SUM(value_of(view))
        except Unusable:
            return None
    return amount


def _sum_code(value: Any) -> str:
    """The code of the error a `sum` gives on an unusable value: the table's cell."""
    try:
        _READ_SUM(value)
    except Unusable as exc:
        return exc.code
    raise AssertionError("a usable value has no sum error")


def _window_slot(node: Window, rule: Rule) -> Slot:
    """What a window reads of the calls before: its rule's tools, its `per` key and its summed field."""
    return (rule.tool_regex, node.per, node.field)


def _compile_window(node: Window, tz: ZoneInfo, rule: Rule) -> Compiled:
    per, span = node.per, node.window_us
    threshold, strict = node.threshold, node.op == "gt"
    value_of = getter(node.field, tz) if node.field is not None else None
    spec = WindowSpec(compile_re2(rule.tool_regex), per,
                      _amount_of(value_of) if value_of is not None else None, span)
    amount = spec.amount
    slot = _window_slot(node, rule)
    exact_threshold = scaled(threshold)

    def run(view: View, hist: Windows) -> tuple[bool, RuleError | None]:
        if view.ts_us is None:
            return False, None
        own = None
        if amount is not None:
            own = amount(view)
            if own is None:
                value = value_of(view)  # type: ignore[misc]
                return False, _error(rule, node.field, "sum", _sum_code(value), value)  # type: ignore[arg-type]
        key = getattr(view, per) if per else None
        if per and key is None:
            return False, None
        lo = sem.window_lower_bound(view.ts_us, span)  # the frame (lo, ts], the tie rule in the history
        return hist.window(slot, spec, key, lo, view.ts_us, own, threshold, strict, exact_threshold), None
    return run


class Scan:
    """The calls before this one as a plain list, scanned for every window test (`decide`'s history)."""

    __slots__ = ("views",)

    def __init__(self, views: list[View]) -> None:
        self.views = views

    def window(self, slot: Slot, spec: WindowSpec, key: Any, lo: int, hi: int, own: float | None,
               threshold: float, strict: bool, exact_threshold: int) -> bool:
        per, regex, amount = spec.per, spec.tools, spec.amount
        peers = [h for h in self.views
                 if h.ts_us is not None and lo < h.ts_us <= hi
                 and (not per or getattr(h, per) == key)
                 and isinstance(h.tool, str) and regex.fullmatch(h.tool) is not None]
        if amount is None:
            total: float = 1 + len(peers)
        else:
            values = [own] + [a if (a := amount(h)) is not None else 0.0 for h in peers]
            total = functools.reduce(operator.add, sorted(values))
        return total > threshold if strict else total >= threshold


def _compile_all(node: All | Any_, tz: ZoneInfo, rule: Rule) -> Compiled:
    parts = [_compile(item, tz, rule) for item in node.items]
    every = isinstance(node, All)

    def run(view: View, hist: Windows) -> tuple[bool, RuleError | None]:
        value, error = every, None
        for part in parts:  # all of them: an error anywhere in the rule must be seen
            v, e = part(view, hist)
            if e is not None and error is None:
                error = e
            if every:
                if not v:
                    value = False
            elif v:
                value = True
        return value, error
    return run


def _compile_not(node: Not, tz: ZoneInfo, rule: Rule) -> Compiled:
    inner = _compile(node.item, tz, rule)

    def run(view: View, hist: Windows) -> tuple[bool, RuleError | None]:
        value, err = inner(view, hist)
        return (not value), err
    return run


COMPILERS: dict[type, Callable[[Any, ZoneInfo, Rule], Compiled]] = {
    Test: _compile_test,
    Window: _compile_window,
    All: _compile_all,
    Any_: _compile_all,
    Not: _compile_not,
}


def _compile(node: Cond, tz: ZoneInfo, rule: Rule) -> Compiled:
    return COMPILERS[type(node)](node, tz, rule)


class Evaluator:
    """A policy compiled to closures, with a cache of which rules look at which tool."""

    def __init__(self, policy: Policy) -> None:
        tz = zone(policy.timezone)  # the pinned tzdata, as every engine reads it
        self.policy = policy
        self.rules = [(r, compile_re2(r.tool_regex), _compile(r.when, tz, r)) for r in policy.rules]
        self.default = LEVEL[policy.default]
        self.on_error = LEVEL[policy.on_error]
        self.rank = policy.tier_rank()
        self._by_tool: dict[str, list[tuple[Rule, Compiled]]] = {}
        self._decided: dict[tuple[str, ...], Decision] = {}  # matched rule ids -> decision, when none errored
        # every window's slot -> what its index reads, with the longest window on it (History's contract)
        self.windows: dict[Slot, WindowSpec] = {}
        for rule in policy.rules:
            for leaf in leaves(rule.when):
                if isinstance(leaf, Window):
                    slot = _window_slot(leaf, rule)
                    span = max(leaf.window_us, self.windows[slot].span if slot in self.windows else 0)
                    amount = _amount_of(getter(leaf.field, tz)) if leaf.field is not None else None
                    self.windows[slot] = WindowSpec(compile_re2(rule.tool_regex), leaf.per, amount, span)

    def candidates(self, tool: Any) -> list[tuple[Rule, Compiled]]:
        if not isinstance(tool, str):
            return []
        hit = self._by_tool.get(tool)
        if hit is None:
            hit = [(r, c) for r, rx, c in self.rules if rx.fullmatch(tool) is not None]
            if len(self._by_tool) < 65536:
                self._by_tool[tool] = hit
        return hit

    def evaluate(self, view: View, history: Windows) -> Decision:
        """Decide one call; `history` is what its windows count: a `History`, or a `Scan` of a list."""
        matched: list[Rule] = []
        errors: list[tuple[Rule, RuleError]] | None = None
        for rule, cond in self.candidates(view.tool):
            try:
                value, err = cond(view, history)
            except Exception as exc:  # noqa: BLE001  an evaluator bug must not become an allow
                value, err = False, RuleError(rule.id, "", "", INTERNAL_ERROR,
                                              f"internal error: {type(exc).__name__}: {exc}")
            if err is not None:
                if errors is None:
                    errors = []
                errors.append((rule, err))
            elif value:
                matched.append(rule)
        if errors is not None:
            return self._decision(matched, errors)
        key = tuple(r.id for r in matched)
        decision = self._decided.get(key)
        if decision is None:
            decision = self._decision(matched, [])
            if len(self._decided) < 65536:
                self._decided[key] = decision
        return decision

    def _decision(self, matched_rules: list[Rule], errors: list[tuple[Rule, RuleError]]) -> Decision:
        matched = [r.id for r in matched_rules]
        errored = [r.id for r, _ in errors]
        details = [str(err) for _, err in errors]
        enforced_error = any(r.enforced for r, _ in errors)
        deciding = [r for r in matched_rules if r.enforced]
        level = sem.best_level(_LEVELS, [(r, True) for r in deciding])
        final = sem.level_of(_LEVELS, level, enforced_error, self.policy)
        verdict = VERDICTS[final]
        tier = sem.strictest_tier(self.policy, deciding, self.rank) if verdict == "escalate" else None
        reasons = [r.reason or f"rule `{r.id}`" for r in deciding if r.action == verdict]
        if enforced_error and final == self.on_error and (level < self.on_error):
            reasons += [f"could not evaluate {d}" for d in details]
        if not reasons and level < 0 and not enforced_error:
            reasons = [f"no rule matched: default `{self.policy.default}`"]
        return Decision(verdict, tuple(matched), tuple(errored), tier, tuple(reasons), tuple(details),
                        tuple(err for _, err in errors))


def evaluator(policy: Policy) -> Evaluator:
    """The policy's compiled evaluator, built once per policy object (held in its `compiled` cache)."""
    ev = policy.compiled.get("evaluator")
    if ev is None:
        ev = policy.compiled.setdefault("evaluator", Evaluator(policy))
    return ev


def decide(policy: Policy, action: Action | Mapping[str, Any],
           history: Iterable[Action | Mapping[str, Any]] = ()) -> Decision:
    """Decide one call.

    >>> decide(policy, {"tool": "payment.send", "args": {"amount": 250}}).decision
    'escalate'

    `history` holds the calls that precede this one, for `rate` and `sum` windows: those earlier in the
    log, plus any later in the log whose timestamp is strictly earlier (see `decide_log`).
    """
    ev = evaluator(policy)
    view = View(action)
    hist = [h if isinstance(h, View) else View(h) for h in history] if ev.policy.rules else []
    return ev.evaluate(view, Scan(hist))


def decide_log(policy: Policy, actions: list[Action | Mapping[str, Any]]) -> list[Decision]:
    """Decide every call of a log, windows over the log as replay counts them. Quadratic: for tests."""
    views = [View(a) for a in actions]
    ev = evaluator(policy)
    out = []
    for i, view in enumerate(views):
        hist = views[:i] + [w for w in views[i + 1:]
                            if w.ts_us is not None and view.ts_us is not None and w.ts_us < view.ts_us]
        out.append(ev.evaluate(view, Scan(hist)))
    return out
