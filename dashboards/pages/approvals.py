"""Approvals: the enforce-mode requests waiting for a human, with their evidence; approve or deny them."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import streamlit as st

from dashboards import empty
from gatekit.enforce.broker import PENDING, Broker, Refused, Request
from gatekit.errors import StoreError

RECENT = 50  # decided requests listed
NO_ROLE = "(none)"


def ago(moment: datetime) -> str:
    seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    minutes = abs(seconds) / 60
    span = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def vote_form(broker: Broker, r: Request) -> None:
    with st.form(f"vote-{r.id}"):
        c1, c2 = st.columns(2)
        reviewer = c1.text_input("Reviewer", key=f"reviewer-{r.id}", help="you: not the call's agent or user")
        roles = [NO_ROLE, *r.roles]
        role = c2.selectbox("Role", roles, key=f"role-{r.id}", help="the role you approve in (the tier may require one)")
        reason = st.text_input("Reason", key=f"reason-{r.id}")
        c1, c2 = st.columns(2)
        approve = c1.form_submit_button("Approve", type="primary", key=f"approve-{r.id}")
        deny = c2.form_submit_button("Deny", key=f"deny-{r.id}")
    if not (approve or deny):
        return
    who = (reviewer or "").strip()
    if not who:
        st.error("enter your reviewer name to vote")
        return
    try:
        vote = broker.approve if approve else broker.deny
        done = vote(r.id, who, role=None if role == NO_ROLE else role, reason=reason or None)
    except Refused as exc:
        st.error(f"refused ({exc.code}): {exc}")
        return
    st.session_state["approvals_flash"] = f"`{who}` {'approved' if approve else 'denied'} `{r.id}`: now `{done.status}`"
    st.rerun()


def show_request(broker: Broker, r: Request) -> None:
    need = f"{len(r.approved_by)}/{r.approvals} approvals" + (f", roles {', '.join(r.roles)}" if r.roles else "")
    with st.container(border=True):
        st.markdown(f"**`{r.tool}`** by agent `{r.agent or '-'}` for user `{r.user or '-'}` · tier `{r.tier or '-'}` "
                    f"· {need} · requested {ago(r.requested_at)} · expires {ago(r.expires_at)}")
        st.caption(f"request `{r.id}` · action `{r.action_id}`")
        for i, rule in enumerate(r.rules):
            reason = r.reasons[i] if i < len(r.reasons) else ""
            st.markdown(f"- `{rule}`" + (f": {reason}" if reason else ""))
        left, right = st.columns([3, 2])
        with left:
            st.json(r.action, expanded=2)
        with right:
            st.code(f"evidence {r.evidence_hash}", language=None, wrap_lines=True)
            if r.evidence_intact:
                st.caption("the call above hashes to this evidence: an approval binds to exactly it")
            else:
                st.error("the stored call does not match its evidence hash: the store was edited; deny it")
            for v in r.votes:
                st.caption(f"{v.reviewer} ({v.role or '-'}) {v.decision}" + (f": {v.reason}" if v.reason else ""))
            vote_form(broker, r)


def decided_table(requests: list[Request]) -> pl.DataFrame:
    return pl.DataFrame([{
        "request": r.id, "status": r.status, "tool": r.tool, "agent": r.agent, "user": r.user, "tier": r.tier,
        "requested_at": r.requested_at, "decided_at": r.decided_at, "reviewers": ", ".join(v.reviewer for v in r.votes),
        "break_glass": r.break_glass, "flagged": r.flagged} for r in requests])


st.title("Approvals")
path = empty.broker_or_stop()
if "approvals_flash" in st.session_state:
    st.success(st.session_state.pop("approvals_flash"), icon=":material/how_to_vote:")
try:
    broker = Broker(path)
except StoreError as exc:
    st.error(f"cannot open the approvals store: {exc}")
    st.stop()
try:
    everything = broker.list(None)
    pending = [r for r in everything if r.status == PENDING]
    st.caption(f"approvals store `{path}` · {len(pending)} pending · {len(everything)} requests in all")
    if not pending:
        st.info("**No pending requests.** Escalated calls from agents in enforce mode appear here while they wait "
                "for a reviewer.", icon=":material/inbox:")
    for request in pending:
        show_request(broker, request)
    decided = [r for r in reversed(everything) if r.status != PENDING][:RECENT]
    if decided:
        st.subheader("Recently decided")
        st.dataframe(decided_table(decided), hide_index=True, width="stretch")
finally:
    broker.close()
