"""Building a sample: record the sessions, plant the findings, then turn the calls into action records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from gatekit.action import FIELDS, evidence_hash
from gatekit.errors import InputError
from gatekit.sample.cast import AGENTS
from gatekit.sample.clock import START, WEEK, fmt, utc
from gatekit.sample.manifest import manifest
from gatekit.sample.planted import plant_findings, plant_sessions
from gatekit.sample.recording import Recording
from gatekit.sample.scenarios import SCENARIOS

MIN_ACTIONS = 1000  # below this the planted scenarios would crowd out ordinary traffic


def generate(n_actions: int = 20000, *, seed: int = 7, start: datetime = START, days: int = 28,
             ) -> Iterator[dict[str, Any]]:
    """Yield `n_actions` action records (the action contract's JSON shape) in log order.

    >>> payments = [r for r in generate(5000, seed=3) if r["tool"] == "payment.send"]
    """
    records, _ = build(n_actions, seed, start, days)
    return iter(records)


def build(n: int, seed: int, start: datetime, days: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records of a sample in log order, and its manifest."""
    if n < MIN_ACTIONS:
        raise InputError(f"n_actions must be at least {MIN_ACTIONS} to hold the planted scenarios, got `{n}`")
    if days < 7:
        raise InputError(f"days must be at least 7 to include a weekend, got `{days}`")
    rec = Recording(n, seed, utc(start), days)
    # The planted sessions first, so that ordinary traffic fills the sample up to exactly `n` around them; the
    # findings last, since they are planted on ordinary calls that must already have been reviewed.
    plant_sessions(rec)
    _ordinary_sessions(rec)
    plant_findings(rec)
    return _records(rec)


def _ordinary_sessions(rec: Recording) -> None:
    """Record sessions of agents drawn by their share of traffic, the last one cut to end at `n` calls."""
    rng = rec.rng
    agents = list(AGENTS)
    weights = [AGENTS[a][0] for a in agents]
    while len(rec.calls) < rec.n:
        agent = rng.choices(agents, weights=weights)[0]
        steps = SCENARIOS[agent](rng)
        rec.session(agent, rec.when(agent), steps, limit=rec.n - len(rec.calls))


def _records(rec: Recording) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The calls in log order, with ids and labels, as action records; and the manifest that names them."""
    rng = rec.rng
    calls = sorted(rec.calls, key=lambda c: (c["ts"], c["seq"]))
    late: list[dict[str, Any]] = []
    for i in sorted(rng.sample(range(len(calls) - 40), max(1, len(calls) // 500)), reverse=True):
        j = i + rng.randint(3, 25)  # a line flushed late lands after later ones
        if calls[i]["ts"] // WEEK == calls[j]["ts"] // WEEK and calls[j]["ts"] > calls[i]["ts"]:
            call = calls.pop(i)
            calls.insert(j, call)
            late.append(call)
    width = max(5, len(str(len(calls))))
    records = []
    for i, call in enumerate(calls):
        call["id"] = f"a-{i + 1:0{width}d}"
        label = None if rng.random() < 0.07 else ("harmful" if call.get("harm") else "benign")
        records.append(_record(rec.start, call, label))
    return records, manifest(rec, calls, records, late)


def _record(start: datetime, call: dict[str, Any], label: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "action_id": call["id"], "ts": fmt(start, call["ts"]), "agent": call["agent"],
        "session": call["session"], "user": call["user"], "tool": call["tool"], "args": call["args"],
        "context": call["context"], "evidence_hash": None, "executed_hash": None, "outcome": call["outcome"],
        "approvals": [{**a, "requested_at": fmt(start, a["requested_at"]),
                       "decided_at": fmt(start, a["decided_at"])} for a in call["approvals"]],
        "label": label,
    }
    record["evidence_hash"] = evidence_hash(record)
    if call["outcome"] in ("executed", "failed"):
        ran = {**record, "args": call["executed_args"]} if "executed_args" in call else record
        record["executed_hash"] = evidence_hash(ran)
    assert tuple(record) == FIELDS
    return record
