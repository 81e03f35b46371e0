"""decide's backend of the semantics table (semantics.py): the typed readings of a Python value and the
primitives, from which every test of the policy language (`eq`, `gt`, `in`, `contains`, `matches`, ...)
is built cell by cell. A cell `Error(code)` raises `Unusable` with that code; `FALSE`/`TRUE` are constants.
`fast_test` gives the same answers for the common plain values without the general path.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

from gatekit.policy import semantics as sem
from gatekit.policy.conditions import Field
from gatekit.policy.values import BADNUM, BOOL, LIST, NUM, OBJ, STR, _ABSENT, kind, number, numeric_string


class Unusable(Exception):
    """A present value a test cannot use: the rule errors. `code` is one of decision.CODES."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def kind_name(v: Any) -> str:
    """The kind of a value as error messages name it: number, string, boolean, list or object."""
    return {LIST: "list", OBJ: "object", BOOL: "boolean", STR: "string"}.get(kind(v), "number")


_KINDS = {BOOL: sem.BOOLEAN, NUM: sem.NUMBER, LIST: sem.LIST, OBJ: sem.OBJECT}


def value_kind(v: Any) -> str:
    """The kind of a value as the semantics table names it (one of `semantics.KINDS`)."""
    if v is _ABSENT:
        return sem.MISSING
    if v is None:
        return sem.NULL
    k = kind(v)
    if k == STR:
        parsed = numeric_string(v)
        return sem.STRING if parsed is None else sem.OUT_OF_RANGE if parsed is False else sem.NUMERIC
    if k == BADNUM:
        return sem.HUGE if isinstance(v, int) else sem.NAN
    return _KINDS[k]


def as_number(v: Any, k: str) -> float:
    """A value of kind number or numeric string as its finite float."""
    return number(v) if k == sem.NUMBER else numeric_string(v)  # type: ignore[return-value]


_CMP = {"eq": operator.eq, "ne": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
        "lte": operator.le}
Fn = Callable[[Any, str], Any]  # (value, its kind) -> the primitive's answer


def _numeric(o: Any, op: str) -> Fn:
    cmp = _CMP[op]
    x = o if isinstance(o, float) else numeric_string(o) if isinstance(o, str) else float(o)
    return lambda v, k: cmp(as_number(v, k), x)


def _list_equality(o: Any, op: str) -> Fn:
    elems = [compile_test("eq", y) for y in o]
    return lambda v, k: len(v) == len(elems) and all([t(x) for t, x in zip(elems, v)])


def _membership(o: Any, op: str) -> Fn:
    members = [compile_test("eq", x) for x in o]
    return lambda v, k: any([t(v) for t in members])


def _elements(o: Any, op: str) -> Fn:
    t = compile_test("eq", o)
    return lambda v, k: any([t(x) for x in v])


def _date(o: Any, op: str) -> Fn:
    cmp = _CMP[op]
    return lambda v, k: cmp(v, o)


# primitive -> (operand, op) -> the primitive on one value (the `Backend` of semantics.py, for decide)
PRIMITIVES: dict[str, Callable[[Any, str], Fn]] = {
    "numeric compare": _numeric,
    "string equality": lambda o, op: lambda v, k: v == o,
    "boolean equality": lambda o, op: lambda v, k: v is o,
    "list equality": _list_equality,
    "membership": _membership,
    "substring": lambda o, op: lambda v, k: o in v,
    "element membership": _elements,
    "key membership": _elements,  # iterating an object iterates its keys
    "regex": lambda o, op: lambda v, k: o.search(v) is not None,
    "prefix": lambda o, op: lambda v, k: v.startswith(o),
    "suffix": lambda o, op: lambda v, k: v.endswith(o),
    "date compare": _date,
    "amount": lambda o, op: as_number,
    "zero": lambda o, op: lambda v, k: 0.0,
}


def _cell(cell: Any, operand: Any, op: str) -> Fn:
    if isinstance(cell, sem.Const):
        value = cell.value
        return lambda v, k: value
    if isinstance(cell, sem.Error):
        code = cell.code

        def error(v: Any, k: str) -> Any:
            raise Unusable(code)
        return error
    fn = PRIMITIVES[cell.name](operand, op)
    if cell.negate:
        return lambda v, k: not fn(v, k)
    return fn


def compile_test(op: str, operand: Any, field_name: str = "") -> Callable[[Any], Any]:
    """A test (or `sum`'s reading of a value) as a function of the value, raising `Unusable`: the table's
    row for this operand, one cell per kind of value."""
    row = sem.cells(op, operand, field_name)
    fns = {k: _cell(c, operand, op) for k, c in row.items()}

    def test(v: Any) -> Any:
        k = value_kind(v)
        return fns[k](v, k)
    return test


def absent_result(op: str, operand: Any, field_name: str = "") -> bool:
    """The test's answer on a missing value (absent or null): a constant of the table."""
    row = sem.cells(op, operand, field_name)
    missing, null = row[sem.MISSING], row[sem.NULL]
    assert isinstance(missing, sem.Const) and missing == null
    return missing.value


class DecideBackend:
    """The `semantics.Backend` of decide: Python values."""

    name = "decide"

    def is_kind(self, value: Any, kinds: frozenset[str]) -> bool:
        return value_kind(value) in kinds

    def as_number(self, value: Any, kind: str) -> float:
        return as_number(value, kind)

    def primitive(self, name: str, value: Any, kind: str, operand: Any, op: str) -> Any:
        return PRIMITIVES[name](operand, op)(value, kind)


BACKEND = DecideBackend()

# op -> (value, operand, field) -> bool, raising Unusable: every test, through the table
TESTS: dict[str, Callable[[Any, Any, Field], bool]] = {
    op: (lambda op: lambda v, o, f: compile_test(op, o, f.name)(v))(op) for op in sem.TABLE if op != "sum"}

_BIG_INT = 1 << 1000  # an int below this in magnitude is a finite float


def fast_test(op: str, operand: Any, field: Field) -> Callable[[Any], "bool | None"] | None:
    """A shortcut for a test on a plain string or finite number: its answer, or None to take the full path.

    Only for speed (enforce mode): each answer is the one the table gives for that value and operand
    (tests/policy/test_semantics.py checks it cell by cell).
    """
    if op in ("eq", "ne") and type(operand) is str:
        want = op == "eq"
        return lambda v: ((v == operand) is want) if type(v) is str else None
    if op in ("in", "not_in") and isinstance(operand, tuple) and all(type(x) is str for x in operand):
        members, want = frozenset(operand), op == "in"
        return lambda v: ((v in members) is want) if type(v) is str else None
    if op in ("gt", "gte", "lt", "lte") and field.name != "time.date" and type(operand) in (int, float):
        cmp = _CMP[op]

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
