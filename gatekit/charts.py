"""Altair charts of the metric frames, shared by the dashboard, the HTML report and the notebooks.

One function per chart. Each takes the tidy frame a metric returns (aggregated: a row per decision, tool,
rule, day or reviewer, never one per action), keeps only the columns it draws, and returns an Altair chart.
Nothing here computes a metric or reads the store, so a chart shows exactly what the metric says.

>>> from gatekit import charts
>>> from gatekit.metrics.rates import decision_rates, escalation_rate_by
>>> charts.decision_mix(decision_rates(frame))
>>> charts.rate_by(escalation_rate_by(frame, "tool"), "tool")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Literal

import altair as alt
import polars as pl

from gatekit.policy.model import VERDICTS

__all__ = [
    "CELL", "DECISION_COLORS", "MAX_ROWS", "SERIES", "decision_mix", "decisions_per_day", "execution_drift",
    "queue_depth", "rate_by", "review_latency", "reviewer_load", "rule_drift", "rule_firing", "rule_scores",
    "threshold_sweep", "tool_mix_psi", "transition_heatmap", "tuning_frontier",
]

# A chart's data travels to the browser inside its spec: past this many rows it is not aggregated.
MAX_ROWS = 5000
DECISION_COLORS = {"allow": "#4e9a6a", "escalate": "#e8a33d", "deny": "#d1495b"}
NONE = "(none)"  # label of a null key: no rule matched, no tier
_DECISION = alt.Scale(domain=list(VERDICTS), range=[DECISION_COLORS[d] for d in VERDICTS])
_STATUS = alt.Scale(domain=["both", "new", "vanished"], range=["#7f8c9b", "#d1495b", "#3d7ab8"])
_SCORES = alt.Scale(domain=["caught", "missed", "bothered"], range=["#4e9a6a", "#d1495b", "#e8a33d"])
_TIME_KEYS = ("day", "week", "period", "start")
CELL = 40  # px per row (and per column, at least) of a heatmap: its numbers need a line's room around them
SERIES = 8  # lines a chart draws by default: more have too many colours to tell apart
_BAND = "95% interval"


def _keyed(labels: dict[str, str]) -> Callable[[alt.Chart, str], alt.Chart]:
    """For series that are layers (a line, its band, ...): `series(chart, label)` colours a layer's chart as
    `label` on one scale of `labels` (label -> colour), so the legend names every layer."""
    scale = alt.Scale(domain=list(labels), range=list(labels.values()))

    def series(chart: alt.Chart, label: str) -> alt.Chart:
        return chart.transform_calculate(series=json.dumps(label)).encode(
            color=alt.Color("series:N", scale=scale, title=None))

    return series


def _data(frame: pl.DataFrame, columns: Sequence[str], chart: str, source: str) -> pl.DataFrame:
    """The columns a chart draws, checked: present, and few enough rows to be an aggregate.

    Enums and categoricals become plain strings, which every Vega-Lite renderer reads the same way.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = ", ".join(f"`{c}`" for c in missing)
        raise ValueError(f"{chart} needs the column(s) {names}: pass the frame `{source}` returns")
    if frame.height > MAX_ROWS:
        raise ValueError(f"{chart} got {frame.height:,} rows, more than {MAX_ROWS:,}: charts take a metric's "
                         "aggregated frame, never one row per action")
    out = frame.select(columns)
    return out.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))


def _label(column: str) -> pl.Expr:
    """A key column as text for a nominal axis, null shown as `(none)`."""
    return pl.col(column).cast(pl.String).fill_null(NONE)


def _order(values: pl.Series) -> list[str]:
    return [v for v in values.to_list() if v is not None]


def _decision_order() -> pl.Expr:
    return pl.col("decision").replace_strict(list(VERDICTS), list(range(len(VERDICTS))), default=len(VERDICTS),
                                             return_dtype=pl.Int64).alias("decision_order")


