"""Policy A vs B on the same actions: the decision transition matrix, the rules behind each transition,
examples per cell, and a structural diff of the two policy files.

>>> a, b = replay_policies(store, load_policy("policies/starter.yaml"), load_policy("policies/starter-strict.yaml"))
>>> transition_matrix(load_run(store, a).frame, load_run(store, b).frame)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from gatekit.logs.store import Store
from gatekit.metrics.rates import DECISION, DECISIONS, records
from gatekit.policy import Policy, load_policy
from gatekit.policy.conditions import All, Cond, Not, Test, Window
from gatekit.policy.dump import condition, duration
from gatekit.replay import delete_run, replay
from gatekit.run import Reader, Run, list_runs

__all__ = ["EXAMPLES", "DiffSummary", "diff_policies", "matrix_of_counts", "policy_diff", "replay_policies", "rules_of_counts",
           "summarize_diff", "transition_matrix", "transition_rules"]

EXAMPLES = 5  # example action ids kept per cell: enough to look at, bounded whatever the log's size


# -- transitions -----------------------------------------------------------------------------------------
def _paired(frame_a: pl.DataFrame, frame_b: pl.DataFrame) -> pl.DataFrame:
    """The actions of both runs, joined on action_id, in A's log order, with the rules each side adds."""
    a = frame_a.select("seq", "action_id", pl.col("decision").cast(DECISION).alias("from"), rules_a="rules")
    b = frame_b.select("action_id", pl.col("decision").cast(DECISION).alias("to"), rules_b="rules")
    if a.height == b.height and a["action_id"].equals(b["action_id"]):
        # two runs over one store list the same actions in the same order: the join is the identity
        paired = pl.concat([a, b.drop("action_id")], how="horizontal")
    else:
        paired = a.join(b, on="action_id", how="inner")
    if not paired["seq"].is_sorted():
        paired = paired.sort("seq")
    return (paired
            .with_columns(added=pl.col("rules_b").list.set_difference("rules_a"),
                          removed=pl.col("rules_a").list.set_difference("rules_b")))


def _rules_long(paired: pl.DataFrame) -> pl.DataFrame:
    parts = []
    for change in ("added", "removed"):
        parts.append(paired.select("from", "to", rule=change).explode("rule").drop_nulls("rule")
                     .group_by("from", "to", "rule").agg(count=pl.len().cast(pl.Int64))
                     .with_columns(change=pl.lit(change)))
    return rules_of_counts(pl.concat(parts))


def rules_of_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """`transition_rules` from its counts (from, to, change, rule, count), sorted as it sorts them."""
    return (counts.select(pl.col("from", "to").cast(DECISION), "change", "rule", pl.col("count").cast(pl.Int64))
            .sort(["from", "to", "change", "count", "rule"], descending=[False, False, False, True, False]))


def transition_rules(frame_a: pl.DataFrame, frame_b: pl.DataFrame) -> pl.DataFrame:
    """The rules behind each transition: per cell, how many of its actions B matched a rule A did not
    (`added`) or A matched one B does not (`removed`). Only non-zero counts; most frequent first.

    Columns: from, to, change, rule, count.
    """
    return _rules_long(_paired(frame_a, frame_b))


def transition_matrix(frame_a: pl.DataFrame, frame_b: pl.DataFrame, *, examples: int = EXAMPLES) -> pl.DataFrame:
    """How each action's decision moves from run A to run B (joined on action_id): all nine cells, zeros
    included, with the rules behind the cell (most frequent first) and its first `examples` action ids in
    log order.

    Columns: from, to, count, share (of the actions in both runs), changed, rules_added, rules_removed,
    examples (the last three lists of strings).

    >>> transition_matrix(load_run(store, "starter").frame, load_run(store, "strict").frame)
    """
    return _matrix(_paired(frame_a, frame_b), examples)


def _matrix(paired: pl.DataFrame, examples: int) -> pl.DataFrame:
    cells = paired.group_by("from", "to").agg(count=pl.len().cast(pl.Int64),
                                             examples=pl.col("action_id").head(examples))
    return matrix_of_counts(cells, _rules_long(paired), paired.height)


