"""`decide`: the scalar evaluator. Pure Python (no duckdb, polars or pandas), one call in microseconds.

Every node type of conditions.py and every test of the semantics table has an entry in a dispatch table
here; the SQL compiler (compile.py) has the matching tables, and tests/cases/ holds both to one meaning.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from gatekit.action import Action, parse_ts
from gatekit.policy.conditions import WEEKDAYS, All, Any_, Cond, Field, Not, Test, Window, leaves
from gatekit.policy.history import History, live_window, scaled
from gatekit.policy.model import LEVEL, VERDICTS, Policy, Rule
from gatekit.policy.values import (
    _ABSENT, BADNUM, BOOL, LIST, NUM, OBJ, STR, compile_re2, kind, number, numeric_string,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MISSING = (_ABSENT, None)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decides for one call, and why.

    `rules` lists every matched rule id (shadow rules included) in policy order, `errors` every rule that
    could not be evaluated, `tier` the strictest tier among the escalating rules, `reasons` why.
    """

    decision: str
    rules: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    tier: str | None = None
    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()  # one message per errored rule: `rule-id: what went wrong`

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "rules": list(self.rules), "errors": list(self.errors),
                "tier": self.tier, "reasons": list(self.reasons), "details": list(self.details)}


class Unusable(Exception):
    """A present value a test cannot use: the rule errors."""


class View:
    """An action as the evaluator reads it: fields looked up once, local time computed on demand."""

    __slots__ = ("tool", "agent", "session", "user", "ts", "ts_us", "args", "context", "_local")

    def __init__(self, action: Action | Mapping[str, Any]) -> None:
        if isinstance(action, Action):
            get = action.__getattribute__
            self.tool, self.agent, self.session, self.user = get("tool"), get("agent"), get("session"), get("user")
            ts, self.args, self.context = action.ts, action.args, action.context
        else:
            self.tool = action.get("tool")
            self.agent, self.session, self.user = action.get("agent"), action.get("session"), action.get("user")
            ts, self.args, self.context = action.get("ts"), action.get("args"), action.get("context")
        if isinstance(ts, str):
            ts = parse_ts(ts)
        elif isinstance(ts, datetime) and ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        self.ts = ts
        self.ts_us = None if ts is None else (ts - _EPOCH) // _US
        self._local: datetime | None = None

    def local(self, tz: ZoneInfo) -> datetime | None:
        if self._local is None and self.ts is not None:
            self._local = self.ts.astimezone(tz)
        return self._local


_US = timedelta(microseconds=1)


# ---- looking values up ---------------------------------------------------------------------------------
def _path_get(root: Any, path: tuple[str, ...]) -> Any:
    value = root
    for seg in path:
        if isinstance(value, dict):
            value = value.get(seg, _ABSENT)
            if value is _ABSENT:
                return _ABSENT
        elif isinstance(value, list) and seg.isdigit() and seg.isascii() and (seg == "0" or seg[0] != "0"):
            idx = int(seg)
            if idx >= len(value):
                return _ABSENT
            value = value[idx]
        else:
            return _ABSENT
    return value


def _getter(field: Field, tz: ZoneInfo) -> Callable[[View], Any]:
    if field.root in ("tool", "agent", "session", "user"):
        name = field.root
        return lambda v: _absent_if_none(getattr(v, name))
    if field.root in ("args", "context"):
        root, path = field.root, field.path
        if len(path) == 1:
            key = path[0]
            read = operator.attrgetter(root)

            def get_one(v: View) -> Any:
                obj = read(v)
                return obj.get(key, _ABSENT) if isinstance(obj, dict) else _ABSENT
            return get_one
        return lambda v: _path_get(getattr(v, root), path)
    part = field.path[0]
    if part == "hour":
        return lambda v: _ABSENT if v.ts is None else v.local(tz).hour
    if part == "weekday":
        return lambda v: _ABSENT if v.ts is None else WEEKDAYS[v.local(tz).weekday()]
    return lambda v: _ABSENT if v.ts is None else v.local(tz).date().isoformat()


def _absent_if_none(value: Any) -> Any:
    return _ABSENT if value is None else value


