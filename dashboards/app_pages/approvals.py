"""Approvals: the enforce-mode requests of a local broker, pending and recently decided, with their evidence.

Read-only. A vote counts only from a reviewer who has authenticated, so votes are cast on the approvals
service's page (`gatekit serve`) or with `gatekit approvals approve --server URL`, never here.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import urlsplit

import polars as pl
import streamlit as st

from gatekit.dashboards import empty
from gatekit.dashboard import SERVER_ENV
from gatekit.enforce.broker import PENDING, Broker, Request
from gatekit.errors import StoreError

RECENT = 50  # decided requests listed


def ago(moment: datetime) -> str:
    seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    minutes = abs(seconds) / 60
    span = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def where_to_vote() -> None:
    """Say where approving happens, with a link to the service's page when the dashboard knows its URL."""
    server = (os.environ.get(SERVER_ENV) or "").strip()
    web = urlsplit(server).scheme in ("http", "https") and bool(urlsplit(server).netloc)
    link = f"[the approvals service's page]({server})" if web else "the approvals service's page (`gatekit serve`)"
    command = f"gatekit approvals approve REQUEST --server {server if web else 'URL'}"
    st.info(f"**Read-only.** Approving and denying happen where reviewers log in: on {link}, or with "
            f"`{command}` (your credential in `GATEKIT_TOKEN`).", icon=":material/visibility:")


def show_request(r: Request) -> None:
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


def decided_table(requests: list[Request]) -> pl.DataFrame:
    return pl.DataFrame([{
        "request": r.id, "status": r.status, "tool": r.tool, "agent": r.agent, "user": r.user, "tier": r.tier,
        "requested_at": r.requested_at, "decided_at": r.decided_at, "reviewers": ", ".join(v.reviewer for v in r.votes),
        "break_glass": r.break_glass, "flagged": r.flagged} for r in requests])


st.title("Approvals")
where_to_vote()
path = empty.broker_or_stop()
try:
    broker = Broker(path)
except StoreError as exc:
    st.error(f"cannot open the approvals store: {exc}")
    st.stop()
try:
    everything = broker.list(None)  # settles requests whose time ran out, as every reader of a broker does
    pending = [r for r in everything if r.status == PENDING]
    st.caption(f"approvals store `{path}` · {len(pending)} pending · {len(everything)} requests in all")
    if not pending:
        st.info("**No pending requests.** Escalated calls from agents in enforce mode appear here while they wait "
                "for a reviewer.", icon=":material/inbox:")
    for request in pending:
        show_request(request)
    decided = [r for r in reversed(everything) if r.status != PENDING][:RECENT]
    if decided:
        st.subheader("Recently decided")
        st.dataframe(decided_table(decided), hide_index=True, width="stretch")
finally:
    broker.close()