# -- would-be decisions ----------------------------------------------------------------------------------
def decision_mix(rates: pl.DataFrame, *, by: str | None = None, title: str = "Would-be decisions") -> alt.Chart:
    """The share of each decision, from `decision_rates`: one bar per decision, or with `by` (a column
    such as `run`) one stacked bar per group.

    >>> decision_mix(decision_rates(frame))
    >>> decision_mix(pl.concat([rates_a.with_columns(run=pl.lit("a")), rates_b.with_columns(run=pl.lit("b"))]), by="run")
    """
    data = _data(rates, ["decision", "count", "rate", *([by] if by else [])], "decision_mix", "decision_rates")
    data = data.with_columns(_decision_order())
    color = alt.Color("decision:N", scale=_DECISION, title="decision")
    tooltip = [alt.Tooltip("decision:N"), alt.Tooltip("count:Q", format=","), alt.Tooltip("rate:Q", format=".2%")]
    if by:
        data = data.with_columns(_label(by))
        return alt.Chart(data, title=title).mark_bar().encode(
            x=alt.X("rate:Q", stack="zero", axis=alt.Axis(format="%"), title="share of actions"),
            y=alt.Y(f"{by}:N", sort=_order(data[by].unique(maintain_order=True)), title=by),
            color=color, order=alt.Order("decision_order:Q"), tooltip=[alt.Tooltip(f"{by}:N"), *tooltip])
    return alt.Chart(data, title=title).mark_bar().encode(
        x=alt.X("rate:Q", axis=alt.Axis(format="%"), title="share of actions", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("decision:N", sort=list(VERDICTS), title=None), color=color, tooltip=tooltip)


def rate_by(rates: pl.DataFrame, key: str, *, decision: str = "escalate", top: int = 15,
            sort: Literal["count", "key"] = "count", title: str | None = None) -> alt.LayerChart:
    """A decision's rate per `key` (tool, agent, rule, hour, ...) with its Wilson 95% interval as error bars.

    Takes `escalation_rate_by(frame, key)` or `decision_rates(frame, key)` (then `decision` picks the rows).
    `top` keeps the groups with the most such decisions; `sort="key"` keeps them in key order (hours, days).

    >>> rate_by(escalation_rate_by(frame, "tool"), "tool")
    """
    if "decision" in rates.columns:
        rates = (rates.filter(pl.col("decision").cast(pl.String) == decision)
                 .rename({"count": "escalations", "total": "actions"}))
    data = _data(rates, [key, "actions", "escalations", "rate", "lower", "upper"], "rate_by", "escalation_rate_by")
    data = data.sort(["escalations", "rate"], descending=True, nulls_last=True).head(top)
    if sort == "key":
        data = data.sort(key, nulls_last=True)
    data = data.with_columns(_label(key))
    y = alt.Y(f"{key}:N", sort=_order(data[key]), title=key)
    tooltip = [alt.Tooltip(f"{key}:N"), alt.Tooltip("escalations:Q", format=",", title=f"{decision}s"),
               alt.Tooltip("actions:Q", format=","), alt.Tooltip("rate:Q", format=".2%"),
               alt.Tooltip("lower:Q", format=".2%", title="95% low"),
               alt.Tooltip("upper:Q", format=".2%", title="95% high")]
    base = alt.Chart(data)
    bars = base.mark_bar(color=DECISION_COLORS.get(decision, "#7f8c9b")).encode(
        x=alt.X("rate:Q", axis=alt.Axis(format="%"), title=f"{decision} rate"), y=y, tooltip=tooltip)
    errors = base.mark_errorbar(ticks=True, color="#333333").encode(
        x=alt.X("lower:Q", title=f"{decision} rate"), x2="upper:Q", y=y, tooltip=tooltip)
    return alt.layer(bars, errors, title=title or f"{decision.capitalize()} rate by {key} (95% interval)")


def decisions_per_day(rates: pl.DataFrame, *, period: str = "day", title: str | None = None) -> alt.Chart:
    """Actions per `period`, stacked by decision, from `decision_rates(frame, by="day")` (or `week`,
    `hour`, `weekday`). A frame without `decision` (just `day, count`) draws plain volumes.

    >>> decisions_per_day(decision_rates(frame, "day"))
    """
    cols = [period, "count", *(["decision"] if "decision" in rates.columns else [])]
    data = _data(rates, cols, "decisions_per_day", "decision_rates(frame, by='day')")
    temporal = period in _TIME_KEYS
    x = (alt.X(f"{period}:T", title=period, timeUnit="yearmonthdate") if temporal
         else alt.X(f"{period}:O", title=period, sort=_order(data[period].unique(maintain_order=True))))
    tooltip = [alt.Tooltip(f"{period}:{'T' if temporal else 'O'}"), alt.Tooltip("count:Q", format=",")]
    title = title or f"Actions per {period}"
    if "decision" not in data.columns:
        return alt.Chart(data, title=title).mark_bar(color="#7f8c9b").encode(
            x=x, y=alt.Y("count:Q", title="actions"), tooltip=tooltip)
    data = data.with_columns(_decision_order())
    return alt.Chart(data, title=title).mark_bar().encode(
        x=x, y=alt.Y("count:Q", stack="zero", title="actions"),
        color=alt.Color("decision:N", scale=_DECISION), order=alt.Order("decision_order:Q"),
        tooltip=[alt.Tooltip("decision:N"), *tooltip])


def rule_firing(firing: pl.DataFrame, *, top: int | None = None, title: str = "Rule firing") -> alt.LayerChart:
    """How often each rule matched, split by what the matched actions ended as, from `rule_firing`. Rules
    stay in file order; shadow rules are pale; rules that never fired are labelled so.

    >>> rule_firing(rates.rule_firing(frame, policy), top=12)
    """
    cols = ["rule", "position", "action", "mode", "fired", "rate", "errored", "never_fired",
            *(f"fired_{d}" for d in VERDICTS)]
    data = _data(firing, cols, "rule_firing", "rule_firing")
    if top is not None:
        data = data.sort("fired", descending=True).head(top)
    data = data.sort("position", "rule", nulls_last=True).with_columns(pl.col("mode").fill_null("enforce"))
    order = _order(data["rule"])
    long = data.unpivot(index=["rule", "action", "mode", "fired", "rate", "errored", "never_fired"],
                        on=[f"fired_{d}" for d in VERDICTS], variable_name="decision", value_name="count")
    long = long.with_columns(pl.col("decision").str.strip_prefix("fired_")).with_columns(_decision_order())
    y = alt.Y("rule:N", sort=order, title=None)
    tooltip = [alt.Tooltip("rule:N"), alt.Tooltip("action:N", title="rule action"), alt.Tooltip("mode:N"),
               alt.Tooltip("fired:Q", format=","), alt.Tooltip("rate:Q", format=".2%"),
               alt.Tooltip("errored:Q", format=",")]
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("count:Q", stack="zero", title="actions matched"), y=y,
        color=alt.Color("decision:N", scale=_DECISION, title="ended as"), order=alt.Order("decision_order:Q"),
        opacity=alt.Opacity("mode:N", scale=alt.Scale(domain=["enforce", "shadow"], range=[1.0, 0.45]),
                            title="mode"),
        tooltip=[*tooltip, alt.Tooltip("decision:N", title="ended as"), alt.Tooltip("count:Q", format=",")])
    never = alt.Chart(data.filter(pl.col("never_fired"))).mark_text(align="left", dx=4, color="#888888").encode(
        x=alt.datum(0), y=y, text=alt.value("never fired"), tooltip=tooltip)
    return alt.layer(bars, never, title=title)


