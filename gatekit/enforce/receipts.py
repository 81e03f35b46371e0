"""Receipts: the hash-chained audit log of every decision, approval and execution.

Each entry carries the hash of the one before it (sha256 over canonical JSON, or HMAC-SHA256 with a key),
and an anchor row holds the entry count and the last hash, so `verify` finds a modified, deleted,
reordered or truncated entry. Without a key, anyone who can write the file can rebuild the whole chain;
with a key (kept away from the file) they cannot. `Receipts.anchor()` gives a `(count, head)` pair to
keep elsewhere: `verify(expect=...)` then also catches a log that was wiped and started again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gatekit.action import canonical_json, format_ts
from gatekit.enforce._database import Database
from gatekit.errors import GatekitError, StoreError

__all__ = ["GENESIS", "KINDS", "ChainError", "Receipt", "Receipts", "Verification", "iso"]

GENESIS = "sha256:" + "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_ROWS = "SELECT seq, kind, action_id, body, prev, hash FROM receipts"
KINDS = ("decision", "request", "vote", "resolution", "release", "refusal", "execution", "reload")


class ChainError(GatekitError):
    """The audit chain is broken: nothing more is appended to it, and the gate fails closed."""


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch as the action contract's ISO 8601 text (UTC, `Z`)."""
    return None if us is None else format_ts(from_us(us))


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def to_us(ts: datetime) -> int:
    """A timestamp as microseconds since the epoch (naive is UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return (ts - _EPOCH) // _ONE_US


def clock_us(clock: Callable[[], float]) -> int:
    return round(clock() * 1_000_000)


@dataclass(frozen=True)
class Receipt:
    """One entry of the chain."""

    seq: int
    kind: str
    action_id: str | None
    body: dict[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class Verification:
    """What `verify` found: `ok` when every entry links to the one before and the anchor agrees."""

    ok: bool
    count: int
    head: str
    problems: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "head": self.head, "problems": list(self.problems)}


class Receipts:
    """The audit log, a table in the broker's SQLite file (or a file of its own).

    >>> receipts = Receipts("approvals.db")
    >>> receipts.append("decision", {"action_id": "a-1", "decision": "allow"}, action_id="a-1")
    >>> receipts.verify().ok
    True
    """

    def __init__(self, path: str | Path | Database, *, key: bytes | str | None = None,
                 clock: Callable[[], float] = time.time, durable: bool = True, busy_timeout: float = 10.0) -> None:
        self.db = path if isinstance(path, Database) else Database(path, busy_timeout=busy_timeout, durable=durable)
        self.key = key.encode() if isinstance(key, str) else key
        self.clock = clock
        self._verified: tuple[int, str] | None = None  # (count, head) this process last verified

    @property
    def path(self) -> str:
        return self.db.path

    # -- hashing ----------------------------------------------------------------------------------------
    def _digest(self, text: str) -> str:
        data = text.encode("utf-8", "surrogatepass")
        if self.key:
            return "hmac-sha256:" + hmac.new(self.key, data, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def _entry_hash(self, prev: str, kind: str, action_id: str | None, body: str) -> str:
        return self._digest("\n".join((prev, kind, action_id or "", body)))

    def _anchor_mac(self, count: int, head: str) -> str:
        return self._digest(f"anchor\n{count}\n{head}")

    # -- appending --------------------------------------------------------------------------------------
    def append(self, kind: str, body: dict[str, Any], *, action_id: str | None = None) -> Receipt:
        """Append one entry in its own transaction. Raises `ChainError` if the chain is broken."""
        with self.db.write("receipt") as con:
            return self.append_in(con, kind, body, action_id=action_id)

    def append_in(self, con: sqlite3.Connection, kind: str, body: dict[str, Any], *,
                  action_id: str | None = None) -> Receipt:
        """Append inside a write transaction the caller holds (so a vote and its receipt commit together)."""
        if kind not in KINDS:
            raise ValueError(f"unknown receipt kind `{kind}`")
        count, head = self._tail(con)
        body = {"kind": kind, "at": iso(clock_us(self.clock)), **body}
        text = canonical_json(body)
        digest = self._entry_hash(head, kind, action_id, text)
        seq = count + 1
        con.execute("INSERT INTO receipts (seq, kind, action_id, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, kind, action_id, text, head, digest))
        con.execute("INSERT OR REPLACE INTO anchor (id, count, head, mac) VALUES (1, ?, ?, ?)",
                    (seq, digest, self._anchor_mac(seq, digest)))
        return Receipt(seq, kind, action_id, body, head, digest)

    def _tail(self, con: sqlite3.Connection) -> tuple[int, str]:
        """Check the chain before appending to it; returns the anchor's `(count, head)`.

        The first append of a process walks the whole chain; later ones walk only what was appended
        since (by any process), from the last entry this process verified, and the anchor.
        """
        start = self._verified or (0, GENESIS)
        if start[0]:
            row = con.execute(_ROWS + " WHERE seq = ?", (start[0],)).fetchone()
            if row is None or row[5] != start[1] or self._entry_hash(row[4], row[1], row[2], row[3]) != row[5]:
                raise ChainError(f"audit chain in `{self.path}`: entry {start[0]} changed or vanished since it was "
                                 "verified: run `gatekit audit verify`")
        rows = con.execute(_ROWS + " WHERE seq > ? ORDER BY seq", (start[0],))  # streamed, not loaded
        problems, count, head = self._walk(rows, start[0] + 1, start[1], None)
        anchor = con.execute("SELECT count, head, mac FROM anchor WHERE id = 1").fetchone()
        problems += self._check_anchor(anchor, count, head, count > 0)
        if problems:
            raise ChainError(f"audit chain in `{self.path}` is broken ({problems[0]}): run `gatekit audit verify`")
        self._verified = (count, head)
        return count, head

    def _walk(self, rows: Iterable[tuple[Any, ...]], want_seq: int, want_prev: str,
              position: dict[str, int] | None) -> tuple[list[str], int, str]:
        """Check that `rows` continue a chain at `want_seq` after the entry hashed `want_prev`.

        `position` (hash -> seq of every entry) tells a reordered entry from a lost one, in messages.
        """
        problems: list[str] = []
        position = position or {}
        for seq, kind, action_id, text, prev, digest in rows:
            if seq != want_seq:
                gone = f"entry {want_seq}" if seq == want_seq + 1 else f"entries {want_seq}-{seq - 1}"
                problems.append(f"{gone} deleted (the log jumps from {want_seq - 1} to {seq})")
            if self._entry_hash(prev, kind, action_id, text) != digest:
                problems.append(f"entry {seq} modified: its hash does not match its content")
            elif prev != want_prev:
                if prev in position and position[prev] != seq - 1:
                    problems.append(f"entry {seq} out of order: it was written after entry {position[prev]}")
                elif seq == want_seq:
                    problems.append(f"entry {seq} does not follow entry {seq - 1} (an entry was deleted or replaced)")
            want_seq, want_prev = seq + 1, digest
        return problems, want_seq - 1, want_prev

    def _check_anchor(self, anchor: tuple[Any, ...] | None, count: int, head: str, any_rows: bool) -> list[str]:
        if anchor is None:
            return ["the anchor is missing"] if any_rows else []
        a_count, a_head, a_mac = anchor
        problems = []
        if not hmac.compare_digest(a_mac, self._anchor_mac(a_count, a_head)):
            problems.append("the anchor was modified (or the key is wrong)")
        if a_count > count:
            problems.append(f"truncated: the anchor counts {a_count} entries, the log ends at {count}")
        elif a_count < count:
            problems.append(f"entries after {a_count} were added outside gatekit (the anchor counts {a_count})")
        elif a_head != head:
            problems.append(f"the last entry ({count}) is not the one the anchor recorded")
        return problems

    # -- reading ----------------------------------------------------------------------------------------
    def entries(self, action_id: str | None = None) -> Iterator[Receipt]:
        """Every entry in chain order (of one action, if given). Reads a snapshot."""
        sql = "SELECT seq, kind, action_id, body, prev, hash FROM receipts"
        args: tuple[Any, ...] = ()
        if action_id is not None:
            sql, args = sql + " WHERE action_id = ?", (action_id,)
        with self.db.read() as con:
            rows = con.execute(sql + " ORDER BY seq", args).fetchall()
        for seq, kind, aid, text, prev, digest in rows:
            try:
                body = json.loads(text)
            except ValueError:
                body = {"unreadable": text}
            yield Receipt(seq, kind, aid, body, prev, digest)

    def anchor(self) -> tuple[int, str]:
        """`(count, head)` now: keep it elsewhere and pass it to `verify(expect=...)` later."""
        with self.db.read() as con:
            row = con.execute("SELECT count, head FROM anchor WHERE id = 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def verify(self, expect: tuple[int, str] | None = None) -> Verification:
        """Walk the whole chain; every problem found is listed, with the entry it is at.

        >>> Receipts("approvals.db").verify().problems
        ()
        """
        try:
            with self.db.read() as con:
                position = dict(con.execute("SELECT hash, seq FROM receipts"))
                problems, count, head = self._walk(con.execute(_ROWS + " ORDER BY seq"), 1, GENESIS, position)
                anchor = con.execute("SELECT count, head, mac FROM anchor WHERE id = 1").fetchone()
                kept = con.execute("SELECT hash FROM receipts WHERE seq = ?", (expect[0],)).fetchone() if expect else None
        except (StoreError, sqlite3.Error) as exc:
            return Verification(False, 0, GENESIS, (f"cannot read the audit log: {exc}",))
        problems += self._check_anchor(anchor, count, head, count > 0)
        if expect is not None:
            e_count, e_head = expect
            if count < e_count:
                problems.append(f"truncated: an anchor kept elsewhere counts {e_count} entries, the log ends at {count}")
            elif e_count and (kept is None or kept[0] != e_head):
                problems.append(f"entry {e_count} is not the one the anchor kept elsewhere recorded")
        return Verification(not problems, count, head, tuple(problems))
