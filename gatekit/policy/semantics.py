"""The meaning of the policy language, written once: the semantics table, the shared constants, the
precedence of rules and the window rule. Every engine (a *backend*) implements only the primitives and the
typed readings of a value; the false and error cells come from here.

Core layer: no duckdb, polars or pandas. `python -m gatekit.policy.doctable` rewrites the table in
docs/policy.md from `TABLE` (tests/policy/test_semantics.py fails when the two differ).

The table: for each test, each kind of operand and each kind of value, a `Cell`: `FALSE`, `TRUE`,
`Error(code)` or `Prim(name)` (a primitive the backend implements, possibly negated: `ne` is not `eq`).
A primitive may apply `eq` again (list equality, membership, element and key membership): those nested
tests read this table too, so their errors are `eq`'s.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, TypeVar, runtime_checkable

from gatekit.policy.decision import BAD_NUMBER, NOT_A_NUMBER, TYPE_MISMATCH

__all__ = [
    "ABSENT", "BACKENDS", "FALSE", "JSON_SPACE", "KINDS", "LEVEL", "NESTED", "NO_MATCH", "NUMBER_TYPES",
    "NUMERIC_STRING", "OPERANDS", "PRESENT", "PRIMITIVES", "SUM_MARGIN", "TABLE", "TRUE", "VERDICTS", "WEEKDAYS", "Backend", "Cell",
    "Const", "Error", "LevelOps", "Prim", "PyLevels", "backend", "best_level", "cells", "counts_before",
    "decision_level", "deciding_level", "level_of", "nested_error", "operand_kind", "render_table", "splice",
    "strictest_tier", "sum_margin", "window_lower_bound",
]

# ---- shared constants ----------------------------------------------------------------------------------
# A string that is a JSON number, optionally with surrounding JSON white space, compares as that number.
NUMERIC_STRING = r"[ \t\n\r]*-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[ \t\n\r]*"
JSON_SPACE = " \t\n\r"  # JSON white space, trimmed around a numeric string
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # time.weekday, ISO order (Monday is 1)
NUMBER_TYPES = ("BIGINT", "UBIGINT", "DOUBLE", "HUGEINT")  # the JSON number types of a JSON reader (DuckDB's)

# ---- kinds of value ------------------------------------------------------------------------------------
NUMBER, NUMERIC, STRING, OUT_OF_RANGE = "number", "numeric string", "string", "out-of-range numeric string"
LIST, OBJECT, BOOLEAN, MISSING, NULL = "list", "object", "boolean", "missing", "null"
NAN, HUGE = "nan or infinity", "huge number"
KINDS = (NUMBER, NUMERIC, STRING, LIST, OBJECT, BOOLEAN, MISSING, NULL, NAN, HUGE, OUT_OF_RANGE)
ABSENT = frozenset({MISSING, NULL})  # every test is false on these, but `exists: false`
PRESENT = tuple(k for k in KINDS if k not in ABSENT)
STRINGS = frozenset({NUMERIC, STRING, OUT_OF_RANGE})  # every kind a JSON string can be
BAD_NUMBERS = frozenset({NAN, HUGE, OUT_OF_RANGE})  # read as a number, they are unusable
NUMBERS = frozenset({NUMBER, NUMERIC})  # read as a number, a finite double


# ---- cells ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    value: bool

    def negated(self) -> Cell:
        return Const(not self.value)

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True)
class Error:
    code: str

    def negated(self) -> Cell:
        return self

    def __str__(self) -> str:
        return f"**error** `{self.code}`"


@dataclass(frozen=True)
class Prim:
    name: str  # one of PRIMITIVES
    negate: bool = False

    def negated(self) -> Cell:
        return Prim(self.name, not self.negate)

    def __str__(self) -> str:
        return ("not " if self.negate else "") + self.name


Cell = "Const | Error | Prim"
TRUE, FALSE = Const(True), Const(False)

# The primitives a backend implements, with what each means (the operand is the test's, already checked by
# the loader). `op` picks the comparison of an ordering primitive.
PRIMITIVES: dict[str, str] = {
    "numeric compare": "the value read as a number against the operand read as a number (IEEE doubles)",
    "string equality": "the same code points",
    "boolean equality": "the same boolean",
    "list equality": "the same length and each element `eq` the operand's element (a `null` element equals "
                     "nothing)",
    "membership": "some member of the operand list: the value `eq` it",
    "substring": "the operand occurs in the string",
    "element membership": "some element of the list `eq` the operand (a `null` element equals nothing)",
    "key membership": "some key of the object `eq` the operand",
    "regex": "RE2, unanchored, the pattern found in the string",
    "prefix": "the string starts with the operand",
    "suffix": "the string ends with the operand",
    "date compare": "the local date (`YYYY-MM-DD`) against the operand date, as text",
    "amount": "the value read as a number, added to the window's sum",
    "zero": "adds 0 to the window's sum",
}

# the primitives that apply `eq` again (to elements, members or keys): their errors are `nested_error()`
NESTED = frozenset({"list equality", "membership", "element membership", "key membership"})

# Kinds of operand. The loader has normalised them: numbers are finite floats, lists tuples, dates text.
OPERANDS: dict[str, tuple[str, ...]] = {
    "eq": (NUMBER, NUMERIC, STRING, BOOLEAN, LIST),
    "gt": (NUMBER, "date"), "in": (LIST,), "contains": (STRING, "other"),
    "matches": ("pattern",), "startswith": (STRING,), "exists": ("true", "false"), "sum": ("field",),
}
for _neg, _pos in (("ne", "eq"), ("gte", "gt"), ("lt", "gt"), ("lte", "gt"), ("not_in", "in"),
                   ("endswith", "startswith")):
    OPERANDS[_neg] = OPERANDS[_pos]


def operand_kind(op: str, operand: Any, field_name: str = "") -> str:
    """The kind of a (loaded) operand, one of `OPERANDS[op]`."""
    if op in ("gt", "gte", "lt", "lte"):
        return "date" if field_name == "time.date" else NUMBER
    if op in ("in", "not_in"):
        return LIST
    if op == "matches":
        return "pattern"
    if op in ("startswith", "endswith"):
        return STRING
    if op == "exists":
        return "true" if operand else "false"
    if op == "sum":
        return "field"
    if op == "contains":
        return STRING if isinstance(operand, str) else "other"
    # eq, ne
    if operand is True or operand is False:
        return BOOLEAN
    if isinstance(operand, tuple):
        return LIST
    if isinstance(operand, (int, float)):
        return NUMBER
    from gatekit.policy.values import numeric_string  # values imports this module
    return NUMERIC if isinstance(numeric_string(operand), float) else STRING


def _eq_row(ok: str) -> dict[str, Cell]:
    row: dict[str, Cell] = {k: FALSE for k in KINDS}
    row[NAN] = row[HUGE] = Error(BAD_NUMBER)  # an unusable number errors against any operand
    if ok == NUMBER:
        row[NUMBER] = row[NUMERIC] = Prim("numeric compare")
        row[OUT_OF_RANGE] = Error(BAD_NUMBER)
    elif ok in (NUMERIC, STRING):
        row[NUMERIC] = row[STRING] = row[OUT_OF_RANGE] = Prim("string equality")
        if ok == NUMERIC:
            row[NUMBER] = Prim("numeric compare")
    elif ok == BOOLEAN:
        row[BOOLEAN] = Prim("boolean equality")
    else:
        row[LIST] = Prim("list equality")
    return row


def _order_row(ok: str) -> dict[str, Cell]:
    if ok == "date":  # time.date: always a date string
        return {k: (Prim("date compare") if k in STRINGS else FALSE) for k in KINDS}
    row: dict[str, Cell] = {k: Error(TYPE_MISMATCH) for k in PRESENT}
    row.update({MISSING: FALSE, NULL: FALSE, NUMBER: Prim("numeric compare"), NUMERIC: Prim("numeric compare"),
                STRING: Error(NOT_A_NUMBER), NAN: Error(BAD_NUMBER), HUGE: Error(BAD_NUMBER),
                OUT_OF_RANGE: Error(BAD_NUMBER)})
    return row


def _in_row(ok: str) -> dict[str, Cell]:
    row: dict[str, Cell] = {k: Prim("membership") for k in PRESENT}
    row.update({MISSING: FALSE, NULL: FALSE, LIST: Error(TYPE_MISMATCH), OBJECT: Error(TYPE_MISMATCH),
                NAN: Error(BAD_NUMBER), HUGE: Error(BAD_NUMBER)})
    return row


def _contains_row(ok: str) -> dict[str, Cell]:
    row: dict[str, Cell] = {k: Error(TYPE_MISMATCH) for k in PRESENT}
    row.update({MISSING: FALSE, NULL: FALSE, LIST: Prim("element membership"), OBJECT: Prim("key membership")})
    for k in STRINGS:
        row[k] = Prim("substring") if ok == STRING else FALSE
    return row


def _string_row(prim: str) -> Callable[[str], dict[str, Cell]]:
    def row(ok: str) -> dict[str, Cell]:
        out: dict[str, Cell] = {k: Error(TYPE_MISMATCH) for k in PRESENT}
        out.update({MISSING: FALSE, NULL: FALSE, **{k: Prim(prim) for k in STRINGS}})
        return out
    return row


def _exists_row(ok: str) -> dict[str, Cell]:
    want = ok == "true"
    return {k: Const(want if k not in ABSENT else not want) for k in KINDS}


def _sum_row(ok: str) -> dict[str, Cell]:
    row: dict[str, Cell] = {k: Error(TYPE_MISMATCH) for k in PRESENT}
    row.update({MISSING: Prim("zero"), NULL: Prim("zero"), NUMBER: Prim("amount"), NUMERIC: Prim("amount"),
                STRING: Error(NOT_A_NUMBER), **{k: Error(BAD_NUMBER) for k in BAD_NUMBERS}})
    return row


def _negation(row: dict[str, Cell]) -> dict[str, Cell]:
    """`ne` of `eq`, `not_in` of `in`: the opposite on a present value, false on a missing one."""
    return {k: (FALSE if k in ABSENT else c.negated()) for k, c in row.items()}  # type: ignore[attr-defined]


_ROWS: dict[str, Callable[[str], dict[str, Cell]]] = {
    "eq": _eq_row, "ne": lambda ok: _negation(_eq_row(ok)),
    **{op: _order_row for op in ("gt", "gte", "lt", "lte")},
    "in": _in_row, "not_in": lambda ok: _negation(_in_row(ok)),
    "contains": _contains_row,
    "matches": _string_row("regex"), "startswith": _string_row("prefix"), "endswith": _string_row("suffix"),
    "exists": _exists_row,
    "sum": _sum_row,  # a `sum` window's reading of each call's value
}

# test -> operand kind -> value kind -> cell: the semantics table
TABLE: dict[str, dict[str, dict[str, Cell]]] = {
    op: {ok: _ROWS[op](ok) for ok in OPERANDS[op]} for op in _ROWS}


def cells(op: str, operand: Any, field_name: str = "") -> dict[str, Cell]:
    """The row of the table a test with this operand reads: value kind -> cell."""
    return TABLE[op][operand_kind(op, operand, field_name)]


def nested_error() -> str:
    """The code of an error inside a primitive that applies `eq` again: `eq`'s only error code."""
    codes = {c.code for row in TABLE["eq"].values() for c in row.values() if isinstance(c, Error)}
    assert len(codes) == 1, codes
    return codes.pop()


