"""The store as the dashboard reads it: short read-only connections, results kept per version of the file.

DuckDB lets one process write a file or many processes read it, never both, and the dashboard must keep
working while `gatekit replay` or `gatekit ingest` writes. So the dashboard holds no connection between
reads: each read opens the file read-only, runs, and closes, so a writer waits at most for one read, and
while a writer holds the file a read retries for `LOCK_WAIT` seconds. Results are kept under the file's
version (size and modification time of the file and of its write-ahead log): an unchanged store is read
once, a changed one again; while a writer holds the file past the wait, the last version read is shown,
flagged stale, and only a page with nothing read yet has to wait (`Busy`).

A run is loaded once (`run(name)`, a `gatekit.run.Run` whose reads go through `read`) and kept under its
identity (store, name, creation time and size), so the metrics of every page share its parsed policy and
its frame, and a replaced run is loaded again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from gatekit.dashboard import APPROVALS_ENV, DB_ENV  # one definition, shared with the server
from gatekit.errors import StoreError
from gatekit.logs.quarantine import quarantine_reasons, quarantine_sources, quarantined
from gatekit.logs.store import Store
from gatekit.policy import Policy
from gatekit.run import Reader, Run, action_decisions, decision_rows, last_tuning, reviewed_args as _reviewed_args

__all__ = [
    "APPROVALS_ENV", "DB_ENV", "LOCK_WAIT", "Busy", "Contents", "Quarantine", "action_runs", "actions", "approvals",
    "approvals_path", "connect", "contents", "db_path", "decisions", "derive", "policy", "quarantine", "read",
    "reviewed_args", "run", "tuning", "version", "warm",
]

LOCK_WAIT = 2.0  # seconds a read waits for a writer before showing the last version read
STALE_KEY = "gatekit_stale_shown"
T = TypeVar("T")
Version = tuple[int, ...]


class Busy(StoreError):
    """A writer holds the store and this page has nothing read yet to show meanwhile."""


def db_path() -> Path | None:
    value = os.environ.get(DB_ENV)
    return Path(value) if value else None


def approvals_path() -> Path | None:
    value = os.environ.get(APPROVALS_ENV)
    return Path(value) if value else None


def version(path: Path) -> Version:
    """Changes whenever a writer commits (the WAL grows) or checkpoints (the file changes)."""
    out: list[int] = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            s = p.stat()
            out += [s.st_size, s.st_mtime_ns]
        except FileNotFoundError:
            out += [-1, -1]
    return tuple(out)


@contextmanager
def connect(path: Path, timeout: float = LOCK_WAIT) -> Iterator[Store]:
    """A read-only connection for one read; closed on exit, so writers are not kept waiting."""
    with Store(path, read_only=True, timeout=timeout) as store:
        store.con.execute("SET enable_progress_bar = false")
        yield store


class Memo:
    """The last `size` results by key, each with the store version it was read at. Shared by every
    session of the server, hence the lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, tuple[Version, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[Version, Any] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Hashable, at: Version, value: Any) -> None:
        with self._lock:
            self._items[key] = (at, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@st.cache_resource
def _memos() -> dict[str, Memo]:
    # frames are big (a run of 1M actions is ~100 MB): few of them; everything else is small
    return {"frames": Memo(8), "results": Memo(512)}


@st.cache_resource
def _locks() -> dict[str, float]:
    """When each store was last found locked (time.monotonic()): reads soon after do not wait again."""
    return {}


def _locked(exc: StoreError) -> bool:
    return "locked" in str(exc).lower()


def _stale(path: Path) -> None:
    if not st.session_state.get(STALE_KEY):
        st.session_state[STALE_KEY] = True
        st.warning(f"`{path.name}` is being written by another process (`gatekit replay` or `gatekit ingest`): "
                   "showing what it held before; this page updates once the writer is done", icon="⏳")


def read(kind: str, fn: Callable[..., T], *args: Hashable, big: bool = False) -> T:
    """`fn(store, *args)` on a short read-only connection, kept until the store changes.

    `kind` names what `fn` reads (it keys the result with `args`); `big` results (frames of every action)
    are kept fewer.
    """
    path = db_path()
    if path is None:
        raise StoreError(f"no store configured: start the dashboard with `gatekit dashboard --db PATH` "
                         f"(or set {DB_ENV})")
    memo = _memos()["frames" if big else "results"]
    key = (str(path), kind, args)
    now = version(path)
    hit = memo.get(key)
    if hit is not None and hit[0] == now:
        return hit[1]
    locks = _locks()
    # one wait per page, not one per read: a writer seen moments ago gets a single quick try
    wait = 0.0 if time.monotonic() - locks.get(str(path), float("-inf")) < LOCK_WAIT * 2 else LOCK_WAIT
    try:
        with connect(path, timeout=wait) as store:
            value = fn(store, *args)
    except StoreError as exc:
        if not _locked(exc):
            raise
        locks[str(path)] = time.monotonic()
        if hit is None:
            raise Busy(f"`{path}` is being written by another process and nothing was read from it yet: "
                       f"{exc}") from exc
        _stale(path)
        return hit[1]
    memo.put(key, now, value)
    return value


def derive(kind: str, fn: Callable[..., T], *args: Hashable) -> T:
    """`fn(*args)` (which reads through `read`), kept until the store changes: metrics of cached frames."""
    path = db_path()
    memo = _memos()["results"]
    key = (str(path), "derived:" + kind, args)
    now = version(path) if path else ()
    hit = memo.get(key)
    if hit is not None and hit[0] == now:
        return hit[1]
    value = fn(*args)
    memo.put(key, now, value)
    return value


# -- what the pages read ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contents:
    """What the store holds, for headlines and empty states."""

    actions: int
    first: datetime | None
    last: datetime | None
    with_approvals: int
    labelled: int
    quarantined: int
    runs: tuple[Run, ...]

    @property
    def run_names(self) -> list[str]:
        """Newest first."""
        return [r.name for r in reversed(self.runs)]


class _Reader(Reader):
    """A `Reader` whose every read is `read`: a short connection, kept until the store changes."""

    def read(self, fn: Callable[..., T], *args: Hashable, big: bool = False) -> T:
        return read(f"{fn.__module__}.{fn.__qualname__}", fn, *args, big=big)


_READER = _Reader()  # holds nothing itself: what it reads is kept by `read`


def _counts(store: Store) -> tuple[Any, ...]:
    return store.con.execute(
        "SELECT count(*), min(ts), max(ts), count(*) FILTER (coalesce(json_array_length(approvals), 0) > 0), "
        "count(*) FILTER (label IN ('harmful', 'benign')) FROM actions").fetchall()[0] + (store.count_quarantine(),)


def contents() -> Contents:
    n, first, last, approved, labelled, quarantined = read("contents", _counts)
    return Contents(actions=n, first=first, last=last, with_approvals=approved, labelled=labelled,
                    quarantined=quarantined, runs=tuple(_READER.runs()))


@st.cache_resource(max_entries=6, show_spinner=False)
def _loaded(path: str, name: str, created_at: datetime, actions: int) -> Run:
    """The run `name` of the store at `path`, kept while it is the same run (a replaced run is another)."""
    return _READER.run(name)


def run(name: str) -> Run:
    """The run `name`, loaded once: its policy parsed once, its frame assembled once (from the actions,
    kept for every run, and the run's own rows)."""
    found = next((r for r in contents().runs if r.name == name), None)
    if found is None:
        return _READER.run(name)  # raises, naming the stored runs
    return _loaded(str(db_path()), name, found.created_at, found.actions)


def actions() -> pl.DataFrame:
    """Every action without args and context, in log order (the action columns of `Run.frame`)."""
    return _READER.actions


def decisions(name: str) -> pl.DataFrame:
    """`run(name).frame`: one row per action of the run, the action's columns and its decision."""
    return run(name).frame


def warm(runs: Sequence[str] = (), *, with_approvals: bool = False) -> None:
    """Read the big frames a page is about to use side by side, each on its own connection: the actions,
    each run's decisions and, if asked, the approvals. On a first visit this overlaps their reads."""
    jobs: list[Callable[[], Any]] = [actions]
    jobs += [lambda r=r: _READER.read(decision_rows, r, big=True) for r in runs]
    if with_approvals:
        jobs.append(approvals)
    ctx = get_script_run_ctx()

    def job(fn: Callable[[], Any]) -> Any:
        if ctx is not None:  # st.warning and st.session_state work in the worker too
            add_script_run_ctx(threading.current_thread(), ctx)
        return fn()

    with ThreadPoolExecutor(len(jobs), thread_name_prefix="gatekit-warm") as pool:
        for done in [pool.submit(job, fn) for fn in jobs]:
            done.result()


def approvals() -> pl.DataFrame:
    """`approvals_frame(store)`: one row per recorded approval."""
    return _READER.approvals


def reviewed_args() -> pl.DataFrame:
    """`reviewed_args(store)`: the args and context of every approved action, long."""
    return _READER.read(_reviewed_args, big=True)


def policy(name: str) -> Policy:
    """The policy run `name` was replayed with, parsed once."""
    return run(name).policy


def tuning() -> dict[str, Any] | None:
    """`last_tuning(store)`: what the latest `gatekit tune` on this store tried, or None."""
    return read("tuning", last_tuning)


def action_runs(seq: int) -> pl.DataFrame:
    """How every stored run decided the action `seq`."""
    return read("action_runs", action_decisions, seq)


@dataclass(frozen=True)
class Quarantine:
    """The quarantine as the Quarantine page shows it: of one source (None: all), the reasons counted (most
    first), the sources counted, and the first `limit` lines (`source, line, reason, raw, undecodable`)."""

    reasons: pl.DataFrame
    sources: pl.DataFrame
    lines: pl.DataFrame

    @property
    def total(self) -> int:
        return int(self.reasons["count"].sum()) if self.reasons.height else 0


def _read_quarantine(store: Store, of: str | None, limit: int) -> Quarantine:
    reasons = quarantine_reasons(store, source=of)
    sources = quarantine_sources(store)
    lines = quarantined(store, source=of, limit=limit)
    return Quarantine(
        reasons=pl.DataFrame(reasons, schema={"reason": pl.String, "count": pl.Int64}, orient="row"),
        sources=pl.DataFrame(sources, schema={"source": pl.String, "count": pl.Int64}, orient="row"),
        lines=pl.DataFrame([(q.source, q.line, q.reason, q.raw, q.undecodable) for q in lines], orient="row",
                           schema={"source": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String,
                                   "undecodable": pl.Boolean}))


def quarantine(of: str | None = None, limit: int = 500) -> Quarantine:
    """The quarantined lines (`gatekit.logs.quarantine`) of source `of` (None: every source), kept until the
    store changes."""
    return read("quarantine", _read_quarantine, of, limit)