# -- two runs --------------------------------------------------------------------------------------------
def transition_heatmap(matrix: pl.DataFrame, *, a: str = "A", b: str = "B",
                       title: str | None = None) -> alt.LayerChart:
    """How decisions move from run `a` to run `b`, from `transition_matrix`: a 3x3 grid, cells coloured by
    count, the cells of actions whose decision changed outlined. Each row is `CELL` pixels high (the height
    follows the rows, never squashed to a fixed box), each number sized to its cell.

    >>> transition_heatmap(transition_matrix(frame_a, frame_b), a="starter", b="strict")
    """
    data = _data(matrix, ["from", "to", "count", "share", "changed"], "transition_heatmap", "transition_matrix")
    moved = alt.datum.changed & (alt.datum.count > 0)
    base = alt.Chart(data).encode(
        x=alt.X("to:N", sort=list(VERDICTS), title=f"{b} (B)",
                axis=alt.Axis(orient="top", labelAngle=0, labelPadding=6, labelFontSize=12)),
        y=alt.Y("from:N", sort=list(VERDICTS), title=f"{a} (A)", axis=alt.Axis(labelPadding=6, labelFontSize=12)),
        tooltip=[alt.Tooltip("from:N"), alt.Tooltip("to:N"), alt.Tooltip("count:Q", format=","),
                 alt.Tooltip("share:Q", format=".2%")])
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(type="symlog", scheme="blues"), title="actions",
                        legend=alt.Legend(gradientLength=len(VERDICTS) * CELL - CELL // 2,
                                          labelExpr="format(datum.value, ',')")),
        stroke=alt.when(moved).then(alt.value("#d1495b")).otherwise(alt.value(None)),
        strokeWidth=alt.when(moved).then(alt.value(2)).otherwise(alt.value(0)))
    text = base.mark_text(fontWeight="bold", fontSize=13, limit=3 * CELL).encode(
        text=alt.Text("count:Q", format=","),
        color=alt.when(alt.datum.share > 0.3).then(alt.value("white")).otherwise(alt.value("black")))
    return alt.layer(cells, text, title=title or f"Decisions, {a} to {b}").properties(
        height=alt.Step(CELL), width=alt.Step(3 * CELL))