# ---- precedence ----------------------------------------------------------------------------------------
LEVEL = {"allow": 0, "escalate": 1, "deny": 2}  # deny > escalate > allow
VERDICTS = ("allow", "escalate", "deny")
NO_MATCH = -1  # the level of no deciding match
T = TypeVar("T")


class LevelOps(Protocol[T]):
    """The arithmetic precedence is written in: Python values, SQL text or polars expressions."""

    def lit(self, level: int) -> T: ...
    def greatest(self, items: list[T]) -> T: ...
    def if_(self, cond: Any, then: T, other: T) -> T: ...
    def below(self, x: T, level: int) -> Any: ...


def deciding_level(rule: Any) -> int | None:
    """The level a matching rule decides with, or None: a shadow rule never decides (nor do its errors)."""
    return LEVEL[rule.action] if rule.mode == "enforce" else None


def best_level(ops: LevelOps[T], matched: Iterable[tuple[Any, Any]]) -> T:
    """The level of the strictest deciding rule among `matched` ((rule, whether it matched) pairs, the
    condition in the backend's terms), `NO_MATCH` when none: shadow rules are left out."""
    levels = [ops.if_(m, ops.lit(lvl), ops.lit(NO_MATCH)) for rule, m in matched
              if (lvl := deciding_level(rule)) is not None]
    return ops.greatest([ops.lit(NO_MATCH), *levels]) if levels else ops.lit(NO_MATCH)


