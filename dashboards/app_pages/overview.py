"""Overview: how much the agents do, and what the picked run's policy would do about it."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, source
from gatekit import charts
from gatekit.metrics.rates import (decision_rates, escalation_rate_by, rule_firing, smell_test, with_time_keys,
                                   workload_forecast)

st.title("Overview")
found = empty.store_or_stop()

span = f"{found.first:%Y-%m-%d} to {found.last:%Y-%m-%d}" if found.first else "-"
cols = st.columns(5)
cols[0].metric("Actions", f"{found.actions:,}", help=span)
cols[1].metric("Runs", len(found.runs))
cols[2].metric("With approvals", f"{found.with_approvals:,}")
cols[3].metric("Labelled", f"{found.labelled:,}")
cols[4].metric("Quarantined lines", f"{found.quarantined:,}")
st.caption(f"actions from {span}")

if not found.runs:
    volume = source.derive("volume", lambda: with_time_keys(source.actions().select("ts"), keys=("day",))
                           .group_by("day").agg(count=pl.len()).sort("day"))
    st.altair_chart(charts.decisions_per_day(volume), width="stretch")
    empty.run_or_stop(found)

run = empty.run_or_stop(found)
source.warm([run], with_approvals=True)
policy = source.policy(run)
tz = policy.timezone


def overview(run: str) -> dict[str, pl.DataFrame]:
    frame = source.decisions(run)
    approvals = source.approvals()
    return {
        "rates": decision_rates(frame, timezone=tz),
        "days": decision_rates(frame, "day", timezone=tz),
        "tools": escalation_rate_by(frame, "tool", timezone=tz),
        "firing": rule_firing(frame, policy),
        "smell": smell_test(frame),
        "workload": workload_forecast(frame, approvals, timezone=tz,
                                      tier_approvals={t.name: t.approvals for t in policy.tiers.values()}),
    }


data = source.derive("overview", overview, run)
smell = data["smell"].row(0, named=True)
rate = smell["rate"] or 0.0
if smell["flagged"]:
    st.error(f"**Smell test: flagged.** {rate:.1%} of routine actions ({smell['escalations']:,} of "
             f"{smell['routine_actions']:,}, on {smell['tools']} tools that never needed a human before) would be "
             f"escalated; more than {smell['threshold']:.0%} means reviewers will drown and rubber-stamp.",
             icon=":material/warning:")
else:
    st.success(f"**Smell test: passed.** {rate:.1%} of routine actions would be escalated (threshold "
               f"{smell['threshold']:.0%}).", icon=":material/check_circle:")

left, right = st.columns(2)
left.altair_chart(charts.decision_mix(data["rates"], title=f"Would-be decisions of {run}"), width="stretch")
work = data["workload"].row(0, named=True)
with right:
    st.subheader("Workload forecast")
    a, b, c = st.columns(3)
    a.metric("Escalations / day", f"{work['escalations_per_day'] or 0:,.1f}")
    b.metric("Reviews / week", f"{work['reviews_per_week'] or 0:,.0f}")
    hours = work["reviewer_hours_per_week"]
    c.metric("Reviewer hours / week", "-" if hours is None else f"{hours:,.1f}",
             help="reviews a week times the median recorded review latency (an upper estimate)")
    if work["busiest_day"] is not None:
        st.caption(f"busiest day {work['busiest_day']}: {work['busiest_day_escalations']:,} escalations; "
                   f"peak hour {work['peak_hour']}:00 ({(work['peak_hour_share'] or 0):.0%} of escalations)")

st.altair_chart(charts.decisions_per_day(data["days"], title="Actions per day, by would-be decision"),
                width="stretch")
left, right = st.columns(2)
left.altair_chart(charts.rate_by(data["tools"], "tool", top=10, title="Top escalating tools (95% interval)"),
                  width="stretch")
stopping = data["firing"].filter(pl.col("action") != "allow")
right.altair_chart(charts.rule_firing(stopping, top=10, title="Top escalating and denying rules"), width="stretch")
never = data["firing"].filter(pl.col("never_fired"))["rule"].to_list()
if never:
    st.caption("never fired: " + ", ".join(f"`{r}`" for r in never))
