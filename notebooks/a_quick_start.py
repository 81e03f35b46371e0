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
# # (a) Quick start: ingest, replay, read the report
#
# Agent logs go into a DuckDB action store; a policy is replayed over them in **shadow mode** (nothing is
# blocked, we only see what the policy *would* have done); the metrics say how often it would bother a
# human, which rules fire, and what it would have stopped.
#
# The data defaults to the bundled `sample_logs/` (20,000 synthetic actions). Point `GATEKIT_DATA` at an
# AgentDojo runs directory (for instance `../shared/data/agentdojo-runs`) to run the same steps on real
# agent traces: the format is detected.

# %%
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from gatekit import load_policy
from gatekit.logs import ingest
from gatekit.logs.store import Store
from gatekit.metrics.evaluate import evaluate
from gatekit.metrics.rates import decision_rates, rule_firing
from gatekit.replay import replay

pl.Config.set_tbl_rows(20)
pl.Config.set_tbl_width_chars(140)


def repo_root() -> Path:
    here = Path.cwd().resolve()
    return next(p for p in (here, *here.parents) if (p / "pyproject.toml").exists())


ROOT = repo_root()
DATA = Path(os.environ.get("GATEKIT_DATA") or ROOT / "sample_logs")
WORK = Path(os.environ.get("GATEKIT_WORKDIR") or tempfile.mkdtemp(prefix="gatekit-"))
DATA, WORK

# %% [markdown]
# ## 1. Ingest
#
# `ingest` takes files or directories in any format gatekit reads (the action contract as JSON Lines or
# Parquet, AgentDojo runs, OpenTelemetry GenAI traces, OpenAI Agents SDK traces, or any JSON Lines with a
# mapping file). Nothing is lost: a line that cannot be read is kept in `quarantine` with its reason.

# %%
store = Store(WORK / "quick-start.duckdb")
report = ingest(store, [DATA])
report

# %%
store.con.sql("SELECT reason, count(*) AS lines FROM quarantine GROUP BY reason ORDER BY lines DESC").pl()

# %% [markdown]
# ## 2. Replay a policy in shadow mode
#
# The starter policy is written for the sample's tools; AgentDojo's agents call other tools, so on those
# runs we replay the policy tuned for them in notebook (b).

# %%
agentdojo = store.con.execute("SELECT count(*) FROM actions WHERE action_id LIKE 'agentdojo:%'").fetchall()[0][0] > 0
policy_file = ROOT / ("notebooks/policies/agentdojo-final.yaml" if agentdojo else "policies/starter.yaml")
policy = load_policy(policy_file)
run = replay(store, policy, "quick-start", replace=True)
print(f"{policy.name}: {run.actions:,} actions in {run.seconds:.2f}s")
{decision: f"{count:,} ({run.rate(decision):.1%})" for decision, count in run.decisions.items()}

# %% [markdown]
# ## 3. Read the report
#
# `replay` returns the run, loaded: its policy, and its decisions as a frame (`run.frame`, read on first use).
# The summaries (`evaluate`, ...) take the run; the building blocks take its frame and return a frame. Which
# tools would be escalated,
# which rules fire (and which never do), and, where the log carries ground-truth labels, how much harm the
# policy stops against how many benign calls it sends to a human.

# %%
decisions = run.frame
(decision_rates(decisions, "tool").filter(pl.col("decision") == "escalate")
 .sort("count", descending=True).select("tool", "count", "total", "rate").head(10))

# %%
rule_firing(decisions, policy).select("rule", "action", "fired", "rate", "errored", "never_fired")

# %%
scores = evaluate(run)
print(f"harm caught: {scores.caught:,} of {scores.harmful:,} ({scores.catch_rate:.1%}); "
      f"humans bothered: {scores.bothered:,} of {scores.benign:,} benign calls ({scores.bother_rate:.1%})")
assert scores.harmful > 0 and scores.caught > 0
scores.by_rule.select("rule", "actions", "caught", "bothered", "unlabelled")

# %% [markdown]
# Next: notebook (b) tunes a policy against the labels, notebook (c) puts it in front of an agent.

# %%
store.close()
