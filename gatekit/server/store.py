"""The approvals service's store: principals, requests, votes, sessions and the audit chain, in one database.

`SQLiteStore` keeps them in `approvals.sqlite` inside the service's state directory (WAL, `BEGIN
IMMEDIATE` writes, so the service and `gatekit principals add` can use it at once). The service speaks to
a store only through `transaction()` and `read()`, which hand out a connection taking `?` parameters:
the seam `PostgresStore` (gatekit/server/postgres.py) implements too. `open_store` picks one from a URL.

Schema versions are numbered; a store written by a newer gatekit is refused, and one whose pages fail
SQLite's integrity check refuses to open (a corrupt store never serves approvals).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from gatekit.errors import StoreError

KIND = "gatekit-approvals"
SCHEMA_VERSION = 1
FILENAME = "approvals.sqlite"
TAIL = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"  # the chain's last entry

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE principals (
  id TEXT PRIMARY KEY,               -- canonical (NFKC + casefold), unique across kinds
  kind TEXT NOT NULL,                -- reviewer | agent | executor
  roles TEXT NOT NULL,               -- JSON list
  break_glass INTEGER NOT NULL DEFAULT 0,
  users TEXT,                        -- an agent's: JSON list of the users it may act for (NULL: any)
  context TEXT,                      -- an agent's: JSON object of context its calls must carry (NULL: none)
  credential_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,              -- pending | approved | denied | timed_out | expired | revoked | executed
  agent TEXT NOT NULL,               -- the registry id of the credential that asked
  user TEXT, session TEXT, tool TEXT NOT NULL,
  action TEXT NOT NULL,              -- strict canonical JSON of what is digested: what reviewers see
  digest TEXT NOT NULL,
  claimed TEXT NOT NULL,             -- what the call claimed for itself (ts, agent, user, context): not believed
  gate TEXT NOT NULL,                -- what the gate decided: rules, reasons, tier, its policy fingerprint
  rules TEXT NOT NULL, reasons TEXT NOT NULL, tier TEXT,
  approvals INTEGER NOT NULL, roles TEXT NOT NULL, approval_ttl_us INTEGER NOT NULL,
  fingerprint TEXT NOT NULL,         -- the service policy's, when the requirements were set
  requested_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  decided_at INTEGER, approved_until INTEGER,
  token TEXT, nonce TEXT,
  consumed_at INTEGER, consumed_by TEXT, consume_key TEXT,
  outcome TEXT,
  break_glass INTEGER NOT NULL DEFAULT 0, flagged INTEGER NOT NULL DEFAULT 0,
  note TEXT
);
CREATE INDEX requests_status ON requests (status, expires_at);
CREATE INDEX requests_agent ON requests (agent, requested_at);
CREATE TABLE votes (
  request_id TEXT NOT NULL REFERENCES requests (id),
  reviewer TEXT NOT NULL,            -- registry id
  role TEXT,                         -- the role this vote counts for
  decision TEXT NOT NULL,            -- approve | deny
  reason TEXT,
  evidence TEXT NOT NULL,            -- the digest of the call the reviewer was shown
  at INTEGER NOT NULL,
  break_glass INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE sessions (
  id_hash TEXT PRIMARY KEY,          -- sha256 of the cookie value
  principal TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  request_id TEXT,
  body TEXT NOT NULL,                -- canonical JSON
  prev TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_request ON audit (request_id);
CREATE TABLE checkpoints (
  count INTEGER PRIMARY KEY,         -- entries in the chain when signed
  head TEXT NOT NULL,
  at INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL
);
""",
}


class Store(Protocol):
    """What the service needs of a database: atomic write transactions and consistent reads, and word of
    which requests a committed transaction changed (so waiting gates wake without polling)."""

    shared: bool  # other processes, maybe on other hosts, write it too (PostgreSQL)

    def transaction(self) -> Any: ...
    def read(self) -> Any: ...
    def query(self, sql: str, params: Any = ()) -> list[Any]: ...
    def changed(self, con: Any, request_ids: Iterable[str]) -> None: ...
    def lock_chain(self, con: Any) -> tuple[int, str] | None: ...
    def defer(self, con: Any, sql: str, params: Any = ()) -> None: ...
    def listen(self, callback: Callable[[str | None], None]) -> Callable[[], None]: ...
    def close(self) -> None: ...


def for_update(con: Any, of: str | None = None) -> str:
    """What a write appends to a SELECT of the rows it decides on: a row lock where writes overlap
    (PostgreSQL's `FOR UPDATE`, of the table `of` names in a join), nothing on SQLite (its write transaction
    is the only writer) or in a read."""
    lock = getattr(con, "for_update", "")
    return f"{lock} OF {of}" if lock and of else lock


def in_turn(con: Any, *statements: tuple[str, Any]) -> Any:
    """Run `(sql, params)` statements one after the other in `con`'s transaction; the cursor of the last.
    PostgreSQL sends them in one message (each still takes its own snapshot at READ COMMITTED: one after a
    row lock sees what committed before the lock was had)."""
    run = getattr(con, "in_turn", None)
    if run is not None:
        return run(statements)
    cursor = None
    for sql, params in statements:
        cursor = con.execute(sql, params)
    return cursor


