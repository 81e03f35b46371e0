"""The SQLite file the broker and the receipts share: WAL, a busy timeout, and immediate transactions.

Several agent processes and reviewers use one file at once. Every write is one `BEGIN IMMEDIATE`
transaction, so two processes never both read a request as pending and both act on it: the second waits
(up to `busy_timeout`) and then reads what the first committed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from gatekit.errors import StoreError

SCHEMA_VERSION = "1"
KIND = "gatekit-broker"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
  id TEXT PRIMARY KEY,
  action_id TEXT NOT NULL,
  status TEXT NOT NULL,              -- pending | approved | denied | timed_out | executed | expired
  action TEXT NOT NULL,              -- the action record as canonical JSON: what the reviewer sees
  tool TEXT NOT NULL, agent TEXT, session TEXT, user TEXT,
  evidence_hash TEXT NOT NULL,
  rules TEXT NOT NULL, reasons TEXT NOT NULL, tier TEXT,
  approvals INTEGER NOT NULL, roles TEXT NOT NULL, approval_ttl_us INTEGER,
  requested_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  decided_at INTEGER, approved_until INTEGER, used_at INTEGER, executed_hash TEXT,
  break_glass INTEGER NOT NULL DEFAULT 0, break_glass_reason TEXT, flagged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status, expires_at);
CREATE TABLE IF NOT EXISTS votes (
  request_id TEXT NOT NULL REFERENCES requests (id),
  reviewer TEXT NOT NULL,
  role TEXT,
  decision TEXT NOT NULL,            -- approve | deny
  reason TEXT,
  at INTEGER NOT NULL,
  break_glass INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE IF NOT EXISTS reviewers (reviewer TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (reviewer, role));
CREATE TABLE IF NOT EXISTS receipts (
  seq INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  action_id TEXT,
  body TEXT NOT NULL,                -- canonical JSON
  prev TEXT NOT NULL,                -- the hash of the entry before
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_action ON receipts (action_id);
CREATE TABLE IF NOT EXISTS anchor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  count INTEGER NOT NULL,            -- how many entries the chain holds: a truncated log is caught
  head TEXT NOT NULL,                -- the hash of the last one
  mac TEXT NOT NULL
);
"""

# A hook a test can set to pause a process inside its write transaction (see tests/enforce/test_crash.py).
Hook = Callable[[str], None]


class Database:
    """One SQLite file, one connection per process, writes serialised by `BEGIN IMMEDIATE`.

    >>> db = Database("approvals.db")
    >>> with db.write() as con:
    ...     con.execute("...")
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0, durable: bool = True,
                 hook: Hook | None = None) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self.durable = durable
        self.hook = hook
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            self._connection()

    # -- connections ------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._con is not None and self._pid == os.getpid():
            return self._con
        if self.path != ":memory:" and not Path(self.path).parent.is_dir():
            raise StoreError(f"cannot open broker store `{self.path}`: no such directory")
        con = None
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                  check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._set_wal(con)
            con.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            con.execute("PRAGMA foreign_keys = ON")
            self._create(con)
        except (sqlite3.Error, StoreError) as exc:
            if con is not None:
                con.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open broker store `{self.path}`: {exc}") from exc
        self._con, self._pid = con, os.getpid()  # a forked child opens its own
        return con

    def _set_wal(self, con: sqlite3.Connection) -> None:
        if self.path == ":memory:":
            return
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:  # another process holds a lock while switching
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode is `{mode}`)")

    def _create(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise StoreError(f"`{self.path}` is a SQLite file but not a gatekit broker store")
            # statement by statement: executescript would commit the transaction first
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('kind', ?), ('schema_version', ?)", (KIND, SCHEMA_VERSION))
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("kind") != KIND:
                raise StoreError(f"`{self.path}` is not a gatekit broker store")
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise StoreError(f"broker store `{self.path}` has schema version `{meta.get('schema_version')}`, "
                                 f"this gatekit reads `{SCHEMA_VERSION}`")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    # -- transactions -----------------------------------------------------------------------------------
    @contextmanager
    def write(self, name: str = "write") -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed if the block ends normally, else rolled back.

        SQLite errors become `StoreError`: the caller decides what fails closed.
        """
        with self._lock:
            try:
                con = self._connection()
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"broker store `{self.path}` is unavailable: {exc}") from exc
            try:
                yield con
                if self.hook is not None:
                    self.hook(name)  # before the commit: what a crash here loses must be nothing half-done
                con.execute("COMMIT")
            except BaseException as exc:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"broker store `{self.path}` failed: {exc}") from exc
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads (a deferred transaction)."""
        with self._lock:
            try:
                con = self._connection()
                con.execute("BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"broker store `{self.path}` is unavailable: {exc}") from exc
            try:
                yield con
            except sqlite3.Error as exc:
                raise StoreError(f"broker store `{self.path}` failed: {exc}") from exc
            finally:
                try:
                    con.execute("COMMIT")
                except sqlite3.Error:
                    pass
