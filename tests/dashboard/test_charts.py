"""gatekit.charts: one builder per chart, each over a metric's aggregated frame, checked on its Vega-Lite spec."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import altair as alt
import polars as pl
import pytest
import vl_convert

from gatekit import charts
from gatekit.logs.store import Store
from gatekit.metrics import diff, drift, evaluate, fatigue, rates
from gatekit.run import approvals_frame, decisions_frame, load_run


@pytest.fixture(scope="module")
def frames(sample_store: Path) -> dict:
    with Store(sample_store, read_only=True) as store:
        sweep = evaluate.sweep_threshold(load_run(store, "starter"), "payments-over-100", "args.amount")
        return {"a": decisions_frame(store, "starter"), "b": decisions_frame(store, "strict"),
                "approvals": approvals_frame(store), "policy": load_run(store, "starter").policy, "sweep": sweep}


def spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def data(chart: alt.TopLevelMixin) -> list[dict]:
    return [row for rows in spec(chart)["datasets"].values() for row in rows]


def marks(chart: alt.TopLevelMixin) -> list[str]:
    d = spec(chart)
    return [layer["mark"]["type"] for layer in d.get("layer", [d])]


def layer(chart: alt.TopLevelMixin, i: int = 0) -> dict:
    d = spec(chart)
    return d.get("layer", [d])[i]


def vega(chart: alt.TopLevelMixin) -> dict:
    """The chart compiled to Vega, as a browser draws it."""
    out = vl_convert.vegalite_to_vega(spec(chart))
    return out if isinstance(out, dict) else json.loads(out)


def legends(chart: alt.TopLevelMixin) -> list[str]:
    """The scale each legend of the drawn chart explains (`color`, ...)."""
    return [legend.get("fill") or legend.get("stroke") for legend in vega(chart).get("legends", [])]


def domain(chart: alt.TopLevelMixin, scale: str = "color") -> list:
    """The literal domain of a scale of the compiled chart (a scale whose domain is data-driven: None)."""
    found = [s for s in vega(chart)["scales"] if s["name"] == scale]
    return found[0]["domain"] if found and isinstance(found[0]["domain"], list) else None


def test_decision_mix(frames) -> None:
    chart = charts.decision_mix(rates.decision_rates(frames["a"]))
    assert marks(chart) == ["bar"]
    enc = layer(chart)["encoding"]
    assert enc["x"]["field"] == "rate" and enc["y"]["sort"] == ["allow", "escalate", "deny"]
    assert enc["color"]["scale"]["range"] == [charts.DECISION_COLORS[d] for d in ("allow", "escalate", "deny")]
    assert [r["count"] for r in data(chart)] == [17893, 1935, 172]


def test_decision_mix_by_run_stacks_one_bar_per_run(frames) -> None:
    both = pl.concat([rates.decision_rates(frames[k]).with_columns(run=pl.lit(k)) for k in ("a", "b")])
    enc = layer(charts.decision_mix(both, by="run"))["encoding"]
    assert enc["y"]["field"] == "run" and enc["x"]["stack"] == "zero" and enc["order"]["field"] == "decision_order"


def test_rate_by_draws_wilson_error_bars(frames) -> None:
    chart = charts.rate_by(rates.escalation_rate_by(frames["a"], "tool"), "tool", top=5)
    assert marks(chart) == ["bar", "errorbar"]
    err = layer(chart, 1)["encoding"]
    assert err["x"]["field"] == "lower" and err["x2"]["field"] == "upper"
    rows = data(chart)
    assert len(rows) == 5 and all(r["lower"] <= r["rate"] <= r["upper"] for r in rows)
    assert [r["escalations"] for r in rows] == sorted((r["escalations"] for r in rows), reverse=True)


def test_rate_by_takes_decision_rates_too_and_can_keep_key_order(frames) -> None:
    chart = charts.rate_by(rates.decision_rates(frames["a"], "hour"), "hour", top=24, sort="key")
    assert [r["hour"] for r in data(chart)] == [str(h) for h in range(24)]
    deny = charts.rate_by(rates.decision_rates(frames["a"], "tool"), "tool", decision="deny")
    assert layer(deny)["mark"]["color"] == charts.DECISION_COLORS["deny"]


def test_decisions_per_day(frames) -> None:
    chart = charts.decisions_per_day(rates.decision_rates(frames["a"], "day"))
    enc = layer(chart)["encoding"]
    assert enc["x"]["type"] == "temporal" and enc["y"]["stack"] == "zero" and enc["color"]["field"] == "decision"
    assert sum(r["count"] for r in data(chart)) == 20_000
    volume = charts.decisions_per_day(pl.DataFrame({"day": [dt.date(2026, 1, 1)], "count": [3]}))
    assert "color" not in layer(volume)["encoding"]


def test_rule_firing_keeps_file_order_and_marks_shadow_and_never_fired(frames) -> None:
    firing = rates.rule_firing(frames["a"], frames["policy"])
    chart = charts.rule_firing(firing)
    bars, never = layer(chart, 0), layer(chart, 1)
    assert bars["encoding"]["y"]["sort"] == [r.id for r in frames["policy"].rules]
    assert bars["encoding"]["opacity"]["scale"]["domain"] == ["enforce", "shadow"]
    assert never["mark"]["type"] == "text"
    shown = {r["rule"] for r in spec(chart)["datasets"][never["data"]["name"]]}
    assert shown == set(firing.filter(pl.col("never_fired"))["rule"])
    assert len(data(charts.rule_firing(firing, top=3))) == 3 * 3  # three rules, a bar part per decision


def test_transition_heatmap(frames) -> None:
    chart = charts.transition_heatmap(diff.transition_matrix(frames["a"], frames["b"]), a="starter", b="strict")
    assert marks(chart) == ["rect", "text"]
    assert spec(chart)["title"] == "Decisions, starter to strict"
    rows = data(chart)
    assert len(rows) == 9 and sum(r["count"] for r in rows) == 20_000
    assert "examples" not in rows[0]  # lists of action ids stay out of the spec


def test_the_heatmaps_height_follows_its_rows_and_its_numbers_fit_their_cells(frames) -> None:
    """Not a fixed box that a page squashes the rows into (it once drew 19 px rows, numbers over the lines)."""
    heat = charts.transition_heatmap(diff.transition_matrix(frames["a"], frames["b"]))
    assert spec(heat)["height"] == {"step": charts.CELL} and charts.CELL >= 36
    assert spec(heat)["width"]["step"] >= charts.CELL
    text = layer(heat, 1)["mark"]
    assert 2 * text["fontSize"] <= charts.CELL and text["limit"] <= spec(heat)["width"]["step"]
    assert legends(heat) == ["color"]
    drawn = vega(heat)
    height = next(s for s in drawn["signals"] if s["name"] == "height")["update"]
    assert "y_step" in height  # the plot's height is rows x step, whatever box the page gives it
    assert next(s for s in drawn["signals"] if s["name"] == "y_step")["value"] == charts.CELL


def test_tool_mix_psi(frames) -> None:
    first, second = drift.split_halves(frames["a"])
    mix = drift.tool_mix_psi(drift.in_window(frames["a"], first), drift.in_window(frames["a"], second))
    chart = charts.tool_mix_psi(mix, top=5)
    rows = data(chart)
    assert len(rows) == 5 and [r["psi"] for r in rows] == sorted((r["psi"] for r in rows), reverse=True)
    assert layer(chart)["encoding"]["color"]["field"] == "status"


def test_rule_drift(frames) -> None:
    chart = charts.rule_drift(drift.rule_drift(frames["a"], frames["policy"]), rules=["refunds", "email-burst"])
    assert marks(chart) == ["area", "line"]
    assert {r["rule"] for r in data(chart)} == {"refunds", "email-burst"}
    assert layer(chart, 1)["encoding"]["color"]["field"] == "rule"
    assert legends(chart) == ["color"]  # the band's colour once hid the lines' legend
    band = layer(chart, 0)["encoding"]["opacity"]  # a rule's band shows when its legend entry is picked
    assert [c["param"] for c in band["condition"]] == ["picked_rule"] and band["value"] == 0
    assert [p["bind"] for p in spec(chart)["params"] if p["name"] == "picked_rule"] == ["legend"]


def test_rule_drift_draws_the_most_fired_rules_and_says_how_many_are_left_out(frames) -> None:
    per_period = drift.rule_drift(frames["a"], frames["policy"])
    rules = per_period["rule"].n_unique()
    assert rules > charts.SERIES  # the sample policy has more rules than a legend tells apart
    chart = charts.rule_drift(per_period)
    drawn = {r["rule"] for r in data(chart)}
    most = per_period.group_by("rule").agg(pl.col("fired").sum()).sort("fired", descending=True)
    assert drawn == set(most["rule"].head(charts.SERIES)) and len(drawn) == charts.SERIES
    assert f"the {charts.SERIES} most-fired of {rules} rules" in spec(chart)["title"]["subtitle"]
    assert legends(chart) == ["color"]
    assert len(data(charts.rule_drift(per_period, top=3))) == 3 * per_period["period"].n_unique()


def test_rule_drift_of_one_rule_always_shows_its_band(frames) -> None:
    chart = charts.rule_drift(drift.rule_drift(frames["a"], frames["policy"]), rules=["refunds"])
    assert layer(chart, 0)["mark"]["opacity"] > 0 and "opacity" not in layer(chart, 0)["encoding"]
    assert "95% interval" in spec(chart)["title"]["subtitle"]


def test_execution_drift(frames) -> None:
    chart = charts.execution_drift(drift.execution_drift(frames["approvals"], "day"))
    assert marks(chart) == ["area", "line"]
    assert sum(r["drifted"] for r in data(chart)) == 8


def test_execution_drift_names_its_band(frames) -> None:
    """The band is the Wilson interval of each day's share: the legend and the subtitle say so."""
    chart = charts.execution_drift(drift.execution_drift(frames["approvals"], "day"))
    assert legends(chart) == ["color"] and domain(chart) == ["drifted share", "95% interval"]
    assert "95% interval of each day's share" in spec(chart)["title"]["subtitle"]
    assert "95% interval of each week's share" in spec(charts.execution_drift(
        drift.execution_drift(frames["approvals"], "week"), period="week"))["title"]["subtitle"]


