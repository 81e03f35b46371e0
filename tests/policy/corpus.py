"""The shared decision corpus, tests/cases/*.yaml, read into cases both evaluators run (see its README)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from gatekit.policy import Policy, parse_policy
from gatekit.policy.conditions import Window, leaves
from gatekit.policy.model import VERDICTS

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"

Outcome = tuple[str, tuple[str, ...], tuple[str, ...], "str | None"]
_FILE_KEYS = {"description", "policy", "cases"}
_CASE_KEYS = {"name", "action", "log", "expect", "note"}
_EXPECT_KEYS = {"decision", "rules", "errors", "tier"}


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    policy: Policy
    actions: list[dict[str, Any]]
    expect: list[Outcome]
    raw_actions: list[str]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass(frozen=True)
class CaseFile:
    name: str
    description: str
    policy: Policy
    cases: list[Case]


def _outcome(raw: Any, where: str) -> Outcome:
    assert isinstance(raw, dict), f"{where}: expect must be a mapping"
    unknown = set(raw) - _EXPECT_KEYS
    assert not unknown, f"{where}: unknown keys in expect: {sorted(unknown)}"
    decision = raw.get("decision")
    assert decision in VERDICTS, f"{where}: decision must be one of {VERDICTS}, got {decision!r}"
    rules = tuple(raw.get("rules") or ())
    errors = tuple(raw.get("errors") or ())
    tier = raw.get("tier")
    return decision, rules, errors, tier


def _uses_time(policy: Policy) -> bool:
    for rule in policy.rules:
        for leaf in leaves(rule.when):
            if isinstance(leaf, Window) or leaf.field.root == "time":
                return True
    return False


def load_file(path: Path) -> CaseFile:
    doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    where = path.name
    assert isinstance(doc, dict), f"{where}: must be a mapping"
    unknown = set(doc) - _FILE_KEYS
    assert not unknown, f"{where}: unknown keys {sorted(unknown)}"
    assert doc.get("description"), f"{where}: needs a description"
    policy = parse_policy(doc["policy"], source=f"{where}:policy")
    ids = {r.id for r in policy.rules}
    needs_ts = _uses_time(policy)
    cases, names = [], set()
    for raw in doc["cases"]:
        name = raw.get("name")
        at = f"{where}::{name}"
        assert name and name not in names, f"{at}: every case needs a unique name"
        names.add(name)
        unknown = set(raw) - _CASE_KEYS
        assert not unknown, f"{at}: unknown keys {sorted(unknown)}"
        assert ("action" in raw) != ("log" in raw), f"{at}: give exactly one of action or log"
        if "action" in raw:
            texts = [raw["action"]]
            expect = [_outcome(raw["expect"], at)]
        else:
            texts = list(raw["log"])
            assert isinstance(raw["expect"], list), f"{at}: a log needs a list of expectations"
            expect = [_outcome(e, f"{at}[{i}]") for i, e in enumerate(raw["expect"])]
            assert len(expect) == len(texts), f"{at}: one expectation per log line"
        actions = [json.loads(t) for t in texts]  # NaN, Infinity and -Infinity are allowed
        for i, (a, (_, rules, errors, tier)) in enumerate(zip(actions, expect)):
            assert isinstance(a, dict) and "tool" in a, f"{at}[{i}]: an action is a JSON object with a tool"
            named = set(rules) | set(errors)
            assert named <= ids, f"{at}[{i}]: unknown rule ids {sorted(named - ids)}"
            assert not set(rules) & set(errors), f"{at}[{i}]: a rule cannot both match and error"
            assert tier is None or tier in policy.tiers, f"{at}[{i}]: unknown tier {tier!r}"
            # the store cannot hold a call without a timestamp; time and windows need a real one
            assert not needs_ts or a.get("ts"), f"{at}[{i}]: this policy reads time: give every action a ts"
        cases.append(Case(path.stem, name, policy, actions, expect, texts))
    return CaseFile(path.stem, doc["description"], policy, cases)


def load_all() -> list[CaseFile]:
    return [load_file(p) for p in sorted(CASES_DIR.glob("*.yaml"))]
