"""Receipts back into action records (the action contract), so `gatekit ingest` loads live enforce data.

One record per call, from all of its receipts: what was decided (and by which rules), what the
reviewers saw (`evidence_hash`) and did (`approvals`), what ran (`executed_hash`) and how it ended
(`outcome`). Keys outside the contract (`decision`, `rules`, `tier`, `mode`, `request_id`,
`refusals`) land in the store's `extra` column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterator

from gatekit.enforce.receipts import Receipts

# how a call ended, by the broker's final status (an approval that expired unused never ran either)
_RESOLVED = {"denied": "denied", "timed_out": "timed_out", "expired": "timed_out"}


def action_records(receipts: Receipts) -> Iterator[dict[str, Any]]:
    """Every call in the audit log as an action record, in the order of its first receipt."""
    calls: dict[str, dict[str, Any]] = {}
    for entry in receipts.entries():
        if entry.action_id is None:
            continue
        call = calls.setdefault(entry.action_id, {"approvals": [], "refusals": []})
        body = entry.body
        if entry.kind in ("decision", "request") and isinstance(body.get("action"), dict):
            for key, value in body["action"].items():
                call.setdefault(key, value)
            call.setdefault("evidence_hash", body.get("evidence_hash"))
        if entry.kind == "decision":
            decision = body.get("decision") or {}
            call.update(decision=decision.get("decision"), rules=decision.get("rules", []),
                        tier=decision.get("tier"), mode=body.get("mode"), policy=body.get("policy"))
        elif entry.kind == "request":
            call["request_id"] = body.get("request_id")
        elif entry.kind == "vote":
            call["approvals"].append({k: body.get(k) for k in (
                "reviewer", "role", "decision", "requested_at", "decided_at", "break_glass", "reason")})
        elif entry.kind == "resolution":
            call["status"] = body.get("status")
        elif entry.kind == "refusal":
            call["refusals"].append(body.get("refusal"))
            call.setdefault("attempted_hash", body.get("attempted_hash"))
        elif entry.kind in ("release", "execution"):
            if body.get("executed_hash"):
                call["executed_hash"] = body["executed_hash"]
            if entry.kind == "execution":
                call["ran"] = body.get("outcome")
    for action_id, call in calls.items():
        if "tool" not in call:
            continue  # no decision or request receipt for it: nothing to say what it was
        yield _record(action_id, call)


def _record(action_id: str, call: dict[str, Any]) -> dict[str, Any]:
    if call.get("ran"):
        outcome = call["ran"]
    elif call.get("status") in _RESOLVED:
        outcome = _RESOLVED[call["status"]]
    elif call["refusals"] or (call.get("mode") == "enforce" and call.get("decision") == "deny"):
        outcome = "blocked"
    elif call.get("request_id"):
        outcome = "pending"
    else:
        outcome = None
    record = {
        "action_id": action_id, "ts": call.get("ts"), "agent": call.get("agent"), "session": call.get("session"),
        "user": call.get("user"), "tool": call["tool"], "args": call.get("args") or {},
        "context": call.get("context") or {}, "evidence_hash": call.get("evidence_hash"),
        "executed_hash": call.get("executed_hash") if call.get("ran") else None, "outcome": outcome,
        "approvals": call["approvals"], "label": None,
        "decision": call.get("decision"), "rules": call.get("rules", []), "tier": call.get("tier"),
        "mode": call.get("mode"), "policy": call.get("policy"), "request_id": call.get("request_id"),
        "refusals": call["refusals"],
    }
    if call["refusals"]:
        record["attempted_hash"] = call.get("attempted_hash")
    return record


def export_actions(receipts: Receipts, out: str | Path | IO[str]) -> int:
    """Write the action records as JSON Lines; returns how many.

    >>> export_actions(Receipts("approvals.db"), "live.jsonl")   # then: gatekit ingest live.jsonl --db store.duckdb
    """
    def write(f: IO[str]) -> int:
        n = 0
        for record in action_records(receipts):
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            n += 1
        return n

    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8") as f:
            return write(f)
    return write(out)