def matrix_of_counts(cells: pl.DataFrame, rules_long: pl.DataFrame, total: int) -> pl.DataFrame:
    """`transition_matrix` from its counts: `cells` (from, to, count, examples: a list of action ids in log
    order), `rules_long` (`transition_rules`'s frame, most frequent first) and the actions in both runs."""
    cells = cells.select(pl.col("from", "to").cast(DECISION), pl.col("count").cast(pl.Int64),
                         pl.col("examples").cast(pl.List(pl.String)))
    rules_long = rules_long.with_columns(pl.col("from", "to").cast(DECISION))
    rules = (rules_long.group_by("from", "to", "change", maintain_order=True).agg(pl.col("rule"))
             .pivot(on="change", index=["from", "to"], values="rule"))
    for change in ("added", "removed"):
        if change not in rules.columns:
            rules = rules.with_columns(pl.lit(None, pl.List(pl.String)).alias(change))
    grid = pl.DataFrame({"from": DECISIONS}, schema={"from": DECISION}).join(
        pl.DataFrame({"to": DECISIONS}, schema={"to": DECISION}), how="cross")
    out = (grid.join(cells, on=["from", "to"], how="left").join(rules, on=["from", "to"], how="left")
           .with_columns(pl.col("count").fill_null(0),
                         *(pl.col(c).fill_null(pl.lit([], pl.List(pl.String)))
                           for c in ("examples", "added", "removed"))))
    return out.select(
        "from", "to", "count",
        share=pl.col("count") / total if total else pl.lit(None, pl.Float64),
        changed=pl.col("from") != pl.col("to"),
        rules_added="added", rules_removed="removed", examples="examples",
    ).sort("from", "to")


# -- the policy files ------------------------------------------------------------------------------------
def _cond(cond: Cond) -> Any:
    """A condition as the dumper writes it, with `all`/`any` flattened and sorted (both are order-free:
    every test is evaluated whatever its place), so only a change in meaning shows."""
    if isinstance(cond, (Test, Window)):
        return condition(cond)
    if isinstance(cond, Not):
        return {"not": _cond(cond.item)}
    kind = "all" if isinstance(cond, All) else "any"
    items: list[Any] = []
    for item in cond.items:
        sub = _cond(item)
        items.extend(sub[kind] if isinstance(sub, dict) and list(sub) == [kind] else [sub])
    items = sorted(items, key=_text)
    if len(items) == 1:
        return items[0]
    return {kind: items} if items else None


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _policy_parts(policy: Policy) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        "policy": {"policy": {"name": policy.name, "version": policy.version, "default": policy.default,
                              "on_error": policy.on_error, "timezone": policy.timezone}},
        "tier": {t.name: {"approvals": t.approvals, "roles": list(t.roles), "timeout": duration(t.timeout_us),
                          "approval_ttl": duration(t.approval_ttl_us)} for t in policy.tiers.values()},
        "rule": {r.id: {"tool": list(r.tools), "action": r.action, "tier": r.tier, "mode": r.mode,
                        "when": _cond(r.when), "reason": r.reason} for r in policy.rules},
    }


def policy_diff(policy_a: Policy, policy_b: Policy) -> pl.DataFrame:
    """What changed from policy A to B, one row per change: a rule or tier `added` or `removed` (`after` or
    `before` holds the whole of it), or one `key` of the policy, a tier or a rule `changed`.

    Compared by meaning, not text: conditions without their line numbers, `x: 1` the same as `x: {eq: 1}`,
    `all`/`any` order-free, durations normalised. Rule order and descriptions are not compared.

    Columns: section (policy, tier, rule), id, change, key, before, after (JSON text).

    >>> policy_diff(load_policy("policies/starter.yaml"), load_policy("policies/starter-strict.yaml"))
    """
    parts_a, parts_b = _policy_parts(policy_a), _policy_parts(policy_b)
    rows: list[dict[str, Any]] = []
    for section in ("policy", "tier", "rule"):
        a, b = parts_a[section], parts_b[section]
        for oid, spec in a.items():
            if oid not in b:
                rows.append({"section": section, "id": oid, "change": "removed", "key": None,
                             "before": _text(spec), "after": None})
                continue
            for key, value in spec.items():
                if _text(value) != _text(b[oid][key]):
                    rows.append({"section": section, "id": oid, "change": "changed", "key": key,
                                 "before": _text(value), "after": _text(b[oid][key])})
        for oid, spec in b.items():
            if oid not in a:
                rows.append({"section": section, "id": oid, "change": "added", "key": None,
                             "before": None, "after": _text(spec)})
    return pl.DataFrame(rows, schema={c: pl.String for c in ("section", "id", "change", "key", "before", "after")})


