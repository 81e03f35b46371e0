"""Replicas of the approvals service on one PostgreSQL store, and a client that fails over between them (what
a load balancer in front of them does), for the replica tests and `python -m benchmarks approvals`.

Each replica has its own state directory holding a copy of the first one's signing key (docs/operations.md:
"one key, copied to every replica").
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gatekit.enforce.client import ApprovalsClient, ServiceError
from tests.server.conftest import POLICY, Served


def start_replicas(root: Path, store: str, n: int = 2, policy: str = POLICY,
                   extra: tuple[str, ...] = ()) -> list[Served]:
    """`n` `gatekit serve` processes on `store`, in root/r0, root/r1, ...; r0 makes the key the others copy."""
    replicas: list[Served] = []
    for i in range(n):
        where = root / f"r{i}"
        where.mkdir(parents=True, exist_ok=True)
        if i:
            (where / "state").mkdir(mode=0o700, exist_ok=True)
            for name in ("service.key", "service.pub"):
                shutil.copy2(replicas[0].state / name, where / "state" / name)
        replicas.append(Served(where, policy, store=store, extra=extra))
    return replicas


class FailoverClient(ApprovalsClient):
    """An `ApprovalsClient` over several replicas: when the one in use cannot be reached, the next one.

    A submission is sent again elsewhere only when the connection was refused (nothing was sent); one that
    broke after sending may have been filed, so it fails, and the gate fails closed rather than filing the
    call twice. Everything else the gate sends is safe to send again: reads, votes (a second is refused),
    consumes (keyed) and outcomes.
    """

    def __init__(self, urls: list[str], credential: str, **kwargs: Any) -> None:
        super().__init__(urls[0], credential, **kwargs)
        self.urls = [u.rstrip("/") for u in urls]
        self.failovers = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None,
             auth: bool = True) -> Any:
        for attempt in range(len(self.urls)):
            try:
                return super().call(method, path, body, timeout=timeout, auth=auth)
            except ServiceError as exc:
                refused = isinstance(self.last_error, ConnectionRefusedError)
                again = method != "POST" or path != "/v1/requests"
                if exc.code != "unreachable" or not (refused or again) or attempt == len(self.urls) - 1:
                    raise
                self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
                self.failovers += 1
        raise AssertionError("unreachable")


def census(store: str, acknowledged: dict[str, str], ran: dict[str, int]) -> dict[str, int]:
    """What became of the calls in `store` (a PostgreSQL URL or an approvals.sqlite path): `acknowledged`
    maps each request id the service answered a submission with to its call's name (`args.call`), `ran`
    counts how often each call's function ran.

    lost: an acknowledged request missing from the store, or one that ran but is not `executed` there;
    duplicated: a call filed as more than one request; double_consumed: a request consumed (or a call run)
    more than once. Each must be 0. `failed_closed`: acknowledged requests that never ran (the gate denied
    them: unreachable past its deadline, say), which is what a gate does when in doubt.
    """
    if store.startswith("postgres"):
        import psycopg

        con: Any = psycopg.connect(store, autocommit=True)
        call_of = "action::json -> 'args' ->> 'call'"
    else:  # the SQLite file
        import sqlite3

        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        call_of = "json_extract(action, '$.args.call')"
    try:
        rows = {rid: (status, call) for rid, status, call in con.execute(
            f"SELECT id, status, {call_of} FROM requests").fetchall()}
        consumes: dict[str, int] = {}
        for (rid,) in con.execute("SELECT request_id FROM audit WHERE kind = 'consume'").fetchall():
            consumes[rid] = consumes.get(rid, 0) + 1
    finally:
        con.close()
    per_call: dict[str, int] = {}
    for _, call in rows.values():
        per_call[call] = per_call.get(call, 0) + 1
    lost = sum(rid not in rows for rid in acknowledged)
    lost += sum(1 for rid, call in acknowledged.items() if ran.get(call) and rows.get(rid, ("",))[0] != "executed")
    return {
        "requests": len(rows),
        "acknowledged": len(acknowledged),
        "executed": sum(status == "executed" for status, _ in rows.values()),
        "lost": lost,
        "duplicated": sum(n - 1 for n in per_call.values() if n > 1),
        "double_consumed": sum(n - 1 for n in consumes.values() if n > 1) + sum(n - 1 for n in ran.values() if n > 1),
        "failed_closed": sum(1 for call in acknowledged.values() if not ran.get(call)),
    }