# -- drift -----------------------------------------------------------------------------------------------
def tool_mix_psi(mix: pl.DataFrame, *, by: str = "tool", top: int = 20, title: str | None = None) -> alt.Chart:
    """Each tool's term of the population stability index between two windows, largest first, coloured
    by whether the tool is new, vanished or in both, from `tool_mix_psi` (the terms sum to the PSI).

    >>> tool_mix_psi(drift.tool_mix_psi(window_a, window_b))
    """
    data = _data(mix, [by, "count_a", "count_b", "share_a", "share_b", "psi", "status"], "tool_mix_psi",
                 "tool_mix_psi")
    data = data.sort("psi", descending=True, nulls_last=True).head(top).with_columns(_label(by))
    return alt.Chart(data, title=title or f"{by.capitalize()} mix: PSI term per {by}").mark_bar().encode(
        x=alt.X("psi:Q", title="PSI term"), y=alt.Y(f"{by}:N", sort=_order(data[by]), title=None),
        color=alt.Color("status:N", scale=_STATUS, title="status"),
        tooltip=[alt.Tooltip(f"{by}:N"), alt.Tooltip("status:N"), alt.Tooltip("psi:Q", format=".4f"),
                 alt.Tooltip("count_a:Q", format=",", title="calls in A"),
                 alt.Tooltip("count_b:Q", format=",", title="calls in B"),
                 alt.Tooltip("share_a:Q", format=".2%", title="share in A"),
                 alt.Tooltip("share_b:Q", format=".2%", title="share in B")])


def rule_drift(drift: pl.DataFrame, *, rules: Sequence[str] | None = None, top: int = SERIES,
               title: str = "Rule firing rate over time") -> alt.LayerChart:
    """Each rule's firing rate per period, one line per rule with a legend, from `rule_drift`. `rules` picks
    some; otherwise the `top` rules that fired most are drawn (the subtitle says how many are left out),
    never more than a legend can tell apart. A rule's 95% band shows when its legend entry is clicked (always,
    for a single rule): several bands at once cover each other.

    >>> rule_drift(drift.rule_drift(frame, policy), rules=["payments-over-100"])
    """
    data = _data(drift if rules is None else drift.filter(pl.col("rule").is_in(list(rules))),
                 ["rule", "period", "actions", "fired", "rate", "lower", "upper"], "rule_drift", "rule_drift")
    fired = data.group_by("rule", maintain_order=True).agg(pl.col("fired").sum()).sort(
        "fired", descending=True, maintain_order=True)
    shown = fired["rule"].head(top).to_list()
    data = data.filter(pl.col("rule").is_in(shown))
    order = _order(data["rule"].unique(maintain_order=True))
    notes = [f"the {len(shown)} most-fired of {fired.height} rules"] if fired.height > len(shown) else []
    x = alt.X("period:T", title="period", timeUnit="yearmonthdate")
    color = alt.Color("rule:N", title="rule", sort=order, scale=alt.Scale(scheme="tableau10"),
                      legend=alt.Legend(symbolOpacity=1, labelLimit=240))
    base = alt.Chart(data)
    line = base.mark_line(point=True).encode(
        x=x, y=alt.Y("rate:Q", axis=alt.Axis(format="%"), title="firing rate"), color=color,
        tooltip=[alt.Tooltip("rule:N"), alt.Tooltip("period:T"), alt.Tooltip("fired:Q", format=","),
                 alt.Tooltip("actions:Q", format=","), alt.Tooltip("rate:Q", format=".2%"),
                 alt.Tooltip("lower:Q", format=".2%", title="95% low"),
                 alt.Tooltip("upper:Q", format=".2%", title="95% high")])
    if len(order) == 1:
        band = base.mark_area(opacity=0.15).encode(x=x, y="lower:Q", y2="upper:Q", color=color)
        notes.append("band: the 95% interval of the rate")
    else:
        picked = alt.selection_point(name="picked_rule", fields=["rule"], bind="legend", empty=False)
        band = base.mark_area().encode(x=x, y="lower:Q", y2="upper:Q", color=color,
                                       opacity=alt.when(picked).then(alt.value(0.15)).otherwise(alt.value(0)))
        line = line.add_params(picked)
        notes.append("click a rule in the legend for its 95% interval")
    return alt.layer(band, line, title=alt.Title(title, subtitle="; ".join(notes), subtitlePadding=4))