def test_reviewer_load_latency_and_queue(frames) -> None:
    approvals = frames["approvals"]
    load = charts.reviewer_load(fatigue.reviewer_load(approvals))
    assert marks(load) == ["rect"] and layer(load)["encoding"]["y"]["field"] == "reviewer"
    latency = charts.review_latency(fatigue.decision_latency(approvals, frames["a"]))
    assert marks(latency) == ["bar", "tick"]
    assert {r["tier"] for r in data(latency)} >= {"standard", "(none)"}  # null tier: not escalated by the run
    by_reviewer = charts.review_latency(fatigue.reviewer_stats(approvals), by="reviewer")
    assert "u-tom" in {r["reviewer"] for r in data(by_reviewer)}
    queue = charts.queue_depth(fatigue.queue_depth(approvals))
    assert marks(queue) == ["area", "line"] and layer(queue)["mark"]["interpolate"] == "step-after"
    # two layers each: the legend names them
    assert legends(latency) == ["color"] and domain(latency) == ["median", "90th percentile"]
    assert legends(queue) == ["color"] and domain(queue) == ["peak in the interval", "open at its start"]


def test_threshold_sweep_marks_the_current_threshold(frames) -> None:
    sweep = frames["sweep"]
    chart = charts.threshold_sweep(sweep.curve, current=sweep.current)
    assert marks(chart) == ["line", "point", "point", "text"]
    rows = data(chart)
    assert [r["threshold"] for r in rows if r["current"]] == [100.0]
    assert layer(chart)["encoding"]["x"]["field"] == "bother_rate"
    assert layer(chart)["encoding"]["y"]["field"] == "catch_rate"


