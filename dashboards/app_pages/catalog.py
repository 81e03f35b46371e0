"""Catalog: what the logs say each tool is called with, the decision mix of the run, and what its rules read."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatekit.authoring import Catalog, build_catalog
from gatekit.dashboards import empty, source
from gatekit.logs.store import Store
from gatekit.run import load_run


def catalog_of(store: Store, run: str | None) -> Catalog:
    return build_catalog(store, run=load_run(store, run) if run is not None else None)


def tools_frame(catalog: Catalog) -> pl.DataFrame:
    rows = []
    for t in catalog.tools.values():
        mix = t.decisions or {}
        rows.append({"tool": t.tool, "calls": t.calls, "agents": t.agent_count,
                     "top agent": t.agents[0][0] if t.agents else None,
                     "allow": mix.get("allow"), "escalate": mix.get("escalate"), "deny": mix.get("deny"),
                     "rules": len(t.rules or []), "paths": len(t.paths),
                     "first seen": t.first_seen, "last seen": t.last_seen})
    seen = [pl.col(c).str.to_datetime(time_zone="UTC", strict=False) for c in ("first seen", "last seen")]
    return pl.DataFrame(rows, schema_overrides={"first seen": pl.String, "last seen": pl.String}).with_columns(
        seen).sort("calls", descending=True)


def paths_frame(catalog: Catalog, tool: str) -> pl.DataFrame:
    rows = []
    entry = catalog.tools[tool]
    for p in entry.paths.values():
        rows.append({"path": p.name, "present": p.present, "share": p.present / entry.calls,
                     "types": ", ".join(f"{k} {v:,}" for k, v in sorted(p.types.items(), key=lambda it: -it[1])),
                     "min": p.min, "max": p.max,
                     "top values": ", ".join(f"{v!r} ({c:,})" for v, c in p.top),
                     "read by": ", ".join(p.read_by or [])})
    return pl.DataFrame(rows, schema_overrides={"min": pl.Float64, "max": pl.Float64})


st.title("Catalog")
found = empty.store_or_stop()
run = empty.run_or_stop(found) if found.runs else None
catalog = source.read("catalog", catalog_of, run)
st.caption("Every tool the logs hold, and for each its argument and context paths with the types a policy test "
           "reads, how often each is present, its range and common values, and which rules of "
           + (f"`{run}` read it" if run else "a run read it (no run yet)")
           + ". Write it to a file whose risk tags you edit: `gatekit catalog --db STORE --out catalog.yaml`.")
cols = st.columns(4)
cols[0].metric("Tools", f"{len(catalog.tools):,}")
cols[1].metric("Actions", f"{catalog.actions:,}")
cols[2].metric("Paths", f"{sum(len(t.paths) for t in catalog.tools.values()):,}")
unread = sum(1 for t in catalog.tools.values() if t.rules == [])
cols[3].metric("Tools no rule names", f"{unread:,}" if run else "-",
               help="tools that only the policy's default decides")

st.subheader("Tools" + (f", with the decisions of `{run}`" if run else ""))
tools = tools_frame(catalog)
st.dataframe(tools, hide_index=True, width="stretch", column_config={  # to the second, not ISO microseconds
    c: st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss") for c in ("first seen", "last seen")})

names = tools["tool"].to_list()
tool = st.selectbox("Tool", names, key="catalog_tool",
                    format_func=lambda n: f"{n} ({catalog.tools[n].calls:,} calls)")
entry = catalog.tools[tool]
st.subheader(f"Paths of `{tool}`")
if entry.agents:
    st.caption("Top agents: " + ", ".join(f"{a} ({n:,})" for a, n in entry.agents)
               + (f"; rules: {', '.join(entry.rules)}" if entry.rules else ""))
paths = paths_frame(catalog, tool)
if paths.height:
    st.dataframe(paths, hide_index=True, width="stretch",
                 column_config={"share": st.column_config.ProgressColumn("present in", min_value=0, max_value=1,
                                                                         format="percent")})
else:
    st.info(f"No call of `{tool}` has arguments or context")