# -- runs ------------------------------------------------------------------------------------------------
def _run_name(policy: Policy) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", policy.name)[:80]
    return f"{slug}@{policy.fingerprint.removeprefix('sha256:')[:12]}"


def replay_policies(store: Store, policy_a: Policy | str | Path, policy_b: Policy | str | Path) -> tuple[str, str]:
    """Replay two policies (or policy files) into runs named `<name>@<fingerprint>`, stored, and return the
    names. A stored run of the same policy text over as many actions as the store holds is reused (ingest
    only appends, so the same count means the same actions).

    To compare two policy files without keeping their runs, `diff_policies`.
    """
    names, _ = _replayed(store, policy_a, policy_b)
    return names


def _replayed(store: Store, *policies: Policy | str | Path) -> tuple[tuple[str, str], set[str]]:
    """The run names of `policies` and those of them this call created (not a reused run)."""
    loaded = [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    existing = {r.name: r for r in list_runs(store)}
    actions = store.count_actions()
    names, created = [], set()
    for policy in loaded:
        name = _run_name(policy)
        run = existing.get(name)
        if run is None or run.fingerprint != policy.fingerprint or run.actions != actions:
            if name not in existing:
                created.add(name)
            existing[name] = replay(store, policy, name, replace=True)
        names.append(name)
    return (names[0], names[1]), created


def diff_policies(store: Store, policy_a: Policy | str | Path, policy_b: Policy | str | Path, *,
                  examples: int = EXAMPLES, keep: bool = False) -> DiffSummary:
    """Policy A against B on the store's actions. Their runs are replayed for the comparison and removed
    after it, unless `keep` (then they stay as `<name>@<fingerprint>`, and a later diff reuses them); a run
    stored before the call is reused and left as it was.

    >>> diff_policies(store, "policies/starter.yaml", "policies/starter-strict.yaml").changed
    """
    (name_a, name_b), created = _replayed(store, policy_a, policy_b)
    try:
        reader = Reader(store)
        return summarize_diff(reader.run(name_a), reader.run(name_b), examples=examples)
    finally:
        if not keep:
            for name in sorted(created):
                delete_run(store, name)


@dataclass(frozen=True)
class DiffSummary:
    """Run A against run B: counts, the transition matrix, the rules behind it and the policy diff."""

    run_a: str
    run_b: str
    policy_a: str
    policy_b: str
    actions: int  # in both runs
    only_a: int
    only_b: int
    changed: int
    decisions_a: dict[str, int]
    decisions_b: dict[str, int]
    matrix: pl.DataFrame
    rules: pl.DataFrame
    policy_diff: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a, "run_b": self.run_b, "policy_a": self.policy_a, "policy_b": self.policy_b,
            "actions": self.actions, "only_a": self.only_a, "only_b": self.only_b,
            "changed": self.changed, "changed_rate": self.changed / self.actions if self.actions else None,
            "decisions": {"a": dict(self.decisions_a), "b": dict(self.decisions_b),
                          "delta": {d: self.decisions_b[d] - self.decisions_a[d] for d in DECISIONS}},
            "matrix": records(self.matrix),
            "rules": records(self.rules),
            "policy_diff": records(self.policy_diff),
        }


def summarize_diff(run_a: Run, run_b: Run, *, examples: int = EXAMPLES) -> DiffSummary:
    """Everything the report shows about run A against run B.

    >>> summarize_diff(load_run(store, "starter"), load_run(store, "strict")).to_dict()["changed"]
    """
    policy_a, policy_b = run_a.policy, run_b.policy
    frame_a, frame_b = run_a.frame, run_b.frame
    paired = _paired(frame_a, frame_b)
    matrix = _matrix(paired, examples)
    both = int(matrix["count"].sum())

    def counts(frame: pl.DataFrame) -> dict[str, int]:
        return {d: int((frame["decision"] == d).sum()) for d in DECISIONS}

    return DiffSummary(
        run_a=run_a.name, run_b=run_b.name,
        policy_a=policy_a.name, policy_b=policy_b.name,
        actions=both,
        only_a=frame_a.height - both,  # action ids are unique within a run
        only_b=frame_b.height - both,
        changed=int(matrix.filter(pl.col("changed"))["count"].sum()),
        decisions_a=counts(frame_a), decisions_b=counts(frame_b),
        matrix=matrix,
        rules=_rules_long(paired),
        policy_diff=policy_diff(policy_a, policy_b),
    )
