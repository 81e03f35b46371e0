"""The shared corpus (tests/cases/*.yaml) through both evaluators, and the completeness checks around it."""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing

import pytest

import gatekit.policy.conditions as conditions
import gatekit.policy.semantics as semantics
from gatekit.policy.conditions import Test as TestNode
from gatekit.policy.decision import CODES, INTERNAL_ERROR

from .corpus import CASES_DIR, Case, load_all, load_file
from .harness import details_closure, details_python, details_sql, run_closure, run_python, run_sql, spark_many

# `gatekit.policy.decide` the attribute is the function the package re-exports; these are the modules
decide_mod = importlib.import_module("gatekit.policy.decide")
ops_mod = importlib.import_module("gatekit.policy._ops")
compile_mod = importlib.import_module("gatekit.policy.compile")
closure_mod = importlib.import_module("gatekit.policy.closure")
# the Spark compiler writes SQL text only (no pyspark import), so its tables are checked without Spark
spark_compile_mod = importlib.import_module("gatekit.spark.compile")

FILES = load_all()
CASES = [case for f in FILES for case in f.cases]


def _show(outcomes: list[tuple]) -> str:
    return "\n".join(f"  [{i}] {o}" for i, o in enumerate(outcomes))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    got = run_python(case.policy, case.actions)
    assert got == case.expect, (
        f"decide disagrees with the corpus in {case.id}\nactions:\n{_show(case.raw_actions)}\n"
        f"expected:\n{_show(case.expect)}\ndecide:\n{_show(got)}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_closure(case: Case) -> None:
    """The gate's closure evaluator: the corpus's outcomes, and decide's very error details."""
    got = run_closure(case.policy, case.actions)
    assert got == case.expect, (
        f"the closure evaluator disagrees with the corpus in {case.id}\nactions:\n{_show(case.raw_actions)}\n"
        f"expected:\n{_show(case.expect)}\nclosure:\n{_show(got)}")
    if any(o[2] for o in case.expect):
        assert details_closure(case.policy, case.actions) == details_python(case.policy, case.actions)


@pytest.mark.parametrize("path", ["json", "shredded"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_sql(case: Case, path: str) -> None:
    """The compiled SQL reading the JSON, and reading the paths shredded into typed columns."""
    got = run_sql(case.policy, case.actions, shredded=path == "shredded")
    assert got == case.expect, (
        f"the compiled SQL disagrees with the corpus in {case.id}\nactions:\n{_show(case.raw_actions)}\n"
        f"expected:\n{_show(case.expect)}\nsql:\n{_show(got)}")


_SPARK: dict[str, dict] = {}  # file -> case name -> (outcomes, error details): one Spark job per corpus file


def _on_spark(case: Case, spark) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    if case.file not in _SPARK:
        cases = [c for c in CASES if c.file == case.file]
        got, details = spark_many(case.policy, [c.actions for c in cases], spark)
        _SPARK[case.file] = dict(zip((c.name for c in cases), zip(got, details)))
    return _SPARK[case.file][case.name]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_spark(case: Case, spark) -> None:
    got = _on_spark(case, spark)[0]
    assert got == case.expect, (
        f"the Spark backend disagrees with the corpus in {case.id}\nactions:\n{_show(case.raw_actions)}\n"
        f"expected:\n{_show(case.expect)}\nspark:\n{_show(got)}")


ERRORING = [case for case in CASES if any(o[2] for o in case.expect)]


@pytest.mark.parametrize("path", ["json", "shredded"])
@pytest.mark.parametrize("case", ERRORING, ids=[c.id for c in ERRORING])
def test_error_details_agree(case: Case, path: str) -> None:
    """Both evaluators report the same structured error (rule, field, test, code, message) per errored rule."""
    py = details_python(case.policy, case.actions)
    sql = details_sql(case.policy, case.actions, shredded=path == "shredded")
    assert py == sql, f"error details differ in {case.id}\ndecide:\n{_show(py)}\nsql:\n{_show(sql)}"
    for outcome, details in zip(case.expect, py):
        assert tuple(d[0] for d in details) == outcome[2], "one detail per errored rule, in the order of `errors`"
        assert all(d[3] in CODES for d in details)


@pytest.mark.parametrize("case", ERRORING, ids=[c.id for c in ERRORING])
def test_error_details_agree_on_spark(case: Case, spark) -> None:
    """The Spark backend reports decide's structured errors too (rule, field, test, code, message)."""
    py, got = details_python(case.policy, case.actions), _on_spark(case, spark)[1]
    assert py == got, f"error details differ in {case.id}\ndecide:\n{_show(py)}\nspark:\n{_show(got)}"


def test_every_error_code_occurs_in_the_corpus() -> None:
    seen = {d[3] for case in ERRORING for details in details_python(case.policy, case.actions) for d in details}
    assert seen == set(CODES) - {INTERNAL_ERROR}


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 15
    assert len(CASES) >= 200
    assert (CASES_DIR / "README.md").is_file()


# ---- the semantics table is covered cell by cell -------------------------------------------------------
KINDS = set(semantics.KINDS)  # the kinds of value of the semantics table


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _kind(args: dict) -> str:
    if "v" not in args:
        return "missing"
    v = args["v"]
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int) and abs(v) > 10**308:
        return "huge number"
    if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")):
        return "nan or infinity"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        try:
            parsed = json.loads(v, parse_constant=_no_constants)
        except ValueError:
            return "string"
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return "numeric string" if abs(float(parsed)) != float("inf") else "out-of-range numeric string"
        return "string"
    return "list" if isinstance(v, list) else "object"


def test_table_covers_every_cell() -> None:
    table = load_file(CASES_DIR / "table.yaml")
    ops = {}
    for rule in table.policy.rules:
        assert isinstance(rule.when, TestNode) and rule.when.field.name == "args.v", rule.id
        ops.setdefault(rule.when.op, []).append(rule.id)
    assert set(ops) == set(conditions.OPS), "table.yaml needs a rule for every test"
    kinds = {}
    for case in table.cases:
        assert len(case.actions) == 1
        kinds.setdefault(_kind(case.actions[0].get("args", {})), []).append(case.name)
    assert set(kinds) >= KINDS, f"table.yaml misses value kinds: {KINDS - set(kinds)}"
    # the raw JSON of the huge cases must stay what it says: 1e400 and a 400-digit integer
    raws = " ".join(r for c in table.cases for r in c.raw_actions)
    assert "1e400" in raws and "1" + "0" * 399 in raws and "NaN" in raws and "Infinity" in raws


def test_every_op_and_node_runs_somewhere_in_the_corpus() -> None:
    seen_ops, seen_nodes = set(), set()

    def walk(node: object) -> None:
        seen_nodes.add(type(node))
        if isinstance(node, TestNode):
            seen_ops.add(node.op)
        for child in getattr(node, "items", ()) or ((node.item,) if hasattr(node, "item") else ()):
            walk(child)

    for f in FILES:
        for rule in f.policy.rules:
            walk(rule.when)
    assert seen_ops == set(conditions.OPS)
    assert seen_nodes == set(typing.get_args(conditions.Cond))


# ---- both dispatch tables are complete -----------------------------------------------------------------
def test_test_tables_are_complete() -> None:
    """Every test is a row of the semantics table, built from it by both backends (the cells of each row
    against each backend: tests/policy/test_semantics.py)."""
    assert set(ops_mod.TESTS) == set(compile_mod.LEAVES) == set(spark_compile_mod.LEAVES) == set(conditions.OPS)
    assert set(semantics.TABLE) == set(conditions.OPS) | {"sum"}
    assert set(ops_mod.PRIMITIVES) == set(compile_mod.PRIMITIVES) == set(semantics.PRIMITIVES)
    assert set(semantics.BACKENDS) >= {"decide", "closure", "duckdb", "spark"}
    # both SQL dialects build every test from the table with the one walker (gatekit/policy/sqltests.py):
    # each needs every primitive, its own (FUNCTIONS, a method) or the walker's plain-SQL one
    for dialect in (compile_mod.DIALECT, spark_compile_mod.DIALECT):
        missing = [n for n in semantics.PRIMITIVES
                   if n not in dialect.FUNCTIONS and not hasattr(dialect, "p_" + n.replace(" ", "_"))]
        assert not missing, (dialect.name, missing)


def test_node_tables_are_complete() -> None:
    node_types = set(typing.get_args(conditions.Cond))
    declared = {obj for obj in vars(conditions).values()
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj is not conditions.Field}
    assert node_types == declared, "conditions.Cond must list every node type"
    assert set(decide_mod.COMPILERS) == node_types
    assert set(closure_mod.FAST) == node_types
    assert set(compile_mod.NODES) == node_types
    assert set(spark_compile_mod.NODES) == node_types
