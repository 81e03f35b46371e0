"""`gatekit tune`: propose a policy that catches more harm and bothers fewer people, from evidence.

The evidence is the store's labels (`harmful`/`benign`) or, with `target="reviews"`, the reviewers' past
decisions (a call any reviewer denied counts as harmful, one only approved as benign). The actions are split
into a train and a validation part (by a hash of the session id, or by time); candidate changes are generated
and greedily chosen on the train part only, then each chosen change is kept only if it does not hurt on the
validation part. With `holdout` (a field's value, `agent=MODEL`) those actions are left out of both and only
scored: the held-out figures are of actions that shaped nothing.

Every candidate is scored in memory: the base policy is replayed once (its rules' matches come from that
run, windows included) and each candidate rule (never a window) is evaluated by the scalar evaluator over
the calls of its tools, once. A decision is then the maximum of the matched rules' levels, as in `decide`.

Candidates: threshold moves on numeric tests, a rule narrowed to the values of an argument that were
harmful (`in`) or to those never seen benign-only (`not_in` of the always-benign ones, which with
`target="reviews"` are the values reviewers always approved), an e-mail-like argument narrowed by domain,
a rule removed (promoted to the default), and new rules for tools whose harm nothing stops.

Absence of harm is not evidence of safety. A change that stops gating calls (a relaxation) is admitted only
with positive evidence: the labelled train calls it releases bound their harm rate, with `CONFIDENCE`, below
the break-even rate 1 / (1 + weight) (`harm_bound`, exact Clopper-Pearson), and a list of the harmful values
seen (narrowing a rule, or a new rule) needs harm that repeated them (`unseen_harm`, Good-Turing, below the
same rate). With a catalog, tools it tags high-risk (`HIGH_RISK`) that no rule gates start gated, and their
calls are released only by an allowlist of identifiers always seen benign (payees, recipients, channels,
domains), never by the base rate: an attacker picks the channel, so past benign traffic on it does not bound
the next call's harm. docs/authoring.md explains the rules for a user's data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from gatekit.errors import InputError
from gatekit.logs.store import Store
from gatekit.policy import Policy, parse_policy, policy_dict
from gatekit.policy.decide import Evaluator, Scan, View
from gatekit.policy.model import LEVEL
from gatekit.policy.dump import dump_yaml

if TYPE_CHECKING:
    from gatekit.authoring.catalog import Catalog

__all__ = ["CONFIDENCE", "Counts", "Change", "HIGH_RISK", "Tuning", "tune", "SPLITS", "TARGETS", "harm_bound",
           "high_risk", "unseen_harm"]

SPLITS = ("session", "time")
TARGETS = ("labels", "reviews")
HELDOUT_SHARE = 0.3
ESCALATE = LEVEL["escalate"]
_FIELDS = ("agent", "session", "user", "tool")
_MAX_VALUES = 60  # an in/not_in list longer than this is not proposed


@dataclass(frozen=True)
class Counts:
    """Harm caught and humans bothered on one part of the actions."""

    actions: int
    harmful: int
    caught: int
    benign: int
    bothered: int
    stopped: int

    @property
    def catch_rate(self) -> float | None:
        return self.caught / self.harmful if self.harmful else None

    @property
    def bother_rate(self) -> float | None:
        return self.bothered / self.benign if self.benign else None

    @property
    def escalation_rate(self) -> float | None:
        return self.stopped / self.actions if self.actions else None

    def to_dict(self) -> dict[str, Any]:
        return {"actions": self.actions, "harmful": self.harmful, "caught": self.caught, "benign": self.benign,
                "bothered": self.bothered, "stopped": self.stopped, "catch_rate": self.catch_rate,
                "bother_rate": self.bother_rate, "escalation_rate": self.escalation_rate}


@dataclass(frozen=True)
class Change:
    """One change chosen on train, with its evidence before and after on both parts."""

    kind: str  # threshold | narrow | remove | add
    rule: str
    summary: str
    train_before: Counts
    train_after: Counts
    heldout_before: Counts  # the validation part, which kept or dropped it
    heldout_after: Counts
    kept: bool
    released: tuple[int, int] | None = None  # a relaxation's evidence: (harmful, labelled) train calls it releases
    bound: float | None = None  # their harm rate's upper bound (harm_bound)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "summary": self.summary, "kept": self.kept,
                "released": None if self.released is None else
                {"harmful": self.released[0], "labelled": self.released[1], "harm_bound": self.bound},
                "train": {"before": self.train_before.to_dict(), "after": self.train_after.to_dict()},
                "heldout": {"before": self.heldout_before.to_dict(), "after": self.heldout_after.to_dict()}}

    def comment(self) -> str:
        tb, ta, hb, ha = self.train_before, self.train_after, self.heldout_before, self.heldout_after
        return (f"tuned ({self.kind}): {self.summary}\n"
                f"train: caught {tb.caught} -> {ta.caught} of {ta.harmful}, bothered {tb.bothered} -> {ta.bothered}"
                f" of {ta.benign}\n"
                f"validation: caught {hb.caught} -> {ha.caught} of {ha.harmful}, bothered {hb.bothered} -> "
                f"{ha.bothered} of {ha.benign}"
                + ("" if self.released is None else
                   f"\nreleased on train: {self.released[1]} labelled calls, {self.released[0]} harmful: harm rate "
                   f"at most {self.bound:.1%} ({CONFIDENCE:.0%} bound)"))


@dataclass(frozen=True)
class Tuning:
    """What `tune` proposes: the tuned policy's YAML, its changes, the figures and the frontier."""

    text: str
    policy: Policy
    changes: list[Change]
    train_before: Counts
    train_after: Counts
    heldout_before: Counts
    heldout_after: Counts
    frontier: pl.DataFrame  # candidate, kind, rule, caught, bothered, catch_rate, bother_rate, chosen, kept
    split: str
    target: str
    max_bother: float | None = None
    tried: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # the part each change was kept or dropped on: `validation` (session or time) of the actions not held out.
    # Without `holdout` it is the held-out part above; with it, the held-out figures are of actions the
    # tuner never looked at
    validation_before: Counts | None = None
    validation_after: Counts | None = None
    validation: str = "session"

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "target": self.target, "max_bother": self.max_bother,
                "candidates_tried": self.tried, "validation_split": self.validation,
                "train": {"before": self.train_before.to_dict(), "after": self.train_after.to_dict()},
                "validation": None if self.validation_before is None or self.validation_after is None else
                {"before": self.validation_before.to_dict(), "after": self.validation_after.to_dict()},
                "heldout": {"before": self.heldout_before.to_dict(), "after": self.heldout_after.to_dict()},
                "changes": [c.to_dict() for c in self.changes],
                "frontier": self.frontier.to_dicts()}


