"""The gateway's call log: one action record per `tools/call`, as JSON Lines that `gatekit ingest` reads.

Each line is an action record (the contract's keys: `action_id`, `ts`, `agent`, `session`, `user`, `tool`,
`args`, `context`, `evidence_hash`, `executed_hash`, `outcome`, `approvals`, `label`) plus what the gateway
decided and did (`decision`, `rules`, `errors`, `tier`, `reasons`, `mode`, `policy`, `fingerprint`,
`request_id`, `latency_ms`, `server`, and `refusal` when the gateway refused a call before the policy saw
it). Keys outside the contract land in the store's `extra` column, so a replay of the log can be compared
with what the gateway did.

>>> log = CallLog("gateway.jsonl")
>>> log.write(record)
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, Any

from gatekit.action import Action, evidence_hash, format_ts
from gatekit.policy.decision import Decision

# how a call ended, by the `Denied.code` that refused it (anything else the gateway refused: `refused`)
OUTCOMES = {"policy": "blocked", "malformed": "blocked", "denied": "denied",
            "timed_out": "timed_out", "expired": "timed_out", "withdrawn": "withdrawn", "revoked": "revoked"}


class CallLog:
    """An append-only JSON Lines file, one line per call, written whole and flushed (safe across threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def call_record(action: Action, decision: Decision, *, mode: str, policy: str, fingerprint: str, outcome: str,
                latency_ms: float, server: str, request: Any = None, executed: bool = False,
                refusal: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The log line for one call: the action as decided, and how it ended.

    `request` is the escalation's request as the gate holds it (the service's JSON, or a local broker's
    `Request`), for its id and the reviewers' votes (`approvals`).
    """
    record = action.to_record()
    record["evidence_hash"] = action.evidence_hash or evidence_hash(action)
    record["executed_hash"] = record["evidence_hash"] if executed else None
    record["outcome"] = outcome
    record["approvals"] = approvals(request)
    record["label"] = None
    record.update(decision=decision.decision, rules=list(decision.rules), errors=list(decision.errors),
                  tier=decision.tier, reasons=list(decision.reasons), mode=mode, policy=policy,
                  fingerprint=fingerprint, request_id=request_id(request), latency_ms=round(latency_ms, 3),
                  server=server)
    if refusal is not None:
        record["refusal"] = refusal
    if error is not None:
        record["error"] = error
    return record


def request_id(request: Any) -> str | None:
    if request is None:
        return None
    return request.get("id") if isinstance(request, dict) else getattr(request, "id", None)


def approvals(request: Any) -> list[dict[str, Any]]:
    """The reviewers' votes on a request, in the action contract's `approvals` shape."""
    if request is None:
        return []
    if isinstance(request, dict):  # the approvals service's view of the request
        return [{"reviewer": v.get("reviewer"), "role": v.get("role"), "decision": v.get("decision"),
                 "requested_at": request.get("requested_at"), "decided_at": v.get("at"),
                 "break_glass": bool(v.get("break_glass")), "reason": v.get("reason")}
                for v in request.get("votes") or () if isinstance(v, dict)]
    requested = getattr(request, "requested_at", None)
    return [{"reviewer": v.reviewer, "role": v.role, "decision": v.decision,
             "requested_at": format_ts(requested) if requested else None,
             "decided_at": format_ts(v.at) if v.at else None, "break_glass": v.break_glass, "reason": v.reason}
            for v in getattr(request, "votes", ())]
