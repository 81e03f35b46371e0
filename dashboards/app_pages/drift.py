"""Drift: is the behaviour the policy was tuned on still the behaviour now? Tool mix, rules, execution."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, source
from gatekit import charts
from gatekit.metrics.drift import (argument_values, coverage, escalation_rate_change, execution_drift,
                                   execution_drift_actions, in_window, numeric_drift, psi_band, rule_drift,
                                   rule_rate_change, split_halves, tool_mix_psi)

TOP_RULES = 6  # rules drawn by default: those whose rate changed most
# a p-value as 3 significant digits (0.0123, 4.56e-12), not the table's default of many decimals
P_VALUE = st.column_config.NumberColumn("p-value", format="%.3g")


def windows(run: str, split: date | None, tz: str) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    halves = split_halves(source.decisions(run), timezone=tz)
    if split is None:
        return halves[0], halves[1]
    middle = datetime.combine(split, time(), tzinfo=ZoneInfo(tz))
    return (halves[0][0], middle), (middle, halves[1][1])


def behaviour(run: str, split: date | None, every: str) -> dict[str, object]:
    policy = source.policy(run)
    frame = source.decisions(run)
    first, second = windows(run, split, policy.timezone)
    a, b = in_window(frame, first), in_window(frame, second)
    mix = tool_mix_psi(a, b)
    change = rule_rate_change(a, b, policy)
    return {
        "windows": (first, second), "actions": (a.height, b.height), "mix": mix,
        "psi": float(mix["psi"].sum()) if a.height and b.height else None,
        "escalation": escalation_rate_change(a, b),
        "rule_change": change,
        "rule_drift": rule_drift(frame, policy, every=every, timezone=policy.timezone),
        "coverage": coverage(frame, policy),
    }


def arguments(run: str, split: date | None) -> pl.DataFrame:
    policy = source.policy(run)
    first, second = windows(run, split, policy.timezone)
    values = source.derive("argument_values", lambda r: argument_values(source.run(r)), run)
    return numeric_drift(in_window(values, first), in_window(values, second))


st.title("Drift")
found = empty.store_or_stop()
run = empty.run_or_stop(found)
source.warm([run], with_approvals=True)
tz = source.policy(run).timezone
days = (found.last.date() - found.first.date()).days  # type: ignore[union-attr]
left, right = st.columns([3, 1])
split: date | None = None
if days >= 2:
    halves = windows(run, None, tz)
    split = left.slider("Window B starts", min_value=found.first.date() + timedelta(days=1),  # type: ignore[union-attr]
                        max_value=found.last.date(), value=halves[1][0].date(), format="YYYY-MM-DD",  # type: ignore[union-attr]
                        help="window A: from the first day up to this day; window B: from it to the last day")
every = right.radio("Rule rates per", ["day", "week"], horizontal=True)
data = source.derive("drift", behaviour, run, split, every)
(first, second), (n_a, n_b) = data["windows"], data["actions"]  # type: ignore[misc]
st.caption(f"A: {first[0]:%Y-%m-%d} to {first[1]:%Y-%m-%d} ({n_a:,} actions) · B: {second[0]:%Y-%m-%d} to "
           f"{second[1]:%Y-%m-%d} ({n_b:,} actions), end dates excluded, days in {tz}")

st.subheader("Behaviour")
mix: pl.DataFrame = data["mix"]  # type: ignore[assignment]
esc = data["escalation"].row(0, named=True)  # type: ignore[attr-defined]
psi = data["psi"]
cols = st.columns(4)
cols[0].metric("Tool-mix PSI", "-" if psi is None else f"{psi:.3f}", help="population stability index of the tool "
               "mix from A to B: below 0.1 stable, 0.1-0.25 moderate, above major")
cols[1].metric("Reading", psi_band(psi) or "-")  # type: ignore[arg-type]
cols[2].metric("Escalation rate in B", f"{(esc['rate_b'] or 0):.2%}",
               delta=f"{100 * (esc['change'] or 0):+.2f} pts vs A", delta_color="inverse",
               help=f"two-proportion z-test p = {esc['p_value']:.3g}" if esc["p_value"] is not None else None)
new = mix.filter(pl.col("status") == "new")["tool"].to_list()
gone = mix.filter(pl.col("status") == "vanished")["tool"].to_list()
cols[3].metric("New / vanished tools", f"{len(new)} / {len(gone)}")
if new or gone:
    st.caption(("new in B: " + ", ".join(f"`{t}`" for t in new) if new else "") +
               (" · " if new and gone else "") + ("gone in B: " + ", ".join(f"`{t}`" for t in gone) if gone else ""))
st.altair_chart(charts.tool_mix_psi(mix), width="stretch")

st.subheader("Rules")
change: pl.DataFrame = data["rule_change"]  # type: ignore[assignment]
allows = [r.id for r in source.policy(run).rules if r.action == "allow"]
ranked = (change.filter(pl.col("z").is_not_null())  # rules that stop calls first, then by how far they moved
          .sort(pl.col("rule").is_in(allows), -pl.col("z").abs())["rule"].to_list())
picked = st.multiselect("Rules", change["rule"].to_list(), default=ranked[:TOP_RULES],
                        help="by default the escalating and denying rules whose firing rate changed most from A to B")
st.altair_chart(charts.rule_drift(data["rule_drift"], rules=picked or None), width="stretch")  # type: ignore[arg-type]
st.dataframe(change, hide_index=True, width="stretch", column_config={
    "rate_a": st.column_config.NumberColumn(format="percent"), "rate_b": st.column_config.NumberColumn(format="percent"),
    "change": st.column_config.NumberColumn(format="percent"), "z": st.column_config.NumberColumn(format="%.2f"),
    "p_value": P_VALUE})

st.subheader("Execution drift")
approvals = source.approvals()
if approvals.height == 0:
    st.info("No approvals recorded, so no approved action to check: execution drift compares the arguments a "
            "reviewer approved (`evidence_hash`) with those that ran (`executed_hash`). Ingest logs that carry "
            "`approvals` and both hashes.", icon=":material/info:")
else:
    overall = source.derive("execution_drift", lambda: execution_drift(approvals)).row(0, named=True)
    cols = st.columns(3)
    cols[0].metric("Approved actions", f"{overall['approved']:,}")
    cols[1].metric("Ran with other arguments", f"{overall['drifted']:,}")
    cols[2].metric("Drifted share", "-" if overall["share"] is None else f"{overall['share']:.2%}")
    per_day = source.derive("execution_drift_day", lambda: execution_drift(approvals, "day", timezone=tz))
    st.altair_chart(charts.execution_drift(per_day), width="stretch")
    drifted = source.derive("execution_drift_actions", lambda: execution_drift_actions(approvals))
    if drifted.height:
        st.dataframe(drifted.head(200), hide_index=True, width="stretch")

st.subheader("Coverage")
cover: pl.DataFrame = data["coverage"]  # type: ignore[assignment]
uncovered = cover.filter(~pl.col("covered"))
if uncovered.height:
    st.warning("Decided by `default` alone (no rule's tool pattern matches): "
               + ", ".join(f"{r['dimension']} `{r['name']}` ({r['actions']:,} actions)"
                           for r in uncovered.iter_rows(named=True)), icon=":material/visibility_off:")
else:
    st.caption("every tool and agent is looked at by some rule")

st.subheader("Tested arguments")
if st.toggle("Compare the numbers the policy tests (amounts, row counts, ...) between A and B",
             help="reads those arguments of every action: takes a few seconds on a large store"):
    numeric = source.derive("numeric_drift", arguments, run, split)
    if numeric.height:
        st.dataframe(numeric, hide_index=True, width="stretch",
                     column_config={c: P_VALUE for c in numeric.columns if c in ("ks_p", "p_value")})
    else:
        st.caption("the policy compares no argument as a number")