# ---- the tests (value is present and not null) ---------------------------------------------------------
def _eq(v: Any, o: Any) -> bool:
    k = kind(v)
    if k == BADNUM:
        raise Unusable(f"`{v!r}` is not a usable number")
    if isinstance(o, tuple):
        if k != LIST or len(v) != len(o):
            return False
        results = [_eq(x, y) if x is not None else False for x, y in zip(v, o)]
        return all(results)
    if o is True or o is False:
        return k == BOOL and v is o
    if isinstance(o, float):
        if k == NUM:
            return number(v) == o
        if k == STR:
            parsed = numeric_string(v)
            if parsed is False:
                raise Unusable(f"`{_short(v)}` is a number out of range")
            return parsed == o
        return False
    if k == STR:
        return v == o
    if k == NUM:
        parsed = numeric_string(o)
        return isinstance(parsed, float) and number(v) == parsed
    return False


def _order(v: Any, o: Any, cmp: Callable[[Any, Any], bool], field: Field) -> bool:
    if field.name == "time.date":
        return cmp(v, o)
    k = kind(v)
    if k == NUM:
        return cmp(number(v), o)
    if k == STR:
        parsed = numeric_string(v)
        if parsed is None:
            raise Unusable(f"`{_short(v)}` is not a number")
        if parsed is False:
            raise Unusable(f"`{_short(v)}` is a number out of range")
        return cmp(parsed, o)
    raise Unusable(f"cannot order a {_kind_name(v)}")


def _in(v: Any, o: tuple) -> bool:
    k = kind(v)
    if k in (LIST, OBJ):
        raise Unusable(f"`in` needs a single value, got a {_kind_name(v)}")
    if k == BADNUM:
        raise Unusable(f"`{v!r}` is not a usable number")
    results = [_eq(v, x) for x in o]
    return any(results)


def _contains(v: Any, o: Any) -> bool:
    k = kind(v)
    if k == STR:
        return isinstance(o, str) and o in v
    if k == LIST:
        results = [_eq(x, o) if x is not None else False for x in v]
        return any(results)
    if k == OBJ:
        results = [_eq(key, o) for key in v]
        return any(results)
    raise Unusable(f"`contains` needs a string, list or object, got a {_kind_name(v)}")


def _string_test(name: str) -> Callable[[Any, Any], bool]:
    def test(v: Any, o: Any) -> bool:
        if not isinstance(v, str):
            raise Unusable(f"`{name}` needs a string, got a {_kind_name(v)}")
        return _STRING_OPS[name](v, o)
    return test


_STRING_OPS: dict[str, Callable[[str, Any], bool]] = {
    "matches": lambda v, o: o.search(v) is not None,
    "startswith": str.startswith,
    "endswith": str.endswith,
}

# op -> (value, operand, field) -> bool, raising Unusable. `exists` is handled before lookup.
TESTS: dict[str, Callable[[Any, Any, Field], bool]] = {
    "eq": lambda v, o, f: _eq(v, o),
    "ne": lambda v, o, f: not _eq(v, o),
    "gt": lambda v, o, f: _order(v, o, operator.gt, f),
    "gte": lambda v, o, f: _order(v, o, operator.ge, f),
    "lt": lambda v, o, f: _order(v, o, operator.lt, f),
    "lte": lambda v, o, f: _order(v, o, operator.le, f),
    "in": lambda v, o, f: _in(v, o),
    "not_in": lambda v, o, f: not _in(v, o),
    "contains": lambda v, o, f: _contains(v, o),
    "matches": lambda v, o, f: _string_test("matches")(v, o),
    "startswith": lambda v, o, f: _string_test("startswith")(v, o),
    "endswith": lambda v, o, f: _string_test("endswith")(v, o),
    "exists": lambda v, o, f: o,  # reached only when the value is present
}


def _kind_name(v: Any) -> str:
    return {LIST: "list", OBJ: "object", BOOL: "boolean", NUM: "number", BADNUM: "number", STR: "string"}.get(
        kind(v), type(v).__name__)


