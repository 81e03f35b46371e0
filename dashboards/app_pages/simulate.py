"""Simulate: edit a policy, replay it on a window of actions, and watch the rates move against a run."""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import polars as pl
import streamlit as st

from gatekit import charts, simulation
from gatekit._install import bundled
from gatekit.dashboards import empty, source
from gatekit.errors import GatekitError, PolicyError, Problem
from gatekit.logs.store import Store
from gatekit.policy import Policy, parse_policy

POLICIES = bundled("policies")  # the starter policies, bundled with gatekit
NEW = """version: 1
name: my-policy
default: allow
on_error: escalate
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - id: payments-over-100
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
    reason: Payments over $100 require approval
"""
SOURCE_KEY, TEXT_KEY, ASKED_KEY, SAVED_KEY = "sim_source", "sim_text", "sim_asked", "sim_saved"
EXCERPT = 1  # lines of context shown around a problem


def policy_texts(found: source.Contents) -> dict[str, str]:
    """Starting points for the editor: each run's policy, the checkout's policy files, a new policy."""
    texts = {f"run: {name}": source.policy(name).text for name in found.run_names}
    if POLICIES.is_dir():
        texts |= {f"file: policies/{p.name}": p.read_text(encoding="utf-8") for p in sorted(POLICIES.glob("*.yaml"))}
    return texts | {"new policy": NEW}


def load_choice(texts: dict[str, str]) -> None:
    st.session_state[TEXT_KEY] = texts[st.session_state[SOURCE_KEY]]
    st.session_state.pop(ASKED_KEY, None)


def show_problems(text: str, problems: list[Problem]) -> None:
    """Every problem at its line, with the lines around it."""
    lines = text.splitlines()
    st.error(f"**{len(problems)} problem{'s' if len(problems) != 1 else ''}**: fix them to replay",
             icon=":material/error:")
    for p in problems:
        lo, hi = max(1, p.line - EXCERPT), min(len(lines), p.line + EXCERPT)
        excerpt = "\n".join(f"{'>' if n == p.line else ' '} {n:>4} | {lines[n - 1]}" for n in range(lo, hi + 1))
        st.markdown(f"**line {p.line}**: {p.msg} `[{p.code}]`")
        if excerpt:
            st.code(excerpt, language=None)


def window_bounds(found: source.Contents) -> tuple[datetime, datetime] | None:
    first, last = found.first.date(), found.last.date()  # type: ignore[union-attr]
    picked = st.date_input("Window (UTC days)", value=(last, last), min_value=first, max_value=last,
                           help="replay the actions of these days; window tests still see the calls before")
    if not isinstance(picked, (tuple, list)) or len(picked) != 2:
        st.caption("pick the last day of the window")
        return None
    start = datetime.combine(picked[0], time(), tzinfo=timezone.utc)
    return start, datetime.combine(picked[1], time(), tzinfo=timezone.utc) + timedelta(days=1)


def count_window(store: Store, start: datetime, end: datetime) -> int:
    return int(store.con.execute("SELECT count(*) FROM actions WHERE ts >= ? AND ts < ?", [start, end])
               .fetchall()[0][0])


def simulate(text: str, run: str, start: datetime, end: datetime) -> simulation.Comparison:
    policy = parse_policy(text, "policy.yaml")
    rows = source.read("simulate", lambda store, *_: simulation.replay_window(store, policy, start, end),
                       hashlib.sha256(text.encode()).hexdigest(), start, end)
    return simulation.compare(source.actions(), rows, source.decisions(run), run, policy, source.policy(run),
                              start, end)


