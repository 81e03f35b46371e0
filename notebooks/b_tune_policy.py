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
# # (b) Tuning a policy on real traces: harm caught against humans bothered
#
# A policy is only as good as two numbers: how much of the harm it stops (**catch rate**: harmful calls it
# escalates or denies) and how often it bothers a human for nothing (**bother rate**: benign calls it
# escalates or denies). Here we start from the policy a team writes on day one, measure both on labelled
# traces, and tune: tighten where harm slips through, loosen where reviewers only rubber-stamp, move
# thresholds with a sweep, and check every change with an A/B diff. We end on a policy that catches more
# harm **and** interrupts people less.
#
# The traces: set `GATEKIT_DATA` to an AgentDojo runs directory (real tool calls of three models under
# prompt-injection attacks; labels come from the benchmark's ground truth, shipped with gatekit).
# Without it the notebook runs on the bundled `sample_logs/` with that data set's policies. The results
# table of the AgentDojo run is committed in `docs/worked-example.md`.

# %%
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from gatekit import load_policy
from gatekit.logs import ingest
from gatekit.logs.store import Store
from gatekit.metrics.diff import summarize_diff
from gatekit.metrics.evaluate import (
    evaluate, label_scores, rule_scores, session_scores, sweep_threshold, sweepable_tests,
)
from gatekit.replay import replay

pl.Config.set_tbl_rows(30)
pl.Config.set_tbl_width_chars(160)
pl.Config.set_fmt_str_lengths(60)


def repo_root() -> Path:
    here = Path.cwd().resolve()
    return next(p for p in (here, *here.parents) if (p / "pyproject.toml").exists())


ROOT = repo_root()
DATA = Path(os.environ.get("GATEKIT_DATA") or ROOT / "sample_logs")
WORK = Path(os.environ.get("GATEKIT_WORKDIR") or tempfile.mkdtemp(prefix="gatekit-"))
POLICIES = ROOT / "notebooks" / "policies"

store = Store(WORK / "tune.duckdb")
report = ingest(store, [DATA])
agentdojo = store.con.execute("SELECT count(*) FROM actions WHERE action_id LIKE 'agentdojo:%'").fetchall()[0][0] > 0
labels = dict(store.con.execute("SELECT coalesce(label, 'unlabelled'), count(*) FROM actions GROUP BY 1").fetchall())
if not labels.get("harmful"):
    raise RuntimeError("these traces carry no labels: the AgentDojo adapter labels them from its ground truth")
print(f"{DATA}: {report.stored:,} actions ({'AgentDojo runs' if agentdojo else 'sample logs'}), labels {labels}")

# %% [markdown]
# Each data set has its own tools, so its own policies (all in `notebooks/policies/`): a naive one, the
# tuned one, and the final one after the threshold sweep. `sweeps` names the numeric test we sweep in each.

# %%
if agentdojo:
    files = {"naive": "agentdojo-naive.yaml", "tuned": "agentdojo-tuned.yaml", "final": "agentdojo-final.yaml"}
    naive_sweep, tuned_sweep = ("payments-over-100", "args.amount"), ("large-payments", "args.amount")
    thresholds = [0, 10, 50, 100, 500, 1000, 2000, 5000, 10000]
else:
    files = {"naive": "sample-naive.yaml", "tuned": "sample-tuned.yaml", "final": "sample-tuned.yaml"}
    naive_sweep, tuned_sweep = ("payments-over-100", "args.amount"), ("payments", "args.amount")
    thresholds = [0, 10, 25, 50, 100, 250, 500, 1000]
policies = {step: load_policy(POLICIES / name) for step, name in files.items()}
runs = {}
for step, policy in policies.items():
    runs[step] = replay(store, policy, step, replace=True)  # the run, loaded: its frame is read once
frames = {step: run.frame for step, run in runs.items()}

# %% [markdown]
# ## 1. The naive policy
#
# What it stops, rule by rule: `caught` harmful calls and `bothered` benign ones among the calls each rule
# matched.

# %%
print(open(POLICIES / files["naive"]).read())
naive = evaluate(runs["naive"])
print(f"caught {naive.caught} of {naive.harmful} harmful calls ({naive.catch_rate:.1%}), "
      f"bothered a human {naive.bothered:,} times ({naive.bother_rate:.1%} of benign calls)")
rule_scores(frames["naive"], [r.id for r in policies["naive"].rules]).select(
    "rule", "actions", "caught", "bothered", "harmful", "benign")

# %% [markdown]
# Where does the harm it misses happen? Per tool, among all labelled calls:

# %%
(label_scores(frames["naive"], by=["tool"]).filter(pl.col("harmful") > 0)
 .select("tool", "harmful", "caught", "missed", "benign", "bothered").sort("missed", descending=True))

# %% [markdown]
# ## 2. Is the amount the right signal? The threshold sweep
#
# The naive policy escalates payments over $100. The sweep replays that one test at other thresholds (in one
# query, exactly as a replay would decide) and scores each.

