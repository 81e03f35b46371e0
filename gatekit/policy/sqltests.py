"""The semantics table as SQL text, for every SQL dialect: one walker over a test's row of the table.

A SQL backend (the DuckDB compiler, gatekit/policy/compile.py; the Spark compiler, gatekit/spark/compile.py)
is a `Dialect`: its string literals, its JSON list and object access and its string functions. Everything
else, which kind of value gets which cell, the false and error cells, the error code, the primitives that
are plain SQL (numeric compare, equality, membership, date compare, the window's amount), is written here
once (`test_sql`, `kinds_sql`, `code_sql`), from `semantics.TABLE`.

A value is a `Val` of the dialect: SQL expressions for its type tag and typed readings, with the null-safe
predicates `is_(tag)`, `missing`, `good`, `bad`, `str_num_ok`, `str_num_bad` and `snm`.

Core layer: SQL text only, no database.
"""

from __future__ import annotations

from typing import Any, Callable

from gatekit.policy import semantics as sem
from gatekit.policy.conditions import Field
from gatekit.policy.decision import BAD_NUMBER, KIND_NAMES, NOT_A_NUMBER, TYPE_MISMATCH, error_message
from gatekit.policy.values import numeric_string

__all__ = ["CMP", "Dialect", "Pair", "SqlLevels", "Test3", "any_", "all_", "code_sql", "error_message_sql", "groups",
           "kind_name_sql", "kinds_sql", "test_sql"]

