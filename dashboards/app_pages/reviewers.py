"""Reviewers: who carries the load, who rubber-stamps, how long requests wait, what could be auto-approved."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, source
from gatekit import charts
from gatekit.metrics.fatigue import (decision_latency, promotion_candidates, promotion_policy, queue_depth,
                                     reviewer_load, reviewer_stats, sla_breaches, timed_out_reviews)

MAX_QUEUE_ROWS = 2000  # queue intervals drawn: the interval grows with the span
AUTO_PROMOTIONS = 20_000  # reviewed actions up to which promotion candidates are found without asking


def queue_every(approvals: pl.DataFrame) -> str:
    """The finest of 1h, 6h, 1d that keeps the queue chart under MAX_QUEUE_ROWS intervals."""
    lo, hi = approvals.select(pl.col("requested_at").min(), pl.col("decided_at").max()).row(0)
    hours = (hi - lo).total_seconds() / 3600 if lo is not None and hi is not None else 0
    return next((every for every, h in (("1h", 1), ("6h", 6), ("1d", 24)) if hours / h <= MAX_QUEUE_ROWS), "1w")


def fatigue(run: str) -> dict[str, pl.DataFrame]:
    approvals, decisions = source.approvals(), source.decisions(run).select("seq", "tier")
    return {
        "stats": reviewer_stats(approvals),
        "load": reviewer_load(approvals),
        "by_tier": decision_latency(approvals, decisions),
        "queue": queue_depth(approvals, every=queue_every(approvals)),
        "timed_out": timed_out_reviews(approvals, decisions),
        "sla": sla_breaches(approvals),
    }


def promotions() -> pl.DataFrame:
    return promotion_candidates(source.approvals(), source.reviewed_args())


st.title("Reviewers")
found = empty.store_or_stop()
empty.approvals_or_stop(found)
run = empty.run_or_stop(found)
source.warm([run], with_approvals=True)
data = source.derive("reviewers", fatigue, run)
stats = data["stats"]

cols = st.columns(5)
cols[0].metric("Reviewers", stats.height)
cols[1].metric("Reviews", f"{int(stats['reviews'].sum()):,}")
cols[2].metric("Timed out", f"{data['timed_out']['action_id'].n_unique():,}",
               help=f"reviews of actions that timed out or were decided after their tier's timeout under `{run}`")
cols[3].metric("SLA breaches", f"{data['sla'].height:,}", help="reviews decided more than an hour after the request")
peak = data["queue"]["peak_open"].max() if data["queue"].height else 0
cols[4].metric("Peak open requests", f"{peak or 0:,}")

stamps = stats.filter(pl.col("rubber_stamp"))
heavy = stats.filter(pl.col("overloaded"))
if stamps.height:
    st.warning("**Rubber-stamp signals**: " + "; ".join(
        f"`{r['reviewer']}` approves {r['approve_rate']:.0%} of {r['reviews']:,} reviews, "
        f"{(r['fast_share'] or 0):.0%} in under 10 s" for r in stamps.iter_rows(named=True)),
        icon=":material/approval_delegation:")
if heavy.height:
    st.warning("**Overloaded**: " + "; ".join(
        f"`{r['reviewer']}` {r['reviews_per_day']:.1f} reviews a day, {(r['after_hours_share'] or 0):.0%} after hours, "
        f"{(r['sla_breach_share'] or 0):.0%} past the SLA" for r in heavy.iter_rows(named=True)),
        icon=":material/running_with_errors:")
if not stamps.height and not heavy.height:
    st.success("No reviewer shows rubber-stamp or overload signals.", icon=":material/check_circle:")

st.altair_chart(charts.reviewer_load(data["load"]), width="stretch")
left, right = st.columns(2)
left.altair_chart(charts.review_latency(data["by_tier"], by="tier",
                                        title=f"Review latency by tier under {run}"), width="stretch")
right.altair_chart(charts.review_latency(stats, by="reviewer", title="Review latency by reviewer"), width="stretch")
st.altair_chart(charts.queue_depth(data["queue"]), width="stretch")
st.dataframe(stats, hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(format="percent")
    for c in ("approve_rate", "after_hours_share", "fast_share", "sla_breach_share")})

st.subheader("Promotion candidates")
if st.toggle("Find the patterns reviewers always approve", value=found.with_approvals <= AUTO_PROMOTIONS,
             help=f"reads the arguments of all {found.with_approvals:,} reviewed actions: a few seconds on a "
                  "large store"):
    found_rules = source.derive("promotions", promotions)
    if found_rules.height:
        st.caption("patterns reviewers always approved: allow rules to add (and exclude from the escalating rules)")
        st.dataframe(found_rules.drop("rule_yaml"), hide_index=True, width="stretch")
        st.code(promotion_policy(found_rules), language="yaml")
    else:
        st.caption("no pattern was approved often enough, and never denied, to propose an allow rule")
