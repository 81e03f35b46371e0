"""The report: every shadow metric of a run, as a terminal summary, a JSON document or standalone HTML.

Each run is loaded once (`gatekit.run.Run`: its policy parsed once, its frames read once) and handed to
each metric; metrics compute, this module only arranges their results (and `gatekit.charts` draws them
for HTML).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import polars as pl

from gatekit.logs.store import Store
from gatekit.metrics.controls import ControlFailures, control_failures
from gatekit.metrics.diff import DiffSummary, summarize_diff
from gatekit.metrics.drift import DriftSummary, psi_band, summarize_drift
from gatekit.metrics.evaluate import Evaluation, evaluate
from gatekit.metrics.fatigue import Fatigue, reviewer_fatigue
from gatekit.metrics.rates import DECISIONS, RatesSummary, summarize_rates
from gatekit.numbers import count, percent, quantity
from gatekit.run import Reader, Run, last_tuning

LIST_LIMIT = 50  # per-action lists in the JSON report; counts are always complete
# a score that needs actions in both halves of the log (a short log has one half empty)
TOO_LITTLE = "n/a (too little data: both halves of the log need actions)"


@dataclass(frozen=True)
class Report:
    run: Run
    rates: RatesSummary
    drift: DriftSummary
    fatigue: Fatigue
    controls: ControlFailures
    evaluation: Evaluation
    diff: DiffSummary | None = None
    errors: tuple[dict[str, Any], ...] = ()  # evaluation errors by rule and code (run.error_summary)
    tuning: dict[str, Any] | None = None  # the store's last `gatekit tune` (run.last_tuning), when there is one

    @property
    def labelled(self) -> bool:
        return _labelled(self.evaluation)

    @property
    def title(self) -> str:
        return f"run `{self.run.name}`"

    def header_lines(self) -> list[str]:
        return _run_lines(self.run)

    def footer_lines(self) -> list[str]:
        return []

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: top-level `decisions` is `{"allow": n, "escalate": n, "deny": n}`."""
        ev = self.evaluation.to_dict()
        return {
            "run": self.run.to_dict(),
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "decisions": self.run.decisions,
            "rates": self.rates.to_dict(),
            "drift": self.drift.to_dict(),
            "fatigue": self.fatigue.to_dict(limit=LIST_LIMIT),
            "controls": self.controls.to_dict(limit=LIST_LIMIT),
            "evaluate": ev,
            "diff": self.diff.to_dict() if self.diff else None,
            "errors": list(self.errors),
        } | ({"tuning": self.tuning} if self.tuning is not None else {})


def _labelled(evaluation: Evaluation) -> bool:
    overall = evaluation.overall
    return bool(overall.height and (overall["harmful"].sum() or overall["benign"].sum()))


def build_report(store: Store, run: str, *, against: str | None = None,
                 sweep: tuple[str, str] | None = None, progress: Callable[[str], None] | None = None) -> Report:
    """Compute every metric of `run` (and the A-vs-B diff against run `against`): each run is loaded once,
    and the frames its store shares (actions, approvals) are read once for both.

    `progress(phase)` is called before each metric is computed (`"rates"`, `"drift"`, ...)."""
    step = progress or (lambda phase: None)
    step("reading the run")
    reader = Reader(store)
    b = reader.run(run)
    a = reader.run(against) if against else None
    step("rates")
    rates = summarize_rates(b)
    step("drift")
    drift = summarize_drift(b)
    step("reviewer fatigue")
    fatigue = reviewer_fatigue(b)
    step("control failures")
    controls = control_failures(b)
    step("labels")
    evaluation = evaluate(b, sweep=sweep)
    if a is not None:
        step(f"diff against `{against}`")
    return Report(
        run=b, rates=rates, drift=drift, fatigue=fatigue, controls=controls, evaluation=evaluation,
        diff=summarize_diff(a, b) if a is not None else None, errors=tuple(b.errors), tuning=last_tuning(store),
    )


