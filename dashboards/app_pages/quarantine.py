"""Quarantine: the lines ingest could not turn into actions, their reasons counted, and the lines themselves."""

from __future__ import annotations

import streamlit as st

from gatekit.dashboards import empty, source
from gatekit.dashboards.source import Contents
from gatekit.errors import StoreError

LIMIT = 500  # lines listed: enough to see a pattern, never the whole of a bad file
ALL = "(every source)"


def store() -> Contents:
    """What the store holds; a store whose every line was quarantined has no actions but is shown here."""
    path = source.db_path()
    if path is not None and path.exists():
        try:
            found = source.contents()
        except StoreError:
            found = None  # store_or_stop says what is wrong
        if found is not None and found.quarantined:
            return found
    return empty.store_or_stop()


st.title("Quarantine")
found = store()
st.caption("Lines ingest could not turn into actions, each with its reason. Fix the source (or its mapping "
           "file, docs/actions.md) and ingest it again: what is already stored is not added twice. "
           "The same list in a terminal: `gatekit quarantine --db STORE`.")
if not found.quarantined:
    st.success(f"Nothing quarantined: every line read became one of the {found.actions:,} actions")
    st.stop()

everything = source.quarantine(None, LIMIT)
cols = st.columns(3)
cols[0].metric("Quarantined lines", f"{found.quarantined:,}")
cols[1].metric("Sources", f"{everything.sources.height:,}")
cols[2].metric("Reasons", f"{everything.reasons.height:,}")

names = everything.sources["source"].to_list()
counts = dict(zip(names, everything.sources["count"].to_list()))
picked = st.selectbox("Source", [ALL, *names], key="quarantine_source",
                      format_func=lambda n: n if n == ALL else f"{n} ({counts[n]:,} lines)")
shown = everything if picked == ALL else source.quarantine(picked, LIMIT)

left, right = st.columns([2, 3])
with left:
    st.subheader("Reasons")
    st.dataframe(shown.reasons, hide_index=True, width="stretch")
with right:
    st.subheader("Sources")
    st.dataframe(everything.sources, hide_index=True, width="stretch")

st.subheader("Lines")
st.caption(f"{shown.lines.height:,} of {shown.total:,} quarantined lines"
           + (f" of `{picked}`" if picked != ALL else "")
           + (f", the first {LIMIT} in source and line order" if shown.total > LIMIT else "")
           + "; bytes that were not UTF-8 show as `\\xNN`")
st.dataframe(shown.lines, hide_index=True, width="stretch",
             column_config={"raw": st.column_config.TextColumn("raw line", width="large")})
