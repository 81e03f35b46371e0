"""The state directory as one unit: its store, its signing key and the audit chain every write appends to.

`Ledger.write(fn)` is the only way anything changes: `fn(con, now, audit)` runs in one store transaction,
the entries it put in `audit` are chained and a checkpoint signed in that same transaction, and after the
commit the checkpoint is exported. So a change and its audit commit together or not at all. The store is
told which requests the transaction changed, so gates waiting on them (on any replica) wake.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from gatekit.enforce.tokens import key_id
from gatekit.errors import ApprovalError, StoreError
from gatekit.server.audit import Chain, Checkpoint, Verification, verify
from gatekit.server.keys import signing_key, trusted_keys
from gatekit.server.store import SQLiteStore, Store

CHECKPOINTS = "checkpoints.jsonl"
BATCH = 64  # writes committed together at most (group commit)
Audit = list[tuple[str, dict[str, Any], "str | None"]]


class _Write:
    """One `Ledger.write` waiting for, or done by, a group commit."""

    def __init__(self, fn: Callable[[Any, int, Audit], Any], order: str = "") -> None:
        self.fn, self.order = fn, order
        self.queued = self.done = False
        self.value: Any = None
        self.failure: ApprovalError | None = None  # the fn's refusal: committed, then raised to its caller
        self.error: BaseException | None = None  # the transaction failed: nothing of it committed

    def finish(self, error: BaseException | None = None) -> None:
        self.error, self.done = error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        if self.failure is not None:
            raise self.failure
        return self.value


def exported_to(store: Store, state: Path) -> Path:
    """Where the service exports checkpoints: what it was started with (kept in the store), or the default.
    A store replicas share has one export per state directory: each process's own."""
    if store.shared:
        return state / CHECKPOINTS
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
        self.trusted = trusted_keys(self.state, self.public_key)  # the current key and the retired ones
        self.checkpoints = Path(checkpoints) if checkpoints else exported_to(self.store, self.state)
        self.chain = Chain(self.key, self.checkpoints)
        self._turn = threading.Condition()  # group commit: who writes next, and who waits for the next batch
        self._queue: list[_Write] = []
        self._busy = False
        self._local = threading.local()

    def now_us(self) -> int:
        return round(self.clock() * 1_000_000)

    def write(self, fn: Callable[[Any, int, Audit], Any], order: str = "") -> Any:
        """Run `fn(con, now, audit)` in one transaction; what it put in `audit` is chained and checkpointed.

        `order` names the row `fn` locks first (`for_update`), so a batch locks its rows in one order
        (`a:` an agent, `r:` a request): two replicas' batches never wait on each other in a cycle.

        An `ApprovalError` raised by `fn` still commits what `fn` did before it (a request found timed out,
        a refusal recorded), then propagates. Nothing is answered before it is committed.

        Group commit: writes that arrive while one is committing wait, then go together in the next
        transaction, one after the other, as if serial (each sees the ones before it), under one checkpoint
        and one flush to disk. A durable commit costs a disk flush, and the chain makes every commit wait
        for the one before it, so this is what lets writes from many threads outpace the disk. If anything
        but an `ApprovalError` fails in a batch, its writes run again one transaction each, so only the
        failing one fails.
        """
        if getattr(self._local, "writing", False):
            raise RuntimeError("Ledger.write called from inside a write: use the connection it was given")
        job = _Write(fn, order)
        while True:
            with self._turn:
                if not job.queued:
                    self._queue.append(job)
                    job.queued = True
                while self._busy and not job.done:
                    self._turn.wait()
                if job.done:
                    return job.outcome()
                self._busy = True
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                self._commit(batch)
            finally:
                with self._turn:
                    self._busy = False
                    self._turn.notify_all()

    def _commit(self, batch: list[_Write]) -> None:
        self._local.writing = True
        try:
            point = self._transaction(batch)
        except Exception as exc:  # noqa: BLE001  handed to the write(s) it belongs to
            if len(batch) == 1:
                batch[0].finish(error=exc)
                return
            for job in batch:  # which one failed: each alone, unless the store itself is failing
                job.value = job.failure = None
                if isinstance(batch[0].error, StoreError):
                    job.finish(error=batch[0].error)
                else:
                    self._commit([job])
            return
        except BaseException as exc:
            for job in batch:
                job.finish(error=exc)
            raise
        finally:
            self._local.writing = False
        for job in batch:
            job.finish()
        if point is not None:
            self.chain.exported(point)

    def _transaction(self, batch: list[_Write]) -> Checkpoint | None:
        chained: list[tuple[str, dict[str, Any], str | None, int]] = []
        with self.store.transaction() as con:
            now = 0
            for job in sorted(batch, key=lambda j: j.order):  # rows locked in one order (stable otherwise)
                now = self.now_us()
                entries: Audit = []
                try:
                    job.value = job.fn(con, now, entries)
                except ApprovalError as exc:
                    job.failure = exc
                chained += [(kind, body, rid, now) for kind, body, rid in entries]
            if not chained:
                return None
            # the chain's tail has one writer (across replicas): from here to commit
            point = self.chain.close(con, self.store, chained, now, self.store.lock_chain(con))
            self.store.changed(con, [rid for *_, rid, _ in chained if rid is not None])
        return point

    def verify(self, public_key: Any = None, checkpoints: Path | None = None) -> Verification:
        with self.store.read() as con:
            return verify(con, public_key or self.trusted, checkpoints or self.checkpoints)

    def verify_or_refuse(self) -> None:
        """A store whose chain or checkpoints do not verify refuses to serve (a new one has nothing to check)."""
        result = self.verify()
        if not result.ok and not self._fresh(result) and not self._joining(result):
            raise StoreError("the approvals store does not verify, refusing to start: " + "; ".join(result.problems))

    def _fresh(self, result: Verification) -> bool:
        """Nothing written yet. A chain wiped along with its export is not new: its principals and requests
        (or a stored checkpoint) are still there."""
        if result.count or self.checkpoints.exists():
            return False
        with self.store.read() as con:
            return not any(con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                           for table in ("principals", "requests", "votes", "checkpoints"))

    def _joining(self, result: Verification) -> bool:
        """A new replica of a shared store: the chain verifies, and the only problem is that this state
        directory has exported nothing yet (its first checkpoint starts its export)."""
        return self.store.shared and not self.checkpoints.exists() and result.count > 0 and \
            all(p.startswith("no exported checkpoints at") for p in result.problems)

    def close(self) -> None:
        self.store.close()
