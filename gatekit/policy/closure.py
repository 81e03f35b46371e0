"""The closure evaluator: a policy specialised, tool by tool, into one generated Python function (the gate's).

`decide` (decide.py) is the reference scalar evaluator; this is the fourth evaluator, built for the gate's
microsecond budget and held to the same corpus, the same semantics table and the same Hypothesis properties
(tests/policy). What it does differently, and only for speed:

- per tool name, a *plan*: one function generated for the rules whose tool patterns match that name (the
  patterns are matched once per name; names matching the same rules share one plan), their tests inline, every test computed (decide evaluates every leaf
  too), the decision of each set of matched rules built once by decide's `_decision` (precedence, tiers and
  reasons are semantics.py's) and kept in a list indexed by a bit mask;
- each test reads its field once per call (a key of `args` or `context` from a plain dict, a top field,
  else decide's getter) and answers an exact `str`, a finite `float` or an `int` itself, its operand
  pre-typed, the same answers as `_ops.fast_test` (decide's own shortcut); a regex's answer is remembered
  per string (RE2 is pure; its call from Python is not cheap);
- every other value (missing, null, another kind, a subclass, anything hostile) goes to decide's own
  compiled leaf for that test: the table's cells.

The generated text holds only names this module makes up: operands, keys, regexes and fallbacks are objects
of the plan's namespace, so nothing a policy says becomes code.

Errors are rare, so none is built here: a test whose value errors (decide's leaf gives a `RuleError`)
raises, as does any unexpected exception, and the plan hands the whole call to decide's `Evaluator` (the
reference, with its own fail-closed handling of evaluator faults), so every error, message and code is
decide's by construction; should decide's second reading not see the error the closure saw (a value that
answers differently each time it is read), that error still counts (`_fault`). Conditions are pure (a window only reads the history), so deciding twice is safe.

Core layer: pure Python, no duckdb, polars or pandas.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from gatekit.action import Action
from gatekit.policy._history import Windows
from gatekit.policy._ops import DecideBackend
from gatekit.policy._view import View, getter
from gatekit.policy.conditions import All, Any_, Cond, Field, Not, Test, Window
from gatekit.policy.decide import COMPILERS, Evaluator, Scan, evaluator
from gatekit.policy.decision import INTERNAL_ERROR, Decision, RuleError
from gatekit.policy.model import LEVEL, Policy, Rule
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

    def __init__(self, error: RuleError) -> None:
        super().__init__(str(error))
        self.error = error


def _reference(node: Cond, tz: ZoneInfo, rule: Rule) -> Fast:
    """decide's own compiled condition, as a bool that raises on an error."""
    run = COMPILERS[type(node)](node, tz, rule)

    def ref(view: View, hist: Windows) -> bool:
        value, err = run(view, hist)
        if err is not None:
            raise _Slow(err)
        return value
    return ref


