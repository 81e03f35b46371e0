"""The report's metrics computed in Spark equal the DuckDB report's on the sample logs (labels, approvals and
outcomes included): rates by every key, rule firing, workload, the smell test, the labels and A against B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay
from gatekit.report import SECTIONS, build_report, render_html, render_text

REPO = Path(__file__).resolve().parents[2]
STARTER, STRICT = REPO / "policies" / "starter.yaml", REPO / "policies" / "starter-strict.yaml"
LOGS = sorted((REPO / "sample_logs").glob("*.jsonl"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("logs")
    for f in LOGS:
        (d / f.name).symlink_to(f)
    return d


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("store") / "sample.duckdb"
    with Store(path) as store:
        ingest(store, LOGS)
        replay(store, load_policy(STRICT), "strict")
        replay(store, load_policy(STARTER), "starter")
        yield build_report(store, "starter", against="strict")


@pytest.fixture(scope="module")
def sparked(spark, logs: Path) -> Any:
    from gatekit.spark import read_actions
    from gatekit.spark.metrics import spark_report

    return spark_report(spark, read_actions(spark, str(logs)), load_policy(STARTER), against=load_policy(STRICT),
                        source=str(logs))


def _eq(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-12)


def test_the_rates_equal_the_duckdb_reports(duck, sparked) -> None:
    d, s = duck.rates, sparked.rates
    assert s.decisions == d.decisions and s.actions == d.actions
    _eq(s.overall, d.overall)
    assert set(s.by) == set(d.by)
    for key in d.by:
        _eq(s.by[key], d.by[key])
    _eq(s.rule_firing, d.rule_firing)
    assert s.never_fired == d.never_fired
    assert s.routine_tools == d.routine_tools and d.routine_tools
    _eq(s.routine, d.routine)
    _eq(s.smell, d.smell)
    # the workload but the review time, which needs the approvals' latencies (a store's)
    timed = ["median_review_s", "reviewer_hours_per_week"]
    _eq(s.workload.drop(timed), d.workload.drop(timed))
    assert s.workload["escalations"][0] > 0


def test_the_label_evaluation_equals_the_duckdb_reports(duck, sparked) -> None:
    d, s = duck.evaluation, sparked.evaluation
    assert d.harmful > 0 and d.benign > 0  # the sample logs are labelled
    for name in ("overall", "by_tool", "by_rule", "sessions"):
        _eq(getattr(s, name), getattr(d, name))
    assert SECTIONS["evaluation"](s) == SECTIONS["evaluation"](d)


def test_the_transitions_equal_the_duckdb_reports(duck, sparked) -> None:
    d, s = duck.diff, sparked.diff
    assert s is not None and d is not None and d.changed > 0
    assert (s.actions, s.changed, s.only_a, s.only_b) == (d.actions, d.changed, d.only_a, d.only_b)
    assert (s.decisions_a, s.decisions_b) == (d.decisions_a, d.decisions_b)
    _eq(s.matrix, d.matrix)  # counts, shares, the rules behind each cell and its first examples in log order
    _eq(s.rules, d.rules)
    _eq(s.policy_diff, d.policy_diff)


def test_the_report_renders_and_says_what_it_left_out(sparked) -> None:
    text = render_text(sparked)
    assert "would-be decisions:" in text and "labels: caught" in text and "against `" in text
    assert "not computed on Spark: drift" in text and "fatigue" in text
    data = sparked.to_dict()
    assert data["engine"] == "spark" and set(data["omitted"]) >= {"drift", "fatigue", "controls"}
    assert data["rates"]["decisions"] == sparked.run.decisions
    html = render_html(sparked, data)
    assert "<h1>gatekit report: policy <code>starter</code> on Spark</h1>" in html


def test_decisions_written_by_replay_give_the_same_report(spark, logs: Path, tmp_path: Path, sparked) -> None:
    from gatekit.spark import read_actions, replay_spark
    from gatekit.spark.metrics import spark_report

    policy = load_policy(STARTER)
    replay_spark(spark, policy, str(logs), str(tmp_path / "out"))
    rep = spark_report(spark, read_actions(spark, str(logs)), policy, decisions=spark.read.parquet(str(tmp_path / "out")))
    _eq(rep.rates.by["hour"], sparked.rates.by["hour"])
    _eq(rep.evaluation.by_rule, sparked.evaluation.by_rule)


def test_the_cli_spark_report_prints_the_duckdb_numbers(spark, logs: Path, tmp_path: Path, duck, gatekit_cli) -> None:
    import json

    html = tmp_path / "r.html"
    code, out, err = gatekit_cli("report", "--engine", "spark", "--input", str(logs), "--policy", str(STARTER),
                                 "--against", str(STRICT), "--json", "--quiet", "--html", str(html))
    assert code == 0, err
    data, ref = json.loads(out), duck.to_dict()
    assert data["decisions"] == ref["decisions"]
    assert data["rates"]["by"]["tool"] == ref["rates"]["by"]["tool"]
    assert data["rates"]["rule_firing"] == ref["rates"]["rule_firing"]
    for key in ("harmful", "caught", "benign", "bothered", "by_rule", "sessions"):
        assert data["evaluate"][key] == ref["evaluate"][key]
    assert data["diff"]["matrix"] == ref["diff"]["matrix"] and data["diff"]["rules"] == ref["diff"]["rules"]
    assert html.read_text().startswith("<!doctype html>") and "Policy A vs B" in html.read_text()