def _short(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- compiling a policy into closures ------------------------------------------------------------------
# A compiled condition: (view, history, rule) -> (value, error message or None); every leaf is evaluated
# so that an error anywhere in a rule is seen, as the contract requires.
Compiled = Callable[[View, "list[View]"], "tuple[bool, str | None]"]


def _compile_test(node: Test, tz: ZoneInfo, rule: Rule) -> Compiled:
    get = _getter(node.field, tz)
    op, field = node.op, node.field
    operand = compile_re2(node.operand) if op == "matches" else node.operand
    test = TESTS[op]
    fast = _fast_test(op, operand, field)
    if op == "exists":
        want = operand
        return lambda view, hist: ((get(view) not in _MISSING) == want, None)

    def run(view: View, hist: list[View]) -> tuple[bool, str | None]:
        value = get(view)
        if value is _ABSENT or value is None:  # missing or JSON null: the test is false
            return False, None
        if fast is not None:
            hit = fast(value)
            if hit is not None:
                return hit, None
        try:
            return test(value, operand, field), None
        except Unusable as exc:
            return False, f"{field.name} {op}: {exc}"
        except (TypeError, ValueError, UnicodeError, RecursionError) as exc:  # hostile values fail closed
            return False, f"{field.name} {op}: {exc}"
    return run


_BIG_INT = 1 << 1000  # an int below this in magnitude is a finite float


def _fast_test(op: str, operand: Any, field: Field) -> Callable[[Any], "bool | None"] | None:
    """A shortcut for a test on a plain string or finite number: its answer, or None to take the full path.

    Only for speed (enforce mode): each answer is the one TESTS gives for that value and operand.
    """
    if op in ("eq", "ne") and type(operand) is str:
        want = op == "eq"
        return lambda v: ((v == operand) is want) if type(v) is str else None
    if op in ("in", "not_in") and isinstance(operand, tuple) and all(type(x) is str for x in operand):
        members, want = frozenset(operand), op == "in"
        return lambda v: ((v in members) is want) if type(v) is str else None
    if op in ("gt", "gte", "lt", "lte") and field.name != "time.date" and type(operand) in (int, float):
        cmp = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}[op]

        def order(v: Any) -> bool | None:
            t = type(v)
            if t is float:
                return cmp(v, operand) if -math.inf < v < math.inf else None
            if t is int:
                return cmp(float(v), operand) if -_BIG_INT < v < _BIG_INT else None
            return None
        return order
    if op in ("startswith", "endswith") and type(operand) is str:
        method = getattr(str, op)
        return lambda v: method(v, operand) if type(v) is str else None
    if op == "matches":
        return lambda v: (operand.search(v) is not None) if type(v) is str else None
    if op == "contains" and type(operand) is str:
        return lambda v: (operand in v) if type(v) is str else None
    return None


def _amount_of(value_of: Callable[[View], Any]) -> Callable[[View], "float | None"]:
    """The summed value of one call: missing counts 0; None when present but unusable."""
    def amount(view: View) -> float | None:
        value = value_of(view)
        if value is _ABSENT or value is None:
            return 0.0
        k = kind(value)
        if k == NUM:
            return number(value)
        if k == STR:
            parsed = numeric_string(value)
            return parsed if isinstance(parsed, float) else None
        return None
    return amount


def _window_slot(node: Window, rule: Rule) -> tuple[str, str | None, Field | None]:
    """What a window reads of the calls before: its rule's tools, its `per` key and its summed field."""
    return (rule.tool_regex, node.per, node.field)


def _compile_window(node: Window, tz: ZoneInfo, rule: Rule) -> Compiled:
    regex = compile_re2(rule.tool_regex)
    per, span = node.per, node.window_us
    threshold, strict = node.threshold, node.op == "gt"
    value_of = _getter(node.field, tz) if node.field is not None else None
    amount = _amount_of(value_of) if value_of is not None else None
    slot = _window_slot(node, rule)
    exact_threshold = scaled(threshold)

    def run(view: View, hist: list[View] | History) -> tuple[bool, str | None]:
        if view.ts_us is None:
            return False, None
        own = None
        if amount is not None:
            own = amount(view)
            if own is None:
                return False, f"sum {node.field.name}: `{_short(value_of(view))}` is not a usable number"
        key = getattr(view, per) if per else None
        if per and key is None:
            return False, None
        lo, hi = view.ts_us - span, view.ts_us
        if hist.__class__ is History:
            return live_window(hist.calls(slot, key, hi), lo, hi, own, threshold, strict, exact_threshold), None
        peers = [h for h in hist
                 if h.ts_us is not None and lo < h.ts_us <= hi
                 and (not per or getattr(h, per) == key)
                 and isinstance(h.tool, str) and regex.fullmatch(h.tool) is not None]
        if amount is None:
            total = 1 + len(peers)
        else:
            values = [own] + [a if (a := amount(h)) is not None else 0.0 for h in peers]
            total = functools.reduce(operator.add, sorted(values))
        return (total > threshold if strict else total >= threshold), None
    return run