def render_text(report: Report | Any) -> str:
    """A readable terminal summary, rendered from the typed summaries: the run, then one section per field
    of the report (`SECTIONS`, in order), then what the report left out (a `gatekit.spark.metrics.SparkReport`
    has the sections Spark computes: the renderers are the same)."""
    out = report.header_lines()
    for name, lines in SECTIONS.items():
        value = getattr(report, name, None)
        if value is not None:
            out += lines(value)
    return "\n".join(out + report.footer_lines())


def _run_lines(run: Run) -> list[str]:
    out = [f"run `{run.name}`: policy `{run.policy_name}`, {count(run.actions)} actions",
           "would-be decisions: " + ", ".join(f"{k} {count(v)} ({percent(run.rate(k))})"
                                              for k, v in run.decisions.items())]
    if run.errored:
        out.append(f"  {count(run.errored)} actions hit a rule that could not be evaluated")
    return out


def _error_lines(errors: tuple[dict[str, Any], ...], limit: int = 8) -> list[str]:
    """The "errors by rule and code" section: counts, and one message as an example."""
    if not errors:
        return []
    out = ["errors by rule and code:"]
    out += [f"  {e['rule']} {e['code']}: {count(e['actions'])} actions, e.g. {e['example']}" for e in errors[:limit]]
    if len(errors) > limit:
        out.append(f"  ... and {len(errors) - limit} more")
    return out


def _rates_lines(rates: RatesSummary) -> list[str]:
    out = _workload_lines(rates.workload.row(0, named=True))
    smell = rates.smell.row(0, named=True)
    out.append(f"smell test [{'FLAG' if smell['flagged'] else 'ok'}]: {percent(smell['rate'])} of routine actions "
               f"would need a human (threshold {percent(smell['threshold'])})")
    firing = sorted(rates.rule_firing.iter_rows(named=True), key=lambda r: -(r["fired"] or 0))[:8]
    if firing:
        out.append("top rules: " + ", ".join(f"{r['rule']} {count(r['fired'] or 0)}" for r in firing))
    if rates.never_fired:
        out.append("never fired: " + ", ".join(rates.never_fired))
    return out


def _workload_lines(w: dict[str, Any]) -> list[str]:
    """The workload forecast (`workload_forecast`'s one row) in three sentences: how many, when, how long."""
    days = f"{count(w['days'])} day{'' if w['days'] == 1 else 's'}"
    if not w["escalations"]:
        return [f"workload: no escalations over {days}"]
    out = [f"workload: {count(w['escalations'])} escalations over {days} "
           f"({quantity(w['escalations_per_day'])} a day, {quantity(w['escalations_per_week'])} a week), "
           f"{count(w['reviews'])} reviews ({quantity(w['reviews_per_week'])} a week)",
           f"  busiest day {w['busiest_day']} with {count(w['busiest_day_escalations'])} escalations; "
           f"peak hour {w['peak_hour']:02d}:00 with {count(w['peak_hour_escalations'])} "
           f"({percent(w['peak_hour_share'])} of escalations)"]
    if w["median_review_s"] is None:
        out.append("  no recorded reviews to time")
    else:
        out.append(f"  median review {quantity(w['median_review_s'] / 60)} min (requested to decided); at most "
                   f"{quantity(w['reviewer_hours_per_week'])} reviewer hours a week")
    return out


def _drift_lines(drift: DriftSummary) -> list[str]:
    psi = f"{drift.psi:.3f} ({psi_band(drift.psi)})" if drift.psi is not None else TOO_LITTLE
    execution = drift.execution.row(0, named=True) if drift.execution.height else {}
    uncovered = drift.coverage.filter(~pl.col("covered") & (pl.col("dimension") == "tool"))["name"].to_list()
    return [f"drift: tool-mix PSI {psi}; execution drift {count(execution.get('drifted') or 0)} of "
            f"{count(execution.get('approved') or 0)} approved actions; uncovered tools: "
            f"{', '.join(uncovered) or 'none'}"]


