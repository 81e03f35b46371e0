"""The gatekit dashboard: `gatekit dashboard --db PATH [--approvals SQLITE_PATH]` runs this with Streamlit.

Pages live in app_pages/ (listed in gatekit.dashboards.PAGES), one per question a user brings; this script sets up the sidebar (the store and the
run every page looks at) and hands over to the chosen page.
"""

from __future__ import annotations

import streamlit as st

from gatekit.dashboards import PAGES, empty, source
from gatekit.errors import StoreError


def navigation() -> list[st.Page]:
    """The st.Page of every entry of PAGES, the first the default (at `/`)."""
    return [st.Page(p.script, title=p.title, icon=p.icon, default=i == 0) for i, p in enumerate(PAGES)]


def sidebar() -> None:
    path = source.db_path()
    st.sidebar.caption(f"store `{path}`" if path else "no store configured")
    if path is None or not path.exists():
        return
    try:
        found = source.contents()
    except StoreError:
        return  # the page says what is wrong
    names = found.run_names
    if not names:
        st.sidebar.caption(f"{found.actions:,} actions, no runs yet")
        return
    pending = st.session_state.pop(empty.SELECT_RUN_KEY, None)
    if pending in names:
        st.session_state[empty.RUN_KEY] = pending
    elif st.session_state.get(empty.RUN_KEY) not in names:
        st.session_state[empty.RUN_KEY] = names[0]
    runs = {r.name: r for r in found.runs}
    st.sidebar.selectbox("Run", names, key=empty.RUN_KEY, help="the replay run every page looks at",
                         format_func=lambda n: f"{n} ({runs[n].policy_name})")
    run = runs[st.session_state[empty.RUN_KEY]]
    st.sidebar.caption(f"{run.actions:,} actions · escalate {run.rate('escalate'):.1%} · deny "
                       f"{run.rate('deny'):.1%} · replayed {run.created_at:%Y-%m-%d %H:%M}")


st.set_page_config(page_title="gatekit", page_icon=":material/shield:", layout="wide")
st.session_state[source.STALE_KEY] = False
page = st.navigation(navigation())
sidebar()
try:
    page.run()
except source.Busy as exc:
    empty.busy(exc)