def _compile_all(node: All | Any_, tz: ZoneInfo, rule: Rule) -> Compiled:
    parts = [_compile(item, tz, rule) for item in node.items]
    every = isinstance(node, All)

    def run(view: View, hist: list[View]) -> tuple[bool, str | None]:
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

    def run(view: View, hist: list[View]) -> tuple[bool, str | None]:
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
        tz = ZoneInfo(policy.timezone)
        self.policy = policy
        self.rules = [(r, compile_re2(r.tool_regex), _compile(r.when, tz, r)) for r in policy.rules]
        self.default = LEVEL[policy.default]
        self.on_error = LEVEL[policy.on_error]
        self.rank = policy.tier_rank()
        self._by_tool: dict[str, list[tuple[Rule, Compiled]]] = {}
        self._decided: dict[tuple[str, ...], Decision] = {}  # matched rule ids -> decision, when none errored
        # every window's slot -> (tools regex, per key, amount of a call or None, longest window on it)
        self.windows: dict[tuple[str, str | None, Field | None], tuple[Any, str | None, Any, int]] = {}
        for rule in policy.rules:
            for leaf in leaves(rule.when):
                if isinstance(leaf, Window):
                    slot = _window_slot(leaf, rule)
                    span = max(leaf.window_us, self.windows[slot][3] if slot in self.windows else 0)
                    amount = _amount_of(_getter(leaf.field, tz)) if leaf.field is not None else None
                    self.windows[slot] = (compile_re2(rule.tool_regex), leaf.per, amount, span)

    def candidates(self, tool: Any) -> list[tuple[Rule, Compiled]]:
        if not isinstance(tool, str):
            return []
        hit = self._by_tool.get(tool)
        if hit is None:
            hit = [(r, c) for r, rx, c in self.rules if rx.fullmatch(tool) is not None]
            if len(self._by_tool) < 65536:
                self._by_tool[tool] = hit
        return hit

    def evaluate(self, view: View, history: list[View]) -> Decision:
        matched: list[Rule] = []
        errors: list[tuple[Rule, str]] | None = None
        for rule, cond in self.candidates(view.tool):
            try:
                value, err = cond(view, history)
            except Exception as exc:  # noqa: BLE001  an evaluator bug must not become an allow
                value, err = False, f"internal error: {type(exc).__name__}: {exc}"
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

    def _decision(self, matched_rules: list[Rule], errors: list[tuple[Rule, str]]) -> Decision:
        matched = [r.id for r in matched_rules]
        errored = [r.id for r, _ in errors]
        details = [f"{r.id}: {err}" for r, err in errors]
        enforced_error = any(r.enforced for r, _ in errors)
        deciding = [r for r in matched_rules if r.enforced]
        level = max((LEVEL[r.action] for r in deciding), default=-1)
        final = self.default if level < 0 else level
        if enforced_error:
            final = max(final, self.on_error)
        verdict = VERDICTS[final]
        tier = None
        if verdict == "escalate":
            tiers = [r.tier for r in deciding if r.action == "escalate" and r.tier is not None]
            if tiers:
                tier = min(tiers, key=self.rank.__getitem__)
        reasons = [r.reason or f"rule `{r.id}`" for r in deciding if r.action == verdict]
        if enforced_error and final == self.on_error and (level < self.on_error):
            reasons += [f"could not evaluate {d}" for d in details]
        if not reasons and level < 0 and not enforced_error:
            reasons = [f"no rule matched: default `{self.policy.default}`"]
        return Decision(verdict, tuple(matched), tuple(errored), tier, tuple(reasons), tuple(details))


def evaluator(policy: Policy) -> Evaluator:
    """The policy's compiled evaluator, built once per policy object."""
    ev = policy.__dict__.get("_evaluator")
    if ev is None:
        ev = Evaluator(policy)
        object.__setattr__(policy, "_evaluator", ev)
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
    return ev.evaluate(view, hist)


def decide_log(policy: Policy, actions: list[Action | Mapping[str, Any]]) -> list[Decision]:
    """Decide every call of a log, windows over the log as replay counts them. Quadratic: for tests."""
    views = [View(a) for a in actions]
    ev = evaluator(policy)
    out = []
    for i, view in enumerate(views):
        hist = views[:i] + [w for w in views[i + 1:]
                            if w.ts_us is not None and view.ts_us is not None and w.ts_us < view.ts_us]
        out.append(ev.evaluate(view, hist))
    return out