def execution_drift(drift: pl.DataFrame, *, period: str = "day",
                    title: str = "Execution drift: approved actions run with other arguments") -> alt.LayerChart:
    """The share of approved actions whose executed hash is not the reviewed one, per period (line), and the
    95% Wilson interval of that share (band: where the true share plausibly lies given how few approvals a
    period has), from `execution_drift(approvals, "day")`. The legend names both.

    >>> execution_drift(drift.execution_drift(approvals, "day"))
    """
    data = _data(drift, [period, "approved", "verifiable", "drifted", "share", "lower", "upper"],
                 "execution_drift", "execution_drift(approvals, 'day')")
    x = alt.X(f"{period}:T", title=period, timeUnit="yearmonthdate")
    series = _keyed({"drifted share": "#d1495b", _BAND: "#f0b8c0"})
    tooltip = [alt.Tooltip(f"{period}:T"), alt.Tooltip("drifted:Q", format=","),
               alt.Tooltip("verifiable:Q", format=","), alt.Tooltip("approved:Q", format=","),
               alt.Tooltip("share:Q", format=".2%"), alt.Tooltip("lower:Q", format=".2%", title="95% low"),
               alt.Tooltip("upper:Q", format=".2%", title="95% high")]
    base = alt.Chart(data)
    band = series(base.mark_area(opacity=0.6).encode(
        x=x, y=alt.Y("lower:Q", title="drifted share"), y2="upper:Q", tooltip=tooltip), _BAND)
    line = series(base.mark_line(point=True).encode(
        x=x, y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="drifted share"), tooltip=tooltip),
        "drifted share")
    subtitle = f"band: the 95% interval of each {period}'s share, wide on {period}s with few approvals to check"
    return alt.layer(band, line, title=alt.Title(title, subtitle=subtitle, subtitlePadding=4))


# -- reviewers -------------------------------------------------------------------------------------------
def reviewer_load(load: pl.DataFrame, *, title: str = "Reviews per reviewer per day") -> alt.Chart:
    """Reviews per reviewer per day as a heatmap, from `reviewer_load`.

    >>> reviewer_load(fatigue.reviewer_load(approvals))
    """
    data = _data(load, ["reviewer", "day", "reviews", "approved", "denied", "after_hours"], "reviewer_load",
                 "reviewer_load")
    return alt.Chart(data, title=title).mark_rect().encode(
        x=alt.X("day:O", timeUnit="yearmonthdate", title="day"),
        y=alt.Y("reviewer:N", title=None),
        color=alt.Color("reviews:Q", scale=alt.Scale(scheme="oranges"), title="reviews"),
        tooltip=[alt.Tooltip("reviewer:N"), alt.Tooltip("day:T"), alt.Tooltip("reviews:Q"),
                 alt.Tooltip("approved:Q"), alt.Tooltip("denied:Q"), alt.Tooltip("after_hours:Q")])


