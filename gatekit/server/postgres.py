"""The approvals service's store on PostgreSQL (psycopg 3): several `gatekit serve` replicas on one database.

The same seam as `SQLiteStore`: `transaction()` and `read()` hand out a connection taking `?` parameters,
and the service's SQL is the same text on both (upserts with `ON CONFLICT`, no `rowid`, column names from
the cursor). What differs is here and only here: `?` becomes `%s`, the schema's integers are 64-bit and the
column named `user` is quoted.

Write transactions run at READ COMMITTED, and the replicas' writes overlap: a write locks the rows it
decides on (`SELECT ... FOR UPDATE` on the request it votes on, consumes or settles, on the agent whose
pending requests it counts), so two writes to one request run one after the other and the second sees
what the first committed. Only the chain's tail is one writer: `lock_chain` takes one transaction-scoped
advisory lock just before the entries are appended (the head read in the same message, the checkpoint
signed, the entries and checkpoint inserted in the COMMIT's message), so `seq = last + 1` never forks, and the chain's order of two writes to one request is the order their
row locks gave them (the second appends after the first committed). Nothing takes a row lock after the
advisory lock, so the two kinds of lock never wait on each other in a cycle. Reads are snapshots
(`REPEATABLE READ, READ ONLY`) and run in parallel. A killed replica's transaction is rolled back by the
server when its connection drops, and its locks go with it.

Each write transaction also `NOTIFY`s the ids of the requests it changed; `listen(callback)` runs a thread
that `LISTEN`s and hands them to the callback, which is how a replica's long polls hear a vote cast on
another replica without polling the database.

>>> store = PostgresStore("postgresql://gatekit@/gatekit?host=/run/postgresql")
>>> with store.transaction() as con:
...     con.execute("SELECT count(*) FROM requests").fetchone()
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from gatekit.errors import StoreError
from gatekit.server.store import KIND, MIGRATIONS, SCHEMA_VERSION, TAIL

log = logging.getLogger("gatekit.server")
LOCK = 0x6761746B69740001  # pg_advisory_xact_lock key: "gatekit" + 1, the approvals store's write lock
CHANNEL = "gatekit_requests"
PAYLOAD_MAX = 7900  # NOTIFY payloads are limited to 8000 bytes; more ids than fit wake every waiter ("*")
SESSION = ("SET statement_timeout = '15s'", "SET lock_timeout = '15s'",
           "SET idle_in_transaction_session_timeout = '30s'")


def postgresql_ddl(sql: str) -> str:
    """A migration written for SQLite, as PostgreSQL runs it: 64-bit integers (microsecond times), and the
    column `user` (a reserved word in PostgreSQL) quoted. So the two stores' schemas are one text."""
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"(?m)^(\s*)user\b", r'\1"user"', sql)


@lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """`?` parameters as psycopg's `%s` (a literal `%` doubled); quoted text is left alone."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            quote = "" if ch == quote else quote
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class Connection:
    """A psycopg connection as the service uses one: `execute(sql, params)` with `?` placeholders.
    `for_update` is what a write appends to a SELECT of the rows it decides on (nothing in a read).

    Round trips are what a statement costs here (psycopg spends 80-100 µs of CPU on each), so a transaction
    sends its `BEGIN` with its first statement, and the statements `defer`red to its end (the chain's
    entries and checkpoint) with its `NOTIFY` and `COMMIT`: one simple-protocol message each, its values
    bound by psycopg's client-side cursor (libpq's quoting). In READ COMMITTED every statement of such a
    message takes its own snapshot, so one sent after a lock sees what committed before the lock was had.
    """

    def __init__(self, con: Any, *, writing: bool = False, begin: str | None = None) -> None:
        self._con = con
        self._begin = begin  # not sent yet: goes with the first statement
        self.for_update = " FOR UPDATE" if writing else ""
        self.changed: list[str] = []  # the requests this transaction changed, to NOTIFY at its commit
        self.deferred: list[tuple[str, tuple[Any, ...]]] = []  # statements sent with the COMMIT

    @property
    def begun(self) -> bool:
        return self._begin is None

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run `sql` (several statements, `;`-separated, only without parameters); the cursor holds the last
        statement's rows."""
        if self._begin is not None:
            return self.in_turn([(sql, params)])  # with the BEGIN not sent yet
        cursor = self._con.execute(placeholders(sql), tuple(params))
        while cursor.nextset():
            pass
        return cursor

    def in_turn(self, statements: Iterable[tuple[str, Iterable[Any]]]) -> Any:
        """Several statements in one message (values bound client-side); the cursor holds the last one's rows."""
        parts, params = [] if self._begin is None else [self._begin], []
        self._begin = None
        for sql, values in statements:
            parts.append(placeholders(sql))
            params += tuple(values)
        cursor = _client_cursor(self._con).execute("; ".join(parts), params)
        while cursor.nextset():
            pass
        return cursor

    def finish(self) -> None:
        """Send the deferred statements, the NOTIFY of the requests changed and the COMMIT, in one message
        (if any statement fails, the ones after it, the COMMIT included, do not run)."""
        if not self.begun and not (self.deferred or self.changed):
            return  # nothing was sent, nothing to send: nothing to commit
        parts: list[str] = [] if self.begun else [str(self._begin)]
        self._begin = None
        params: list[Any] = []
        for sql, values in self.deferred:
            parts.append(placeholders(sql))
            params += values
        if self.changed:
            payload = ",".join(dict.fromkeys(self.changed))
            parts.append(f"NOTIFY {CHANNEL}, %s")
            params.append(payload if len(payload) <= PAYLOAD_MAX else "*")
        parts.append("COMMIT")
        if params:
            _client_cursor(self._con).execute("; ".join(parts), params)
        else:
            self._con.execute("; ".join(parts))


def _client_cursor(con: Any) -> Any:
    from psycopg import ClientCursor

    return ClientCursor(con)


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        parts = conninfo_to_dict(url)
        parts.pop("password", None)
        return make_conninfo(**parts)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001  an unparsable URL: show only its scheme
        return url.split("://", 1)[0] + "://..."


