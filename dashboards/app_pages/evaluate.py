"""Evaluate: against ground-truth labels, how much harm the run's policy catches and how many humans it bothers."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, source
from gatekit import charts
from gatekit.report import tuning_frame
from gatekit.metrics.evaluate import label_scores, rule_scores, session_scores, sweep_threshold, sweepable_tests

TOP_RULES = 15
COLUMNS = ["seq", "action_id", "session", "tool", "label", "decision", "rules", "errors"]


def scores(run: str) -> dict[str, pl.DataFrame]:
    frame = source.decisions(run).select(COLUMNS)
    return {"overall": label_scores(frame), "tools": label_scores(frame, ["tool"]),
            "rules": rule_scores(frame, [r.id for r in source.policy(run).rules]), "sessions": session_scores(frame)}


def sweep(run: str, rule: str, field: str, op: str) -> object:
    return source.derive("sweep", lambda *_: sweep_threshold(source.run(run), rule, field, op=op),
                         run, rule, field, op)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


st.title("Evaluate")
found = empty.store_or_stop()
empty.labels_or_stop(found)
run = empty.run_or_stop(found)
source.warm([run])
data = source.derive("evaluate", scores, run)
o = data["overall"].row(0, named=True)
s = data["sessions"].row(0, named=True)
cols = st.columns(5)
cols[0].metric("Harm caught", percent(o["catch_rate"]), help=f"{o['caught']:,} of {o['harmful']:,} harmful actions "
               "escalated or denied")
cols[1].metric("Harm missed", f"{o['missed']:,}")
cols[2].metric("Humans bothered", percent(o["bother_rate"]), help=f"{o['bothered']:,} of {o['benign']:,} benign "
               "actions escalated or denied")
cols[3].metric("Sessions caught", percent(s["session_catch_rate"]),
               help=f"{s['caught_sessions']:,} of {s['harmful_sessions']:,} sessions with a harmful action")
cols[4].metric("Unlabelled actions", f"{o['unlabelled']:,}")

st.altair_chart(charts.rule_scores(data["rules"], top=TOP_RULES,
                                   title=f"Per rule of {run}: harm caught vs humans bothered"), width="stretch")
st.caption(f"the {TOP_RULES} rules that stop the most labelled actions; every rule is in the table below")

st.subheader("Threshold sweep")
tests = sweepable_tests(source.policy(run))
if not tests:
    st.info(f"The policy of `{run}` has no numeric threshold (`gt`, `gte`, `lt`, `lte` on an argument or "
            "`time.hour`) to sweep.", icon=":material/info:")
else:
    labels = {f"{rule}: {field} {op} {value:g}": (rule, field, op) for rule, field, op, value in tests}
    pick = st.selectbox("Test", list(labels), help="how caught and bothered move as this threshold moves")
    result = sweep(run, *labels[pick])
    st.altair_chart(charts.threshold_sweep(result.curve, current=result.current), width="stretch")  # type: ignore[attr-defined]
    with st.expander("the curve as a table"):
        st.dataframe(result.curve, hide_index=True, width="stretch")  # type: ignore[attr-defined]

st.subheader("Tuning frontier")
record = source.tuning()
if record is None or not record.get("frontier"):
    st.info("No `gatekit tune` has run on this store: `gatekit tune --db STORE --policy FILE --out TUNED.yaml` "
            "tries candidate changes and keeps its frontier here.", icon=":material/info:")
else:
    kept = sum(1 for c in record["changes"] if c["kept"])
    st.altair_chart(charts.tuning_frontier(tuning_frame(record)), width="stretch")
    st.caption(f"the last `gatekit tune` (from `{record.get('policy')}` to `{record.get('out')}`, split "
               f"{record['split']}): {record['candidates_tried']:,} candidates tried on train, {kept} of "
               f"{len(record['changes'])} changes kept on held-out; each point is one candidate alone, the line "
               "the path of changes chosen")
    with st.expander("the frontier as a table"):
        st.dataframe(tuning_frame(record), hide_index=True, width="stretch")

st.subheader("By rule")
st.dataframe(data["rules"], hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(format="percent") for c in ("catch_rate", "bother_rate")})
st.subheader("By tool")
st.dataframe(data["tools"], hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(format="percent") for c in ("catch_rate", "bother_rate")})