def _fatigue_lines(fatigue: Fatigue) -> list[str]:
    return [f"reviewers: {count(fatigue.reviews)} reviews by {count(fatigue.reviewers.height)}; rubber-stamp "
            f"signals: {', '.join(fatigue.rubber_stamps) or 'none'}; overloaded: "
            f"{', '.join(fatigue.overloaded) or 'none'}; timed out {count(fatigue.timed_out['action_id'].n_unique())}, "
            f"SLA breaches {count(fatigue.sla_breaches.height)}, promotion candidates {count(fatigue.promotions.height)}"]


def _controls_lines(controls: ControlFailures) -> list[str]:
    return ["control failures: " + ", ".join(f"{name.replace('_', ' ')} {count(len(ids))}"
                                             for name, ids in controls.action_ids.items())]


def _evaluation_lines(ev: Evaluation) -> list[str]:
    if not _labelled(ev):
        return ["labels: none in the store (add `label: harmful|benign` to score a policy)"]
    return [f"labels: caught {count(ev.caught)} of {count(ev.harmful)} harmful ({percent(ev.catch_rate)}); "
            f"bothered {count(ev.bothered)} of {count(ev.benign)} benign ({percent(ev.bother_rate)})"]


def _diff_lines(diff: DiffSummary) -> list[str]:
    rate = diff.changed / diff.actions if diff.actions else None
    delta = ", ".join(f"{d} {diff.decisions_b[d] - diff.decisions_a[d]:+,}" for d in DECISIONS)
    return [f"against `{diff.run_a}`: {count(diff.changed)} actions change decision ({percent(rate)}); "
            f"delta {delta}"]


def _tuning_lines(t: dict[str, Any]) -> list[str]:
    out = ["", f"Last tuning (gatekit tune from `{t.get('policy')}` to {t.get('out')}, split {t['split']}, "
               f"target {t['target']}): {count(t['candidates_tried'])} candidates tried, "
               f"{sum(1 for c in t['changes'] if c['kept'])} of {len(t['changes'])} changes kept"]
    for part, name in (("train", "train"), ("heldout", "held-out")):
        b, a = t[part]["before"], t[part]["after"]
        out.append(f"  {name}: caught {count(b['caught'])} -> {count(a['caught'])} of {count(a['harmful'])}, "
                   f"bothered {count(b['bothered'])} -> {count(a['bothered'])} of {count(a['benign'])}")
    fr = [r for r in t["frontier"] if r.get("kept")]
    if fr:
        out.append("  frontier (train), the kept path: " + "; ".join(
            f"{r['candidate']}: caught {r['caught']}, bothered {r['bothered']}" for r in fr[:8])
            + (f"; and {len(fr) - 8} more" if len(fr) > 8 else ""))
    return out


# one renderer per field of `Report` but `run`, in reading order (tests/test_completeness.py: none is missed)
SECTIONS: dict[str, Callable[[Any], list[str]]] = {
    "errors": _error_lines,
    "rates": _rates_lines,
    "drift": _drift_lines,
    "fatigue": _fatigue_lines,
    "controls": _controls_lines,
    "evaluation": _evaluation_lines,
    "diff": _diff_lines,
    "tuning": _tuning_lines,
}