# %%
sweep = sweep_threshold(runs["naive"], *naive_sweep, thresholds)
sweep.curve.select("threshold", "caught", "catch_rate", "bothered", "bother_rate", "escalate")

# %% [markdown]
# Lowering the threshold buys little catch for many more interruptions: harmful payments are not the big
# ones. What they share is *who* is paid (or, in the sample, *what* is mailed where). So the tuned policy
# tightens on the destination (new payees, external addresses, the public web, personal mail domains,
# credentials) and loosens what the naive one escalated for nothing.

# %%
print(open(POLICIES / files["tuned"]).read())

# %% [markdown]
# ## 3. The tuned policy, and what changed: the A/B diff

# %%
tuned = evaluate(runs["tuned"])
print(f"caught {tuned.caught} of {tuned.harmful} ({tuned.catch_rate:.1%}), "
      f"bothered {tuned.bothered:,} ({tuned.bother_rate:.1%})")
rule_scores(frames["tuned"], [r.id for r in policies["tuned"].rules]).select(
    "rule", "actions", "caught", "bothered", "harmful", "benign")

# %%
diff = summarize_diff(runs["naive"], runs["tuned"])
print(f"{diff.changed:,} of {diff.actions:,} decisions change")
diff.matrix.filter(pl.col("count") > 0).select("from", "to", "count", "rules_added", "rules_removed")

# %%
diff.policy_diff.select("section", "id", "change", "key")

# %% [markdown]
# Which of the changed decisions were harmful calls now stopped, and which were benign calls no longer sent
# to a human?

# %%
moved = (frames["naive"].select("action_id", "label", before="decision")
         .join(frames["tuned"].select("action_id", after="decision"), on="action_id")
         .filter(pl.col("before") != pl.col("after")))
moved.group_by("before", "after", "label").agg(pl.len().alias("calls")).sort("before", "after", "label")

# %% [markdown]
# ## 4. A threshold in the tuned policy: sweep it
#
# The tuned policy keeps a safety net on large amounts. Where should it sit? Among the thresholds that
# catch the most, take the one that bothers the fewest (the current one when it is among them).

# %%
sweep = sweep_threshold(runs["tuned"], *tuned_sweep, sorted({*thresholds}))
curve = sweep.curve
best = curve.filter(pl.col("caught") == curve["caught"].max())
best = best.filter(pl.col("bothered") == best["bothered"].min())
choice = sweep.current if sweep.current in best["threshold"].to_list() else best["threshold"].min()
print(f"{tuned_sweep[0]}: {sweep.current:g} -> {choice:g}")
curve.select("threshold", "caught", "catch_rate", "bothered", "bother_rate", "escalate")

# %% [markdown]
# The final policy file is the tuned one with that threshold (`notebooks/policies/`; on the sample the
# sweep keeps the tuned policy's own threshold, so the tuned policy is final); check that it is.

# %%
(final_value,) = [x for rule, field, _, x in sweepable_tests(policies["final"]) if (rule, field) == tuned_sweep]
assert final_value == choice, (final_value, choice)
final = evaluate(runs["final"])

# %% [markdown]
# ## 5. The results
#
# Per policy: calls stopped (escalated or denied), harmful calls caught, benign calls that bothered a human,
# and the same per session (a session is caught when any of its harmful calls is stopped).

# %%
rows = []
steps = ["naive", "tuned"] + (["final"] if files["final"] != files["tuned"] else [])  # the sample's sweep keeps 50
for step in steps:
    ev, frame = {"naive": naive, "tuned": tuned, "final": final}[step], frames[step]
    s = session_scores(frame).row(0, named=True)
    rows.append({"policy": policies[step].name, "stopped": int(frame["decision"].is_in(["escalate", "deny"]).sum()),
                 "caught": ev.caught, "harmful": ev.harmful, "catch_rate": ev.catch_rate,
                 "bothered": ev.bothered, "benign": ev.benign, "bother_rate": ev.bother_rate,
                 "sessions_caught": s["caught_sessions"], "harmful_sessions": s["harmful_sessions"]})
results = pl.DataFrame(rows)
results

# %%
def markdown(results: pl.DataFrame) -> str:
    lines = ["| policy | calls stopped | harm caught | catch rate | humans bothered | bother rate | harmful sessions caught |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results.iter_rows(named=True):
        lines.append(f"| `{r['policy']}` | {r['stopped']:,} | {r['caught']:,} of {r['harmful']:,} | {r['catch_rate']:.1%} "
                     f"| {r['bothered']:,} of {r['benign']:,} | {r['bother_rate']:.1%} "
                     f"| {r['sessions_caught']:,} of {r['harmful_sessions']:,} |")
    return "\n".join(lines) + "\n"


table = markdown(results)
(WORK / "results.md").write_text(table, encoding="utf-8")
print(table)

# %% [markdown]
# The final policy catches more harm than the naive one and sends fewer benign calls to a human:

# %%
assert final.caught > naive.caught and final.bothered < naive.bothered, results
store.close()
