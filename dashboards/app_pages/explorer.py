"""Explorer: find actions by tool, agent, session, decision or rule, and open one to see why it was decided so."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import streamlit as st

from gatekit.dashboards import empty, source
from gatekit.logs.store import Store
from gatekit.run import action_errors

LIMIT = 200  # rows listed: the explorer shows actions, so never more than a page of them
ANY_RULE, NO_RULE = "(any)", "(none matched)"


def choices(run: str) -> dict[str, list[str]]:
    frame = source.decisions(run)
    return {c: frame[c].drop_nulls().unique().sort().to_list() for c in ("tool", "agent")}


def action_row(store: Store, seq: int) -> dict[str, Any]:
    cur = store.con.execute(
        'SELECT seq, action_id, ts, agent, session, "user", tool, args, context, evidence_hash, executed_hash, '
        "outcome, approvals, label, extra, source, source_line FROM actions WHERE seq = ?", [seq])
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    return dict(zip(names, row)) if row else {}


def parsed(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def show_action(run: str, seq: int) -> None:
    row = source.read("action", action_row, seq)
    if not row:
        st.warning(f"no action with seq {seq}")
        return
    decided = source.decisions(run).filter(pl.col("seq") == seq)
    st.subheader(f"`{row['action_id']}`: `{row['tool']}`")
    st.caption(f"{row['ts']:%Y-%m-%d %H:%M:%S %Z} · agent `{row['agent']}` · session `{row['session']}` · user "
               f"`{row['user']}` · outcome `{row['outcome']}` · label `{row['label']}` · "
               f"{row['source']}:{row['source_line']}")
    if decided.height:
        d = decided.row(0, named=True)
        policy = source.policy(run)
        known = {r.id: r for r in policy.rules}
        why = {e["rule"]: e for e in source.read("action_errors", action_errors, run, seq)}
        st.markdown(f"**`{run}` decides `{d['decision']}`**" + (f" (tier `{d['tier']}`)" if d["tier"] else ""))
        rules = [{"rule": rid, "action": known[rid].action if rid in known else None,
                  "mode": known[rid].mode if rid in known else None,
                  "reason": (known[rid].reason or "") if rid in known else "", "errored": rid in d["errors"]}
                 for rid in d["rules"]]
        rules += [{"rule": rid, "action": known[rid].action if rid in known else None,
                   "mode": known[rid].mode if rid in known else None,
                   "reason": "could not be evaluated (at least `on_error`)", "errored": True,
                   "error code": why.get(rid, {}).get("code"), "error message": why.get(rid, {}).get("message")}
                  for rid in d["errors"] if rid not in d["rules"]]
        if rules:
            st.dataframe(pl.DataFrame(rules, infer_schema_length=None), hide_index=True, width="stretch")
        else:
            st.caption(f"no rule matched: the policy's default `{policy.default}`")
    left, right = st.columns(2)
    with left:
        st.markdown("**args**")
        st.json(parsed(row["args"]))
        st.markdown("**context**")
        st.json(parsed(row["context"]))
    with right:
        st.markdown("**evidence**")
        ev, ex = row["evidence_hash"], row["executed_hash"]
        state = ("missing" if not ev or not ex else "identical: what ran is what was reviewed" if ev == ex
                 else "DIFFERENT: what ran is not what was reviewed (execution drift)")
        st.code(f"evidence {ev}\nexecuted {ex}", language=None, wrap_lines=True)
        (st.error if ev and ex and ev != ex else st.caption)(f"hashes {state}")
        st.markdown("**approvals**")
        approvals = parsed(row["approvals"]) or []
        if approvals:
            st.dataframe(pl.DataFrame(approvals, infer_schema_length=None), hide_index=True, width="stretch")
        else:
            st.caption("none recorded")
        if row["extra"]:
            st.markdown("**extra**")
            st.json(parsed(row["extra"]))
    st.markdown("**every run's decision**")
    st.dataframe(source.action_runs(seq), hide_index=True, width="stretch")


st.title("Explorer")
found = empty.store_or_stop()
run = empty.run_or_stop(found)
params = st.query_params
if params.get("run") in found.run_names and params["run"] != run:
    run = params["run"]
    st.caption(f"showing run `{run}`, as the link asked (the sidebar picks the run otherwise)")
source.warm([run])
opts = source.derive("explorer_choices", choices, run)
rule_ids = [ANY_RULE, NO_RULE] + [r.id for r in source.policy(run).rules]

c1, c2, c3 = st.columns(3)
tools = c1.multiselect("Tool", opts["tool"])
agents = c2.multiselect("Agent", opts["agent"])
session = c3.text_input("Session (contains)")
c1, c2, c3 = st.columns(3)
decisions = c1.multiselect("Decision", ["allow", "escalate", "deny"])
rule = c2.selectbox("Rule matched", rule_ids)
wanted = c3.text_input("Action id", value=params.get("action", ""))

frame = source.decisions(run)
where = pl.lit(True)
if tools:
    where &= pl.col("tool").is_in(tools)
if agents:
    where &= pl.col("agent").is_in(agents)
if session:
    where &= pl.col("session").str.contains(session, literal=True)
if decisions:
    where &= pl.col("decision").is_in(decisions)
if rule == NO_RULE:
    where &= pl.col("rules").list.len() == 0
elif rule != ANY_RULE:
    where &= pl.col("rules").list.contains(rule)
if wanted:
    where &= pl.col("action_id") == wanted.strip()
hits = frame.filter(where)
shown = hits.head(LIMIT).select("seq", "ts", "action_id", "tool", "agent", "session", "user", "decision", "rules",
                                "tier", "outcome", "label")
st.caption(f"{hits.height:,} of {frame.height:,} actions match under `{run}`"
           + (f"; the first {LIMIT} in log order" if hits.height > LIMIT else ""))
picked = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                      key="explorer_rows")
rows = picked.selection.rows if picked is not None and hasattr(picked, "selection") else []
if rows:
    show_action(run, int(shown["seq"][rows[0]]))
elif shown.height == 1:
    show_action(run, int(shown["seq"][0]))
elif shown.height:
    st.caption("select a row (or type its action id) to open it")