# -- the actions, in memory ---------------------------------------------------------------------------------

@dataclass
class _Data:
    views: list[View]
    tools: list[str]
    harmful: int  # bitsets over the actions: bit i is action i
    benign: int
    validation: int  # the part changes are kept or dropped on (`_parts`)
    test: int  # the held-out part with `holdout`: scored only, never used to choose (0 without)
    base_matched: dict[str, int]  # rule id -> the actions it matched
    base_errored: dict[str, int]
    by_tool: dict[str, list[int]]  # tool -> indices
    every: int


def _review_labels(store: Store) -> dict[int, str]:
    rows = store.con.execute("""
        SELECT a.seq, list(lower(j.value ->> 'decision'))
        FROM actions a, LATERAL (SELECT unnest(CAST(a.approvals AS JSON[])) AS value) j
        WHERE a.approvals IS NOT NULL GROUP BY a.seq""").fetchall()
    out = {}
    for seq, reviews in rows:
        if any(r in ("deny", "denied", "reject", "rejected") for r in reviews):
            out[seq] = "harmful"
        elif reviews and all(r in ("approve", "approved") for r in reviews):
            out[seq] = "benign"
    return out


def _bits(flags: Any) -> int:
    out = 0
    for i, f in enumerate(flags):
        if f:
            out |= 1 << i
    return out


def _parts(rows: list[tuple[Any, ...]], split: str, holdout: tuple[str, str] | None) -> tuple[int, int]:
    """(validation, test) bitsets. The validation part is `split` (a hash of the session id, or the latest
    `HELDOUT_SHARE` by time) of the actions not in the test part; the test part is the actions whose `holdout`
    field has its value (none without `holdout`). The test part is only scored, never used to choose."""
    if holdout is not None:
        key, value = holdout
        i = _FIELDS.index(key)
        test = _bits(r[2 + i] == value for r in rows)
    else:
        test = 0
    rest = [i for i in range(len(rows)) if not test >> i & 1]
    if split == "time":
        order = sorted(rest, key=lambda i: (rows[i][1], i))
        return _bits_of(order[int(round(len(order) * (1 - HELDOUT_SHARE))):]), test

    def bucket(session: Any) -> bool:
        digest = hashlib.sha256(str(session).encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_SHARE
    return _bits_of(i for i in rest if bucket(rows[i][3])), test


def _bits_of(indices: Any) -> int:
    out = 0
    for i in indices:
        out |= 1 << i
    return out


def _load(store: Store, policy: Policy, target: str, split: str, holdout: tuple[str, str] | None) -> _Data:
    from gatekit.replay import replay

    rows = store.con.execute(
        'SELECT seq, ts, agent, session, "user", tool, args::VARCHAR, context::VARCHAR, label '
        "FROM actions ORDER BY seq").fetchall()
    if not rows:
        raise InputError("the store holds no actions: ingest logs first")
    if target == "reviews":
        reviews = _review_labels(store)
        labels = [reviews.get(r[0]) for r in rows]
    else:
        labels = [r[8] for r in rows]
    harmful = _bits(lab == "harmful" for lab in labels)
    benign = _bits(lab == "benign" for lab in labels)
    if not harmful and not benign:
        what = "labels (`label: harmful|benign`)" if target == "labels" else "reviews (approvals)"
        raise InputError(f"the store has no {what} to tune from")
    views = [View({"seq": r[0], "ts": r[1], "agent": r[2], "session": r[3], "user": r[4], "tool": r[5],
                   "args": json.loads(r[6]) if r[6] else {}, "context": json.loads(r[7]) if r[7] else {}})
             for r in rows]
    tools = [r[5] for r in rows]
    by_tool: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tools):
        by_tool[t].append(i)
    # the base policy's matches, exactly as replay decides them (windows included): one replay, not stored
    from gatekit.replay import delete_run
    from gatekit.run import run_row

    name, n = "gatekit-tune-base", 1
    while run_row(store, name) is not None:  # never replace (nor then delete) a run of the user's
        name, n = f"gatekit-tune-base-{n}", n + 1
    try:
        frame = replay(store, policy, name).frame.sort("seq")
    finally:
        delete_run(store, name)
    seq_index = {r[0]: i for i, r in enumerate(rows)}
    base_matched = {r.id: 0 for r in policy.rules}
    base_errored = {r.id: 0 for r in policy.rules}
    for seq, matched, errored in frame.select("seq", "rules", "errors").iter_rows():
        bit = 1 << seq_index[seq]
        for rid in matched or ():
            if rid in base_matched:
                base_matched[rid] |= bit
        for rid in errored or ():
            if rid in base_errored:
                base_errored[rid] |= bit
    validation, test = _parts(rows, split, holdout)
    return _Data(views, tools, harmful, benign, validation, test, base_matched, base_errored, dict(by_tool),
                 (1 << len(rows)) - 1)


