"""The semantics table (gatekit/policy/semantics.py) against every backend, cell by cell; the one
precedence used by decide, the SQL and the metrics' recombination; the docs table generated from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gatekit.policy.compile as compile_mod
from gatekit.metrics.evaluate import _recombine
from gatekit.policy import parse_policy, policy_dict
from gatekit.policy import semantics as sem
from gatekit.policy._ops import PRIMITIVES as DECIDE_PRIMITIVES
from gatekit.policy._ops import value_kind
from gatekit.policy.conditions import OPS
from gatekit.policy.decide import evaluator
from gatekit.policy.decision import RuleError

from .harness import details_closure, details_python, details_sql, run_closure, run_python, run_sql, spark_batch

REPO = Path(__file__).resolve().parents[2]

# one value of every kind, as the JSON text of `args` (None: the field is absent)
SAMPLES: dict[str, str | None] = {
    sem.NUMBER: "5", sem.NUMERIC: '"5"', sem.STRING: '"abxc"', sem.LIST: '[5, "x"]', sem.OBJECT: '{"x": 1}',
    sem.BOOLEAN: "true", sem.MISSING: None, sem.NULL: "null", sem.NAN: "NaN", sem.HUGE: "1" + "0" * 400,
    sem.OUT_OF_RANGE: '"1e400"',
}
# one operand of every kind of every test, as YAML
OPERANDS: dict[tuple[str, str], str] = {
    **{(op, ok): text for op in ("eq", "ne") for ok, text in
       ((sem.NUMBER, "5"), (sem.NUMERIC, "'5'"), (sem.STRING, "abxc"), (sem.BOOLEAN, "true"),
        (sem.LIST, "[5, x]"))},
    **{(op, sem.NUMBER): "4" for op in ("gt", "gte", "lt", "lte")},
    **{(op, sem.LIST): "[5, x, true]" for op in ("in", "not_in")},
    ("contains", sem.STRING): "x", ("contains", "other"): "5",
    ("matches", "pattern"): "'^[a-z]+$'", ("startswith", sem.STRING): "ab", ("endswith", sem.STRING): "xc",
    ("exists", "true"): "true", ("exists", "false"): "false",
}
ROWS = sorted(OPERANDS)


def _actions() -> list[dict[str, Any]]:
    out = []
    for k in sem.KINDS:
        text = SAMPLES[k]
        args = {} if text is None else {"v": json.loads(text)}
        out.append({"tool": "t", "args": args, "ts": f"2026-01-15T12:00:{len(out):02d}Z"})
    return out


ACTIONS = _actions()


def _policy(when: str) -> Any:
    return parse_policy("version: 1\nname: cell\ndefault: allow\non_error: escalate\nrules:\n"
                        f"  - {{id: r, tool: t, action: deny, when: {when}}}\n")


SUM_WHEN = "{sum: {field: args.v, window: 1h, gt: 4}}"


def _key(policy: Any, actions: Any) -> str:
    return json.dumps([policy_dict(policy), list(actions)], sort_keys=True, default=str)


class _SparkRunner:
    """Spark's runner: every policy this module decides (each row of the table on every kind of value, the
    `sum` row on each value alone), in ONE Spark job the first time one is asked for; a job per cell would
    take minutes. A policy not in that batch is decided on its own."""

    def __init__(self) -> None:
        self.session: Any = None  # the session-wide `spark` fixture, set by the tests that run backends
        self.cache: dict[str, tuple[list[Any], list[Any]]] = {}

    def _decide(self, jobs: list[tuple[Any, list[list[dict[str, Any]]]]]) -> None:
        assert self.session is not None, "a test running the Spark backend takes the `spark` fixture"
        for (policy, logs), (outs, details) in zip(jobs, spark_batch(jobs, self.session)):
            for log, out, ds in zip(logs, outs, details):
                self.cache[_key(policy, log)] = (out, ds)

    def _get(self, policy: Any, actions: Any) -> tuple[list[Any], list[Any]]:
        if not self.cache:
            jobs = [(_policy(f"{{args.v: {{{row[0]}: {OPERANDS[row]}}}}}"), [ACTIONS]) for row in ROWS]
            jobs.append((_policy(SUM_WHEN), [[a] for a in ACTIONS]))
            self._decide(jobs)  # type: ignore[arg-type]
        key = _key(policy, actions)
        if key not in self.cache:
            self._decide([(policy, [list(actions)])])
        return self.cache[key]

    def run(self, policy: Any, actions: Any) -> list[Any]:
        return self._get(policy, actions)[0]

    def details(self, policy: Any, actions: Any) -> list[Any]:
        return self._get(policy, actions)[1]


SPARK = _SparkRunner()

# registered backend -> how a log is decided through it (outcomes, error details)
RUNNERS = {"decide": (run_python, details_python), "closure": (run_closure, details_closure),
           "duckdb": (run_sql, details_sql), "spark": (SPARK.run, SPARK.details)}


@pytest.fixture
def backends(spark: Any) -> dict[str, Any]:
    """The runners of every registered backend (Spark's needs the session)."""
    SPARK.session = spark
    return RUNNERS


def _outcomes(policy: Any, engine: str) -> list[tuple[str, Any]]:
    """Per kind of value: ("value", bool) or ("error", code), as one backend decides it."""
    run, details = RUNNERS[engine]
    out = []
    for (decision, rules, errors, _), ds in zip(run(policy, ACTIONS), details(policy, ACTIONS)):
        out.append(("error", ds[0][3]) if errors else ("value", rules == ("r",)))
        assert decision == {"error": "escalate", True: "deny", False: "allow"}[out[-1][0] if errors else out[-1][1]]
    return out


def _expected(cell: Any) -> tuple[str, Any] | None:
    if isinstance(cell, sem.Const):
        return ("value", cell.value)
    if isinstance(cell, sem.Error):
        return ("error", cell.code)
    return None  # a primitive: the backends must agree, and it gives no error of its own here


def test_samples_are_their_kinds() -> None:
    for k, text in SAMPLES.items():
        got = value_kind(json.loads(text)) if text is not None else sem.MISSING
        assert got == k, (k, text)


@pytest.mark.parametrize("row", ROWS, ids=[f"{op}-{ok}" for op, ok in ROWS])
def test_every_backend_gives_every_cell_of_the_table(row: tuple[str, str], backends: dict[str, Any]) -> None:
    op, ok = row
    policy = _policy(f"{{args.v: {{{op}: {OPERANDS[row]}}}}}")
    test = policy.rules[0].when
    assert sem.operand_kind(op, test.operand, test.field.name) == ok, "the sample operand has the row's kind"
    cells = sem.TABLE[op][ok]
    got = {engine: dict(zip(sem.KINDS, _outcomes(policy, engine))) for engine in RUNNERS}
    for engine in RUNNERS:
        assert got[engine] == got["decide"], f"{op} {ok}: {engine} disagrees with decide"
    for k in sem.KINDS:
        want = _expected(cells[k])
        if want is None:  # a primitive errors only through a nested `eq`, with its code
            assert (got["decide"][k][0] == "value"
                    or (cells[k].name in sem.NESTED and got["decide"][k] == ("error", sem.nested_error()))), (
                f"{op} {ok} on {k}: the primitive {cells[k]} gave {got['decide'][k]}")
        else:
            assert got["decide"][k] == want, f"{op} {ok} on {k}: table says {cells[k]}, got {got['decide'][k]}"


def test_every_row_of_the_table_is_exercised() -> None:
    rows = {(op, ok) for op, by in sem.TABLE.items() for ok in by} - {("sum", "field")}
    dates = {(op, "date") for op in ("gt", "gte", "lt", "lte")}  # time.date: tests/cases/fields.yaml
    assert rows - dates == set(OPERANDS)


def test_the_sum_row_on_every_backend(backends: dict[str, Any]) -> None:
    policy = _policy(SUM_WHEN)
    cells = sem.TABLE["sum"]["field"]
    for engine in RUNNERS:
        # each action alone (a window of one call): its amount against the threshold
        for k, action in zip(sem.KINDS, ACTIONS):
            got = _outcomes_one(policy, action, engine)
            cell = cells[k]
            if isinstance(cell, sem.Error):
                assert got == ("error", cell.code), (engine, k)
            else:
                assert got == ("value", cell.name == "amount"), (engine, k)  # 5 > 4; zero is not


def _outcomes_one(policy: Any, action: dict[str, Any], engine: str) -> tuple[str, Any]:
    run, details = RUNNERS[engine]
    (_, rules, errors, _), = run(policy, [action])
    (ds,) = details(policy, [action])
    return ("error", ds[0][3]) if errors else ("value", rules == ("r",))


# ---- the table is complete, and every backend implements it -------------------------------------------
def test_the_table_has_every_test_operand_and_kind() -> None:
    assert set(sem.TABLE) == set(OPS) | {"sum"}
    for op, by in sem.TABLE.items():
        assert tuple(by) == sem.OPERANDS[op]
        for row in by.values():
            assert set(row) == set(sem.KINDS)
            assert row[sem.MISSING] == row[sem.NULL], "missing and null read alike"
            assert row[sem.NAN] == row[sem.HUGE], "NaN and a huge number read alike"
            for cell in row.values():
                assert isinstance(cell, (sem.Const, sem.Error, sem.Prim))
                if isinstance(cell, sem.Prim):
                    assert cell.name in sem.PRIMITIVES
    used = {c.name for by in sem.TABLE.values() for row in by.values() for c in row.values()
            if isinstance(c, sem.Prim)}
    assert used == set(sem.PRIMITIVES), "a primitive no cell uses"


def test_every_registered_backend_is_run_against_the_table() -> None:
    assert set(RUNNERS) == set(sem.BACKENDS), "a registered backend needs a runner here and in the corpus"


@pytest.mark.parametrize("name", sorted(sem.BACKENDS))
def test_every_registered_backend_implements_the_protocol(name: str) -> None:
    backend = sem.backend(name)
    assert isinstance(backend, sem.Backend)
    assert backend.name == name
    for method in ("is_kind", "as_number", "primitive"):
        assert callable(getattr(backend, method))


def test_both_backends_have_every_primitive() -> None:
    assert set(DECIDE_PRIMITIVES) == set(sem.PRIMITIVES) == set(compile_mod.PRIMITIVES)


def test_the_sql_reading_of_every_kind() -> None:
    """DuckDB's typed readings (compile.kinds_sql) put each sample in its kind and no other."""
    con = duckdb.connect()
    v = compile_mod.Val.of_json("j")
    for k, text in SAMPLES.items():
        j = "NULL" if text is None else compile_mod.lit(text)
        for other in sem.KINDS:
            kinds = frozenset({other}) | (sem.ABSENT if other in sem.ABSENT else frozenset())
            kinds |= frozenset({sem.NAN, sem.HUGE}) if other in (sem.NAN, sem.HUGE) else frozenset()
            got = con.execute(f"SELECT COALESCE({compile_mod.kinds_sql(v, kinds)}, FALSE) "
                              f"FROM (SELECT CAST({j} AS JSON) AS j)").fetchone()[0]
            assert got == (k in kinds), (k, other)


# ---- precedence: one function, three users ------------------------------------------------------------
TIERS = "tiers:\n  one: {approvals: 1}\n  two: {approvals: 2}\n  roles: {approvals: 2, roles: [a]}\n"


@st.composite
def _outcomes_strategy(draw: Any) -> tuple[Any, list[bool], list[bool]]:
    n = draw(st.integers(1, 5))
    lines = []
    for i in range(n):
        action = draw(st.sampled_from(["allow", "escalate", "deny"]))
        tier = draw(st.sampled_from([None, "one", "two", "roles"])) if action == "escalate" else None
        mode = draw(st.sampled_from(["enforce", "enforce", "shadow"]))
        lines.append(f"  - {{id: r{i}, tool: t, action: {action}, mode: {mode}"
                     + (f", tier: {tier}" if tier else "") + "}")
    default = draw(st.sampled_from(["allow", "escalate", "deny"]))
    on_error = draw(st.sampled_from(["escalate", "deny"]))
    policy = parse_policy(f"version: 1\nname: p\ndefault: {default}\non_error: {on_error}\n{TIERS}rules:\n"
                          + "\n".join(lines) + "\n")
    errored = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    matched = [m and not e for m, e in zip(draw(st.lists(st.booleans(), min_size=n, max_size=n)), errored)]
    return policy, matched, errored


def _decide(policy: Any, matched: list[bool], errored: list[bool]) -> tuple[str, str | None]:
    rules = policy.rules
    errors = [(r, RuleError(r.id, "", "", "type_mismatch", "")) for r, e in zip(rules, errored) if e]
    d = evaluator(policy)._decision([r for r, m in zip(rules, matched) if m], errors)
    return d.decision, d.tier


def _sql(policy: Any, matched: list[bool], errored: list[bool]) -> tuple[str, str | None]:
    q = compile_mod._Query(policy)
    cols = ", ".join([f"{m} AS m{r}" for r, m in enumerate(matched)] + [f"{e} AS e{r}" for r, e in enumerate(errored)])
    return _CON.execute(f"WITH r0 AS (SELECT {cols}), r AS (SELECT *, {q._best()} AS best_ FROM r0), "
                        f"d AS (SELECT {q._decision()} AS lvl, * FROM r) "
                        f"SELECT {q._verdict()}, {q._tier()} FROM d").fetchone()


_CON = duckdb.connect()


@settings(max_examples=150, deadline=None)
@given(_outcomes_strategy())
def test_decide_sql_and_metrics_share_one_precedence(case: tuple[Any, list[bool], list[bool]]) -> None:
    policy, matched, errored = case
    py = _decide(policy, matched, errored)
    assert _sql(policy, matched, errored) == py
    level = sem.decision_level(sem.PyLevels(), policy, list(zip(policy.rules, matched)), any(
        e for r, e in zip(policy.rules, errored) if r.enforced))
    assert sem.VERDICTS[level] == py[0]
    # metrics' recombination: each rule that did not error in turn as the counterfactual one
    for i, rule in enumerate(policy.rules):
        if errored[i]:
            continue
        frame = pl.DataFrame({
            "seq": [0], "value": [1.0], "m_true": [True], "m_false": [False],
            "rules": [[r.id for j, r in enumerate(policy.rules) if matched[j] and j != i]],
            "errors": [[r.id for j, r in enumerate(policy.rules) if errored[j]]]},
            schema={"seq": pl.Int64, "value": pl.Float64, "m_true": pl.Boolean, "m_false": pl.Boolean,
                    "rules": pl.List(pl.String), "errors": pl.List(pl.String)})
        got = _recombine(policy, rule, frame).row(0, named=True)
        with_rule = [m or j == i for j, m in enumerate(matched)]
        without = [m and j != i for j, m in enumerate(matched)]
        assert got["if_true"] == _decide(policy, with_rule, errored)[0]
        assert got["if_false"] == _decide(policy, without, errored)[0]


# ---- the window rule ----------------------------------------------------------------------------------
def test_the_window_frame_and_tie_rule() -> None:
    assert sem.counts_before(peer_ts=1, peer_seq=0, ts=10, seq=5, span=10)
    assert not sem.counts_before(peer_ts=0, peer_seq=0, ts=10, seq=5, span=10)  # (ts - span, ts]
    assert sem.counts_before(peer_ts=10, peer_seq=4, ts=10, seq=5, span=10)
    assert not sem.counts_before(peer_ts=10, peer_seq=6, ts=10, seq=5, span=10)  # same instant, later in the log
    assert not sem.counts_before(peer_ts=11, peer_seq=0, ts=10, seq=5, span=10)


def test_one_rounding_margin() -> None:
    import gatekit.policy._history as history
    assert history.SUM_MARGIN is sem.SUM_MARGIN
    sql = compile_mod.compile_sql(_policy("{sum: {field: args.v, window: 1h, gt: 4}}"))
    assert f"> {float(sem.SUM_MARGIN)!r} * (n_ + 2) * mag_" in sql


# ---- docs/policy.md ------------------------------------------------------------------------------------
def test_docs_table_is_generated_from_the_module() -> None:
    doc = (REPO / "docs" / "policy.md").read_text(encoding="utf-8")
    assert sem.splice(doc) == doc, "docs/policy.md's table is stale: run `python -m gatekit.policy.semantics`"
    assert sem.render_table() in doc