def review_latency(latency: pl.DataFrame, *, by: str = "tier", title: str | None = None) -> alt.LayerChart:
    """Median review latency (bar) and 90th percentile (tick) in minutes per `by`, from `decision_latency`
    (by tier, role, tool, ...) or `reviewer_stats` (by reviewer).

    >>> review_latency(fatigue.decision_latency(approvals, decisions))
    """
    data = _data(latency, [by, "reviews", "latency_median_s", "latency_p90_s"], "review_latency",
                 "decision_latency")
    data = data.with_columns(_label(by), median_min=pl.col("latency_median_s") / 60,
                             p90_min=pl.col("latency_p90_s") / 60)
    y = alt.Y(f"{by}:N", sort=_order(data[by]), title=None)
    tooltip = [alt.Tooltip(f"{by}:N"), alt.Tooltip("reviews:Q", format=","),
               alt.Tooltip("median_min:Q", format=".1f", title="median (min)"),
               alt.Tooltip("p90_min:Q", format=".1f", title="p90 (min)")]
    series = _keyed({"median": "#3d7ab8", "90th percentile": "#d1495b"})
    base = alt.Chart(data)
    bars = series(base.mark_bar().encode(x=alt.X("median_min:Q", title="minutes to a decision"), y=y,
                                         tooltip=tooltip), "median")
    ticks = series(base.mark_tick(thickness=3).encode(x=alt.X("p90_min:Q"), y=y, tooltip=tooltip),
                   "90th percentile")
    return alt.layer(bars, ticks, title=title or f"Review latency by {by}: median and 90th percentile")


def queue_depth(queue: pl.DataFrame, *, title: str = "Open review requests") -> alt.LayerChart:
    """Open review requests over time, from `queue_depth`: the peak in each interval (area) and the count
    at its start (line).

    >>> queue_depth(fatigue.queue_depth(approvals, every="1h"))
    """
    data = _data(queue, ["start", "requested", "decided", "open_at_start", "peak_open"], "queue_depth",
                 "queue_depth")
    x = alt.X("start:T", title="time")
    tooltip = [alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"), alt.Tooltip("requested:Q"),
               alt.Tooltip("decided:Q"), alt.Tooltip("open_at_start:Q"), alt.Tooltip("peak_open:Q")]
    series = _keyed({"peak in the interval": "#f3c98b", "open at its start": "#7a4b00"})
    base = alt.Chart(data)
    peak = series(base.mark_area(interpolate="step-after").encode(
        x=x, y=alt.Y("peak_open:Q", title="open requests"), tooltip=tooltip), "peak in the interval")
    line = series(base.mark_line(interpolate="step-after").encode(x=x, y="open_at_start:Q"), "open at its start")
    return alt.layer(peak, line, title=title)


# -- labels ----------------------------------------------------------------------------------------------
def threshold_sweep(curve: pl.DataFrame, *, current: float | None = None,
                    title: str = "Harm caught vs humans bothered, by threshold") -> alt.LayerChart:
    """The caught-versus-bothered curve of one test's threshold, from `threshold_sweep` (or a `Sweep`'s
    `curve`): x the share of benign actions stopped, y the share of harmful ones; `current` marks the
    policy's own threshold.

    >>> sweep = sweep_threshold(load_run(store, "starter"), "payments-over-100", "args.amount")
    >>> threshold_sweep(sweep.curve, current=sweep.current)
    """
    data = _data(curve, ["threshold", "harmful", "caught", "catch_rate", "benign", "bothered", "bother_rate",
                         "escalate", "deny"], "threshold_sweep", "threshold_sweep")
    data = data.sort("threshold").with_columns(current=pl.col("threshold") == current if current is not None
                                               else pl.lit(False))
    x = alt.X("bother_rate:Q", axis=alt.Axis(format="%"), title="benign actions stopped (bothered)")
    y = alt.Y("catch_rate:Q", axis=alt.Axis(format="%"), title="harmful actions stopped (caught)")
    tooltip = [alt.Tooltip("threshold:Q", format=",.6g"), alt.Tooltip("caught:Q", format=","),
               alt.Tooltip("harmful:Q", format=","), alt.Tooltip("catch_rate:Q", format=".2%"),
               alt.Tooltip("bothered:Q", format=","), alt.Tooltip("benign:Q", format=","),
               alt.Tooltip("bother_rate:Q", format=".2%"), alt.Tooltip("escalate:Q", format=","),
               alt.Tooltip("deny:Q", format=",")]
    base = alt.Chart(data)
    line = base.mark_line(color="#3d7ab8").encode(x=x, y=y, order=alt.Order("threshold:Q"))
    points = base.mark_point(filled=True, color="#3d7ab8").encode(x=x, y=y, tooltip=tooltip)
    marked = base.transform_filter("datum.current")
    now = marked.mark_point(filled=True, size=160, color="#d1495b").encode(x=x, y=y, tooltip=tooltip)
    label = marked.mark_text(align="left", dx=8, dy=-8, color="#d1495b").encode(
        x=x, y=y, text=alt.Text("threshold:Q", format=",.6g"))
    return alt.layer(line, points, now, label, title=title)