def test_rule_scores(frames) -> None:
    scores = evaluate.rule_scores(frames["a"], [r.id for r in frames["policy"].rules])
    chart = charts.rule_scores(scores, top=4)
    enc = layer(chart)["encoding"]
    assert enc["yOffset"]["field"] == "outcome" and enc["color"]["scale"]["domain"] == ["caught", "missed", "bothered"]
    assert len(data(chart)) == 4 * 3


def test_every_chart_with_several_colours_has_a_legend(frames) -> None:
    """A chart whose colour scale has more than one value explains it (or labels its marks directly)."""
    a, approvals, policy = frames["a"], frames["approvals"], frames["policy"]
    first, second = drift.split_halves(a)
    built = [
        charts.decision_mix(rates.decision_rates(a)),
        charts.decisions_per_day(rates.decision_rates(a, "day")),
        charts.rule_firing(rates.rule_firing(a, policy)),
        charts.transition_heatmap(diff.transition_matrix(a, frames["b"])),
        charts.tool_mix_psi(drift.tool_mix_psi(drift.in_window(a, first), drift.in_window(a, second))),
        charts.rule_drift(drift.rule_drift(a, policy)),
        charts.execution_drift(drift.execution_drift(approvals, "day")),
        charts.reviewer_load(fatigue.reviewer_load(approvals)),
        charts.review_latency(fatigue.decision_latency(approvals, a)),
        charts.queue_depth(fatigue.queue_depth(approvals)),
        charts.rule_scores(evaluate.rule_scores(a, [r.id for r in policy.rules])),
    ]
    for chart in built:
        drawn = vega(chart)
        coloured = [s for s in drawn["scales"] if s["name"] in ("color", "fill", "stroke")]
        assert coloured and drawn.get("legends"), spec(chart).get("title")


def test_a_chart_refuses_rows_per_action(frames) -> None:
    with pytest.raises(ValueError, match="more than 5,000: charts take a metric's aggregated frame"):
        charts.decisions_per_day(frames["a"].select("ts", count=pl.lit(1)).rename({"ts": "day"}))


def test_a_chart_names_the_frame_it_needs(frames) -> None:
    with pytest.raises(ValueError, match=r"rate_by needs the column\(s\) `lower`, `upper`: pass the frame "
                                         "`escalation_rate_by` returns"):
        charts.rate_by(pl.DataFrame({"tool": ["a"], "actions": [1], "escalations": [1], "rate": [1.0]}), "tool")


def test_charts_import_neither_the_store_nor_streamlit() -> None:
    """Notebooks and the report pay for Altair and polars only."""
    code = "import sys, gatekit.charts; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"duckdb", "streamlit"}
