"""The action record: the normalised tool call every adapter produces and both evaluators read.

Pure Python on purpose: enforce mode builds one of these per tool call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from gatekit.errors import InputError

# The action contract's fields, in the order the store keeps them.
FIELDS = (
    "action_id", "ts", "agent", "session", "user", "tool", "args", "context",
    "evidence_hash", "executed_hash", "outcome", "approvals", "label",
)
LABELS = ("harmful", "benign")


@dataclass(slots=True)
class Action:
    """One tool call. Only `tool` is required.

    >>> Action(tool="payment.send", agent="billing-bot", args={"amount": 250.0})
    """

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    session: str | None = None
    user: str | None = None
    ts: datetime | None = None
    action_id: str | None = None
    evidence_hash: str | None = None
    executed_hash: str | None = None
    outcome: str | None = None
    approvals: list[dict[str, Any]] | None = None
    label: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Action:
        """Build an action from a contract-shaped mapping (a parsed log line, say)."""
        ts = read_ts(record.get("ts"))
        return cls(
            tool=record["tool"],
            args=record.get("args") or {},
            context=record.get("context") or {},
            agent=record.get("agent"),
            session=record.get("session"),
            user=record.get("user"),
            ts=ts,
            action_id=record.get("action_id"),
            evidence_hash=record.get("evidence_hash"),
            executed_hash=record.get("executed_hash"),
            outcome=record.get("outcome"),
            approvals=record.get("approvals"),
            label=record.get("label"),
        )

    def to_record(self) -> dict[str, Any]:
        """The contract's JSON shape (timestamps as ISO 8601 in UTC)."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if name == "ts" and value is not None:
                value = format_ts(value)
            out[name] = value
        return out


# epoch seconds must fall in years 1970..9999: [0, MAX_EPOCH)
MAX_EPOCH = 253402300800  # 10000-01-01T00:00:00Z


def read_ts(value: Any) -> datetime | None:
    """A call's `ts` as every reader takes it (ingest, decide, the Gate): ISO 8601 text (a naive time is
    UTC), epoch seconds (an int or float, years 1970..9999, rounded to the microsecond), a datetime, or None.
    Raises InputError (a ValueError) naming `ts` for anything else."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if isinstance(value, str):
        try:
            return parse_ts(value)
        except (ValueError, OverflowError):
            raise InputError(f"`ts` is not an ISO 8601 timestamp: `{value[:60]}`") from None
    if type(value) is int or type(value) is float:
        if not 0 <= value < MAX_EPOCH:  # also false for NaN
            raise InputError(f"`ts` epoch seconds must fall in years 1970..9999, got `{value}`")
        return datetime.fromtimestamp(value, timezone.utc)
    raise InputError(f"`ts` must be ISO 8601 text or epoch seconds, not {type(value).__name__}")


def parse_ts(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. Raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc)


def format_ts(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def canonical_json(value: Any) -> str:
    """The one canonical JSON text gatekit hashes: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def evidence_hash(action: Action | Mapping[str, Any]) -> str:
    """Hash of what a reviewer sees of a call: tool, agent, session, user, args and context."""
    rec = action.to_record() if isinstance(action, Action) else action
    seen = {k: rec.get(k) for k in ("tool", "agent", "session", "user", "args", "context")}
    return "sha256:" + hashlib.sha256(canonical_json(seen).encode("utf-8", "surrogatepass")).hexdigest()