def decision_level(ops: LevelOps[T], policy: Any, matched: Iterable[tuple[Any, Any]], errored: Any) -> T:
    """The decision's level: the strictest deciding rule's level among the matched ones, else the default;
    at least `on_error` when a deciding rule errored (`errored`: whether any enforced rule errored)."""
    return level_of(ops, best_level(ops, matched), errored, policy)


def level_of(ops: LevelOps[T], best: T, errored: Any, policy: Any) -> T:
    """From the strictest deciding match's level (`NO_MATCH` for none) to the decision's level."""
    base = ops.if_(ops.below(best, 0), ops.lit(LEVEL[policy.default]), best)
    return ops.if_(errored, ops.greatest([base, ops.lit(LEVEL[policy.on_error])]), base)


class PyLevels:
    """`LevelOps` on plain values (decide, and the tests)."""

    def lit(self, level: int) -> int:
        return level

    def greatest(self, items: list[int]) -> int:
        return max(items)

    def if_(self, cond: Any, then: int, other: int) -> int:
        return then if cond else other

    def below(self, x: int, level: int) -> bool:
        return x < level


def strictest_tier(policy: Any, matched: Iterable[Any], rank: dict[str, int] | None = None) -> str | None:
    """The tier of an escalation: the strictest among the matching deciding escalate rules naming one
    (`rank`: `policy.tier_rank()`, when the caller keeps it)."""
    rank = policy.tier_rank() if rank is None else rank
    tiers = [r.tier for r in matched if deciding_level(r) == LEVEL["escalate"] and r.tier is not None]
    return min(tiers, key=rank.__getitem__) if tiers else None


