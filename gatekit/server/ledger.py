"""The state directory as one unit: its store, its signing key and the audit chain every write appends to.

`Ledger.write(fn)` is the only way anything changes: `fn(con, now, audit)` runs in one store transaction,
the entries it put in `audit` are chained and a checkpoint signed in that same transaction, and after the
commit the checkpoint is exported. So a change and its audit commit together or not at all.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from gatekit.enforce.tokens import key_id
from gatekit.errors import ApprovalError, StoreError
from gatekit.server.audit import Chain, Verification, verify
from gatekit.server.keys import signing_key
from gatekit.server.store import SQLiteStore, Store

CHECKPOINTS = "checkpoints.jsonl"
Audit = list[tuple[str, dict[str, Any], "str | None"]]


def exported_to(store: Store, state: Path) -> Path:
    """Where the service exports checkpoints: what it was started with (kept in the store), or the default."""
    with store.read() as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'checkpoints'").fetchone()
    return Path(row[0]) if row else state / CHECKPOINTS


class Ledger:
    """The store, key and chain of one state directory.

    >>> ledger = Ledger(Path("state"))
    >>> ledger.write(lambda con, now, audit: audit.append(("start", {}, None)))
    """

    def __init__(self, state: str | Path, *, store: Store | None = None, clock: Callable[[], float] = time.time,
                 checkpoints: str | Path | None = None) -> None:
        self.state = Path(state)
        self.store = store if store is not None else SQLiteStore(self.state)
        self.clock = clock
        self.key = signing_key(self.state)
        self.public_key = self.key.public_key()
        self.key_id = key_id(self.public_key)
        self.checkpoints = Path(checkpoints) if checkpoints else exported_to(self.store, self.state)
        self.chain = Chain(self.key, self.checkpoints)

    def now_us(self) -> int:
        return round(self.clock() * 1_000_000)

    def write(self, fn: Callable[[Any, int, Audit], Any]) -> Any:
        """Run `fn(con, now, audit)` in one transaction; what it put in `audit` is chained and checkpointed.

        An `ApprovalError` raised by `fn` still commits what `fn` did before it (a request found timed out,
        a refusal recorded), then propagates.
        """
        now = self.now_us()
        entries: Audit = []
        point = None
        failure: ApprovalError | None = None
        with self.store.transaction() as con:
            try:
                result = fn(con, now, entries)
            except ApprovalError as exc:
                failure, result = exc, None
            for kind, body, rid in entries:
                self.chain.append(con, kind, body, rid, now)
            if entries:
                point = self.chain.checkpoint(con, now)
        if point is not None:
            self.chain.exported(point)
        if failure is not None:
            raise failure
        return result

    def verify(self, public_key: Any = None, checkpoints: Path | None = None) -> Verification:
        with self.store.read() as con:
            return verify(con, public_key or self.public_key, checkpoints or self.checkpoints)

    def verify_or_refuse(self) -> None:
        """A store whose chain or checkpoints do not verify refuses to serve (a new one has nothing to check)."""
        result = self.verify()
        if not result.ok and not self._fresh(result):
            raise StoreError("the approvals store does not verify, refusing to start: " + "; ".join(result.problems))

    def _fresh(self, result: Verification) -> bool:
        """Nothing written yet. A chain wiped along with its export is not new: its principals and requests
        (or a stored checkpoint) are still there."""
        if result.count or self.checkpoints.exists():
            return False
        with self.store.read() as con:
            return not any(con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                           for table in ("principals", "requests", "votes", "checkpoints"))

    def close(self) -> None:
        self.store.close()