Sql = str
Pair = tuple[Sql, Sql]  # (value, error), both non-null booleans
Test3 = tuple[Sql, Sql, Sql]  # (value, error, the error's code when it errored)
CMP = {"eq": "=", "ne": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_NO_FIELD = Field("args", ("",))


def any_(parts: list[Sql]) -> Sql:
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def all_(parts: list[Sql]) -> Sql:
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


class Dialect:
    """What a SQL dialect supplies to the walker; the primitives that are plain SQL are written here once.

    A dialect overrides `lit`, the list and object hooks (`array_length`, `element`, `elements`, `keys`,
    `exists`, `element_var`, `key_var`) and `FUNCTIONS` (the string primitives' SQL functions); it may
    override any primitive (`primitive` dispatches on `PRIMITIVES`' names).
    """

    name = "sql"
    # string primitive -> the dialect's function of (string, operand text)
    FUNCTIONS: dict[str, str] = {}

    def lit(self, text: str) -> Sql:
        raise NotImplementedError

    def num(self, x: float) -> Sql:
        return f"CAST({self.lit(repr(float(x)))} AS DOUBLE)"

    # ---- lists and objects (the hooks) ----
    def array_length(self, v: Any) -> Sql:
        raise NotImplementedError

    def element(self, v: Any, i: int) -> Any:
        raise NotImplementedError

    def elements(self, v: Any) -> Sql:
        raise NotImplementedError

    def keys(self, v: Any) -> Sql:
        raise NotImplementedError

    def exists(self, items: Sql, var: str, pred: Sql) -> Sql:
        """Whether `pred` (over the variable `var`) holds for some item: FALSE for none, NULL-safe."""
        raise NotImplementedError

    def element_var(self, name: str) -> Any:
        raise NotImplementedError

    def key_var(self, name: str) -> Any:
        raise NotImplementedError

    # ---- the primitives ----
    def primitive(self, name: str, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        """One of `semantics.PRIMITIVES` on a value of one of `kinds` (`guard`: that it is): (value, error)."""
        if name in self.FUNCTIONS:
            return self.string_function(name, v, o, guard), "FALSE"
        return getattr(self, "p_" + name.replace(" ", "_"))(v, kinds, o, op, guard)

    def string_function(self, name: str, v: Any, o: object, guard: Sql) -> Sql:
        return f"({guard} AND {self.FUNCTIONS[name]}({v.s}, {self.lit(str(o))}))"

    def p_numeric_compare(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        x = self.num(o if isinstance(o, float) else numeric_string(o))  # type: ignore[arg-type]
        cmp = CMP[op]
        parts = [f"({v.good} AND {v.n} {cmp} {x})" if k == sem.NUMBER else f"({v.str_num_ok} AND {v.snv} {cmp} {x})"
                 for k in (sem.NUMBER, sem.NUMERIC) if k in kinds]
        return (parts[0] if len(parts) == 1 else any_(parts)), "FALSE"

    def p_string_equality(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return f"({guard} AND {v.s} = {self.lit(str(o))})", "FALSE"

    def p_boolean_equality(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return f"({guard} AND {v.b} = {'TRUE' if o else 'FALSE'})", "FALSE"

    def p_list_equality(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        same = f"({v.is_('ARRAY')} AND {self.array_length(v)} = {len(o)})"  # type: ignore[arg-type]
        elems = [test_sql(self, self.element(v, i), "eq", oi, _NO_FIELD) for i, oi in enumerate(o)]  # type: ignore[arg-type]
        errs = [e[1] for e in elems if e[1] != "FALSE"]
        return all_([same] + [e[0] for e in elems]), (f"({same} AND {any_(errs)})" if errs else "FALSE")

    def p_membership(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        parts = [test_sql(self, v, "eq", x, _NO_FIELD) for x in o]  # type: ignore[union-attr]
        errs = [p[1] for p in parts if p[1] != "FALSE"]
        return f"({guard} AND {any_([p[0] for p in parts])})", (any_(errs) if errs else "FALSE")

    def _over(self, items: Sql, var: Any, name: str, o: object, guard: Sql) -> Pair:
        xv, xe = test_sql(self, var, "eq", o, _NO_FIELD)[:2]
        val = f"({guard} AND {self.exists(items, name, xv)})"
        return val, (f"({guard} AND {self.exists(items, name, xe)})" if xe != "FALSE" else "FALSE")

    def p_element_membership(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return self._over(self.elements(v), self.element_var("x_"), "x_", o, guard)

    def p_key_membership(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return self._over(self.keys(v), self.key_var("k_"), "k_", o, guard)

    def p_date_compare(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return f"({guard} AND {v.s} {CMP[op]} {self.lit(str(o))})", "FALSE"

    def p_amount(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return (f"(CASE WHEN {v.good} THEN {v.n} WHEN {v.str_num_ok} THEN {v.snv} ELSE CAST(0 AS DOUBLE) END)",
                "FALSE")

    def p_zero(self, v: Any, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        return "CAST(0 AS DOUBLE)", "FALSE"


# ---- the kinds of a value ------------------------------------------------------------------------------
_TAGS = ((sem.BOOLEAN, "BOOLEAN"), (sem.LIST, "ARRAY"), (sem.OBJECT, "OBJECT"))
_NUMS = frozenset({sem.NUMBER, sem.NAN, sem.HUGE})  # the kinds of a JSON number


def kinds_sql(v: Any, kinds: frozenset[str]) -> Sql:
    """Whether the value is of one of `kinds` (semantics.KINDS): the typed readings of its kind in SQL."""
    parts = []
    if kinds & sem.ABSENT:
        assert kinds >= sem.ABSENT, "SQL reads a missing value and a JSON null alike"
        parts.append(v.missing)
    nums = kinds & _NUMS
    if nums:
        assert nums in (_NUMS, {sem.NUMBER}, {sem.NAN, sem.HUGE}), "NaN and a huge number read alike"
        parts.append(v.is_("NUM") if nums == _NUMS else v.good if nums == {sem.NUMBER} else v.bad)
    strs = kinds & sem.STRINGS
    if strs:
        parts.append(_STRING_KINDS[frozenset(strs)](v))
    parts += [v.is_(tag) for k, tag in _TAGS if k in kinds]
    return parts[0] if len(parts) == 1 else any_(parts)


_STRING_KINDS: dict[frozenset[str], Callable[[Any], Sql]] = {
    sem.STRINGS: lambda v: v.is_("VARCHAR"),
    frozenset({sem.NUMERIC}): lambda v: v.str_num_ok,
    frozenset({sem.OUT_OF_RANGE}): lambda v: v.str_num_bad,
    frozenset({sem.STRING}): lambda v: f"({v.is_('VARCHAR')} AND NOT COALESCE({v.snm}, FALSE))",
    frozenset({sem.NUMERIC, sem.OUT_OF_RANGE}): lambda v: f"({v.is_('VARCHAR')} AND COALESCE({v.snm}, FALSE))",
    frozenset({sem.STRING, sem.OUT_OF_RANGE}): lambda v: f"({v.is_('VARCHAR')} AND NOT {v.str_num_ok})",
    frozenset({sem.STRING, sem.NUMERIC}): lambda v: f"({v.is_('VARCHAR')} AND NOT {v.str_num_bad})",
}


def _guard(v: Any, kinds: frozenset[str], dont_care: frozenset[str] = frozenset()) -> Sql:
    """`kinds_sql`, or its complement among present values when shorter; `dont_care` are kinds where the
    answer does not matter (those that error: an erroring rule never matches)."""
    direct = kinds_sql(v, kinds)
    if kinds & sem.ABSENT:
        return direct
    rest = frozenset(sem.PRESENT) - kinds - dont_care
    comp = f"(NOT {v.missing})" if not rest else f"(NOT {v.missing} AND NOT {kinds_sql(v, rest)})"
    return comp if len(comp) < len(direct) else direct


def groups(row: dict[str, Any]) -> dict[Any, frozenset[str]]:
    """A row of the table grouped by cell: cell -> the kinds of value that have it."""
    out: dict[Any, set[str]] = {}
    for k, cell in row.items():
        out.setdefault(cell, set()).add(k)
    return {c: frozenset(ks) for c, ks in out.items()}


def code_sql(d: Dialect, v: Any, errors: list[tuple[str, frozenset[str]]], nested: bool) -> Sql:
    """The code of a test's error, given that it errored: its kind's cell, else a nested `eq`'s."""
    codes = {c for c, _ in errors} | ({sem.nested_error()} if nested else set())
    if len(codes) <= 1:
        return d.lit(codes.pop() if codes else TYPE_MISMATCH)  # none: the test never errors
    whens = [(kinds_sql(v, ks), c) for c, ks in errors]
    last = d.lit(sem.nested_error()) if nested else d.lit(whens.pop()[1])
    return "(CASE " + " ".join(f"WHEN {w} THEN {d.lit(c)}" for w, c in whens) + f" ELSE {last} END)"


def test_sql(d: Dialect, v: Any, op: str, o: object, f: Field) -> Test3:
    """A test of the table on `v` as SQL: (value, error, the error's code), from the row of its operand."""
    row = sem.cells(op, o, f.name)
    if any(isinstance(c, sem.Prim) and c.negate for c in row.values()):  # ne, not_in: not the positive test
        assert all(row[k] == sem.FALSE for k in sem.ABSENT)
        positive = {k: (sem.FALSE if k in sem.ABSENT else c.negated())  # type: ignore[attr-defined]
                    for k, c in row.items()}
        val, err, code = _test_row(d, v, positive, o, op)
        return f"(NOT {v.missing} AND NOT {val})", err, code
    return _test_row(d, v, row, o, op)


test_sql.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _test_row(d: Dialect, v: Any, row: dict[str, Any], o: object, op: str) -> Test3:
    by_cell = groups(row)
    errors = [(c.code, ks) for c, ks in by_cell.items() if isinstance(c, sem.Error)]
    dont_care = frozenset().union(*(ks for _, ks in errors))
    vals, nested = [], []
    for cell, ks in by_cell.items():
        if cell == sem.TRUE:
            vals.append(_guard(v, ks, dont_care))
        elif isinstance(cell, sem.Prim):
            pv, pe = d.primitive(cell.name, v, ks, o, op, _guard(v, ks, dont_care))
            vals.append(pv)
            if pe != "FALSE":
                nested.append(pe)
    errs = ([_guard(v, dont_care)] if dont_care else []) + nested
    val = vals[0] if len(vals) == 1 else (any_(vals) if vals else "FALSE")
    err = "FALSE" if not errs else errs[0] if len(errs) == 1 else any_(errs)
    return val, err, code_sql(d, v, errors, bool(nested))


class SqlLevels:
    """semantics.LevelOps in SQL text (GREATEST and CASE: every SQL dialect gatekit writes)."""

    def lit(self, level: int) -> Sql:
        return str(level)

    def greatest(self, items: list[Sql]) -> Sql:
        return f"GREATEST({', '.join(items)})"

    def if_(self, cond: Sql, then: Sql, other: Sql) -> Sql:
        return f"(CASE WHEN {cond} THEN {then} ELSE {other} END)"

    def below(self, x: Sql, level: int) -> Sql:
        return f"{x} < {level}"


# ---- the error details (decision.py): the message from the code and the value's kind, in either dialect ----
def kind_name_sql(v: Any, lit: Callable[[str], str]) -> str:
    """The kind of the value `v` as error messages name it (number, string, boolean, list, object)."""
    if v.fixed is not None:
        return lit({"NUM": "number", "VARCHAR": "string"}[v.fixed])
    return (f"(CASE {v.t} WHEN 'NUM' THEN 'number' WHEN 'VARCHAR' THEN 'string' WHEN 'BOOLEAN' THEN 'boolean' "
            f"WHEN 'ARRAY' THEN 'list' ELSE 'object' END)")


def error_message_sql(field: Field, test: str, v: Any, code: str, lit: Callable[[str], str]) -> str:
    """decision.error_message as SQL: the same text decide gives for the code and the value's kind."""
    by_kind = " ".join(f"WHEN {lit(k)} THEN {lit(error_message(field.name, test, TYPE_MISMATCH, k))}"
                       for k in KIND_NAMES)
    return (f"(CASE {code} WHEN {lit(BAD_NUMBER)} THEN {lit(error_message(field.name, test, BAD_NUMBER, ''))} "
            f"WHEN {lit(NOT_A_NUMBER)} THEN {lit(error_message(field.name, test, NOT_A_NUMBER, ''))} "
            f"ELSE (CASE {kind_name_sql(v, lit)} {by_kind} END) END)")