# ---- the window rule -----------------------------------------------------------------------------------
# A window at `ts` of length `span` counts the calls of the rule's tools with the same `per` key and a
# timestamp in (ts - span, ts]; among calls at the same instant only those earlier in the log (lower seq).
# A sum adds the values in ascending order. An engine that adds in another order (a running sum, a window
# SUM) may decide from its sum only when it is further from the threshold than rounding could move it:
# SUM_MARGIN * (n + 2) * 2^-53 * sum(|x|) for n values (each order's float sum is within n * 2^-53 * sum(|x|)
# of the exact sum); otherwise it adds the values in ascending order.
SUM_MARGIN = 8


def window_lower_bound(ts: int, span: int) -> int:
    """The exclusive lower bound of the window at `ts` (microseconds): a peer counts when lo < its ts <= ts."""
    return ts - span


def counts_before(peer_ts: int, peer_seq: int, ts: int, seq: int, span: int) -> bool:
    """Whether a peer call counts in the window of the call (`ts`, `seq`): the frame and the tie rule."""
    return window_lower_bound(ts, span) < peer_ts <= ts and not (peer_ts == ts and peer_seq > seq)


def sum_margin(n: int, magnitude: float) -> float:
    """How far from the threshold an unordered float sum of `n` values (sum of |x|: `magnitude`) must be."""
    return SUM_MARGIN * (n + 2) * magnitude * 2.0 ** -53