def open_store(url: str | None, state: str | Path, **options: Any) -> Store:
    """The store a `--store` URL names: `postgresql://...` (or `postgres://`), else the state directory's
    SQLite file (`None`, `sqlite` or `sqlite:`)."""
    if url is None or url in ("sqlite", "sqlite:"):
        return SQLiteStore(state, **options)
    if url.startswith(("postgresql://", "postgres://")):
        from gatekit.server.postgres import PostgresStore

        return PostgresStore(url, **options)
    raise StoreError(f"`{url.split('://', 1)[0]}` is not a store gatekit knows: use postgresql://... or leave "
                     "--store out for the state directory's SQLite file")


class SQLiteStore:
    """The embedded store: one SQLite file in the state directory.

    >>> store = SQLiteStore(Path("state"))
    >>> with store.transaction() as con:
    ...     con.execute("SELECT count(*) FROM requests").fetchone()
    """

    shared = False  # one host's file: the service's process is the one writer that matters

    def __init__(self, state: str | Path, *, busy_timeout: float = 30.0, durable: bool = True,
                 check: bool = True) -> None:
        self.state = Path(state)
        self.path = self.state / FILENAME
        self.busy_timeout = busy_timeout
        self.durable = durable
        self._lock = threading.RLock()
        self._local = threading.local()
        self._listeners: list[Callable[[str | None], None]] = []
        if not self.state.is_dir():
            raise StoreError(f"no state directory `{self.state}` (create it, readable only by the service's user)")
        con = self._connection()
        if check:
            self._check(con)
        self._migrate(con)

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is not None and self._local.pid == os.getpid():
            return con
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                  check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch `{self.path}` to WAL (journal mode `{mode}`)")
            con.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            con.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the approvals store `{self.path}`: {exc}") from exc
        self._local.con, self._local.pid = con, os.getpid()
        return con

    def _check(self, con: sqlite3.Connection) -> None:
        try:
            result = con.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the approvals store `{self.path}` is corrupt: {exc}") from exc
        if result != [("ok",)]:
            raise StoreError(f"the approvals store `{self.path}` is corrupt: {result[0][0]}")

    def _migrate(self, con: sqlite3.Connection) -> None:
        with _atomically(con, f"cannot open the approvals store `{self.path}`"):
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise StoreError(f"`{self.path}` is a SQLite file but not a gatekit approvals store")
            version = 0
            if "meta" in tables:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("kind") != KIND:
                    raise StoreError(f"`{self.path}` is not a gatekit approvals store")
                version = int(meta.get("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise StoreError(f"the approvals store `{self.path}` has schema version {version}, newer than "
                                 f"this gatekit ({SCHEMA_VERSION}): upgrade gatekit")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('kind', ?), ('schema_version', ?)",
                            (KIND, str(step)))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction, committed when the block ends normally."""
        changed: list[str] = []
        with self._lock:
            con = self._connection()
            outer, self._local.changed = getattr(self._local, "changed", None), changed
            try:
                with _atomically(con, "the approvals store failed", busy_timeout=self.busy_timeout):
                    yield con
            finally:
                self._local.changed = outer
        for rid in dict.fromkeys(changed):  # committed: wake this process's waiters
            for callback in list(self._listeners):
                callback(rid)

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        """The rows of one statement (consistent by itself): `read()` for the hottest single reads."""
        with self.read() as con:
            return con.execute(sql, params).fetchall()

    def changed(self, con: Any, request_ids: Iterable[str]) -> None:
        """Inside a write transaction: these requests changed; listeners hear it once it commits."""
        self._local.changed.extend(request_ids)

    def lock_chain(self, con: Any) -> tuple[int, str] | None:
        """The chain's last `(seq, hash)` (None: empty). Nothing to wait for: a `BEGIN IMMEDIATE`
        transaction is the only writer from its start."""
        return con.execute(TAIL).fetchone()

    def defer(self, con: Any, sql: str, params: Any = ()) -> None:
        """Run `sql` in this write transaction (PostgreSQL sends it with the commit; here there is no
        round trip to save)."""
        con.execute(sql, params)

    def listen(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call `callback(request_id)` after each commit, in this process, for the requests it changed
        (another process writing the same file is not heard: one service process per SQLite store).
        Returns a function that stops listening."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot (a deferred transaction)."""
        with self._lock:
            con = self._connection()
            try:
                con.execute("BEGIN")
                yield con
            except sqlite3.Error as exc:
                raise StoreError(f"the approvals store failed: {exc}") from exc
            finally:
                try:
                    con.execute("COMMIT")
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


@contextmanager
def _atomically(con: sqlite3.Connection, failure: str, busy_timeout: float = 0.0) -> Iterator[None]:
    """`BEGIN IMMEDIATE` (retried while another process holds the lock), then COMMIT, or ROLLBACK on any error;
    SQLite's errors become `StoreError(failure: ...)`."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            con.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StoreError(f"{failure}: {exc}") from exc
            time.sleep(0.01)
    try:
        yield
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{failure}: {exc}") from exc
        raise