def _fault(reference: Evaluator, rules: list[Rule]) -> Callable[[View, Windows, int, Exception], Decision]:
    """What a plan does when rule `i`'s code raised: decide's evaluator decides the call, and when decide
    does not see that rule error (a value that answered differently the second time it was read: a str
    subclass whose `__eq__` raises once, say; or a fault of the closure itself), the error the closure saw
    still counts: the stricter of decide's decision and the one with that error. Never an allow that a
    single evaluation would have denied."""
    by_id = {r.id: r for r in rules}
    order = {r.id: i for i, r in enumerate(rules)}

    def fault(view: View, hist: Windows, i: int, exc: Exception) -> Decision:
        decided = reference.evaluate(view, hist)
        rule = rules[i]
        if rule.id in decided.errors or any(e not in by_id for e in decided.errors + decided.rules):
            return decided
        seen = exc.error if isinstance(exc, _Slow) else RuleError(
            rule.id, "", "", INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        errors = sorted([(by_id[e.rule], e) for e in decided.error_details] + [(rule, seen)],
                        key=lambda pair: order[pair[0].id])
        strict = reference._decision([by_id[r] for r in decided.rules if r != rule.id], errors)
        return strict if LEVEL[strict.decision] > LEVEL[decided.decision] else decided
    return fault


class _Source:
    """The text of one tool's plan being generated, and the objects it names (K0, K1, ...).

    Only names this module makes up go into the text; every operand, key, regex and decide fallback is an
    object of the namespace, so nothing a policy says can become code.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"_ABSENT": _ABSENT, "_INF": _INF, "_BIG": _BIG_INT, "dict": dict,
                                      "str": str, "int": int, "float": float, "type": type}
        self.roots: dict[str, str] = {}
        self.count = 0

    def const(self, value: Any) -> str:
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def var(self) -> str:
        self.count += 1
        return f"b{self.count}"

    def line(self, text: str) -> None:
        self.lines.append("        " + text)

    def read(self, field: Field) -> str:
        """A statement setting `v` to the field's value (or something only decide answers: `_ABSENT`...)."""
        if field.root in ("args", "context") and len(field.path) == 1:
            root = self.roots.get(field.root)
            if root is None:  # read once per call: the root as a plain dict, or None (then decide reads it)
                root = self.roots[field.root] = f"R_{field.root}"
                self.lines.insert(0, f"        {root} = view.{field.root}\n"
                                     f"        {root} = {root} if type({root}) is dict else None")
            return f"v = {root}.get({self.const(field.path[0])}, _ABSENT) if {root} is not None else _ABSENT"
        if field.root in ("tool", "agent", "session", "user"):
            return f"v = view.{field.root}"
        return f"v = {self.const(getter(field, self.tz))}(view)"


def _emit_test(node: Test, src: _Source, rule: Rule) -> str:
    """Statements that set a fresh variable to the test's answer; decide's leaf for what they do not take."""
    out = src.var()
    ref = src.const(_reference(node, src.tz, rule))
    op, operand, field = node.op, node.operand, node.field
    fallback = f"{out} = {ref}(view, hist)"
    if op == "matches":
        regex = compile_re2(operand)
        memo: dict[str, bool] = {}

        def search(v: str) -> bool:  # the table's `regex` primitive on a plain string, remembered
            hit = memo.get(v)
            if hit is None:
                hit = regex.search(v) is not None
                if len(memo) < _MEMO and len(v) <= _MEMO_LEN:
                    memo[v] = hit
            return hit
        fast = f"{src.const(search)}(v)"
        guard = "type(v) is str"
    elif op in ("eq", "ne") and type(operand) is str:
        fast = f"v {'==' if op == 'eq' else '!='} {src.const(operand)}"
        guard = "type(v) is str"
    elif op in ("in", "not_in") and isinstance(operand, tuple) and all(type(x) is str for x in operand):
        fast = f"v {'in' if op == 'in' else 'not in'} {src.const(frozenset(operand))}"
        guard = "type(v) is str"
    elif op in ("gt", "gte", "lt", "lte") and field.name != "time.date" and type(operand) in (int, float):
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        x = src.const(operand)  # compared as _ops.fast_test compares it (decide's answer on these values)
        src.line(src.read(field))
        src.line("t = type(v)")
        src.line(f"if t is float and -_INF < v < _INF: {out} = v {sym} {x}")
        src.line(f"elif t is int and -_BIG < v < _BIG: {out} = float(v) {sym} {x}")
        src.line(f"else: {fallback}")
        return out
    elif op in ("startswith", "endswith", "contains") and type(operand) is str:
        o = src.const(operand)
        fast = f"v.{op}({o})" if op != "contains" else f"{o} in v"
        guard = "type(v) is str"
    else:
        src.line(fallback)
        return out
    src.line(src.read(field))
    src.line(f"if {guard}: {out} = {fast}")
    src.line(f"else: {fallback}")
    return out


def _emit_window(node: Window, src: _Source, rule: Rule) -> str:
    out = src.var()  # the history does the work: decide's window test as it is
    src.line(f"{out} = {src.const(_reference(node, src.tz, rule))}(view, hist)")
    return out


def _emit_all(node: All | Any_, src: _Source, rule: Rule) -> str:
    # every part is computed first, as decide evaluates them all: an error in any of them reaches decide
    parts = [_emit(item, src, rule) for item in node.items]
    if not parts:
        return "True" if isinstance(node, All) else "False"
    out = src.var()
    src.line(f"{out} = " + (" and " if isinstance(node, All) else " or ").join(f"bool({p})" for p in parts))
    return out


def _emit_not(node: Not, src: _Source, rule: Rule) -> str:
    inner = _emit(node.item, src, rule)
    out = src.var()
    src.line(f"{out} = not {inner}")
    return out


EMIT: dict[type, Callable[[Any, _Source, Rule], str]] = {
    Test: _emit_test,
    Window: _emit_window,
    All: _emit_all,
    Any_: _emit_all,
    Not: _emit_not,
}
FAST = EMIT  # every node type has its generator (tests/policy/test_corpus.py checks the table is complete)


def _emit(node: Cond, src: _Source, rule: Rule) -> str:
    return EMIT[type(node)](node, src, rule)


def _plan(reference: Evaluator, rules: list[Rule], tz: ZoneInfo) -> Callable[[View, Windows], Decision]:
    """One tool's decision, generated: its rules' tests inline, the decision of each set of matched rules
    built once by decide's `_decision` and kept by bit mask; decide's evaluator on any error or fault."""
    if not rules:
        none = reference._decision([], [])
        return lambda view, hist: none
    small = len(rules) <= 8
    decisions: Any = [None] * (1 << len(rules)) if small else {}

    def decided(mask: int) -> Decision:
        decision = reference._decision([r for i, r in enumerate(rules) if mask >> i & 1], [])
        if small or len(decisions) < 65536:
            decisions[mask] = decision
        return decision

    src = _Source(tz)
    bits = []
    for i, rule in enumerate(rules):
        if i:
            src.line(f"ri = {i}")  # which rule's code is running, for `fault`
        bits.append(f"({1 << i} if {_emit(rule.when, src, rule)} else 0)")
    src.names.update(fault=_fault(reference, rules), decided=decided, D=decisions)
    lookup = "D[mask]" if small else "D.get(mask)"
    text = ("def plan(view, hist):\n    ri = 0\n    try:\n" + "\n".join(src.lines) + "\n"
            f"        mask = {' | '.join(bits)}\n"
            "    except Exception as exc:  # an error or a fault: decide's evaluator decides (see _fault)\n"
            "        return fault(view, hist, ri, exc)\n"
            f"    return {lookup} or decided(mask)\n")
    namespace = dict(src.names)
    exec(compile(text, f"<gatekit closure plan: {len(rules)} rules>", "exec"), namespace)  # noqa: S102
    plan = namespace["plan"]
    plan.source = text  # for a reader (and tests): what this tool's calls run
    return plan


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
        self._tz = tz
        self._rules = [(r, compile_re2(r.tool_regex)) for r in policy.rules]
        self._plans: dict[str, Callable[[View, Windows], Decision]] = {}
        # one plan per set of matching rules, shared by every tool name that set matches: a caller making
        # up tool names (under a `*` rule, say) costs a pattern match each, not a generated function each
        self._by_rules: dict[tuple[int, ...], Callable[[View, Windows], Decision]] = {}
        self._none = _plan(self.reference, [], tz)

    def plan(self, tool: Any) -> Callable[[View, Windows], Decision]:
        """The closure deciding calls of `tool` (built on first sight of the set of rules it matches)."""
        if type(tool) is not str:  # a str subclass is decide's to read; anything else matches no rule
            return self.reference.evaluate if isinstance(tool, str) else self._none
        found = self._plans.get(tool)
        if found is None:
            matched = tuple(i for i, (r, rx) in enumerate(self._rules) if rx.fullmatch(tool) is not None)
            found = self._by_rules.get(matched)
            if found is None:
                found = _plan(self.reference, [self._rules[i][0] for i in matched], self._tz)
                if len(self._by_rules) < _PLANS:
                    self._by_rules[matched] = found
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