# ---- backends ------------------------------------------------------------------------------------------
@runtime_checkable
class Backend(Protocol):
    """What an engine implements to evaluate the table: the typed readings of a value and the primitives.

    `V` is a value as the engine holds it (a Python object, a SQL expression, a Spark column), `B` a
    boolean in the engine. The engine builds a test from `cells(op, operand, field)`: `FALSE`/`TRUE` as
    its constants, `Error(code)` as an error with that code, `Prim(name)` through `primitive`.
    """

    name: str

    def is_kind(self, value: Any, kinds: frozenset[str]) -> Any:
        """Whether the value is of one of `kinds` (a set of `KINDS`): the typed reading of its kind."""
        ...

    def as_number(self, value: Any, kind: str) -> Any:
        """The value of kind `number` or `numeric string` read as a finite double."""
        ...

    def primitive(self, name: str, value: Any, kind: str, operand: Any, op: str) -> Any:
        """One of `PRIMITIVES` on a value of `kind` (in the engine's terms: (value, error) for SQL)."""
        ...


# backend name -> "module:attribute" of its `Backend`: a new engine is one module and one line here
BACKENDS: dict[str, str] = {
    "decide": "gatekit.policy._ops:BACKEND",
    "closure": "gatekit.policy.closure:BACKEND",  # the gate's: decide specialised per tool (closure.py)
    "duckdb": "gatekit.policy.compile:BACKEND",
    "spark": "gatekit.spark.compile:BACKEND",  # SQL text only: running it needs pyspark (gatekit.spark.engine)
}


def backend(name: str) -> Backend:
    """A registered backend, imported on first use (an engine's module may need its extra installed)."""
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


# ---- docs/policy.md ------------------------------------------------------------------------------------
_DOC_KINDS = (NUMBER, NUMERIC, STRING, BOOLEAN, LIST, OBJECT, NAN, HUGE, OUT_OF_RANGE)
_BEGIN = "<!-- semantics table: generated from gatekit/policy/semantics.py by python -m gatekit.policy.doctable -->"
_END = "<!-- semantics table: end -->"


def _short(cell: Any) -> str:
    return {"false": "false", "true": "true"}.get(str(cell), str(cell))


def render_table() -> str:
    """The semantics table as markdown (the block of docs/policy.md between the markers)."""
    lines = [_BEGIN, "",
             "The value a test reads is *missing* when the field is absent or JSON `null`: then every test is",
             "false but `exists: false`, and a `sum` counts 0. Otherwise, by the kind of the value (columns) and",
             "the test with its kind of operand (rows):", "",
             "| test | operand | " + " | ".join(_DOC_KINDS) + " |",
             "|---|---|" + "---|" * len(_DOC_KINDS)]
    for op, by_operand in TABLE.items():
        for ok, row in by_operand.items():
            assert row[MISSING] == row[NULL]
            lines.append(f"| `{op}` | {ok} | " + " | ".join(_short(row[k]) for k in _DOC_KINDS) + " |")
    lines += ["", "The primitives (what each backend implements):", ""]
    lines += [f"- *{name}*: {text}." for name, text in PRIMITIVES.items()]
    lines += ["", _END]
    return "\n".join(lines)


def splice(doc: str) -> str:
    """`doc` (docs/policy.md's text) with its generated table replaced by `render_table()`."""
    start, end = doc.index(_BEGIN), doc.index(_END) + len(_END)
    return doc[:start] + render_table() + doc[end:]
