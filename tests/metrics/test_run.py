"""The loaded run: the one seam metrics take, read once, and the one module that reads `decisions`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import gatekit.run
from gatekit.errors import StoreError
from gatekit.logs.store import Store
from gatekit.metrics.rates import summarize_rates
from gatekit.report import build_report
from gatekit.run import Reader, load_run

REPO = Path(__file__).resolve().parents[2]
TABLES = ("decisions", "runs")
# A statement naming one of the run tables; at one position the longest keyword wins (DELETE FROM, not FROM).
STATEMENT = re.compile(r"(?i)\b(INSERT\s+INTO|DELETE\s+FROM|UPDATE|CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|"
                       r"ALTER\s+TABLE|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|FROM|JOIN)\s+\"?(decisions|runs)\b")
OWNER = "gatekit/run.py"
WRITER = "gatekit/replay.py"  # the write path: it creates, inserts and deletes, and reads through the owner
WRITES = ("INSERT", "DELETE", "CREATE", "ALTER", "DROP", "UPDATE")


class Counting:
    """A DuckDB connection that records every statement sent through it (the text and its parameters)."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.statements: list[tuple[str, list[Any]]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, list(params or [])))
        return self._con.execute(sql, params) if params is not None else self._con.execute(sql)

    def sql(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, list(params or [])))
        return self._con.sql(sql, params=params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def over(self, table: str) -> list[tuple[str, list[Any]]]:
        return [(s, p) for s, p in self.statements if re.search(rf"(?i)\b(FROM|JOIN)\s+{table}\b", s)]


@pytest.fixture
def counted(sample_store: Path, monkeypatch: pytest.MonkeyPatch):
    parsed: list[str] = []
    parse = gatekit.run.parse_policy

    def counting_parse(text: str, source: str = "<policy>") -> Any:
        parsed.append(source)
        return parse(text, source)

    monkeypatch.setattr(gatekit.run, "parse_policy", counting_parse)
    with Store(sample_store, read_only=True) as store:
        con = Counting(store.con)
        store.con = con  # type: ignore[assignment]
        yield store, con, parsed
        store.con = con._con


def test_build_report_with_against_and_sweep_loads_each_run_once(counted) -> None:
    store, con, parsed = counted
    report = build_report(store, "starter", against="strict", sweep=("payments-over-100", "args.amount"))
    assert report.diff is not None and report.evaluation.sweep is not None
    # each run's metadata row once, each run's decisions once, the actions and approvals once for both
    assert sorted(p[0] for _, p in con.over("runs") if p) == ["starter", "strict"]
    frames = [(s, p) for s, p in con.over("decisions") if "unnest(error_details)" not in s]
    assert sorted(p[0] for _, p in frames) == ["starter", "strict"]
    # and one aggregate of the report run's evaluation errors (by rule and code), not a frame
    assert [p for s, p in con.over("decisions") if "unnest(error_details)" in s] == [["starter"]]
    assert sum("AS approvals FROM actions a" in s for s, _ in con.statements) == 1  # the actions frame
    assert sum("unnest(CAST(a.approvals AS JSON[]))" in s for s, _ in con.statements) == 1  # the approvals
    assert len(parsed) == 2  # one parse of each run's policy


def test_metrics_of_one_loaded_run_read_and_parse_once(counted) -> None:
    store, con, parsed = counted
    run = load_run(store, "starter")
    first, again = summarize_rates(run), summarize_rates(run)
    assert first.to_dict() == again.to_dict()
    assert len(con.over("decisions")) == 1 and len(parsed) == 1


def test_run_frame_is_the_decisions_joined_with_their_actions(store) -> None:
    for name in ("starter", "strict"):
        expected = store.con.sql(
            f"SELECT {gatekit.run.ACTION_COLUMNS}, coalesce(json_array_length(a.approvals), 0) AS approvals, "
            "d.decision, d.rules, d.errors, d.tier FROM decisions d JOIN actions a USING (seq) WHERE d.run = ? "
            "ORDER BY a.seq", params=[name]).pl()
        assert load_run(store, name).frame.equals(expected)


def test_runs_of_one_reader_share_the_store_frames(store) -> None:
    reader = Reader(store)
    a, b = reader.run("starter"), reader.run("strict")
    assert a.approvals is b.approvals
    assert a.frame.height == b.frame.height == store.count_actions()
    assert a.policy.name == "starter" and b.policy is b.policy


def test_a_missing_run_names_the_stored_ones(store) -> None:
    with pytest.raises(StoreError, match=r"no run `nope` in the store \(runs: `starter`, `strict`\)"):
        load_run(store, "nope")


def test_run_to_dict_keeps_its_shape(store) -> None:
    doc = load_run(store, "starter").to_dict()
    assert list(doc) == ["name", "policy_name", "fingerprint", "created_at", "actions", "allow", "escalate",
                         "deny", "errored", "seconds", "policy_source", "decisions", "rates"]


def _statements(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).split()[0].upper(), m.group(2)) for m in STATEMENT.finditer(text)]


def test_statement_finder_sees_reads_and_writes() -> None:
    assert _statements('con.sql("SELECT * FROM decisions d JOIN runs r")') == [("FROM", "decisions"),
                                                                              ("JOIN", "runs")]
    assert _statements("DELETE FROM decisions WHERE run = ?; insert into runs VALUES (1)") == [
        ("DELETE", "decisions"), ("INSERT", "runs")]
    assert _statements("replayed into runs named `x`, read from the decision table") == []


def test_only_the_run_module_reads_the_run_tables() -> None:
    """Every SELECT over `decisions` and `runs` is in gatekit/run.py; replay.py only writes them."""
    found = {}
    for root in ("gatekit", "dashboards"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            hits = [s for s in _statements(path.read_text(encoding="utf-8")) if s[1] in TABLES]
            if rel == OWNER:
                assert any(kind == "FROM" and table == "decisions" for kind, table in hits)
                continue
            if rel == WRITER:
                hits = [(kind, table) for kind, table in hits if kind not in WRITES]
            if hits:
                found[rel] = hits
    assert not found, f"SQL over the run tables outside {OWNER}: {found}"
