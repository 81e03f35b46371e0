"""Compare: two runs over the same actions. Where decisions move, which rules move them, examples per cell."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, page, source
from gatekit import charts
from gatekit.metrics.diff import policy_diff, transition_matrix, transition_rules
from gatekit.metrics.rates import decision_rates

EXAMPLES = 20  # example actions kept per cell


def comparison(a: str, b: str) -> dict[str, pl.DataFrame]:
    frame_a, frame_b = source.decisions(a), source.decisions(b)
    return {
        "matrix": transition_matrix(frame_a, frame_b, examples=EXAMPLES),
        "rules": transition_rules(frame_a, frame_b),
        "rates": pl.concat([decision_rates(frame_a).with_columns(run=pl.lit(a)),
                            decision_rates(frame_b).with_columns(run=pl.lit(b))]),
        "diff": policy_diff(source.policy(a), source.policy(b)),
    }


def examples(ids: list[str], run: str) -> pl.DataFrame:
    frame = source.decisions(run)
    return frame.filter(pl.col("action_id").is_in(ids)).select(
        "action_id", "ts", "tool", "agent", "session", "user", "rules")


st.title("Compare")
found = empty.store_or_stop()
empty.second_run_or_stop(found)
names = found.run_names
current = empty.run_or_stop(found)
left, right = st.columns(2)
run_a = left.selectbox("Run A", names, index=names.index(current))
run_b = right.selectbox("Run B", names, index=next(i for i, n in enumerate(names) if n != run_a))
if run_a == run_b:
    st.info("Pick two different runs.")
    st.stop()

source.warm([run_a, run_b])
data = source.derive("compare", comparison, run_a, run_b)
matrix = data["matrix"]
total = int(matrix["count"].sum())
changed = int(matrix.filter(pl.col("changed"))["count"].sum())
cols = st.columns(4)
cols[0].metric("Actions in both", f"{total:,}")
cols[1].metric("Decisions changed", f"{changed:,}", help=f"{changed / total:.2%} of the actions" if total else None)
for col, decision in zip(cols[2:], ("escalate", "deny")):
    n_a = int(matrix.filter(pl.col("from") == decision)["count"].sum())
    n_b = int(matrix.filter(pl.col("to") == decision)["count"].sum())
    col.metric(f"{decision.capitalize()} (B)", f"{n_b:,}", delta=f"{n_b - n_a:+,} vs A", delta_color="inverse")

left, right = st.columns(2)
left.altair_chart(charts.transition_heatmap(matrix, a=run_a, b=run_b), width="stretch")
right.altair_chart(charts.decision_mix(data["rates"], by="run", title="Decision mix"), width="stretch")

st.subheader("Examples per cell")
cells = matrix.filter(pl.col("changed") & (pl.col("count") > 0))
if not cells.height:
    st.success("The two runs decide every action the same way.")
else:
    labels = {f"{r['from']} → {r['to']} ({r['count']:,})": (r["from"], r["to"]) for r in cells.iter_rows(named=True)}
    pick = st.selectbox("Cell", list(labels))
    frm, to = labels[pick]
    cell = cells.filter((pl.col("from") == frm) & (pl.col("to") == to)).row(0, named=True)
    why = data["rules"].filter((pl.col("from").cast(pl.String) == frm) & (pl.col("to").cast(pl.String) == to))
    left, right = st.columns([2, 3])
    with left:
        st.caption(f"rules behind `{frm}` → `{to}`: `added` matched in B not A, `removed` matched in A not B")
        st.dataframe(why.select("change", "rule", "count"), hide_index=True, width="stretch")
    with right:
        st.caption(f"the first {len(cell['examples'])} actions of the cell, in log order (rules as in B)")
        shown = examples(cell["examples"], run_b)
        st.dataframe(shown, hide_index=True, width="stretch")
        for action_id in shown["action_id"].head(5):
            st.page_link(page("explorer").script, label=f"open {action_id}", icon=":material/search:",
                         query_params={"action": action_id, "run": run_b})

st.subheader("What changed in the policy")
diff = data["diff"]
if diff.height:
    st.dataframe(diff, hide_index=True, width="stretch")
else:
    st.caption("the two runs used policies with the same meaning")
