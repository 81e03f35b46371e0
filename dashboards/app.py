"""The gatekit dashboard: `gatekit dashboard --db PATH [--approvals SQLITE_PATH]` runs this with Streamlit.

Pages live in pages/, one per question a user brings; this script sets up the sidebar (the store and the
run every page looks at) and hands over to the chosen page.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboards/app.py` puts dashboards/, not its parent, on the path
    sys.path.insert(0, str(ROOT))

from dashboards import empty, source  # noqa: E402
from gatekit.errors import StoreError  # noqa: E402

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/simulate.py", title="Simulate", icon=":material/tune:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/drift.py", title="Drift", icon=":material/trending_up:"),
    st.Page("pages/reviewers.py", title="Reviewers", icon=":material/groups:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/target:"),
    st.Page("pages/explorer.py", title="Explorer", icon=":material/search:"),
    st.Page("pages/approvals.py", title="Approvals", icon=":material/approval:"),
]


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
page = st.navigation(PAGES)
sidebar()
try:
    page.run()
except source.Busy as exc:
    empty.busy(exc)
