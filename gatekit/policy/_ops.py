"""The tests of the policy language (`eq`, `gt`, `in`, `contains`, `matches`, ...) on one present value.

One entry per test in `TESTS`, the meaning of the semantics table in DESIGN.md; compile.py's `LEAVES` is
the same table in SQL. A value a test cannot use raises `Unusable` with the error's stable code.
`fast_test` gives the same answers for the common plain values without the general path.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

from gatekit.policy.conditions import Field
from gatekit.policy.decision import BAD_NUMBER, NOT_A_NUMBER, TYPE_MISMATCH
from gatekit.policy.values import BADNUM, BOOL, LIST, NUM, OBJ, STR, kind, number, numeric_string


class Unusable(Exception):
    """A present value a test cannot use: the rule errors. `code` is one of decision.CODES."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def kind_name(v: Any) -> str:
    """The kind of a value as error messages name it: number, string, boolean, list or object."""
    return {LIST: "list", OBJ: "object", BOOL: "boolean", STR: "string"}.get(kind(v), "number")


def number_code(v: Any) -> str:
    """Why a present value is not a usable number (for ordering tests and `sum`)."""
    k = kind(v)
    if k == STR:
        return NOT_A_NUMBER if numeric_string(v) is None else BAD_NUMBER
    return BAD_NUMBER if k == BADNUM else TYPE_MISMATCH


def _eq(v: Any, o: Any) -> bool:
    k = kind(v)
    if k == BADNUM:
        raise Unusable(BAD_NUMBER)
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
                raise Unusable(BAD_NUMBER)
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
            raise Unusable(NOT_A_NUMBER)
        if parsed is False:
            raise Unusable(BAD_NUMBER)
        return cmp(parsed, o)
    raise Unusable(BAD_NUMBER if k == BADNUM else TYPE_MISMATCH)


def _in(v: Any, o: tuple) -> bool:
    k = kind(v)
    if k in (LIST, OBJ):
        raise Unusable(TYPE_MISMATCH)
    if k == BADNUM:
        raise Unusable(BAD_NUMBER)
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
    raise Unusable(TYPE_MISMATCH)


def _string_test(name: str) -> Callable[[Any, Any], bool]:
    method = _STRING_OPS[name]

    def test(v: Any, o: Any) -> bool:
        if not isinstance(v, str):
            raise Unusable(TYPE_MISMATCH)
        return method(v, o)
    return test


_STRING_OPS: dict[str, Callable[[str, Any], bool]] = {
    "matches": lambda v, o: o.search(v) is not None,
    "startswith": str.startswith,
    "endswith": str.endswith,
}

_MATCHES, _STARTSWITH, _ENDSWITH = (_string_test(name) for name in ("matches", "startswith", "endswith"))

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
    "matches": lambda v, o, f: _MATCHES(v, o),
    "startswith": lambda v, o, f: _STARTSWITH(v, o),
    "endswith": lambda v, o, f: _ENDSWITH(v, o),
    "exists": lambda v, o, f: o,  # reached only when the value is present
}

_BIG_INT = 1 << 1000  # an int below this in magnitude is a finite float


def fast_test(op: str, operand: Any, field: Field) -> Callable[[Any], "bool | None"] | None:
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