class PostgresStore:
    """The approvals store in a PostgreSQL database shared by every replica.

    `pool` connections serve reads and writes of this process; `create=False` opens an existing store only
    (what `gatekit audit verify` does) and refuses an empty database instead of creating the schema. How
    long a request waits for the database before it fails (closed) is the URL's `connect_timeout` (libpq's
    own parameter), 5 seconds if it has none.
    """

    shared = True  # other processes on other hosts write it too

    def __init__(self, url: str, *, pool: int = 10, create: bool = True) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise StoreError("a PostgreSQL store needs the `postgresql` extra: pip install 'gatekit[postgresql]' "
                             f"({exc.name} is missing)") from None
        try:
            connect_timeout = float(conninfo_to_dict(url).get("connect_timeout") or 5)
        except (psycopg.Error, ValueError) as exc:
            raise StoreError(f"`{shown(url)}` is not a PostgreSQL URL: {_reason(exc)}") from None
        self.url = url
        self.where = shown(url)
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._listeners: list[threading.Thread] = []
        self._stop = threading.Event()

        def configure(con: Any) -> None:
            for statement in SESSION:
                con.execute(statement)

        try:
            self.pool = ConnectionPool(url, min_size=1, max_size=pool, timeout=connect_timeout, open=False,
                                       kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout))},
                                       configure=configure, name="gatekit-approvals")
            self.pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:  # noqa: BLE001  psycopg's and the pool's errors alike
            if hasattr(self, "pool"):
                self.pool.close()
            raise StoreError(f"cannot reach the approvals store `{self.where}`: {_reason(exc)}") from None
        try:
            self._migrate(create)
        except BaseException:
            self.pool.close()
            raise

    # -- schema ------------------------------------------------------------------------------------------
    def _migrate(self, create: bool) -> None:
        with self.transaction() as con:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
            if tables and "meta" not in tables:
                raise StoreError(f"`{self.where}` holds other tables but is not a gatekit approvals store")
            version = 0
            if "meta" in tables:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("kind") != KIND:
                    raise StoreError(f"`{self.where}` is not a gatekit approvals store")
                version = int(meta.get("schema_version", "0"))
            elif not create:
                raise StoreError(f"no approvals store in `{self.where}`")
            if version > SCHEMA_VERSION:
                raise StoreError(f"the approvals store `{self.where}` has schema version {version}, newer than "
                                 f"this gatekit ({SCHEMA_VERSION}): upgrade gatekit")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in postgresql_ddl(MIGRATIONS[step]).split(";"):
                    if statement.strip():
                        con.execute(statement)
                for key, value in (("kind", KIND), ("schema_version", str(step))):
                    con.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # -- the seam ----------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (READ COMMITTED: each statement sees what committed before it, a row lock
        waited for sees the row as its holder left it); committed when the block ends normally, rolled back
        on any error. Its chain entries are appended under `lock_chain`."""
        with self._session("BEGIN ISOLATION LEVEL READ COMMITTED", writing=True) as con:
            yield con

    def lock_chain(self, con: Connection) -> tuple[int, str] | None:
        """Inside a write transaction, right before its entries are appended: wait for the chain's one
        writer lock (every replica's), held until the commit; returns the chain's last `(seq, hash)` (None:
        empty), read once the lock is held (the same message: the read's snapshot is taken after the lock)."""
        return con.execute(f"SELECT pg_advisory_xact_lock({LOCK}); {TAIL}").fetchone()

    def defer(self, con: Connection, sql: str, params: Iterable[Any] = ()) -> None:
        """Inside a write transaction: run `sql` at its end, sent with the COMMIT (nothing reads it before)."""
        con.deferred.append((sql, tuple(params)))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent snapshot, read-only."""
        with self._session("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as con:
            yield con

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """The rows of one statement, in autocommit (a statement is its own snapshot): one round trip where
        `read()` takes two. Every authenticated request reads its principal this way."""
        try:
            with self.pool.connection() as raw:
                return Connection(raw).execute(sql, params).fetchall()
        except self._errors as exc:
            raise StoreError(f"the approvals store `{self.where}` failed: {_reason(exc)}") from exc
        except Exception as exc:  # noqa: BLE001  PoolTimeout: unreachable
            raise StoreError(f"cannot reach the approvals store `{self.where}`: {_reason(exc)}") from None

    @contextmanager
    def _session(self, begin: str, writing: bool = False) -> Iterator[Connection]:
        failure = f"the approvals store `{self.where}` failed"
        try:
            pooled = self.pool.connection()
            raw = pooled.__enter__()
        except Exception as exc:  # noqa: BLE001  PoolTimeout, OperationalError: unreachable
            raise StoreError(f"cannot reach the approvals store `{self.where}`: {_reason(exc)}") from None
        ok = False
        con = Connection(raw, writing=writing, begin=begin)  # BEGIN goes with its first statement
        try:
            try:
                yield con
                con.finish()
                ok = True
            except self._errors as exc:
                raise StoreError(f"{failure}: {_reason(exc)}") from exc
            finally:
                if not ok and con.begun:
                    try:
                        raw.execute("ROLLBACK")
                    except Exception:  # noqa: BLE001  a dead connection: the pool replaces it
                        pass
        finally:
            pooled.__exit__(None, None, None)

    def changed(self, con: Connection, request_ids: Iterable[str]) -> None:
        """Inside a write transaction: these requests changed; waiters everywhere hear it once it commits."""
        con.changed.extend(request_ids)

    def listen(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call `callback(request_id)` for every request a replica changes (`None`: anything may have changed,
        after the listening connection was lost and remade). Returns a function that stops listening."""
        stop = threading.Event()
        thread = threading.Thread(target=self._listen, args=(callback, stop), daemon=True,
                                  name="gatekit-listen")
        thread.start()
        self._listeners.append(thread)

        def end() -> None:
            stop.set()
            thread.join(timeout=5)
        return end

    def _listen(self, callback: Callable[[str | None], None], stop: threading.Event) -> None:
        import psycopg

        delay = 0.1
        while not stop.is_set() and not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as con:
                    con.execute(f"LISTEN {CHANNEL}")
                    callback(None)  # whatever changed while nobody listened
                    delay = 0.1
                    while not stop.is_set() and not self._stop.is_set():
                        for note in con.notifies(timeout=1.0):
                            for rid in note.payload.split(","):
                                callback(None if rid == "*" else rid)
            except Exception as exc:  # noqa: BLE001  the database went away: try again, waiters re-read meanwhile
                log.warning("listening to the approvals store failed, retrying: %s", _reason(exc))
                callback(None)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        for thread in self._listeners:
            thread.join(timeout=5)
        self.pool.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
