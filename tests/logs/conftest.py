from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from gatekit.logs import Store

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)

Fetch = Callable[[Store, str], list[dict[str, Any]]]


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "gatekit.duckdb") as s:
        yield s


@pytest.fixture
def fetch() -> Fetch:
    """Rows of a query as dicts (DuckDB 2.0 relations have no fetchone, so go through execute)."""

    def run(store: Store, sql: str) -> list[dict[str, Any]]:
        cursor = store.con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    return run


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[..., Path]:
    """Write raw byte lines to a file in tmp_path, joined by `newline` (bytes, so tests can be hostile)."""

    def write(name: str, lines: list[bytes], newline: bytes = b"\n") -> Path:
        path = tmp_path / name
        path.write_bytes(newline.join(lines) + newline)
        return path

    return write


@pytest.fixture
def contract_records() -> list[dict[str, Any]]:
    """Records in the contract's shape: every field, NaN, unicode and nesting."""
    return [
        {
            "action_id": "a-1", "ts": "2026-11-01T10:00:00Z", "agent": "billing-bot", "session": "s-9",
            "user": "u-3", "tool": "payment.send", "args": {"amount": 250.0, "recipient": "ACME"},
            "context": {"env": "prod"}, "evidence_hash": "sha256:aa", "executed_hash": "sha256:bb",
            "outcome": "executed",
            "approvals": [{"reviewer": "alice", "role": "finance", "decision": "approve",
                           "requested_at": "2026-11-01T09:59:00Z", "decided_at": "2026-11-01T09:59:30Z",
                           "break_glass": False}],
            "label": "harmful",
        },
        {
            "action_id": "a-2", "ts": "2026-11-01T12:30:00+02:00", "agent": "støttebot", "tool": "email.send",
            "args": {"to": ["例え@example.jp", "zoë@example.com"], "subject": "Grüße 👋",
                     "nested": {"deep": {"deeper": [1, 2.5, None, True, {"k": "v"}]}}},
            "context": {"env": "staging", "tags": ["a", "b"]}, "label": "benign",
        },
        {
            "action_id": "a-3", "ts": "2026-11-01T10:00:00", "tool": "db.query",
            "args": {"amount": float("nan"), "limit": float("inf"), "floor": float("-inf")},
        },
        {"action_id": "a-4", "tool": "file.read", "args": None, "context": None, "approvals": None,
         "label": None, "team": "ops", "cost": {"usd": 0.02}},
    ]