def show(result: simulation.Comparison) -> None:
    run = result.run
    cols = st.columns(4)
    cols[0].metric("Actions in window", f"{result.actions:,}")
    for col, decision in zip(cols[1:3], ("escalate", "deny")):
        now, then = result.rate("simulated", decision), result.rate(run, decision)
        moved = round(100 * (now - then), 2)
        col.metric(f"{decision.capitalize()} rate", f"{now:.2%}", delta=f"{moved:+.2f} pts vs `{run}`" if moved else None,
                   delta_color="inverse", help=f"`{run}`: {then:.2%} of the same actions")
    cols[3].metric("Decisions changed", f"{result.changed:,}",
                   help=f"actions whose decision differs from `{run}`")
    smell = result.smell.row(0, named=True)
    if smell["flagged"]:
        st.warning(f"Smell test: {smell['rate']:.1%} of routine actions would be escalated "
                   f"(more than {smell['threshold']:.0%})", icon=":material/warning:")
    left, right = st.columns(2)
    left.altair_chart(charts.decision_mix(result.rates, by="run", title=f"Simulated vs {run}"), width="stretch")
    right.altair_chart(charts.transition_heatmap(result.matrix, a=run, b="simulated"), width="stretch")
    st.altair_chart(charts.rule_firing(result.firing, title="Rule firing of the simulated policy"), width="stretch")
    st.dataframe(result.rules, hide_index=True, width="stretch", column_config={
        "fired_run": st.column_config.NumberColumn(f"fired in {run}", format="%d"),
        "fired_simulated": st.column_config.NumberColumn("fired simulated", format="%d"),
        "change": st.column_config.NumberColumn(format="%+d")})
    changed = result.matrix.filter(pl.col("changed") & (pl.col("count") > 0))
    if changed.height:
        st.caption("examples of changed decisions (open them in the Explorer)")
        st.dataframe(changed.select("from", "to", "count", "rules_added", "rules_removed", "examples"),
                     hide_index=True, width="stretch")


st.title("Simulate")
found = empty.store_or_stop()
if SAVED_KEY in st.session_state:
    st.success(st.session_state.pop(SAVED_KEY), icon=":material/save:")
texts = policy_texts(found)
if st.session_state.get(SOURCE_KEY) not in texts:
    st.session_state[SOURCE_KEY] = next(iter(texts))
    st.session_state[TEXT_KEY] = texts[st.session_state[SOURCE_KEY]]
st.session_state.setdefault(TEXT_KEY, texts[st.session_state[SOURCE_KEY]])

edit, side = st.columns([3, 2])
with edit:
    st.selectbox("Start from", list(texts), key=SOURCE_KEY, on_change=load_choice, args=(texts,))
    text = st.text_area("Policy (YAML)", key=TEXT_KEY, height=460)
try:
    policy: Policy | None = parse_policy(text, "policy.yaml")
    problems: list[Problem] = []
except PolicyError as exc:
    policy, problems = None, exc.problems

with side:
    if policy is None:
        show_problems(text, problems)
        st.stop()
    st.success(f"valid: `{policy.name}`, {len(policy.rules)} rules", icon=":material/check:")
    if not found.runs:
        st.info("No runs to compare with yet: save this policy as a run below, then simulate edits against it.")
        run = None
    else:
        run = st.selectbox("Compare with run", found.run_names,
                           index=found.run_names.index(empty.run_or_stop(found)))
    bounds = window_bounds(found)
    if bounds is not None:
        n = source.read("window_count", count_window, *bounds)
        st.caption(f"{n:,} actions in the window" + (" (a large window takes a while to replay)"
                                                      if n > 200_000 else ""))
    asked = (hashlib.sha256(text.encode()).hexdigest(), run, bounds)
    if st.button("Replay on window", type="primary", disabled=run is None or bounds is None):
        st.session_state[ASKED_KEY] = asked

    st.divider()
    st.subheader("Save as a run")
    name = st.text_input("Run name", value=f"{policy.name}-sim")
    replace = st.checkbox("Replace a run of that name")
    if st.button("Save as run", help=f"runs `gatekit replay` over all {found.actions:,} actions"):
        with st.spinner(f"replaying {found.actions:,} actions"):
            try:
                saved = simulation.save_run(source.db_path(), text, name, replace=replace)  # type: ignore[arg-type]
            except GatekitError as exc:
                st.error(str(exc))
            else:
                st.session_state[empty.SELECT_RUN_KEY] = saved["name"]
                st.session_state[SAVED_KEY] = (
                    f"saved run `{saved['name']}`: escalate {saved['rates']['escalate']:.2%}, "
                    f"deny {saved['rates']['deny']:.2%} of {saved['actions']:,} actions")
                st.rerun()  # the sidebar lists the new run

if run is not None and bounds is not None:
    if st.session_state.get(ASKED_KEY) == asked:
        with st.spinner("replaying the window"):
            show(source.derive("simulation", simulate, text, run, *bounds))
    elif st.session_state.get(ASKED_KEY) is not None:
        st.caption("the policy, run or window changed: replay again to see the new rates")
