# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # (d) Tuning automatically: `gatekit tune`, evaluated on a model it never saw
#
# Notebook (b) tuned the AgentDojo policy by hand. Here `gatekit tune` does it from the naive policy alone:
# it proposes threshold moves, narrower conditions, allow-lists, removed and new rules, chooses them greedily
# on the **train** part of the labelled calls, and keeps each only if it does not hurt on the **held-out**
# part. We hold out one whole model (`--holdout agent=MODEL`), so the held-out figures say how the tuned
# policy does on an agent whose calls it never looked at, and compare it there with the hand-tuned
# `agentdojo-final.yaml`.
#
# The data: `GATEKIT_DATA`, else the AgentDojo runs beside the checkout (`../shared/data/agentdojo-runs`),
# else the bundled `sample_logs/` (then the held-out part is a hash of the session id and the comparison is
# with `sample-tuned.yaml`).

# %%
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from gatekit import charts, load_policy
from gatekit.authoring import tune
from gatekit.logs import ingest
from gatekit.logs.store import Store
from gatekit.replay import replay

pl.Config.set_tbl_rows(40)
pl.Config.set_tbl_width_chars(160)
pl.Config.set_fmt_str_lengths(70)


def repo_root() -> Path:
    here = Path.cwd().resolve()
    return next(p for p in (here, *here.parents) if (p / "pyproject.toml").exists())


ROOT = repo_root()
RUNS = (ROOT / ".." / "shared" / "data" / "agentdojo-runs").resolve()
DATA = Path(os.environ.get("GATEKIT_DATA") or (RUNS if RUNS.is_dir() else ROOT / "sample_logs"))
WORK = Path(os.environ.get("GATEKIT_WORKDIR") or tempfile.mkdtemp(prefix="gatekit-"))
POLICIES = ROOT / "notebooks" / "policies"

store = Store(WORK / "tune-auto.duckdb")
report = ingest(store, [DATA])
agentdojo = store.con.execute("SELECT count(*) FROM actions WHERE action_id LIKE 'agentdojo:%'").fetchall()[0][0] > 0
print(f"{DATA}: {report.stored:,} actions ({'AgentDojo runs' if agentdojo else 'sample logs'})")
store.con.sql("SELECT agent, count(*) AS calls, count(*) FILTER (label = 'harmful') AS harmful "
              "FROM actions GROUP BY agent ORDER BY agent").pl()

# %% [markdown]
# ## 1. Tune on two models, hold out the third

# %%
if agentdojo:
    naive, final = load_policy(POLICIES / "agentdojo-naive.yaml"), load_policy(POLICIES / "agentdojo-final.yaml")
    HELD_OUT = ("agent", "claude-3-5-sonnet-20241022")
    tuning = tune(store, naive, holdout=HELD_OUT)
else:
    naive, final = load_policy(POLICIES / "sample-naive.yaml"), load_policy(POLICIES / "sample-tuned.yaml")
    HELD_OUT = None
    tuning = tune(store, naive)
print(f"split: {tuning.split}, learned from {tuning.target}, {tuning.tried} candidates tried")
pl.DataFrame([{"part": part, "policy": which, **getattr(tuning, f"{key}_{when}").to_dict()}
              for part, key in (("train", "train"), ("held-out", "heldout"))
              for which, when in (("naive", "before"), ("tuned", "after"))]).select(
    "part", "policy", "caught", "harmful", "catch_rate", "bothered", "benign", "bother_rate", "escalation_rate")

# %% [markdown]
# Each change chosen on train, in the order chosen, with its effect on both parts; `kept` says whether it
# survived the held-out check (it must not lose held-out catch nor cost more bother than its catch is worth).

# %%
pl.DataFrame([{"kept": c.kept, "kind": c.kind, "rule": c.rule, "change": c.summary,
               "train caught": f"{c.train_before.caught} -> {c.train_after.caught}",
               "train bothered": f"{c.train_before.bothered} -> {c.train_after.bothered}",
               "held-out caught": f"{c.heldout_before.caught} -> {c.heldout_after.caught}",
               "held-out bothered": f"{c.heldout_before.bothered} -> {c.heldout_after.bothered}"}
              for c in tuning.changes])

# %% [markdown]
# ## 2. The frontier: every candidate tried, and the path of the changes chosen
#
# Each coloured point is one candidate applied alone to the naive policy, scored on train; the black line
# is the greedy path, step by step (the numbers), from the naive policy to the tuned one.

# %%
charts.tuning_frontier(tuning.frontier)

# %% [markdown]
# ## 3. The tuned policy file
#
# Every change is a comment on its rule with its evidence; the file loads and validates like any other.

# %%
out = WORK / "tuned.yaml"
out.write_text(tuning.text, encoding="utf-8")
assert load_policy(out).rules == tuning.policy.rules
print(tuning.text)

# %% [markdown]
# ## 4. Against the hand-tuned policy, on the held-out calls
#
# Both policies replayed in DuckDB (not the tuner's in-memory scoring) and counted on the held-out model.

# %%
def scores(policy, name: str) -> dict:
    frame = replay(store, policy, name, replace=True).frame
    if HELD_OUT is not None:
        frame = frame.filter(pl.col(HELD_OUT[0]) == HELD_OUT[1])
    stopped = frame.filter(pl.col("decision") != "allow")
    return {"policy": policy.name, "caught": stopped.filter(pl.col("label") == "harmful").height,
            "harmful": frame.filter(pl.col("label") == "harmful").height,
            "bothered": stopped.filter(pl.col("label") == "benign").height,
            "benign": frame.filter(pl.col("label") == "benign").height}


comparison = pl.DataFrame([scores(naive, "naive"), scores(final, "hand-tuned"), scores(tuning.policy, "auto-tuned")])
print("on", "the held-out model" if HELD_OUT else "all calls (the sample has no held-out model)")
comparison

# %% [markdown]
# On the held-out model the automatically tuned policy catches at least as much harm as the hand-tuned one
# and bothers people no more often:

# %%
if agentdojo:
    hand, auto = comparison.row(1, named=True), comparison.row(2, named=True)
    assert auto["caught"] >= hand["caught"] and auto["bothered"] <= hand["bothered"], comparison
store.close()