def report_charts(report: Report | Any) -> list[tuple[str, Any]]:
    """The report's charts, in reading order, each over an aggregated frame (those of the sections the
    report has: a Spark report has no drift or reviewers)."""
    from gatekit import charts

    rates, ev = report.rates, report.evaluation
    drift, fatigue = getattr(report, "drift", None), getattr(report, "fatigue", None)
    out: list[tuple[str, Any]] = [
        ("Would-be decisions", charts.decision_mix(rates.overall)),
        ("Decisions per day", charts.decisions_per_day(rates.by["day"])),
        ("Escalation rate by tool", charts.rate_by(rates.by["tool"], "tool")),
        ("Escalation rate by agent", charts.rate_by(rates.by["agent"], "agent")),
        ("Escalation rate by hour", charts.rate_by(rates.by["hour"], "hour", top=24, sort="key")),
        ("Rule firing", charts.rule_firing(rates.rule_firing)),
    ]
    if drift is not None:
        out += [("Tool mix drift (PSI)", charts.tool_mix_psi(drift.tool_mix)),
                ("Rule firing over time", charts.rule_drift(drift.rule_drift))]
    if drift is not None and "day" in drift.execution_by and drift.execution_by["day"].height:
        out.append(("Execution drift", charts.execution_drift(drift.execution_by["day"])))
    if fatigue is not None and fatigue.load.height:
        out += [("Reviewer load", charts.reviewer_load(fatigue.load)),
                ("Review latency by tier", charts.review_latency(fatigue.latency_by_tier)),
                ("Review queue", charts.queue_depth(fatigue.queue))]
    if _labelled(ev):
        out.append(("Harm caught vs humans bothered, per rule", charts.rule_scores(ev.by_rule)))
    if ev.sweep is not None:
        out.append((f"Threshold sweep: {ev.sweep.rule} {ev.sweep.field}",
                    charts.threshold_sweep(ev.sweep.curve, current=ev.sweep.current)))
    if report.diff is not None:
        out.append(("Policy A vs B", charts.transition_heatmap(report.diff.matrix)))
    tuning = getattr(report, "tuning", None)
    if tuning is not None and tuning.get("frontier"):
        out.append(("Tuning: harm caught vs humans bothered, the candidates tried",
                    charts.tuning_frontier(tuning_frame(tuning))))
    return out


def tuning_frame(record: dict[str, Any]) -> Any:
    """The frontier of a stored tuning record as the frame `charts.tuning_frontier` draws."""
    import polars as pl

    return pl.DataFrame(record["frontier"], schema={
        "step": pl.Int64, "candidate": pl.Utf8, "kind": pl.Utf8, "rule": pl.Utf8, "caught": pl.Int64,
        "harmful": pl.Int64, "bothered": pl.Int64, "benign": pl.Int64, "catch_rate": pl.Float64,
        "bother_rate": pl.Float64, "chosen": pl.Boolean, "kept": pl.Boolean})


def render_html(report: Report | Any, data: dict[str, Any] | None = None) -> str:
    """A standalone HTML report: the numbers and the charts, with the Vega JavaScript inlined once so the
    file opens offline (`data`: the report's `to_dict()`, when the caller already has it)."""
    import altair as alt
    import vl_convert

    d = data if data is not None else report.to_dict()
    title = html.escape(report.title)
    title = re.sub(r"`([^`]*)`", r"<code>\1</code>", title)
    body = [f"<h1>gatekit report: {title}</h1>",
            f"<pre>{html.escape(render_text(report))}</pre>"]
    embeds = []
    for i, (title, chart) in enumerate(report_charts(report)):
        body.append(f"<h2>{html.escape(title)}</h2><div class='chart' id='chart{i}'></div>")
        spec = json.dumps(chart.to_dict()).replace("</", "<\\/")
        embeds.append(f"vegaEmbed('#chart{i}', {spec}, {{actions: false}}).catch(console.error);")
    body.append("<h2>Data</h2><details><summary>JSON</summary><pre>"
                + html.escape(json.dumps(d, indent=1, default=str)) + "</pre></details>")
    bundle = vl_convert.javascript_bundle(vl_version=alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>gatekit report</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
            "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}.chart{margin-bottom:1em}</style>"
            f"<script type='text/javascript'>{bundle}</script></head><body>"
            + "\n".join(body)
            + "<script type='text/javascript'>" + "\n".join(embeds) + "</script></body></html>")