def tuning_frontier(frame: pl.DataFrame, *, title: str = "Tuning: harm caught vs humans bothered, on train",
                    width: int = 520, height: int = 360) -> alt.LayerChart:
    """The candidates `gatekit tune` tried (each alone on the base policy) and the greedy path of the changes
    it chose, from a `Tuning`'s `frontier`: x the share of benign calls stopped, y the share of harmful ones;
    the colour says which kind of change a point is, the line the order the changes were chosen in (its ends
    named: the base policy and the tuned one).

    >>> tuning_frontier(tune(store, policy).frontier)
    """
    data = _data(frame, ["step", "candidate", "kind", "rule", "caught", "harmful", "bothered", "benign",
                         "catch_rate", "bother_rate", "chosen"], "tuning_frontier", "tune")
    x = alt.X("bother_rate:Q", axis=alt.Axis(format="%"), title="benign calls stopped (bothered)")
    y = alt.Y("catch_rate:Q", axis=alt.Axis(format="%"), title="harmful calls stopped (caught)")
    tooltip = [alt.Tooltip("candidate:N"), alt.Tooltip("rule:N"), alt.Tooltip("step:Q"),
               alt.Tooltip("caught:Q", format=","), alt.Tooltip("harmful:Q", format=","),
               alt.Tooltip("bothered:Q", format=","), alt.Tooltip("benign:Q", format=",")]
    tried = alt.Chart(data.filter(~pl.col("chosen"))).mark_point(opacity=0.6).encode(
        x=x, y=y, tooltip=tooltip, color=alt.Color("kind:N", title="candidate (alone)"))
    path = alt.Chart(data.filter(pl.col("chosen")).sort("step")).encode(x=x, y=y, tooltip=tooltip)
    line = path.mark_line(color="#333333").encode(order=alt.Order("step:Q"))
    dots = path.mark_point(filled=True, size=70, color="#333333")
    # the path's two ends named (consecutive steps often sit too close together to label each)
    chosen = data.filter(pl.col("chosen"))
    last = chosen["step"].max() if chosen.height else 0
    ends = chosen.filter((pl.col("step") == 0) | (pl.col("step") == last)).with_columns(
        end=pl.when(pl.col("step") == 0).then(pl.lit("base")).otherwise(pl.format("after {} steps", "step")))
    label = alt.Chart(ends).mark_text(align="left", dx=8, dy=-8, fontSize=11).encode(x=x, y=y, text="end:N")
    return alt.layer(tried, line, dots, label, title=title).properties(width=width, height=height)


def rule_scores(scores: pl.DataFrame, *, top: int | None = None,
                title: str = "Per rule: harm caught vs humans bothered") -> alt.Chart:
    """Per rule, the harmful actions it matched that the run stopped (caught) or let through (missed) and
    the benign ones it stopped (bothered), from `rule_scores`.

    >>> rule_scores(evaluate.rule_scores(frame, [r.id for r in policy.rules]))
    """
    data = _data(scores, ["rule", "actions", "caught", "missed", "bothered", "catch_rate", "bother_rate"],
                 "rule_scores", "rule_scores")
    data = data.with_columns(pl.col("actions", "caught", "missed", "bothered").fill_null(0))
    if top is not None:
        data = data.sort(pl.col("caught") + pl.col("bothered"), descending=True).head(top)
    order = _order(data["rule"])
    long = data.unpivot(index=["rule", "actions", "catch_rate", "bother_rate"], on=["caught", "missed", "bothered"],
                        variable_name="outcome", value_name="count")
    return alt.Chart(long, title=title).mark_bar().encode(
        x=alt.X("count:Q", title="actions"),
        y=alt.Y("rule:N", sort=order, title=None),
        yOffset=alt.YOffset("outcome:N", sort=["caught", "missed", "bothered"]),
        color=alt.Color("outcome:N", scale=_SCORES, title=None),
        tooltip=[alt.Tooltip("rule:N"), alt.Tooltip("outcome:N"), alt.Tooltip("count:Q", format=","),
                 alt.Tooltip("actions:Q", format=",", title="matched"),
                 alt.Tooltip("catch_rate:Q", format=".2%"), alt.Tooltip("bother_rate:Q", format=".2%")])
