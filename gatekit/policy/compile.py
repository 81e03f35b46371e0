"""The replay compiler: a policy as one DuckDB query that decides every stored action, no per-row Python.

Mirrors decide.py node for node and test for test (dispatch tables `LEAVES` and `NODES` below). Each leaf
compiles to two SQL booleans, its value and whether it errored; a rule errors when any of its leaves errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable, Mapping, Sequence

from gatekit.policy.conditions import All, Any_, Cond, Field, Not, Test, Window
from gatekit.policy import semantics as sem
from gatekit.policy import sqltests
from gatekit.policy.sqltests import Pair, Test3
from gatekit.policy.model import Policy, Rule
from gatekit.policy.semantics import JSON_SPACE, NUMBER_TYPES, NUMERIC_STRING, WEEKDAYS
from gatekit.policy.timezones import CYCLE_US, LOCAL_MAX_US, LOCAL_MIN_US, offsets

__all__ = ["ERROR_DETAIL", "SHRED_COLUMNS", "Shredded", "compile_sql", "fields_read", "json_number_sql",
           "json_pointer", "lit", "local_offset_sql", "local_range_sql", "local_time_sql", "number_sql",
           "shred_sql", "tz_key_sql"]

Sql = str
_NUM_TYPES = "(" + ", ".join(f"'{t}'" for t in NUMBER_TYPES) + ")"


def lit(text: str) -> Sql:
    """`text` as a SQL string literal: the one quoting every SQL reader of the store shares (replay, runs,
    metrics), so a name or a pattern never reaches DuckDB unquoted.

    >>> lit("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def num(x: float) -> Sql:
    return f"CAST({lit(repr(float(x)))} AS DOUBLE)"


def _any(parts: list[Sql]) -> Sql:
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _all(parts: list[Sql]) -> Sql:
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


@dataclass(frozen=True)
class Val:
    """SQL expressions for one value: its type tag (NULL when missing) and its typed readings."""

    t: Sql  # 'NUM' | 'VARCHAR' | 'BOOLEAN' | 'ARRAY' | 'OBJECT' | 'NULL' | NULL (missing)
    # typed NULLs: an untyped NULL cannot pick an overload of isnan() and friends
    n: Sql = "CAST(NULL AS DOUBLE)"  # when a number
    s: Sql = "CAST(NULL AS VARCHAR)"  # when a string
    b: Sql = "CAST(NULL AS BOOLEAN)"  # when a boolean
    j: Sql = "CAST(NULL AS JSON)"  # when a list or object
    snm: Sql = "FALSE"  # the string has the form of a JSON number
    snv: Sql = "CAST(NULL AS DOUBLE)"  # the string read as a DOUBLE, when it has that form
    # A value of one fixed kind (a VARCHAR column, time.hour): its kind tests are written directly, which
    # also keeps DuckDB 2.0's optimizer off a constant-folding bug with CASE-built type tags.
    fixed: str | None = None
    present: Sql = "TRUE"

    @classmethod
    def of_json(cls, x: Sql) -> Val:
        t = (f"(CASE WHEN json_type({x}) IN {_NUM_TYPES} THEN 'NUM' ELSE json_type({x}) END)")
        s = f"({x} ->> '$')"
        return cls(t=t, n=f"TRY_CAST({x} AS DOUBLE)", s=s, b=f"TRY_CAST({x} AS BOOLEAN)", j=x,
                   snm=f"regexp_full_match({s}, {lit(NUMERIC_STRING)})",
                   snv=f"TRY_CAST(trim({s}, {lit(JSON_SPACE)}) AS DOUBLE)")

    @classmethod
    def of_string(cls, x: Sql) -> Val:
        return cls(t="'VARCHAR'", s=x, fixed="VARCHAR", present=f"({x} IS NOT NULL)",
                   snm=f"regexp_full_match({x}, {lit(NUMERIC_STRING)})",
                   snv=f"TRY_CAST(trim({x}, {lit(JSON_SPACE)}) AS DOUBLE)")

    # null-safe predicates
    def is_(self, tag: str) -> Sql:
        if self.fixed is not None:
            return self.present if tag == self.fixed else "FALSE"
        return f"COALESCE({self.t} = '{tag}', FALSE)"

    @property
    def missing(self) -> Sql:
        if self.fixed is not None:
            return f"(NOT {self.present})"
        return f"COALESCE({self.t} IS NULL OR {self.t} = 'NULL', TRUE)"

    @property
    def bad(self) -> Sql:
        return f"({self.is_('NUM')} AND (isnan({self.n}) OR isinf({self.n})))"

    @property
    def good(self) -> Sql:
        return f"({self.is_('NUM')} AND isfinite({self.n}))"

    @property
    def str_num_ok(self) -> Sql:
        return f"({self.is_('VARCHAR')} AND COALESCE({self.snm} AND isfinite({self.snv}), FALSE))"

    @property
    def str_num_bad(self) -> Sql:
        return f"({self.is_('VARCHAR')} AND COALESCE({self.snm} AND NOT isfinite({self.snv}), FALSE))"




@dataclass(frozen=True)
class ShreddedVal(Val):
    """A field read from its shredded columns (`shred_sql`), where each typed reading is non-null exactly
    when the value has its kind: a kind test is then a null test, cheaper than comparing the type tag."""

    def is_(self, tag: str) -> Sql:
        reading = {"NUM": self.n, "VARCHAR": self.s, "BOOLEAN": self.b}.get(tag)
        return f"({reading} IS NOT NULL)" if reading is not None else super().is_(tag)

    @property
    def bad(self) -> Sql:
        return f"COALESCE(NOT isfinite({self.n}), FALSE)"

    @property
    def good(self) -> Sql:
        return f"COALESCE(isfinite({self.n}), FALSE)"

    @property
    def str_num_ok(self) -> Sql:
        return f"COALESCE(isfinite({self.snv}), FALSE)"

    @property
    def str_num_bad(self) -> Sql:
        return f"COALESCE(NOT isfinite({self.snv}), FALSE)"


# ---- the tests: the semantics table (semantics.py) in DuckDB's SQL, through the shared walker (sqltests)
class _DuckDB(sqltests.Dialect):
    """DuckDB's SQL: its JSON list and object access and string functions."""

    name = "duckdb"
    FUNCTIONS = {"substring": "contains", "regex": "regexp_matches", "prefix": "starts_with", "suffix": "suffix"}

    def lit(self, text: str) -> Sql:
        return lit(text)

    def array_length(self, v: Val) -> Sql:
        return f"json_array_length({v.j})"

    def element(self, v: Val, i: int) -> Val:
        return Val.of_json(f"json_extract({v.j}, '$[{i}]')")

    def elements(self, v: Val) -> Sql:
        return f"CAST(json_extract({v.j}, '$[*]') AS JSON[])"

    def keys(self, v: Val) -> Sql:
        return f"json_keys({v.j})"

    def exists(self, items: Sql, var: str, pred: Sql) -> Sql:
        return f"COALESCE(list_bool_or(list_transform({items}, lambda {var}: {pred})), FALSE)"

    def element_var(self, name: str) -> Val:
        return Val.of_json(name)

    def key_var(self, name: str) -> Val:
        return Val.of_string(name)


DIALECT = _DuckDB()
# primitive -> (value, its kinds, operand, op, the SQL guard of those kinds) -> (value, error)
PRIMITIVES: dict[str, Callable[[Val, frozenset[str], object, str, Sql], Pair]] = {
    name: (lambda name: lambda v, kinds, o, op, guard: DIALECT.primitive(name, v, kinds, o, op, guard))(name)
    for name in sem.PRIMITIVES}
_groups = sqltests.groups
kinds_sql = sqltests.kinds_sql


def _code(v: Val, errors: list[tuple[str, frozenset[str]]], nested: bool) -> Sql:
    return sqltests.code_sql(DIALECT, v, errors, nested)


def test_sql(v: Val, op: str, o: object, f: Field) -> Test3:
    """A test of the table on `v` as DuckDB SQL: (value, error, the error's code) (sqltests.test_sql)."""
    return sqltests.test_sql(DIALECT, v, op, o, f)


class DuckDBBackend:
    """The `semantics.Backend` of the replay compiler: SQL expressions over DuckDB's JSON readings."""

    name = "duckdb"

    def is_kind(self, value: Val, kinds: frozenset[str]) -> Sql:
        return kinds_sql(value, frozenset(kinds))

    def as_number(self, value: Val, kind: str) -> Sql:
        return value.n if kind == sem.NUMBER else value.snv

    def primitive(self, name: str, value: Val, kind: str, operand: object, op: str) -> Pair:
        kinds = frozenset({kind})
        return PRIMITIVES[name](value, kinds, operand, op, kinds_sql(value, kinds))


BACKEND = DuckDBBackend()


# ---- the error details (decision.py): the code from the table, the message from the value's kind -------
def error_detail(rule: Rule, field: Field, test: str, v: Val, code: Sql) -> Sql:
    """The STRUCT of decision.RuleError for a leaf that errored: the same code and message as decide."""
    message = sqltests.error_message_sql(field, test, v, code, lit)
    return (f"{{'rule': {lit(rule.id)}, 'field': {lit(field.name)}, 'test': {lit(test)}, 'code': {code}, "
            f"'message': {message}}}")


ERROR_DETAIL = "STRUCT(rule VARCHAR, field VARCHAR, test VARCHAR, code VARCHAR, message VARCHAR)"

# op -> the test on one value as (value, error, code): every test of the table, one builder
LEAVES: dict[str, Callable[[Val, object, Field], Test3]] = {
    op: (lambda op: lambda v, o, f: test_sql(v, op, o, f))(op) for op in sem.TABLE if op != "sum"}


# ---- the query -----------------------------------------------------------------------------------------
class _Query:
    """Collects the columns a policy needs, then writes the query in layers (fields, typed, windows, rules)."""

    def __init__(self, policy: Policy, shredded: Shredded | None = None) -> None:
        self.policy = policy
        self.shredded = shredded
        self.fields: dict[str, tuple[int, Field]] = {}
        self.windows: list[Sql] = []
        self.uses_time = False
        self.time_users: set[int] = set()  # the rules that read time.*
        self.users: dict[int, set[int]] = {}  # field index -> the rules that read it
        self.current = -1  # the rule being compiled
        self.leaf_errors: dict[int, list[tuple[Sql, Sql]]] = {}  # rule -> (error, detail) per leaf, in order

    def field(self, f: Field) -> Val:
        if f.root in ("tool", "agent", "session", "user"):
            return Val.of_string(f'"{f.root}"')
        if f.root == "time":
            self.uses_time = True
            self.time_users.add(self.current)
            part = f.path[0]
            here = "(lt_ IS NOT NULL)"  # no local time outside years 1..9999: the time fields are missing
            if part == "hour":
                return Val(t="'NUM'", n="CAST(hour(lt_) AS DOUBLE)", fixed="NUM", present=here)
            if part == "weekday":
                days = " ".join(f"WHEN {i + 1} THEN '{d}'" for i, d in
                               enumerate(WEEKDAYS))
                return Val(t="'VARCHAR'", s=f"(CASE isodow(lt_) {days} END)", fixed="VARCHAR", present=here)
            return Val(t="'VARCHAR'", s="strftime(lt_, '%Y-%m-%d')", fixed="VARCHAR", present=here)
        if f.name not in self.fields:
            self.fields[f.name] = (len(self.fields), f)
        i = self.fields[f.name][0]
        self.users.setdefault(i, set()).add(self.current)
        sh = self.shredded
        kind = ShreddedVal if sh is not None and (f.root, json_pointer(f.path)) in sh.columns else Val
        return kind(t=f"t{i}", n=f"n{i}", s=f"s{i}", b=f"b{i}", j=f"j{i}", snm=f"(snv{i} IS NOT NULL)", snv=f"snv{i}")

    def tool_match(self, rule: Rule) -> Sql:
        if all(not any(c in t for c in "*?[") for t in rule.tools):
            return f'COALESCE("tool" IN ({", ".join(lit(t) for t in rule.tools)}), FALSE)'
        if any(c in t for t in rule.tools for c in "?["):
            return f'COALESCE(regexp_full_match("tool", {lit(rule.tool_regex)}), FALSE)'
        # Globs with `*` only (the common `deploy.*`, `*`): string functions and LIKE, which mean the same
        # as the glob's full-match regex and cost a fraction of it on every row.
        exact = [t for t in rule.tools if "*" not in t]
        parts = [f'"tool" IN ({", ".join(lit(t) for t in exact)})'] if exact else []
        parts += [_star_glob(t) for t in rule.tools if "*" in t]
        return f"COALESCE({_any(parts)}, FALSE)"

    def cond(self, node: Cond, rule: Rule, r: int) -> Pair:
        return NODES[type(node)](self, node, rule, r)

    def window(self, node: Window, rule: Rule, r: int) -> Pair:
        """A window test as its own sub-query over the rows of the rule's tools only, joined back by seq.

        Restricting to those rows is the contract (only calls of the rule's tools count) and keeps the
        window operator from building a frame for every other row.
        """
        k = len(self.windows)
        part = f'PARTITION BY "{node.per}" ' if node.per else ""
        peers = f'PARTITION BY {node.per + ", " if node.per else ""}ts_us'
        # semantics' window rule: (ts - span, ts] in whole microseconds, ties by seq below
        preceding = -sem.window_lower_bound(0, node.window_us) - 1
        frame = f"ORDER BY ts_us RANGE BETWEEN {preceding} PRECEDING AND CURRENT ROW"
        cmp = ">" if node.op == "gt" else ">="
        key_ok = f'"{node.per}" IS NOT NULL' if node.per else "TRUE"
        if node.kind == "rate":
            # every call in the frame, less the calls at the same instant that come later in the log
            self.windows.append(
                f"SELECT seq, count(*) OVER ({part}{frame}) - count(*) OVER "
                f"({peers} ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS w{k} "
                f"FROM g WHERE tm{r}")
            return f"({key_ok} AND COALESCE(w{k} {cmp} {num(node.threshold)}, FALSE))", "FALSE"
        v = self.field(node.field)  # type: ignore[arg-type]
        # the table's `sum` row: the usable kinds' readings (else 0), and the error of the others
        reads = _groups(sem.TABLE["sum"]["field"])
        usable_kinds = frozenset().union(*(ks for c, ks in reads.items() if isinstance(c, sem.Prim)))
        amount = PRIMITIVES["amount"](v, usable_kinds, None, "sum", "TRUE")[0]
        # decide adds the values in ascending order. A list of every frame's values (what that takes) is
        # O(rows x frame) memory, so, as the Gate does: a windowed SUM (any order, bounded memory) decides
        # every row further from the threshold than float rounding could move either sum (the margin of
        # semantics.sum_margin: SUM_MARGIN·(n+2)·2^-53·Σ|x|); only the rows within that margin (or
        # with an overflowing Σ|x| or sum) are summed exactly,
        # sorted, by a range join of those few rows to their frames. 0.0 + x == x exactly, so the initial
        # value of the reduce changes no sum.
        t = num(node.threshold)
        kpart = "PARTITION BY k_ " if node.per else ""
        kpeers = f"PARTITION BY {'k_, ' if node.per else ''}ts_us"
        later = f"{kpeers} ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING"
        kjoin = "b_.k_ = n_.k_ AND " if node.per else ""
        self.windows.append(
            f"WITH b_ AS (SELECT seq, ts_us, {f'{chr(34)}{node.per}{chr(34)}' if node.per else 'NULL'} AS k_, "
            f"{amount} AS a_ FROM g WHERE tm{r}),\n"
            f"s_ AS (SELECT seq, ts_us, k_, sum(a_) OVER ({kpart}{frame}) "
            f"- COALESCE(sum(a_) OVER ({later}), CAST(0 AS DOUBLE)) AS approx_, "
            f"sum(abs(a_)) OVER ({kpart}{frame}) AS mag_, count(*) OVER ({kpart}{frame}) AS n_ FROM b_),\n"
            f"x_ AS (SELECT n_.seq, list_reduce(list_sort(list(b_.a_)), lambda p_, q_: p_ + q_, "
            f"CAST(0 AS DOUBLE)) AS exact_ FROM (SELECT seq, ts_us, k_ FROM s_ WHERE NOT COALESCE("
            f"isfinite(mag_) AND isfinite(approx_) "
            f"AND abs(approx_ - {t}) > {float(sem.SUM_MARGIN)!r} * (n_ + 2) * mag_ * {2.0 ** -53!r}, "
            f"FALSE)) n_ "
            f"JOIN b_ ON {kjoin}b_.ts_us > n_.ts_us - {node.window_us} AND b_.ts_us <= n_.ts_us "
            f"AND NOT (b_.ts_us = n_.ts_us AND b_.seq > n_.seq) GROUP BY n_.seq)\n"
            f"SELECT s_.seq, COALESCE(x_.exact_, s_.approx_) AS w{k} FROM s_ LEFT JOIN x_ ON x_.seq = s_.seq")
        usable = kinds_sql(v, usable_kinds)
        code = _code(v, [(c.code, ks) for c, ks in reads.items() if isinstance(c, sem.Error)], False)
        self.leaf_errors.setdefault(r, []).append(
            (f"(NOT {usable})", error_detail(rule, node.field, "sum", v, code)))  # type: ignore[arg-type]
        return f"({key_ok} AND COALESCE(w{k} {cmp} {num(node.threshold)}, FALSE))", f"(NOT {usable})"

    def sql(self, source: Sql) -> Sql:
        p = self.policy
        rules = []
        for r, rule in enumerate(p.rules):
            self.current = r
            val, err = self.cond(rule.when, rule, r)
            rules.append((rule, val, err))
        # One JSON parse per document: every path of a root in one call, then index the list. A value is
        # read only on rows whose tool some rule reading it matches: elsewhere no rule looks at it.
        guard = lambda rules: _any([f"tm{r}" for r in sorted(rules)])  # noqa: E731
        # a field shredded into typed columns (gatekit/logs/shred.py) is read from them, not from the JSON
        sh = self.shredded
        shred_cols = {i: sh.columns[(f.root, json_pointer(f.path))] for i, f in self.fields.values()
                      if sh is not None and (f.root, json_pointer(f.path)) in sh.columns}
        parsed = {i: f for i, f in self.fields.values() if i not in shred_cols}
        fcols = []
        for root in ("args", "context"):
            mine = [(i, f) for i, f in parsed.items() if f.root == root]
            if not mine:
                continue
            readers = set().union(*(self.users[i] for i, _ in mine))
            paths = ", ".join(lit(json_pointer(f.path)) for _, f in mine)
            fcols.append(f"CASE WHEN {guard(readers)} THEN json_extract({root}, [{paths}]) END AS {root}_")
        jcols = []
        for root in ("args", "context"):
            mine = [(i, f) for i, f in parsed.items() if f.root == root]
            jcols += [f"CASE WHEN {guard(self.users[i])} THEN {root}_[{k + 1}] END AS j{i}"
                      for k, (i, _) in enumerate(mine)]
        # typed readings in layers, each computed once and only for values of its kind (CASE is lazy)
        tcols, ncols, scols = [], [], []
        for i in parsed:
            jv = Val.of_json(f"j{i}")
            tcols.append(f"{jv.t} AS t{i}")
            ncols += [f"CASE WHEN t{i} = 'NUM' THEN {jv.n} END AS n{i}",
                      f"CASE WHEN t{i} = 'VARCHAR' THEN {jv.s} END AS s{i}",
                      f"CASE WHEN t{i} = 'BOOLEAN' THEN {jv.b} END AS b{i}"]
            # a numeric string always casts (to inf when out of range): NULL means "not numeric"
            scols.append(f"CASE WHEN regexp_full_match(s{i}, {lit(NUMERIC_STRING)}) THEN "
                         f"TRY_CAST(trim(s{i}, {lit(JSON_SPACE)}) AS DOUBLE) END AS snv{i}")
        tms = [f"{self.tool_match(rule)} AS tm{r}" for r, rule in enumerate(p.rules)]
        # the local time from the pinned tzdata's offsets: the offset's key in f0, the local time in f
        tzk = [f"{tz_key_sql(p.timezone)} AS tzk_"] if self.uses_time else []
        # (only on the rows whose tool a rule reading it matches: elsewhere no rule reads it)
        lt = [f"CASE WHEN {guard(self.time_users)} THEN {local_time_sql(p.timezone, 'ts_us', 'tzk_')} END AS lt_"
              ] if self.uses_time else []
        # the shredded columns under the names the JSON layers would give them (t, n, s, b, j, snv)
        shcols = [f"sh_.{c}_{suffix} AS {name}{i}" for i, c in shred_cols.items()
                  for suffix, name in zip(SHRED_COLUMNS, ("t", "n", "s", "b", "j", "snv"))]
        layer0 = ", ".join(["seq", "action_id", '"tool"', '"agent"', '"session"', '"user"', "args", "context",
                            "epoch_us(ts) AS ts_us"] + tzk + tms + shcols)
        join = f" JOIN {sh.table} sh_ USING (seq)" if shred_cols and sh is not None else ""
        layer1 = ", ".join(["* EXCLUDE (args, context)"] + lt + fcols)
        layer2b = ", ".join(["*"] + ncols)
        layer2c = ", ".join(["*"] + scols)
        wctes = "".join(f"w{k}_ AS ({q}),\n" for k, q in enumerate(self.windows))
        layer3 = "SELECT g.*" + "".join(f", w{k}_.w{k}" for k in range(len(self.windows))) + " FROM g" + \
            "".join(f" LEFT JOIN w{k}_ ON w{k}_.seq = g.seq" for k in range(len(self.windows)))
        ecols, rcols = [], []
        for r, (rule, val, err) in enumerate(rules):
            # CASE, not AND: DuckDB evaluates both sides of an AND in a projection, but a CASE branch only
            # on the rows that take it, so a rule's tests run only where its tool matched; the match reads
            # the error column of the layer before (the error's SQL is computed once, not again in m)
            ecols.append(f"(CASE WHEN tm{r} THEN COALESCE({err}, TRUE) ELSE FALSE END) AS e{r}")
            rcols.append(f"(CASE WHEN tm{r} AND NOT e{r} THEN COALESCE({val}, FALSE) ELSE FALSE END) AS m{r}")
        layer4e = ", ".join(["*"] + ecols)
        layer4 = ", ".join(["*"] + rcols)
        # the rule columns and why each errored rule errored: the first leaf (document order) that errored,
        # as decide reports it, read from the typed columns below, built on the rows with an error only
        layer5 = ", ".join(["seq", "action_id"] + [f"e{r}, m{r}" for r in range(len(p.rules))]
                           + [f"{self._best()} AS best_", f"{self._details(rules)} AS error_details"])
        # `g` is read by the main query and by every window sub-query: NOT MATERIALIZED (it and the layers
        # under it), or DuckDB materialises a whole layer of every row (GBs at 10M rows: the args JSON, or
        # every typed column) where each reader needs a few columns of some rows
        nm = "NOT MATERIALIZED " if self.windows else ""
        return (f"WITH src AS {nm}({source}),\n"
                f"f0 AS {nm}(SELECT {layer0} FROM src{join}),\n"
                f"f AS {nm}(SELECT {layer1} FROM f0),\n"
                f"g0 AS {nm}(SELECT * {', ' if jcols else ''}{', '.join(jcols)} FROM f),\n"
                f"g1 AS {nm}(SELECT *, {', '.join(tcols) if tcols else 'NULL AS no_fields_'} FROM g0),\n"
                f"g2 AS {nm}(SELECT {layer2b} FROM g1),\n"
                f"g AS {nm}(SELECT {layer2c} FROM g2),\n"
                f"{wctes}"
                f"w AS ({layer3}),\n"
                f"r0e AS (SELECT {layer4e} FROM w),\n"
                f"r0 AS (SELECT {layer4} FROM r0e),\n"
                f"r AS (SELECT {layer5} FROM r0),\n"
                f"d AS (SELECT seq, action_id, {self._decision()} AS lvl, r.* EXCLUDE (seq, action_id) FROM r)\n"
                f"SELECT seq, action_id, {self._verdict()} AS decision, {self._ids('m')} AS rules, "
                f"{self._ids('e')} AS errors, {self._tier()} AS tier, error_details FROM d")

    def _details(self, rules: list[tuple[Rule, Sql, Sql]]) -> Sql:
        empty = f"CAST([] AS {ERROR_DETAIL}[])"
        items = []
        for r in range(len(rules)):
            firsts = " ".join(f"WHEN COALESCE({e}, TRUE) THEN {d}" for e, d in self.leaf_errors.get(r, []))
            if firsts:
                items.append(f"(CASE WHEN e{r} THEN (CASE {firsts} END) END)")
        if not items:
            return empty
        some = _any([f"e{r}" for r in range(len(rules))])
        return f"(CASE WHEN {some} THEN [x_ FOR x_ IN [{', '.join(items)}] IF x_ IS NOT NULL] ELSE {empty} END)"

    def _best(self) -> Sql:
        """The strictest deciding match's level (semantics.best_level), a column of its own: the decision's
        level reads it twice or more."""
        return sem.best_level(_SQL_LEVELS, [(rule, f"m{r}") for r, rule in enumerate(self.policy.rules)])

    def _decision(self) -> Sql:
        """The decision's level: semantics.decision_level over the rule columns (its best level in `best_`)."""
        p = self.policy
        errs = _any([f"e{r}" for r, rule in enumerate(p.rules) if rule.enforced])
        return sem.level_of(_SQL_LEVELS, "best_", errs, p)

    def _verdict(self) -> Sql:
        return "(CASE lvl " + " ".join(f"WHEN {sem.LEVEL[v]} THEN {lit(v)}" for v in sem.VERDICTS) + " END)"

    def _ids(self, prefix: str) -> Sql:
        if not self.policy.rules:
            return "CAST([] AS VARCHAR[])"
        items = ", ".join(f"CASE WHEN {prefix}{r} THEN {lit(rule.id)} END" for r, rule in enumerate(self.policy.rules))
        # most rows match no rule and almost none errors: build the list only where there is something
        some = _any([f"{prefix}{r}" for r in range(len(self.policy.rules))])
        return (f"(CASE WHEN {some} THEN CAST([x_ FOR x_ IN [{items}] IF x_ IS NOT NULL] AS VARCHAR[]) "
                f"ELSE CAST([] AS VARCHAR[]) END)")

    def _tier(self) -> Sql:
        """semantics.strictest_tier: the matched rules tried from the strictest tier down."""
        rank = self.policy.tier_rank()
        cands = sorted(((rank[rule.tier], r, rule) for r, rule in enumerate(self.policy.rules)
                        if sem.strictest_tier(self.policy, [rule]) is not None),
                       key=lambda c: (c[0], c[1]))
        if not cands:
            return "CAST(NULL AS VARCHAR)"
        whens = " ".join(f"WHEN m{r} THEN {lit(rule.tier)}" for _, r, rule in cands)
        return f"(CASE WHEN lvl = 1 THEN (CASE {whens} END) END)"


_SQL_LEVELS = sqltests.SqlLevels()


def _leaf(q: _Query, node: Test, rule: Rule, r: int) -> Pair:
    v = q.field(node.field)
    val, err, code = LEAVES[node.op](v, node.operand, node.field)
    if err != "FALSE":
        q.leaf_errors.setdefault(r, []).append(
            (f"COALESCE({err}, FALSE)", error_detail(rule, node.field, node.op, v, code)))
    return f"COALESCE({val}, FALSE)", f"COALESCE({err}, FALSE)"


def _combine(q: _Query, node: All | Any_, rule: Rule, r: int) -> Pair:
    parts = [q.cond(item, rule, r) for item in node.items]
    vals = [p[0] for p in parts]
    return (_all(vals) if isinstance(node, All) else _any(vals)), _any([p[1] for p in parts])


def _not(q: _Query, node: Not, rule: Rule, r: int) -> Pair:
    val, err = q.cond(node.item, rule, r)
    return f"(NOT {val})", err


NODES: dict[type, Callable[[_Query, object, Rule, int], Pair]] = {
    Test: _leaf,  # type: ignore[dict-item]
    Window: lambda q, node, rule, r: q.window(node, rule, r),  # type: ignore[arg-type]
    All: _combine,  # type: ignore[dict-item]
    Any_: _combine,  # type: ignore[dict-item]
    Not: _not,  # type: ignore[dict-item]
}


def _star_glob(pattern: str) -> Sql:
    """A glob whose only wildcard is `*` as a full match on "tool" without a regex."""
    pieces = pattern.split("*")
    if all(not p for p in pieces):
        return '("tool" IS NOT NULL)'
    if len(pieces) == 2 and not pieces[1]:
        return f'starts_with("tool", {lit(pieces[0])})'
    if len(pieces) == 2 and not pieces[0]:
        return f'suffix("tool", {lit(pieces[1])})'
    like = "%".join(p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in pieces)
    return f'("tool" LIKE {lit(like)} ESCAPE {lit(chr(92))})'


def json_pointer(path: tuple[str, ...] | list[str]) -> str:
    """A field path (`args.a.b` -> ("a", "b")) as the JSON pointer DuckDB's json_extract reads: public so
    that every reader of `args` and `context` in the store finds the value the compiled policy finds.

    >>> json_pointer(("a/b", "c"))
    '/a~1b/c'
    """
    return "/" + "/".join(seg.replace("~", "~0").replace("/", "~1") for seg in path)


def number_sql(field: Field, policy: Policy) -> Sql:
    """The number a test on `field` reads, as a SQL expression over the store's `actions` columns, exactly
    as the compiled policy reads it: a JSON number, or a string of a JSON number's form; NULL otherwise.

    For readers that put a test's own value beside its decision (metrics.evaluate's threshold sweeps).
    """
    if field.name == "time.hour":
        return f"CAST(hour({local_time_sql(policy.timezone)}) AS DOUBLE)"
    return json_number_sql(f"json_extract({field.root}, {lit(json_pointer(field.path))})")


def json_number_sql(x: Sql) -> Sql:
    """The number a test reads from the JSON value `x` (the table's `amount` reading: a finite JSON number,
    or a string of a JSON number's form), NULL otherwise: every SQL reader of argument values as numbers
    (metrics, gatekit.run) goes through this, so none reads `"1_000"`, `"+5"`, `"NaN"` or `".5"` as one."""
    v = Val.of_json(x)
    return f"(CASE WHEN {v.good} THEN {v.n} WHEN {v.str_num_ok} THEN {v.snv} END)"


def tz_key_sql(name: str, ts_us: Sql = "epoch_us(ts)") -> Sql:
    """The instant whose UTC offset `ts_us` has (timezones.Offsets.reduce): past the zone's last explicit
    transition, its place in the table's last 400-year cycle."""
    cs = offsets(name).cycle_start_us
    return f"(CASE WHEN {ts_us} >= {cs} THEN {cs} + ({ts_us} - {cs}) % {CYCLE_US} ELSE {ts_us} END)"


def local_offset_sql(name: str, key: Sql) -> Sql:
    """The UTC offset (microseconds) of zone `name` at the instant `key` (a `tz_key_sql` value), from the
    pinned tzdata's offsets: a binary tree of CASEs over the zone's transitions (about ten comparisons a row).
    Plain SQL (CASE, comparisons, integers), so every SQL dialect applies the same offsets."""
    rows = offsets(name).rows

    def tree(lo: int, hi: int) -> str:
        if lo == hi:
            return str(rows[lo][1])
        mid = (lo + hi + 1) // 2
        return f"(CASE WHEN {key} < {rows[mid][0]} THEN {tree(lo, mid - 1)} ELSE {tree(mid, hi)} END)"

    return tree(0, len(rows) - 1)


def local_range_sql(name: str, ts_us: Sql) -> Sql:
    """Whether the local time of `ts_us` in zone `name` falls in years 1..9999 (else there is none, as in
    decide). The offset is constant for days around both ends of the range (checked), so the range is a
    test on `ts_us`. Plain SQL, shared by every SQL dialect."""
    zone = offsets(name)
    days = 2 * 86_400_000_000
    low, high = zone.offset_us(LOCAL_MIN_US), zone.offset_us(LOCAL_MAX_US)
    if (low, high) != (zone.offset_us(LOCAL_MIN_US + days), zone.offset_us(LOCAL_MAX_US - days)):
        raise AssertionError(f"time zone `{name}` changes offset at the ends of years 1..9999")
    return f"({ts_us} >= {LOCAL_MIN_US - low} AND {ts_us} < {LOCAL_MAX_US - high})"


def local_time_sql(name: str, ts_us: Sql = "epoch_us(ts)", key: Sql | None = None) -> Sql:
    """The local TIMESTAMP in zone `name` of the instant `ts_us` (microseconds), from the pinned tzdata's
    offsets (timezones.offsets), never DuckDB's ICU data, so SQL reads the local time `decide` reads. NULL
    outside local years 1..9999 (no local time, as in decide). `key`: a column holding `tz_key_sql`."""
    key = key or tz_key_sql(name, ts_us)
    return (f"(CASE WHEN {local_range_sql(name, ts_us)} "
            f"THEN make_timestamp({ts_us} + {local_offset_sql(name, key)}) END)")


def compile_sql(policy: Policy, source: Sql = "SELECT * FROM actions", shredded: Shredded | None = None) -> Sql:
    """The query deciding every row of `source` (which needs the store's action columns).

    It returns `seq, action_id, decision, rules, errors, tier, error_details`, one row per action;
    `error_details` is a list of structs (rule, field, test, code, message), one per errored rule, as
    `Decision.error_details` holds them. With `shredded`, the fields it holds are read from its typed
    columns (joined by `seq`: it must hold every row of `source`), the others from the JSON.
    """
    return _Query(policy, shredded).sql(source)


# ---- shredding: a path's typed readings, computed once and stored (gatekit/logs/shred.py) ---------------
# The suffixes of a shredded path's columns: its type tag, its number, its string, its boolean, its JSON
# (lists and objects only) and its numeric-string value: exactly the readings the query's JSON layers
# compute for a field (`t`, `n`, `s`, `b`, `j`, `snv` above), so either way a test reads the same values.
SHRED_COLUMNS = ("t", "n", "s", "b", "j", "v")


@dataclass(frozen=True)
class Shredded:
    """Which fields a side table holds as typed columns: (root, JSON pointer) -> its columns' prefix."""

    table: str
    columns: Mapping[tuple[str, str], str] = dc_field(default_factory=dict)


def fields_read(policy: Policy) -> list[Field]:
    """The `args` and `context` fields the compiled policy reads (tests and windows), in first-read order."""
    q = _Query(policy)
    q.sql("SELECT * FROM actions")
    return [f for _, f in q.fields.values()]


def shred_sql(paths: Sequence[tuple[str, str, str]], source: Sql) -> Sql:
    """`SELECT seq, <typed columns>` over `source` (with `seq`, `args`, `context`) for each (root, JSON
    pointer, prefix) of `paths`: the columns `SHRED_COLUMNS` as `<prefix>_<suffix>`, computed by the same
    expressions as the query's JSON layers (one parse per document for all paths of a root)."""
    ext = [f"json_extract({root}, [{', '.join(lit(p) for r, p, _ in paths if r == root)}]) AS {root}_"
           for root in ("args", "context") if any(r == root for r, _, _ in paths)]
    place = {root: 0 for root in ("args", "context")}
    jcols = []
    for root, _, c in paths:
        place[root] += 1
        jcols.append(f"{root}_[{place[root]}] AS {c}_x")
    tcols = [f"{Val.of_json(f'{c}_x').t} AS {c}_t" for _, _, c in paths]
    ncols = []
    for _, _, c in paths:
        jv = Val.of_json(f"{c}_x")
        ncols += [f"CASE WHEN {c}_t = 'NUM' THEN {jv.n} END AS {c}_n",
                  f"CASE WHEN {c}_t = 'VARCHAR' THEN {jv.s} END AS {c}_s",
                  f"CASE WHEN {c}_t = 'BOOLEAN' THEN {jv.b} END AS {c}_b",
                  f"CASE WHEN {c}_t IN ('ARRAY', 'OBJECT') THEN {c}_x END AS {c}_j"]
    vcols = [f"CASE WHEN regexp_full_match({c}_s, {lit(NUMERIC_STRING)}) THEN "
             f"TRY_CAST(trim({c}_s, {lit(JSON_SPACE)}) AS DOUBLE) END AS {c}_v" for _, _, c in paths]
    keep = ", ".join(f"{c}_{x}" for _, _, c in paths for x in SHRED_COLUMNS)
    return (f"WITH x0_ AS (SELECT seq, {', '.join(ext)} FROM ({source})),\n"
            f"x1_ AS (SELECT seq, {', '.join(jcols)} FROM x0_),\n"
            f"x2_ AS (SELECT *, {', '.join(tcols)} FROM x1_),\n"
            f"x3_ AS (SELECT *, {', '.join(ncols)} FROM x2_),\n"
            f"x4_ AS (SELECT *, {', '.join(vcols)} FROM x3_)\n"
            f"SELECT seq, {keep} FROM x4_")
