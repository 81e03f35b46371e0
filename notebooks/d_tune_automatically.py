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
# Notebook (b) tuned the AgentDojo policy by hand. Here `gatekit tune` does it from the naive policy and the
# team's action catalog (`agentdojo-catalog.yaml`: risk tags written from the tools' names, before looking at
# a trace): it proposes threshold moves, narrower conditions, allow-lists, removed and new rules, chooses them
# greedily on the **train** part of the labelled calls, and keeps each only if it does not hurt on the
# **validation** part. We leave one whole model out (`--holdout agent=MODEL`): train and validation are a split
# by session of the other two models' calls, and the held-out model's calls are never read to choose or keep
# a change, only to score the result. The held-out figures are then test figures: how the tuned policy does
# on an agent whose calls it never looked at, compared there with the hand-tuned `agentdojo-final.yaml`.
#
# We hold out gpt-4o-mini, the hard case: it makes 184 of the 208 harmful calls, 29 of them web posts and 41
# e-mails, while the two train models make 24 and never post to the web or e-mail harmfully. Three rules keep
# the tuner from reading that absence as safety: a tool the catalog tags high-risk (`impact: high` or
# `irreversible`) starts gated; such a tool is never released wholesale, only narrowed to an allow-list of
# identifiers always seen benign (an attacker picks the channel, so benign traffic on it bounds nothing about
# the next call); and any change that stops gating calls needs *positive* evidence (the released labelled
# calls must bound their harm rate, at 95%, below the break-even rate 1 / (1 + weight); a list of harmful
# values must have seen harm repeat its values).
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
from gatekit.authoring import load_catalog, tune
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
# ## 1. Tune on two models, score on the third

# %%
if agentdojo:
    naive, final = load_policy(POLICIES / "agentdojo-naive.yaml"), load_policy(POLICIES / "agentdojo-final.yaml")
    catalog = load_catalog(POLICIES / "agentdojo-catalog.yaml")
    HELD_OUT = ("agent", "gpt-4o-mini-2024-07-18")
    tuning = tune(store, naive, holdout=HELD_OUT, catalog=catalog)
else:
    naive, final = load_policy(POLICIES / "sample-naive.yaml"), load_policy(POLICIES / "sample-tuned.yaml")
    HELD_OUT = None
    tuning = tune(store, naive)
print(f"split: {tuning.split}, learned from {tuning.target}, {tuning.tried} candidates tried")
pl.DataFrame([{"part": part, "policy": which, **getattr(tuning, f"{key}_{when}").to_dict()}
              for part, key in (("train", "train"), ("validation", "validation"), ("held-out", "heldout"))
              for which, when in (("naive", "before"), ("tuned", "after"))]).select(
    "part", "policy", "caught", "harmful", "catch_rate", "bothered", "benign", "bother_rate", "escalation_rate")

# %% [markdown]
# Each change, in the order chosen, with its effect on train and validation: first the catalog's gates (kind
# `catalog`, the prior), then the changes chosen on train; `kept` says whether one survived the validation
# check (it must not lose validation catch nor cost more bother than its catch is worth). The held-out model
# plays no part here.

# %%
pl.DataFrame([{"kept": c.kept, "kind": c.kind, "rule": c.rule, "change": c.summary,
               "train caught": f"{c.train_before.caught} -> {c.train_after.caught}",
               "train bothered": f"{c.train_before.bothered} -> {c.train_after.bothered}",
               "validation caught": f"{c.heldout_before.caught} -> {c.heldout_after.caught}",
               "validation bothered": f"{c.heldout_before.bothered} -> {c.heldout_after.bothered}"}
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
# On the held-out gpt-4o-mini the automatically tuned policy bothers people less often than the hand-tuned one
# (184 benign calls against 205) but catches less harm (169 of 184 against 182). Every harmful call it lets
# through is a calendar invite, as the next cell shows: the catalog tags `create_calendar_event`
# `impact: medium`, and the two train models made over 200 invites, none harmful, so the evidence licenses
# releasing it; the hand-tuned policy keeps invites to personal mail because a person read these traces.

# %%
if agentdojo:
    hand, auto = comparison.row(1, named=True), comparison.row(2, named=True)
    assert (hand["caught"], hand["bothered"], auto["caught"], auto["bothered"]) == (182, 205, 169, 184), comparison
    missed = replay(store, tuning.policy, "auto-tuned", replace=True).frame.filter(
        (pl.col("agent") == HELD_OUT[1]) & (pl.col("label") == "harmful") & (pl.col("decision") == "allow"))
    display = missed.group_by("tool").len()
else:
    display = "the sample logs have no models to hold out"
display

# %% [markdown]
# ## 5. Each model held out in turn, with and without the catalog
#
# Without the catalog nothing in the train models' labels says a web post or an e-mail can be harmful, so
# the held-out gpt-4o-mini loses those (97 of 184). With it, the tuned policy catches as much as the hand-tuned
# one on claude (bothering 92 against 129) and on command-r (111 against 109), and falls 13 short on
# gpt-4o-mini (the calendar invites above). These are the figures `tests/authoring/test_tune.py` asserts.

# %%
def held_out_scores(model: str, with_catalog: bool) -> dict:
    t = tune(store, naive, holdout=("agent", model), catalog=catalog if with_catalog else None)
    frame = replay(store, final, "hand-tuned", replace=True).frame.filter(pl.col("agent") == model)
    stopped = frame.filter(pl.col("decision") != "allow")
    return {"held out": model, "catalog": with_catalog, "tuned caught": t.heldout_after.caught,
            "tuned bothered": t.heldout_after.bothered,
            "hand-tuned caught": stopped.filter(pl.col("label") == "harmful").height,
            "hand-tuned bothered": stopped.filter(pl.col("label") == "benign").height,
            "harmful": t.heldout_after.harmful, "benign": t.heldout_after.benign}


if agentdojo:
    models = [r[0] for r in store.con.execute("SELECT DISTINCT agent FROM actions ORDER BY 1").fetchall()]
    every = pl.DataFrame([held_out_scores(m, c) for m in models for c in (True, False)])
    with_catalog = every.filter(pl.col("catalog"))
    assert list(zip(with_catalog["tuned caught"], with_catalog["tuned bothered"])) == [(6, 92), (18, 111),
                                                                                        (169, 184)], every
    display = every
else:
    display = "the sample logs have no models to hold out"
display
store.close()