# -- rules as match arrays ----------------------------------------------------------------------------------

class _Engine:
    """Each rule document's matches over all actions, computed once; decisions combined in memory."""

    def __init__(self, data: _Data, base: Policy) -> None:
        self.data = data
        self.n = len(data.views)
        self.default = LEVEL[base.default]
        self.on_error = LEVEL[base.on_error]
        self.tiers = policy_dict(base).get("tiers")
        self._cache: dict[str, tuple[int, int, int]] = {}
        self.guarded = 0  # the calls of guarded tools (`HIGH_RISK`): released only by an allowlist

    def masks(self, rule: dict[str, Any], base_id: str | None = None) -> tuple[int, int, int]:
        """(matched, stopped: matched by a rule that escalates or denies, errored) of one rule document."""
        key = json.dumps(rule, sort_keys=True, default=str)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        stops = LEVEL[rule["action"]] >= ESCALATE
        if rule.get("mode", "enforce") != "enforce":
            out = (0, 0, 0)
        elif base_id is not None:
            m = self.data.base_matched[base_id]
            out = (m, m if stops else 0, self.data.base_errored[base_id])
        else:
            doc: dict[str, Any] = {"version": 1, "name": "candidate", "default": "allow", "rules": [rule]}
            if self.tiers:
                doc["tiers"] = self.tiers
            ev = Evaluator(parse_policy(dump_yaml(doc)))
            (_, rx, cond), = ev.rules
            matched = errored = 0
            empty = Scan([])
            for tool, ix in self.data.by_tool.items():
                if not isinstance(tool, str) or rx.fullmatch(tool) is None:
                    continue
                for i in ix:
                    value, err = cond(self.data.views[i], empty)
                    if err is not None:
                        errored |= 1 << i
                    elif value:
                        matched |= 1 << i
            out = (matched, matched if stops else 0, errored)
        self._cache[key] = out
        return out

    def stopped(self, rules: Sequence[tuple[dict[str, Any], str | None]]) -> int:
        """The calls the rules escalate or deny, decided as `decide` does: the highest level matched, the
        default where none matched, at least `on_error` where one could not be evaluated."""
        matched = stopped = errored = 0
        for rule, base_id in rules:
            m, st, er = self.masks(rule, base_id)
            matched |= m
            stopped |= st
            errored |= er
        every = self.data.every
        if self.default >= ESCALATE:
            stopped |= every & ~matched
        if self.on_error >= ESCALATE:
            stopped |= errored
        return stopped

    def counts(self, stopped: int, part: int) -> Counts:
        d = self.data
        h, b = d.harmful & part, d.benign & part
        return Counts(part.bit_count(), h.bit_count(), (stopped & h).bit_count(), b.bit_count(),
                      (stopped & b).bit_count(), (stopped & part).bit_count())


# -- candidates ---------------------------------------------------------------------------------------------

def _scalar_paths(value: Any, prefix: str, depth: int = 0) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        if depth >= 2:
            return out
        for k, v in value.items():
            if isinstance(k, str) and k and "." not in k and re.fullmatch(r"[A-Za-z0-9_\-]+", k):
                out += _scalar_paths(v, f"{prefix}.{k}", depth + 1)
    elif isinstance(value, list):
        if value and not isinstance(value[0], (dict, list)):
            out.append((f"{prefix}.0", value[0]))
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        out.append((prefix, value))
    return out


def _features(view: View) -> list[tuple[str, Any]]:
    # args only: a log's context often carries run metadata (AgentDojo's holds the attack's name), which
    # would teach the tuner the answer rather than the call; free text (over 80 characters) is no identifier
    return [(p, v) for p, v in _scalar_paths(view.args or {}, "args") if not (isinstance(v, str) and len(v) > 80)]


# not an identifier: a value with white space is text, one that starts with a date or a number is a time or an
# amount (what the attacker writes or picks, not who or where)
_PROSE = re.compile(r"\s|^\d{4}-\d{2}-\d{2}|^[+-]?\d+(\.\d+)?$")
_DOMAIN = re.compile(r"^[^@\s]+@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})$")


def _domain(value: Any) -> str | None:
    m = _DOMAIN.match(value) if isinstance(value, str) else None
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class _Candidate:
    kind: str
    target: str | None  # the base rule it replaces or removes, None for an added rule
    rule: dict[str, Any] | None  # the new rule document, None for a removal
    summary: str
    unseen: float = 0.0  # for a rule narrowed to the harmful values seen: the chance the next harm has another
    allowlist: bool = False  # it releases only values (or domains) always seen benign: the one relaxation of a
    # guarded tool (`HIGH_RISK`)


