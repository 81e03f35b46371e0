"""The report: every shadow metric of a run, as a terminal summary, a JSON document or standalone HTML.

Each run is loaded once (`gatekit.run.Run`: its policy parsed once, its frames read once) and handed to
each metric; metrics compute, this module only arranges their results (and `gatekit.charts` draws them
for HTML).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from gatekit.logs.store import Store
from gatekit.metrics.controls import ControlFailures, control_failures
from gatekit.metrics.diff import DiffSummary, summarize_diff
from gatekit.metrics.drift import DriftSummary, summarize_drift
from gatekit.metrics.evaluate import Evaluation, evaluate
from gatekit.metrics.fatigue import Fatigue, reviewer_fatigue
from gatekit.metrics.rates import RatesSummary, summarize_rates
from gatekit.run import Reader, Run

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

    @property
    def labelled(self) -> bool:
        overall = self.evaluation.overall
        return bool(overall.height and (overall["harmful"].sum() or overall["benign"].sum()))

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
        }


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
        diff=summarize_diff(a, b) if a is not None else None, errors=tuple(b.errors),
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_text(report: Report, data: dict[str, Any] | None = None) -> str:
    """A readable terminal summary (`data`: the report's `to_dict()`, when the caller already has it)."""
    d = data if data is not None else report.to_dict()
    run, rates = report.run, d["rates"]
    out = [f"run `{run.name}`: policy `{run.policy_name}`, {run.actions:,} actions"]
    out.append("would-be decisions: " + ", ".join(
        f"{k} {v:,} ({_pct(run.rate(k))})" for k, v in run.decisions.items()))
    if run.errored:
        out.append(f"  {run.errored:,} actions hit a rule that could not be evaluated")
    out += _error_lines(d.get("errors") or [])
    w = rates["workload"]
    out.append("workload: " + ", ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in w.items() if v is not None))
    smell = rates["smell_test"]
    flag = "FLAG" if smell.get("flagged") else "ok"
    out.append(f"smell test [{flag}]: {_pct(smell.get('rate'))} of routine actions would need a human "
               f"(threshold {_pct(smell.get('threshold'))})")
    top = sorted(rates["rule_firing"], key=lambda r: -(r.get("fired") or 0))[:8]
    if top:
        out.append("top rules: " + ", ".join(f"{r['rule']} {r.get('fired') or 0:,}" for r in top))
    if rates["never_fired"]:
        out.append("never fired: " + ", ".join(rates["never_fired"]))
    dr = d["drift"]
    psi = dr["behaviour"]["psi"]
    psi_text = f"{psi:.3f} ({dr['behaviour']['psi_band']})" if psi is not None else TOO_LITTLE
    out.append(f"drift: tool-mix PSI {psi_text}; "
               f"execution drift {dr['execution'].get('drifted', 0)} of {dr['execution'].get('approved', 0)} "
               f"approved actions; uncovered tools: {', '.join(dr['coverage']['uncovered_tools']) or 'none'}")
    fa = d["fatigue"]
    out.append(f"reviewers: {fa['reviews']:,} reviews by {fa['reviewer_count']}; rubber-stamp signals: "
               f"{', '.join(fa['rubber_stamps']) or 'none'}; overloaded: {', '.join(fa['overloaded']) or 'none'}; "
               f"timed out {fa['timed_out']}, SLA breaches {fa['sla_breaches']}, "
               f"promotion candidates {fa['promotion_candidates']}")
    co = d["controls"]["counts"]
    out.append("control failures: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in co.items()))
    ev = d["evaluate"]
    if report.labelled:
        out.append(f"labels: caught {ev['caught']} of {ev['harmful']} harmful ({_pct(ev['catch_rate'])}); "
                   f"bothered {ev['bothered']} of {ev['benign']} benign ({_pct(ev['bother_rate'])})")
    else:
        out.append("labels: none in the store (add `label: harmful|benign` to score a policy)")
    if report.diff is not None:
        df = d["diff"]
        out.append(f"against `{df['run_a']}`: {df['changed']:,} actions change decision "
                   f"({_pct(df['changed_rate'])}); delta " +
                   ", ".join(f"{k} {v:+,}" for k, v in df["decisions"]["delta"].items()))
    return "\n".join(out)


def _error_lines(errors: list[dict[str, Any]], limit: int = 8) -> list[str]:
    """The "errors by rule and code" section: counts, and one message as an example."""
    if not errors:
        return []
    out = ["errors by rule and code:"]
    out += [f"  {e['rule']} {e['code']}: {e['actions']:,} actions, e.g. {e['example']}" for e in errors[:limit]]
    if len(errors) > limit:
        out.append(f"  ... and {len(errors) - limit} more")
    return out


def report_charts(report: Report) -> list[tuple[str, Any]]:
    """The report's charts, in reading order, each over an aggregated frame."""
    from gatekit import charts

    rates, drift, fatigue, ev = report.rates, report.drift, report.fatigue, report.evaluation
    out: list[tuple[str, Any]] = [
        ("Would-be decisions", charts.decision_mix(rates.overall)),
        ("Decisions per day", charts.decisions_per_day(rates.by["day"])),
        ("Escalation rate by tool", charts.rate_by(rates.by["tool"], "tool")),
        ("Escalation rate by agent", charts.rate_by(rates.by["agent"], "agent")),
        ("Escalation rate by hour", charts.rate_by(rates.by["hour"], "hour", top=24, sort="key")),
        ("Rule firing", charts.rule_firing(rates.rule_firing)),
        ("Tool mix drift (PSI)", charts.tool_mix_psi(drift.tool_mix)),
        ("Rule firing over time", charts.rule_drift(drift.rule_drift)),
    ]
    if "day" in drift.execution_by and drift.execution_by["day"].height:
        out.append(("Execution drift", charts.execution_drift(drift.execution_by["day"])))
    if fatigue.load.height:
        out += [("Reviewer load", charts.reviewer_load(fatigue.load)),
                ("Review latency by tier", charts.review_latency(fatigue.latency_by_tier)),
                ("Review queue", charts.queue_depth(fatigue.queue))]
    if report.labelled:
        out.append(("Harm caught vs humans bothered, per rule", charts.rule_scores(ev.by_rule)))
    if ev.sweep is not None:
        out.append((f"Threshold sweep: {ev.sweep.rule} {ev.sweep.field}",
                    charts.threshold_sweep(ev.sweep.curve, current=ev.sweep.current)))
    if report.diff is not None:
        out.append(("Policy A vs B", charts.transition_heatmap(report.diff.matrix)))
    return out


def render_html(report: Report, data: dict[str, Any] | None = None) -> str:
    """A standalone HTML report: the numbers and the charts, with the Vega JavaScript inlined once so the
    file opens offline (`data`: the report's `to_dict()`, when the caller already has it)."""
    import altair as alt
    import vl_convert

    d = data if data is not None else report.to_dict()
    body = [f"<h1>gatekit report: run <code>{html.escape(report.run.name)}</code></h1>",
            f"<pre>{html.escape(render_text(report, d))}</pre>"]
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
