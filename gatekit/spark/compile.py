"""The Spark compiler: a policy as Spark SQL expressions over a DataFrame of actions, deciding every row.

Mirrors gatekit/policy/compile.py (the DuckDB compiler) node for node and test for test: the same `Val` (a type
tag and typed readings of one value), the same dispatch tables `LEAVES` and `NODES`; the tests are built
from the semantics table by the walker both SQL dialects share (gatekit/policy/sqltests.py), the precedence,
tiers, window rule and margin are semantics.py's. What differs is the dialect:

- a JSON value is a Spark VARIANT; its type tag comes from `schema_of_variant` (BIGINT, DECIMAL, DOUBLE ->
  number; 1e400 and 400-digit integers parse as an infinite DOUBLE, so they are bad numbers as in decide);
- `matches` and the tool globs with `?` or `[` run google-re2 in an Arrow UDF (Java's regex engine is not
  RE2: `a$` finds a match in "a\\n" in Java, not in RE2), the one place per-row Python runs;
- windows are window functions over the rows of the rule's tools (partitioned by the rule's tool match and
  the `per` key), and the exact sums near a threshold a range join of those few rows to their frames.

No pyspark import here: this module writes SQL text; gatekit/spark/engine.py runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gatekit.policy.conditions import All, Any_, Cond, Field, Not, Test, Window
from gatekit.policy.model import Policy, Rule
import gatekit.policy.semantics as sem
import gatekit.policy.sqltests as sqltests
from gatekit.policy.compile import local_offset_sql, local_range_sql, tz_key_sql
from gatekit.policy.sqltests import Pair, Test3
from gatekit.policy.semantics import JSON_SPACE, NUMERIC_STRING, WEEKDAYS

__all__ = ["BACKEND", "LEAVES", "NODES", "Plan", "Val", "lit", "local_time", "plan", "test_sql"]

Sql = str
_DAY_US = 86_400_000_000
# Java regex, used only for this ASCII-only pattern (where it and RE2 agree), as a full match
_NUMERIC_JAVA = r"\A(?:" + NUMERIC_STRING + r")\z"
_INF = "CAST('Infinity' AS DOUBLE)"


def local_time(name: str) -> tuple[Sql, Sql]:
    """Two expressions over `ts_us`: the key of its UTC offset (`tzk_`, compile.tz_key_sql), then from it the
    local time in microseconds (`lt_us`), from the pinned tzdata's offsets and the 400-year cycle exactly as
    the DuckDB compiler applies them; NULL outside local years 1..9999 (the time fields are then missing).
    The second is a whole expression (a column of its own), with no parentheses around the tree: Spark's
    parser looks ahead from each `(` to its `)`, and the tree is tens of kilobytes."""
    return (tz_key_sql(name, "ts_us"),
            f"CASE WHEN {local_range_sql(name, 'ts_us')} THEN ts_us + {_unparenthesised(local_offset_sql(name, 'tzk_'))} END")


def _unparenthesised(tree: Sql) -> Sql:
    """compile.local_offset_sql's tree of CASEs without the parentheses around each CASE (CASE ... END
    delimits itself). Spark's parser is exponential in nested parentheses: the first parse of a zone's tree
    (862 leaves and ten levels for Europe/Berlin) in a fresh JVM took 76 s with them and 2 s without (on a
    loaded machine), and every replay paid it. The tree holds only CASE, WHEN, comparisons of `tzk_` with integers, THEN, ELSE
    and END, so the only parentheses are those two."""
    out = tree.replace("(CASE WHEN ", "CASE WHEN ").replace(" END)", " END")
    if "(" in out or ")" in out:
        raise AssertionError("the offset tree holds parentheses of its own")
    return out


def lit(text: str) -> Sql:
    """`text` as a Spark SQL string literal (backslash escapes are on by default in Spark's parser).

    >>> lit("it's")
    "'it\\\\'s'"
    """
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def num(x: float) -> Sql:
    return f"CAST({lit(repr(float(x)))} AS DOUBLE)"


def _any(parts: list[Sql]) -> Sql:
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _all(parts: list[Sql]) -> Sql:
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


def _finite(x: Sql) -> Sql:
    return f"(NOT isnan({x}) AND abs({x}) < {_INF})"


def _tag(x: Sql) -> Sql:
    """The type tag of a VARIANT (NULL when missing), from the head of its schema."""
    sch = f"schema_of_variant({x})"
    return (f"(CASE WHEN {x} IS NULL THEN CAST(NULL AS STRING) WHEN is_variant_null({x}) THEN 'NULL' "
            f"ELSE (CASE regexp_extract({sch}, '^[A-Z]+', 0) WHEN 'BIGINT' THEN 'NUM' WHEN 'INT' THEN 'NUM' "
            f"WHEN 'SMALLINT' THEN 'NUM' WHEN 'TINYINT' THEN 'NUM' WHEN 'DECIMAL' THEN 'NUM' "
            f"WHEN 'DOUBLE' THEN 'NUM' WHEN 'FLOAT' THEN 'NUM' WHEN 'STRING' THEN 'VARCHAR' "
            f"WHEN 'BOOLEAN' THEN 'BOOLEAN' WHEN 'ARRAY' THEN 'ARRAY' WHEN 'OBJECT' THEN 'OBJECT' "
            f"ELSE 'OTHER' END) END)")


def _snv(s: Sql) -> Sql:
    """A string of a JSON number's form read as a DOUBLE (infinite when out of range); NULL otherwise."""
    return (f"(CASE WHEN {s} RLIKE {lit(_NUMERIC_JAVA)} THEN "
            f"try_cast(trim(BOTH {lit(JSON_SPACE)} FROM {s}) AS DOUBLE) END)")


@dataclass(frozen=True)
class Val:
    """SQL expressions for one value: its type tag (NULL when missing) and its typed readings."""

    t: Sql  # 'NUM' | 'VARCHAR' | 'BOOLEAN' | 'ARRAY' | 'OBJECT' | 'NULL' | NULL (missing)
    n: Sql = "CAST(NULL AS DOUBLE)"  # when a number
    s: Sql = "CAST(NULL AS STRING)"  # when a string
    b: Sql = "CAST(NULL AS BOOLEAN)"  # when a boolean
    j: Sql = "CAST(NULL AS VARIANT)"  # when a list or object
    snv: Sql = "CAST(NULL AS DOUBLE)"  # the string read as a DOUBLE, when it has a JSON number's form
    fixed: str | None = None  # a value of one fixed kind (a string column, time.hour)
    present: Sql = "TRUE"
    # a field read into columns: its flags (good{i}, bad{i}, ...) are columns of their own too, which keeps
    # every expression shallow (Spark's SQL parser takes exponential time in the nesting of parentheses)
    pre: int | None = None

    @classmethod
    def of_variant(cls, x: Sql) -> Val:
        s = f"try_variant_get({x}, '$', 'string')"
        return cls(t=_tag(x), n=f"try_variant_get({x}, '$', 'double')", s=s,
                   b=f"try_variant_get({x}, '$', 'boolean')", j=x, snv=_snv(s))

    @classmethod
    def of_string(cls, x: Sql) -> Val:
        return cls(t="'VARCHAR'", s=x, fixed="VARCHAR", present=f"({x} IS NOT NULL)", snv=_snv(x))

    def is_(self, tag: str) -> Sql:
        if self.fixed is not None:
            return self.present if tag == self.fixed else "FALSE"
        return f"COALESCE({self.t} = '{tag}', FALSE)"

    @property
    def missing(self) -> Sql:
        if self.pre is not None:
            return "miss" + str(self.pre)
        if self.fixed is not None:
            return f"(NOT {self.present})"
        return f"COALESCE({self.t} IS NULL OR {self.t} = 'NULL', TRUE)"

    @property
    def snm(self) -> Sql:  # the string has a JSON number's form (snv reads every such string, to inf if out of range)
        return f"({self.snv} IS NOT NULL)"

    @property
    def bad(self) -> Sql:
        if self.pre is not None:
            return "bad" + str(self.pre)
        return f"({self.is_('NUM')} AND NOT {_finite(self.n)})"

    @property
    def good(self) -> Sql:
        if self.pre is not None:
            return "good" + str(self.pre)
        return f"({self.is_('NUM')} AND {_finite(self.n)})"

    @property
    def str_num_ok(self) -> Sql:
        if self.pre is not None:
            return "sok" + str(self.pre)
        return f"({self.is_('VARCHAR')} AND COALESCE({_finite(self.snv)}, FALSE))"

    @property
    def str_num_bad(self) -> Sql:
        if self.pre is not None:
            return "sbad" + str(self.pre)
        return f"({self.is_('VARCHAR')} AND COALESCE(NOT {_finite(self.snv)}, FALSE))"




# ---- the tests: the semantics table (semantics.py) in Spark SQL, through the shared walker (sqltests) ----
class _Spark(sqltests.Dialect):
    """Spark SQL: VARIANT list and object access, its string functions, and RE2 through the Arrow UDF."""

    name = "spark"
    FUNCTIONS = {"substring": "contains", "prefix": "startswith", "suffix": "endswith"}

    def lit(self, text: str) -> Sql:
        return lit(text)

    def array_length(self, v: Val) -> Sql:
        return f"size({self.elements(v)})"

    def element(self, v: Val, i: int) -> Val:
        return Val.of_variant(f"try_variant_get({v.j}, '$[{i}]')")

    def elements(self, v: Val) -> Sql:
        return f"try_variant_get({v.j}, '$', 'array<variant>')"

    def keys(self, v: Val) -> Sql:
        return f"map_keys(try_variant_get({v.j}, '$', 'map<string,variant>'))"

    def exists(self, items: Sql, var: str, pred: Sql) -> Sql:
        return f"COALESCE(exists({items}, {var} -> {pred}), FALSE)"

    def element_var(self, name: str) -> Val:
        return Val.of_variant(name)

    def key_var(self, name: str) -> Val:
        return Val.of_string(name)

    def p_regex(self, v: Val, kinds: frozenset[str], o: object, op: str, guard: Sql) -> Pair:
        # RE2 search through the Arrow UDF; only string values reach it (the others are NULL: no Python work)
        s = f"(CASE WHEN {v.is_('VARCHAR')} THEN {v.s} END)"
        return f"({guard} AND COALESCE(gatekit_re2_search({s}, {lit(str(o))}), FALSE))", "FALSE"


DIALECT = _Spark()


def test_sql(v: Val, op: str, o: object, f: Field) -> Test3:
    """A test of the table on `v` as Spark SQL: (value, error, the error's code) (sqltests.test_sql)."""
    return sqltests.test_sql(DIALECT, v, op, o, f)


test_sql.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class SparkBackend:
    """The `semantics.Backend` of the Spark compiler: Spark SQL expressions over VARIANT readings."""

    name = "spark"

    def is_kind(self, value: Val, kinds: frozenset[str]) -> Sql:
        return sqltests.kinds_sql(value, frozenset(kinds))

    def as_number(self, value: Val, kind: str) -> Sql:
        return value.n if kind == sem.NUMBER else value.snv

    def primitive(self, name: str, value: Val, kind: str, operand: object, op: str) -> Pair:
        kinds = frozenset({kind})
        return DIALECT.primitive(name, value, kinds, operand, op, sqltests.kinds_sql(value, kinds))


BACKEND = SparkBackend()


# ---- the error details (decision.py): the code from the table, the message from the value's kind -------
def error_detail(rule: Rule, field: Field, test: str, v: Val, code: Sql) -> Sql:
    """The struct of decision.RuleError for a leaf that errored: the same code and message as decide."""
    message = sqltests.error_message_sql(field, test, v, code, lit)
    return (f"named_struct('rule', {lit(rule.id)}, 'field', {lit(field.name)}, 'test', {lit(test)}, "
            f"'code', {code}, 'message', {message})")


ERROR_DETAIL = "STRUCT<rule: STRING, field: STRING, test: STRING, code: STRING, message: STRING>"

# op -> the test on one value as (value, error, code): every test of the table, one builder
LEAVES: dict[str, Callable[[Val, object, Field], Test3]] = {
    op: (lambda op: lambda v, o, f: test_sql(v, op, o, f))(op) for op in sem.TABLE if op != "sum"}


# ---- reading a path of args / context ------------------------------------------------------------------
_PLAIN_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. $@:/~")


def _key(x: Sql, seg: str) -> Sql:
    if all(c in _PLAIN_KEY for c in seg):
        return f"try_variant_get({x}, {lit(f'$[{chr(39)}{seg}{chr(39)}]')})"
    # a key a variant path cannot spell (a quote, a backslash, non-ASCII): look it up in the object as a map
    return f"try_variant_get({x}, '$', 'map<string,variant>')[{lit(seg)}]"


def variant_path(root: Sql, path: tuple[str, ...]) -> Sql:
    """The VARIANT at `path` under `root` as decide's `_path_get` finds it (SQL NULL when missing): a key of
    an object, or, for a segment of digits without a leading zero, also an index of a list."""
    x = root
    for seg in path:
        index = seg.isdigit() and seg.isascii() and (seg == "0" or seg[0] != "0") and int(seg) < 2**31 - 1
        x = f"COALESCE(try_variant_get({x}, '$[{seg}]'), {_key(x, seg)})" if index else _key(x, seg)
    return x


# ---- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SumJoin:
    """The exact sums of window `k` near its threshold: what the engine joins back by `seq`."""

    k: int
    rule: int
    per: str | None
    window_us: int
    threshold: float


@dataclass(frozen=True)
class Plan:
    """The layers of select expressions the engine applies in order, and the sum windows' exact joins.

    `layers[0]` reads the normalised input (seq, action_id, ts_us, lt_us, agent, session, user, tool,
    args_v, context_v); after `windows_at` layers the sum joins attach `x{k}` columns; the last layer
    yields `seq, action_id, decision, rules, errors, tier, error_details`.
    """

    layers: tuple[tuple[Sql, ...], ...]
    windows_at: int
    sums: tuple[SumJoin, ...]
    uses_regex: bool
    uses_time: bool
    grouped: bool


class _Query:
    def __init__(self, policy: Policy, grouped: bool) -> None:
        self.policy = policy
        self.grouped = grouped
        self.fields: dict[str, tuple[int, Field]] = {}
        # per window, a layer of its frame's aggregates (one shuffle: its partition), then a layer of the later
        # calls at the same instant (the same shuffle: the two layers must be adjacent, as another window's
        # shuffle in between would undo the partitioning)
        self.windows: list[list[Sql]] = []
        self.totals: list[Sql] = []  # a layer after those: the frame's aggregate less the later calls'
        self.amounts: list[Sql] = []  # a layer before the windows: the summed amount of each sum window
        self.nears: list[Sql] = []  # a layer after them: the rows whose sum is too near its threshold
        self.sums: list[SumJoin] = []
        self.uses_time = False
        self.uses_regex = False
        self.users: dict[int, set[int]] = {}
        self.current = -1
        self.k = 0  # windows so far
        self.leafcols: list[Sql] = []  # a layer after the windows: each leaf's value and error, one column each
        self.leaf_errors: dict[int, list[tuple[Sql, Sql]]] = {}

    def field(self, f: Field) -> Val:
        if f.root in ("tool", "agent", "session", "user"):
            return Val.of_string(f"`{f.root}`")
        if f.root == "time":
            self.uses_time = True
            part = f.path[0]
            here = "(lt_us IS NOT NULL)"  # no local time outside years 1..9999: the time fields are missing
            day = f"((lt_us - pmod(lt_us, {_DAY_US})) div {_DAY_US})"
            if part == "hour":
                return Val(t="'NUM'", n=f"CAST(pmod(lt_us, {_DAY_US}) div 3600000000 AS DOUBLE)", fixed="NUM",
                           present=here)
            if part == "weekday":
                days = " ".join(f"WHEN {i} THEN '{d}'" for i, d in enumerate(WEEKDAYS))
                return Val(t="'VARCHAR'", s=f"(CASE pmod({day} + 3, 7) {days} END)", fixed="VARCHAR", present=here)
            return Val(t="'VARCHAR'", s=f"CAST(date_from_unix_date(CAST({day} AS INT)) AS STRING)",
                       fixed="VARCHAR", present=here)
        if f.name not in self.fields:
            self.fields[f.name] = (len(self.fields), f)
        i = self.fields[f.name][0]
        self.users.setdefault(i, set()).add(self.current)
        return Val(t=f"t{i}", n=f"n{i}", s=f"s{i}", b=f"b{i}", j=f"j{i}", snv=f"snv{i}", pre=i)

    def tool_match(self, rule: Rule) -> Sql:
        if all(not any(c in t for c in "*?[") for t in rule.tools):
            return f'COALESCE(`tool` IN ({", ".join(lit(t) for t in rule.tools)}), FALSE)'
        if any(c in t for t in rule.tools for c in "?["):
            self.uses_regex = True
            return f"COALESCE(gatekit_re2_fullmatch(`tool`, {lit(rule.tool_regex)}), FALSE)"
        exact = [t for t in rule.tools if "*" not in t]
        parts = [f'`tool` IN ({", ".join(lit(t) for t in exact)})'] if exact else []
        parts += [_star_glob(t) for t in rule.tools if "*" in t]
        return f"COALESCE({_any(parts)}, FALSE)"

    def leaf(self, r: int, val: Sql, err: Sql, detail: Sql | None) -> Pair:
        """A leaf's value and error as two columns (computed only on the rows of the rule's tools)."""
        n = len(self.leafcols) // 2
        self.leafcols += [f"(CASE WHEN tm{r} THEN COALESCE({val}, FALSE) ELSE FALSE END) AS lv{n}",
                          f"(CASE WHEN tm{r} THEN COALESCE({err}, FALSE) ELSE FALSE END) AS le{n}"]
        if detail is not None:
            self.leaf_errors.setdefault(r, []).append((f"le{n}", detail))
        return f"lv{n}", f"le{n}"

    def cond(self, node: Cond, rule: Rule, r: int) -> Pair:
        return NODES[type(node)](self, node, rule, r)

    def window(self, node: Window, rule: Rule, r: int) -> Pair:
        """A window as window functions over the rows of the rule's tools: partitioned by the rule's tool
        match (only calls of its tools count) and the `per` key; the later calls at the same instant are
        taken off, as decide does not count them."""
        k = self.k
        self.k += 1
        per = f", `{node.per}`" if node.per else ""
        log = "log_, " if self.grouped else ""
        # the rows of other tools never count: each is a partition of its own, so that its (unused) frame is
        # one row and not every row of the window's span (Spark recomputes a sliding frame's aggregate)
        # (a column of its own, computed before the windows, so that both windows below name the same
        # attribute and the second reuses the first one's shuffle)
        self.amounts.append(f"CASE WHEN NOT tm{r} THEN seq END AS solo{k}")
        part = f"PARTITION BY {log}tm{r}{per}, solo{k}"
        # semantics' window rule: (ts - span, ts] in whole microseconds, ties by seq below
        preceding = -sem.window_lower_bound(0, node.window_us) - 1
        frame = f"{part} ORDER BY ts_us RANGE BETWEEN {preceding} PRECEDING AND CURRENT ROW"
        # the frame's partition and the instant: its keys extend the frame's, so Spark's hash partitioning of
        # the frame's rows already clusters these and no second shuffle runs (solo is NULL on the rule's rows,
        # so the groups there are the rule's calls per key at one instant)
        later = f"{part}, ts_us ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING"
        cmp = ">" if node.op == "gt" else ">="
        key_ok = f"`{node.per}` IS NOT NULL" if node.per else "TRUE"
        t = num(node.threshold)
        if node.kind == "rate":
            self.windows += [[f"CASE WHEN tm{r} THEN count(1) OVER ({frame}) END AS wf{k}"],
                             [f"CASE WHEN tm{r} THEN count(1) OVER ({later}) END AS wl{k}"]]
            self.totals.append(f"CAST(wf{k} - wl{k} AS DOUBLE) AS w{k}")
            return self.leaf(r, f"({key_ok} AND COALESCE(w{k} {cmp} {t}, FALSE))", "FALSE", None)
        v = self.field(node.field)  # type: ignore[arg-type]
        # the table's `sum` row: the usable kinds' readings (else 0), and the error of the others
        reads = sqltests.groups(sem.TABLE["sum"]["field"])
        usable_kinds = frozenset().union(*(ks for c, ks in reads.items() if isinstance(c, sem.Prim)))
        amount = DIALECT.primitive("amount", v, usable_kinds, None, "sum", "TRUE")[0]
        # as compile.py: a windowed SUM decides every row further from the threshold than float rounding could
        # move either sum (semantics.sum_margin: SUM_MARGIN·(n+2)·2^-53·Σ|x|); the rows within it are summed exactly (sorted, then
        # added in ascending order) by the engine's range join, `x{k}`
        self.amounts.append(f"CASE WHEN tm{r} THEN {amount} END AS a{k}")
        self.windows += [[f"CASE WHEN tm{r} THEN sum(a{k}) OVER ({frame}) END AS sf{k}",
                          f"CASE WHEN tm{r} THEN sum(abs(a{k})) OVER ({frame}) END AS mag{k}",
                          f"CASE WHEN tm{r} THEN count(1) OVER ({frame}) END AS cnt{k}"],
                         [f"CASE WHEN tm{r} THEN sum(a{k}) OVER ({later}) END AS sl{k}"]]
        self.totals.append(f"CASE WHEN tm{r} THEN sf{k} - COALESCE(sl{k}, CAST(0 AS DOUBLE)) END AS approx{k}")
        self.nears.append(f"(tm{r} AND NOT COALESCE({_finite(f'mag{k}')} AND {_finite(f'approx{k}')} AND "
                            f"abs(approx{k} - {t}) > {float(sem.SUM_MARGIN)!r} * (cnt{k} + 2) * mag{k} * {2.0 ** -53!r}, FALSE)) "
                            f"AS near{k}")
        self.sums.append(SumJoin(k, r, node.per, node.window_us, node.threshold))
        usable = sqltests.kinds_sql(v, usable_kinds)
        code = sqltests.code_sql(DIALECT, v, [(c.code, ks) for c, ks in reads.items() if isinstance(c, sem.Error)],
                                 False)
        total = f"COALESCE(x{k}, approx{k})"
        return self.leaf(r, f"({key_ok} AND COALESCE({total} {cmp} {t}, FALSE))", f"(NOT {usable})",
                         error_detail(rule, node.field, "sum", v, code))  # type: ignore[arg-type]

    def plan(self) -> Plan:
        p = self.policy
        rules = []
        for r, rule in enumerate(p.rules):
            self.current = r
            val, err = self.cond(rule.when, rule, r)
            rules.append((rule, val, err))
        guard = lambda rs: _any([f"tm{r}" for r in sorted(rs)])  # noqa: E731
        base = ["seq", "action_id", "ts_us", "`agent`", "`session`", "`user`", "`tool`"]
        base += ["lt_us"] if self.uses_time else []
        base += ["log_"] if self.grouped else []
        layer0 = base + ["args_v", "context_v"] + [f"{self.tool_match(rule)} AS tm{r}"
                                                   for r, rule in enumerate(p.rules)]
        jcols = [f"CASE WHEN {guard(self.users[i])} THEN {variant_path(f.root + '_v', f.path)} END AS j{i}"
                 for i, f in self.fields.values()]
        keep = base + [f"tm{r}" for r in range(len(p.rules))]
        layer1 = keep + jcols
        tcols = [f"{_tag(f'j{i}')} AS t{i}" for i, _ in self.fields.values()]
        layer2 = ["*"] + tcols
        ncols = []
        for i, _ in self.fields.values():
            jv = Val.of_variant(f"j{i}")
            ncols += [f"CASE WHEN t{i} = 'NUM' THEN {jv.n} END AS n{i}",
                      f"CASE WHEN t{i} = 'VARCHAR' THEN {jv.s} END AS s{i}",
                      f"CASE WHEN t{i} = 'BOOLEAN' THEN {jv.b} END AS b{i}"]
        layer3 = ["*"] + ncols
        layer4 = ["*"] + [f"{_snv(f's{i}')} AS snv{i}" for i, _ in self.fields.values()]
        flags = []
        for i, _ in self.fields.values():
            v = Val(t=f"t{i}", n=f"n{i}", s=f"s{i}", b=f"b{i}", j=f"j{i}", snv=f"snv{i}")
            flags += [f"{v.missing} AS miss{i}", f"{v.bad} AS bad{i}", f"{v.good} AS good{i}",
                      f"{v.str_num_ok} AS sok{i}", f"{v.str_num_bad} AS sbad{i}"]
        layer4b = ["*"] + flags
        layer5a = ["*"] + self.amounts
        layers5b = [tuple(["*"] + w) for w in self.windows]
        layer5b3 = ["*"] + self.totals
        layer5c = ["*"] + self.nears
        rcols = []
        for r, (rule, val, err) in enumerate(rules):
            rcols.append(f"(CASE WHEN tm{r} THEN COALESCE({err}, TRUE) ELSE FALSE END) AS e{r}")
            rcols.append(f"(CASE WHEN tm{r} THEN NOT COALESCE({err}, TRUE) AND COALESCE({val}, FALSE) "
                         f"ELSE FALSE END) AS m{r}")
        layer6a = ["*"] + self.leafcols
        layer6 = ["*"] + rcols
        layer7 = (["seq"] + (["log_"] if self.grouped else []) + ["action_id"] + [f"e{r}" for r in range(len(p.rules))]
                  + [f"m{r}" for r in range(len(p.rules))] + [f"{self._details(rules)} AS error_details"])
        layer8 = ["*", f"{self._decision()} AS lvl"]
        layer9 = ["seq"] + (["log_"] if self.grouped else []) + ["action_id", f"{self._verdict()} AS decision", f"{self._ids('m')} AS rules",
                  f"{self._ids('e')} AS errors", f"{self._tier()} AS tier", "error_details"]
        layers = (tuple(layer0), tuple(layer1), tuple(layer2), tuple(layer3), tuple(layer4), tuple(layer4b),
                  tuple(layer5a), *layers5b, tuple(layer5b3), tuple(layer5c), tuple(layer6a), tuple(layer6), tuple(layer7),
                  tuple(layer8), tuple(layer9))
        return Plan(layers, 9 + len(layers5b), tuple(self.sums), self.uses_regex, self.uses_time, self.grouped)

    def _details(self, rules: list[tuple[Rule, Sql, Sql]]) -> Sql:
        empty = f"CAST(array() AS ARRAY<{ERROR_DETAIL}>)"
        items = []
        for r in range(len(rules)):
            firsts = " ".join(f"WHEN COALESCE({e}, TRUE) THEN {d}" for e, d in self.leaf_errors.get(r, []))
            if firsts:
                items.append(f"(CASE WHEN e{r} THEN (CASE {firsts} END) END)")
        if not items:
            return empty
        some = _any([f"e{r}" for r in range(len(rules))])
        return (f"(CASE WHEN {some} THEN CAST(filter(array({', '.join(items)}), x_ -> x_ IS NOT NULL) "
                f"AS ARRAY<{ERROR_DETAIL}>) ELSE {empty} END)")

    def _decision(self) -> Sql:
        """The decision's level: semantics.decision_level over the rule columns."""
        p = self.policy
        errs = _any([f"e{r}" for r, rule in enumerate(p.rules) if rule.enforced])
        return sem.decision_level(_SQL_LEVELS, p, [(rule, f"m{r}") for r, rule in enumerate(p.rules)], errs)

    def _verdict(self) -> Sql:
        return "(CASE lvl " + " ".join(f"WHEN {sem.LEVEL[v]} THEN {lit(v)}" for v in sem.VERDICTS) + " END)"

    def _ids(self, prefix: str) -> Sql:
        empty = "CAST(array() AS ARRAY<STRING>)"
        if not self.policy.rules:
            return empty
        items = ", ".join(f"CASE WHEN {prefix}{r} THEN {lit(rule.id)} END" for r, rule in enumerate(self.policy.rules))
        some = _any([f"{prefix}{r}" for r in range(len(self.policy.rules))])
        return f"(CASE WHEN {some} THEN filter(array({items}), x_ -> x_ IS NOT NULL) ELSE {empty} END)"

    def _tier(self) -> Sql:
        rank = self.policy.tier_rank()
        cands = sorted(((rank[rule.tier], r, rule) for r, rule in enumerate(self.policy.rules)
                        if sem.strictest_tier(self.policy, [rule]) is not None),
                       key=lambda c: (c[0], c[1]))
        if not cands:
            return "CAST(NULL AS STRING)"
        whens = " ".join(f"WHEN m{r} THEN {lit(rule.tier)}" for _, r, rule in cands)
        return f"(CASE WHEN lvl = {sem.LEVEL['escalate']} THEN (CASE {whens} END) END)"


_SQL_LEVELS = sqltests.SqlLevels()


def _leaf(q: _Query, node: Test, rule: Rule, r: int) -> Pair:
    v = q.field(node.field)
    if node.op == "matches":
        q.uses_regex = True
    val, err, code = LEAVES[node.op](v, node.operand, node.field)
    return q.leaf(r, val, err, error_detail(rule, node.field, node.op, v, code) if err != "FALSE" else None)


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
    """A glob whose only wildcard is `*` as a full match on `tool` without a regex (Spark's LIKE is
    dot-all, so `%` spans newlines as the glob's `(?s:.*)` does)."""
    pieces = pattern.split("*")
    if all(not p for p in pieces):
        return "(`tool` IS NOT NULL)"
    if len(pieces) == 2 and not pieces[1]:
        return f"startswith(`tool`, {lit(pieces[0])})"
    if len(pieces) == 2 and not pieces[0]:
        return f"endswith(`tool`, {lit(pieces[1])})"
    like = "%".join(p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in pieces)
    return f"(`tool` LIKE {lit(like)})"


def plan(policy: Policy, grouped: bool = False) -> Plan:
    """The select layers deciding every action of a normalised frame (see `Plan`). `grouped`: the frame holds
    many logs, told apart by a `log_` column; windows count within each log only."""
    return _Query(policy, grouped).plan()