def _and(when: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    return extra if not when else {"all": [when, extra]}


def unseen_harm(counts: Counter[Any]) -> float:
    """The Good-Turing estimate of the chance that the next harmful call has a value not among those seen
    harmful: the share of the harmful calls whose value was seen only once (1 when each was seen once)."""
    total = sum(counts.values())
    return sum(1 for c in counts.values() if c == 1) / total if total else 1.0


def _value_conditions(path: str, rows: list[tuple[Any, bool, bool]], min_support: int
                      ) -> list[tuple[dict, str, float, bool]]:
    """Conditions on one path that keep the harmful values: `in` the harmful ones, `not_in` the always-benign
    ones seen at least `min_support` times, and the same by e-mail domain; each with `unseen_harm` of what it
    keeps (0 for an allowlist, whose released calls are the evidence), and whether it is an allowlist."""
    harm: Counter[Any] = Counter()
    good: Counter[Any] = Counter()
    for value, is_harm, is_good in rows:
        if is_harm:
            harm[value] += 1
        elif is_good:
            good[value] += 1
    out: list[tuple[dict, str, float, bool]] = []
    strings = all(isinstance(v, str) for v in (*harm, *good))
    if not strings:
        return out
    hv = sorted(harm)
    if hv and len(hv) <= _MAX_VALUES:
        out.append(({path: {"in": hv}}, f"only {path} values seen harmful ({len(hv)})", unseen_harm(harm),
                    False))
    allow = sorted(v for v, c in good.items() if c >= min_support and v not in harm)
    # an allowlist names who or where (a payee, a recipient, a channel): identifiers, not prose an attacker
    # writes or picks (a subject or a date is whatever the injection says, so "subjects seen benign" releases
    # the attacker's)
    if allow and len(allow) <= _MAX_VALUES and not any(_PROSE.search(v) for v in allow):
        out.append(({path: {"not_in": allow}}, f"{path} values always benign, seen {min_support}+ times "
                                                f"({len(allow)}), pass", 0.0, True))
    hd = {_domain(v) for v in harm}
    gd = {_domain(v) for v in good}
    if hd and None not in hd and None not in gd:
        hd_only = sorted(d for d in hd if d not in gd)  # type: ignore[misc]
        gd_only = sorted(d for d in gd if d not in hd)  # type: ignore[misc]
        if hd_only and len(hd_only) <= _MAX_VALUES:
            out.append(({"any": [{path: {"endswith": f"@{d}"}} for d in hd_only]} if len(hd_only) > 1
                        else {path: {"endswith": f"@{hd_only[0]}"}}, f"{path} in domains seen harmful only",
                        unseen_harm(Counter(_domain(v) for v in harm.elements())), False))
        if gd_only and len(gd_only) <= _MAX_VALUES:
            inner = ({"any": [{path: {"endswith": f"@{d}"}} for d in gd_only]} if len(gd_only) > 1
                     else {path: {"endswith": f"@{gd_only[0]}"}})
            out.append(({"not": inner}, f"{path} in domains always benign pass", 0.0, True))
    return out


def _tests_of(node: Any, found: list[tuple[str, str, float]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("all", "any"):
                for x in v:
                    _tests_of(x, found)
            elif k == "not":
                _tests_of(v, found)
            elif k in ("rate", "sum"):
                continue
            elif isinstance(v, dict):
                for op, operand in v.items():
                    if op in ("gt", "gte", "lt", "lte") and isinstance(operand, (int, float)) \
                            and not isinstance(operand, bool):
                        found.append((k, op, float(operand)))


def _with_operand(node: Any, field_: str, op: str, old: float, new: float) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("all", "any"):
                out[k] = [_with_operand(x, field_, op, old, new) for x in v]
            elif k == "not":
                out[k] = _with_operand(v, field_, op, old, new)
            elif k == field_ and isinstance(v, dict) and v.get(op) == old:
                out[k] = {**v, op: int(new) if float(new).is_integer() else new}
            else:
                out[k] = v
        return out
    return node


def _has_window(node: Any) -> bool:
    if isinstance(node, dict):
        return any(k in ("rate", "sum") or _has_window(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_window(x) for x in node)
    return False


def _rule_id(base: str, taken: set[str]) -> str:
    rid = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:60] or "rule"
    out, n = rid, 2
    while out in taken:
        out, n = f"{rid}-{n}", n + 1
    taken.add(out)
    return out


def _candidates(engine: _Engine, rules: list[dict[str, Any]], train: int, stopped: int,
                min_support: int, weight: float) -> list[_Candidate]:
    d = engine.data
    out: list[_Candidate] = []
    taken = {r["id"] for r in rules}
    feats: dict[int, list[tuple[str, Any]]] = {}

    def features(i: int) -> list[tuple[str, Any]]:
        f = feats.get(i)
        if f is None:
            f = feats[i] = _features(d.views[i])
        return f

    def by_path(ix: Sequence[int]) -> dict[str, list[tuple[Any, bool, bool]]]:
        paths: dict[str, list[tuple[Any, bool, bool]]] = defaultdict(list)
        for i in ix:
            for path, value in features(i):
                paths[path].append((value, bool(d.harmful >> i & 1), bool(d.benign >> i & 1)))
        return paths

    for rule in rules:
        if rule.get("mode", "enforce") != "enforce" or rule["action"] == "allow" or _has_window(rule.get("when")):
            if rule["action"] != "allow":
                out.append(_Candidate("remove", rule["id"], None, f"`{rule['id']}` removed"))
            continue
        out.append(_Candidate("remove", rule["id"], None, f"`{rule['id']}` removed: its calls go to the default"))
        m, _, _ = engine.masks(rule, rule["id"] if rule["id"] in d.base_matched else None)
        matched = _indices(m & train)
        tests: list[tuple[str, str, float]] = []
        _tests_of(rule.get("when") or {}, tests)
        for field_, op, old in tests:
            tool_ix = [i for t, ix in d.by_tool.items() if isinstance(t, str) and _tool_matches(rule, t) for i in ix]
            values = sorted({float(v) for i in tool_ix if train >> i & 1 for p, v in features(i)
                             if p == field_ and isinstance(v, (int, float))})
            grid = {round(values[min(len(values) - 1, k * len(values) // 20)], 2) for k in range(21)} if values else set()
            grid |= {0, 10, 50, 100, 500, 1000, 2000, 5000, 10000}
            for new in sorted(set(grid)):
                if new != old:
                    out.append(_Candidate("threshold", rule["id"],
                                          {**rule, "when": _with_operand(rule.get("when"), field_, op, old, new),
                                           "reason": _reason(rule, f"`{field_}` {_OP_WORDS[op]} {new:g} "
                                                                   f"(tuned from {old:g})")},
                                          f"{field_} {op} {old:g} -> {new:g}"))
        for path, rows in sorted(by_path(matched).items()):
            for extra, why, unseen, allow in _value_conditions(path, rows, min_support):
                out.append(_Candidate("narrow", rule["id"],
                                      {**rule, "when": _and(rule.get("when"), extra),
                                       "reason": _reason(rule, f"narrowed by tuning to {_described(extra, why)}")},
                                      f"narrowed to {why}", unseen, allow))
    # new rules for tools whose harm the policy lets through on train
    missed = d.harmful & train & ~stopped
    for tool in sorted({str(d.tools[i]) for i in _indices(missed)}):
        ix = [i for i in d.by_tool[tool] if train >> i & 1]
        base = {"id": _rule_id(f"tuned-{tool}", set(taken)), "tool": tool, "action": "escalate"}
        if engine.tiers:
            base["tier"] = next(iter(engine.tiers))
        out.append(_Candidate("add", None, {**base, "reason": f"Harm seen in `{tool}` calls"},
                              f"new rule: every `{tool}` call"))
        for path, rows in sorted(by_path(ix).items()):
            for extra, why, unseen, allow in _value_conditions(path, rows, min_support):
                if unseen > 1.0 / (1.0 + weight):  # harm that never repeated a value is no pattern to stop
                    continue
                out.append(_Candidate("add", None, {**base, "when": extra,
                                                    "reason": f"Harm seen in `{tool}` calls: {_described(extra, why)}"},
                                      f"new rule on `{tool}`: {why}", unseen, allow))
    return out


_OP_WORDS = {"gt": "over", "gte": "at least", "lt": "under", "lte": "at most"}


def _described(extra: dict[str, Any], why: str) -> str:
    """What a narrowing keeps, with its values when the list is short enough to read in a reason."""
    (path, test), = extra.items() if len(extra) == 1 else ((None, None),)
    if isinstance(test, dict) and len(test) == 1:
        (op, values), = test.items()
        if op in ("in", "not_in") and isinstance(values, list):
            shown = ", ".join(str(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
            return f"`{path}` {'in' if op == 'in' else 'not in'} [{shown}]"
    return why


def _reason(rule: dict[str, Any], what: str) -> str:
    """A tuned rule's reason: what changed, then what the rule was for."""
    old = rule.get("reason")
    return f"{what[0].upper()}{what[1:]}" + (f"; was: {old}" if old else "")


def _indices(bits: int) -> list[int]:
    out, i = [], 0
    while bits:
        low = bits & -bits
        i = low.bit_length() - 1
        out.append(i)
        bits ^= low
    return out


def _tool_matches(rule: dict[str, Any], tool: str) -> bool:
    from fnmatch import fnmatchcase

    tools = rule["tool"] if isinstance(rule["tool"], list) else [rule["tool"]]
    return any(fnmatchcase(tool, t) for t in tools)


# -- the search ---------------------------------------------------------------------------------------------

_State = list[tuple[dict[str, Any], "str | None"]]  # rule documents, with the base rule id while unchanged
_ORDER = ("id", "tool", "action", "tier", "mode", "when", "reason")


def _apply(state: _State, c: _Candidate) -> _State:
    if c.target is None:
        assert c.rule is not None
        return [*state, (c.rule, None)]
    out: _State = []
    for rule, base_id in state:
        if rule["id"] != c.target:
            out.append((rule, base_id))
        elif c.rule is not None:
            out.append((c.rule, None))
    return out


def _gain(weight: float, before: Counts, after: Counts) -> float:
    return weight * (after.caught - before.caught) - (after.bothered - before.bothered)


CONFIDENCE = 0.95  # of the one-sided bound on the harm rate of the calls a relaxation releases


def harm_bound(harmful: int, labeled: int, confidence: float = CONFIDENCE) -> float:
    """The exact (Clopper-Pearson) one-sided upper confidence bound on a harm rate seen as `harmful` of
    `labeled` calls: the largest rate p under which seeing so few harmful ones still has probability at least
    1 - `confidence`. With none harmful it is 1 - (1 - confidence) ** (1 / labeled), about 3 / labeled."""
    if labeled <= 0:
        return 1.0
    if harmful >= labeled:
        return 1.0
    alpha = 1.0 - confidence
    if harmful == 0:
        return 1.0 - alpha ** (1.0 / labeled)

    def cdf(p: float) -> float:  # P(X <= harmful) for X ~ Binomial(labeled, p), falling in p
        return sum(math.comb(labeled, i) * p**i * (1 - p) ** (labeled - i) for i in range(harmful + 1))
    lo, hi = harmful / labeled, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def _releases_safely(engine: _Engine, before: int, after: int, part: int, weight: float,
                     unseen: float = 0.0, allowlist: bool = False) -> bool:
    """Absence of harm is not evidence of safety: a change that stops gating some calls is allowed only if
    the labeled calls it releases bound their harm rate, with `CONFIDENCE`, below the break-even rate
    1 / (1 + weight) (releasing a call saves one bother and risks `weight` for a harmful one). With no harm
    seen that takes at least 32 labeled calls at the default weight of 10; a change that releases none is
    a tightening and needs no such evidence. A rule narrowed to the harmful values seen (`in`) releases every
    other value, so its evidence is also how often harm repeats a value: `unseen` (`unseen_harm`) must be
    below the same break-even rate (a value seen harmful once is no pattern). And the calls of a guarded tool
    (`HIGH_RISK`, from the catalog's tags) are released only by an allowlist: past calls bound the harm of the
    traffic seen, not of what an attacker chooses next."""
    released = before & ~after & part
    if not released:
        return True
    if released & engine.guarded and not allowlist:
        return False
    if unseen > 1.0 / (1.0 + weight):
        return False
    d = engine.data
    harmful = (released & d.harmful).bit_count()
    labeled = harmful + (released & d.benign).bit_count()
    return harm_bound(harmful, labeled) <= 1.0 / (1.0 + weight)


def _over(counts: Counts, max_bother: float | None) -> bool:
    return max_bother is not None and (counts.bother_rate or 0.0) > max_bother


HIGH_RISK = {"impact": ("high",), "reversibility": ("irreversible",)}  # catalog tags that gate a tool by default


def high_risk(tags: dict[str, str | None]) -> list[str]:
    """The catalog tags (`impact: high`, `reversibility: irreversible`) that make a tool high-risk."""
    return [f"{k}: {tags.get(k)}" for k, values in HIGH_RISK.items() if tags.get(k) in values]


def _prior_rules(engine: _Engine, state: _State, catalog: Catalog) -> list[_Candidate]:
    """A rule that escalates every call of each logged tool the catalog tags high-risk and no rule of the
    policy escalates or denies: a person's stated risk is the prior the evidence must overturn, not the other
    way round (the tuner may still narrow or remove such a rule, but only as a relaxation with evidence)."""
    out: list[_Candidate] = []
    taken = {r["id"] for r, _ in state}
    gated = [r for r, _ in state if r.get("mode", "enforce") == "enforce" and LEVEL[r["action"]] >= ESCALATE]
    for tool in sorted(t for t in engine.data.by_tool if isinstance(t, str)):
        entry = catalog.tools.get(tool)
        why = high_risk(entry.tags) if entry is not None else []
        if not why or any(_tool_matches(r, tool) for r in gated):
            continue
        rule: dict[str, Any] = {"id": _rule_id(f"catalog-{tool}", taken), "tool": tool, "action": "escalate"}
        if engine.tiers:
            rule["tier"] = next(iter(engine.tiers))
        rule["reason"] = f"`{tool}` is tagged {' and '.join(why)} in the catalog"
        out.append(_Candidate("catalog", None, rule, f"new rule: every `{tool}` call ({', '.join(why)})"))
    return out


def tune(store: Store, policy: Policy, *, max_bother: float | None = None, target: str | None = None,
         split: str = "session", holdout: tuple[str, str] | None = None, weight: float = 10.0,
         min_support: int = 2, max_changes: int = 40, catalog: Catalog | None = None) -> Tuning:
    """Propose a tuned `policy` from the store's evidence (see the module's docstring).

    `weight`: how many benign calls sent to a human one more harmful call caught is worth (it also sets the
    break-even harm rate a relaxation must bound its released calls below); `max_bother`: the largest bother
    rate (benign calls stopped / benign calls) allowed on train; `split`: how the validation part is drawn;
    `holdout`: `(field, value)` (`agent`, `session`, `user` or `tool`): the actions with that value are left
    out (never read to choose or keep a change) and are the held-out figures, `split` dividing the rest;
    without it the held-out figures are the validation part's; `catalog`: a `Catalog` whose high-risk tools
    nothing gates start gated (`_prior_rules`) and are released only by allowlists (`_releases_safely`).

    >>> tune(store, load_policy("notebooks/policies/agentdojo-naive.yaml"), holdout=("agent", "command-r"))
    """
    if split not in SPLITS:
        raise InputError(f"unknown split `{split}`: one of {', '.join(SPLITS)}")
    if holdout is not None and holdout[0] not in _FIELDS:
        raise InputError(f"cannot hold out by `{holdout[0]}`: one of {', '.join(_FIELDS)}")
    if max_bother is not None and not 0 <= max_bother <= 1:
        raise InputError(f"`--max-bother` is a rate between 0 and 1, not `{max_bother:g}`")
    if target is None:
        has = store.con.execute("SELECT count(*) FROM actions WHERE label IN ('harmful', 'benign')").fetchall()[0][0]
        target = "labels" if has else "reviews"
    if target not in TARGETS:
        raise InputError(f"unknown target `{target}`: one of {', '.join(TARGETS)}")
    data = _load(store, policy, target, split, holdout)
    if holdout is not None and not data.test:
        raise InputError(f"no action has {holdout[0]} `{holdout[1]}` to hold out")
    if data.test == data.every:
        raise InputError("every action is held out: nothing is left to tune on")
    if not data.every & ~data.test & ~data.validation:
        raise InputError("every action left to tune on is in the validation part: nothing is left to train on")
    engine = _Engine(data, policy)
    if catalog is not None:
        for tool, ix in data.by_tool.items():
            entry = catalog.tools.get(tool) if isinstance(tool, str) else None
            if entry is not None and high_risk(entry.tags):
                engine.guarded |= _bits_of(ix)
    # train chooses, validation keeps or drops, the held-out test part (with `holdout`) is only scored
    train, held, test = data.every & ~data.test & ~data.validation, data.validation, data.test
    start: _State = [(_ordered(r), r["id"]) for r in policy_dict(policy)["rules"]]
    # the catalog's prior: high-risk tools nothing gates start gated (kept whatever the labels say)
    priors = _prior_rules(engine, start, catalog) if catalog is not None else []
    prior_changes: list[Change] = []
    base_state = start
    for c in priors:
        new = _apply(base_state, c)
        s0, s1 = engine.stopped(base_state), engine.stopped(new)
        prior_changes.append(Change(c.kind, _name(c), c.summary, engine.counts(s0, train), engine.counts(s1, train),
                                    engine.counts(s0, held), engine.counts(s1, held), True))
        base_state = new
    base_stop = engine.stopped(base_state)
    cands = _candidates(engine, [r for r, _ in base_state], train, base_stop, min_support, weight)
    # greedy on train; a change the validation part rejects is banned and the search is run again without it
    banned: set[int] = set()
    rejected: list[Change] = []
    frontier: list[dict[str, Any]] = []
    for _round in range(_ROUNDS):
        path, alone, chosen = _greedy(engine, cands, base_state, train, banned, weight, max_bother, max_changes)
        if not frontier:
            frontier = alone
        kept_state, changes = _check(engine, cands, base_state, chosen, train, held, weight, max_bother)
        bad = {k for k, ch in zip(chosen, changes) if ch is not None and not ch.kept}
        if not bad:
            break
        rejected += [ch for k, ch in zip(chosen, changes) if k in bad and ch is not None]
        banned |= bad
    changes = prior_changes + [ch for ch in changes if ch is not None]
    changes += [ch for ch in rejected if all((ch.rule, ch.summary) != (c.rule, c.summary) for c in changes)]
    frontier = frontier + path
    kept_ids = {(ch.rule, ch.summary) for ch in changes if ch.kept}
    fr = pl.DataFrame(frontier, schema={"step": pl.Int64, "candidate": pl.Utf8, "kind": pl.Utf8, "rule": pl.Utf8,
                                        "caught": pl.Int64, "harmful": pl.Int64, "bothered": pl.Int64,
                                        "benign": pl.Int64, "catch_rate": pl.Float64, "bother_rate": pl.Float64,
                                        "chosen": pl.Boolean})
    fr = fr.with_columns(kept=pl.struct("rule", "candidate").map_elements(
        lambda s: (s["rule"], s["candidate"]) in kept_ids, return_dtype=pl.Boolean) & pl.col("chosen"))
    text = _render(policy, kept_state, [ch for ch in changes if ch.kept])
    tuned = parse_policy(text)
    s0, s1 = engine.stopped(start), engine.stopped(kept_state)
    reported = test if holdout is not None else held
    return Tuning(text, tuned, changes, engine.counts(s0, train), engine.counts(s1, train),
                  engine.counts(s0, reported), engine.counts(s1, reported), fr,
                  split if holdout is None else f"{holdout[0]}={holdout[1]}", target, max_bother, len(cands),
                  validation_before=engine.counts(s0, held), validation_after=engine.counts(s1, held),
                  validation=split)


_ROUNDS = 8  # searches on train, each without the changes the validation part rejected before


def _greedy(engine: _Engine, cands: list[_Candidate], base_state: _State, train: int, banned: set[int],
            weight: float, max_bother: float | None, max_changes: int
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """The changes chosen on train, best first: (the path's points, each candidate alone, their indices)."""
    state, chosen, touched = base_state, [], set()
    cur_stop = engine.stopped(base_state)
    cur = engine.counts(cur_stop, train)
    path = [_point(0, "base policy", "base", "", cur, chosen=True)]
    alone: list[dict[str, Any]] = []
    for step in range(1, max_changes + 1):
        best: tuple[float, int, _State, Counts] | None = None
        over = _over(cur, max_bother)
        for k, c in enumerate(cands):
            if k in banned or (c.target is not None and c.target in touched) or k in chosen:
                continue
            new = _apply(state, c)
            stop = engine.stopped(new)
            cnt = engine.counts(stop, train)
            if step == 1:
                alone.append(_point(step, c.summary, c.kind, _name(c), cnt))
            if not _releases_safely(engine, cur_stop, stop, train, weight, c.unseen, c.allowlist):
                continue
            if over:  # first get under the budget: the most bother saved per harm lost
                saved = cur.bothered - cnt.bothered
                if saved <= 0:
                    continue
                score = saved / (1 + weight * max(0, cur.caught - cnt.caught))
            else:
                if _over(cnt, max_bother):
                    continue
                score = _gain(weight, cur, cnt)
                if score <= 0:
                    continue
            if best is None or score > best[0]:
                best = (score, k, new, cnt)
        if best is None:
            break
        _, k, state, cur = best
        cur_stop = engine.stopped(state)
        chosen.append(k)
        if cands[k].target is not None:
            touched.add(cands[k].target)
        path.append(_point(step, cands[k].summary, cands[k].kind, _name(cands[k]), cur, chosen=True))
    return path, alone, chosen


def _check(engine: _Engine, cands: list[_Candidate], base_state: _State, chosen: list[int], train: int, held: int,
           weight: float, max_bother: float | None) -> tuple[_State, list[Change | None]]:
    """Apply the chosen changes in order, keeping each only if it does not hurt on validation (`held`: it loses no
    validation catch and costs no more bother than its catch is worth there) and still helps on train."""
    kept_state, changes = base_state, []
    for k in chosen:
        c = cands[k]
        if c.target is not None and all(r["id"] != c.target for r, _ in kept_state):
            changes.append(None)
            continue
        new = _apply(kept_state, c)
        s0, s1 = engine.stopped(kept_state), engine.stopped(new)
        tb, ta, hb, ha = (engine.counts(s0, train), engine.counts(s1, train),
                          engine.counts(s0, held), engine.counts(s1, held))
        ok = (ha.caught >= hb.caught and _gain(weight, hb, ha) >= 0 and _gain(weight, tb, ta) > 0
              and _releases_safely(engine, s0, s1, train, weight, c.unseen, c.allowlist)
              and not (_over(ta, max_bother) and ta.bothered >= tb.bothered))
        rel = s0 & ~s1 & train
        released = ((rel & engine.data.harmful).bit_count(), (rel & (engine.data.harmful | engine.data.benign))
                    .bit_count()) if rel else None
        changes.append(Change(c.kind, _name(c), c.summary, tb, ta, hb, ha, ok, released,
                              harm_bound(*released) if released else None))
        if ok:
            kept_state = new
    return kept_state, changes


def _name(c: _Candidate) -> str:
    return c.target if c.target is not None else str(c.rule["id"])  # type: ignore[index]


def _ordered(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: rule[k] for k in _ORDER if k in rule} | {k: v for k, v in rule.items() if k not in _ORDER}


def _point(step: int, candidate: str, kind: str, rule: str, c: Counts, *, chosen: bool = False) -> dict[str, Any]:
    return {"step": step, "candidate": candidate, "kind": kind, "rule": rule, "caught": c.caught,
            "harmful": c.harmful, "bothered": c.bothered, "benign": c.benign, "catch_rate": c.catch_rate,
            "bother_rate": c.bother_rate, "chosen": chosen}


def _commented(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _commented(v)
        return m
    if isinstance(value, list):
        s = CommentedSeq(_commented(v) for v in value)
        if all(not isinstance(v, (dict, list)) for v in value):
            s.fa.set_flow_style()
        return s
    return value


def _render(policy: Policy, state: _State, kept: list[Change]) -> str:
    doc = policy_dict(policy)
    doc["name"] = f"{policy.name}-tuned"
    doc["rules"] = [_ordered(r) for r, _ in state]
    out = _commented(doc)
    removed = [ch for ch in kept if ch.kind == "remove"]
    head = [f"Tuned by `gatekit tune` from `{policy.name}`: {len(kept)} change(s), each with its evidence.",
            "A change that stops gating calls (a removal, a higher threshold, a narrower condition) was allowed",
            f"only with positive evidence: the labelled train calls it releases bound their harm rate, at "
            f"{CONFIDENCE:.0%},",
            "below the break-even rate 1 / (1 + weight), and a list of harmful values saw harm repeat them.",
            "Rules `catalog-*` gate tools the catalog tags high-risk (impact: high, irreversible); such a tool's",
            "calls were released only by an allowlist of identifiers always seen benign.",
            "Each change was chosen on train and kept on validation (`validation:` below)."]
    for ch in removed:
        head += ch.comment().splitlines()
    out.yaml_set_start_comment("\n".join(head))
    notes: dict[str, list[Change]] = defaultdict(list)
    for ch in kept:
        if ch.kind != "remove":
            notes[ch.rule].append(ch)
    for i, rule in enumerate(out["rules"]):
        chs = notes.get(rule["id"])
        if chs:
            out["rules"].yaml_set_comment_before_after_key(
                i, before="\n".join(line for ch in chs for line in ch.comment().splitlines()), indent=2)
    return dump_yaml(out)
