"""Ingest JSON Lines and Parquet logs into the action store.

A file that cannot be read at all raises `LogFormatError`; anything bad *inside* a readable file is
quarantined with a reason, never raised, so one hostile line cannot stop an ingest. A Parquet row is
turned into the JSON object a JSONL line would hold and goes through the same checks, so a bad row gets
the same reason as the equivalent line. Adapters (`gatekit.logs.adapters`) hand their records to
`ingest_sources`, which puts them through the very same checks, ids, quarantine and batched inserts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from gatekit.action import FIELDS, canonical_json, parse_ts
from gatekit.errors import LogFormatError, StoreError
from gatekit.logs.store import ACTION_BATCH, QUARANTINE_BATCH, Store

__all__ = ["IngestReport", "Record", "Rejected", "Source", "ingest", "ingest_sources", "inspect", "json_values"]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_DEPTH = 64
BATCH_ROWS = 50_000
_CHUNK_BYTES = 8 << 20
_MAX_EPOCH = 253402300800  # 10000-01-01T00:00:00Z: epoch timestamps must fall in years 1970..9999
_TOO_DEEP = f"nesting too deep (more than {MAX_DEPTH} levels)"
_KNOWN = frozenset(FIELDS)
_STRING_FIELDS = ("action_id", "agent", "session", "user", "evidence_hash", "executed_hash", "outcome")
_STRING_TYPES = frozenset((str, type(None)))
_JSON_TEXT_COLUMNS = ("args", "context", "approvals")  # Parquet string columns that hold JSON text
_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
_UTC_US = ACTION_BATCH.field("ts").type
# JSON text for the store. orjson is ~10x faster but writes NaN as null, so values the stdlib had to parse
# (the only ones that can hold NaN or Infinity) are written by the stdlib, with an encoder built once
# (json.dumps with options builds one per call). Both write compact text and keep UTF-8 as is.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode
_dumps = orjson.dumps

Progress = Callable[[int, int], None]


class Rejected(Exception):
    """A record that cannot become an action, and why: it is quarantined with `reason`.

    An adapter yields one (or a `transform` raises one) for what it cannot read.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# (line number, the record or why there is none, the raw text or bytes it came from): what adapters yield.
Record = tuple[int, "dict[str, Any] | Rejected", "str | bytes"]
Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Source:
    """One input of an ingest: its name (kept as `source`), its size in bytes (for progress) and how to read it.

    `kind` is `jsonl` or `parquet` (lines or rows checked as the action contract, after `transform` when
    given: a function of the parsed object that returns the contract record or raises `Rejected`), or
    `records`: `read()` yields `Record`s an adapter made.
    """

    name: str
    path: Path
    size: int
    kind: str
    read: Callable[[], Iterable[Record]] | None = None
    transform: Transform | None = None


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did; `stored + quarantined + duplicates == read` always."""

    files: int
    read: int
    stored: int
    quarantined: int
    duplicates: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def ingest(
    store: Store, paths: Sequence[Path | str], *, progress: Progress | None = None, now: datetime | None = None
) -> IngestReport:
    """Read log files into `store` in the order given, all or nothing (one transaction).

    `progress(done_bytes, total_bytes)` is called now and then; it must not use `store`, which a
    background thread is writing to. `now` is the ingest time (default: the clock), also the `ts` of
    records without one.

    >>> with Store("gatekit.duckdb") as store:
    ...     ingest(store, ["agents.jsonl"]).stored
    """
    return ingest_sources(store, [inspect(p) for p in paths], progress=progress, now=now)


def ingest_sources(
    store: Store, sources: Sequence[Source], *, progress: Progress | None = None, now: datetime | None = None
) -> IngestReport:
    """`ingest` for sources already resolved (by `inspect`, or by an adapter): same checks, same transaction.

    >>> ingest_sources(store, [inspect("agents.jsonl")]).stored
    """
    now = _utc(now or datetime.now(timezone.utc))
    total = sum(source.size for source in sources)
    sink, done = _Sink(store, now), 0
    store.con.begin()
    try:
        for source in sources:
            seen: dict[str, int] = {}  # content hash -> occurrences in this file
            if source.kind == "records":
                assert source.read is not None
                sink.add_records(source.name, source.read(), seen)
            else:
                parquet = source.kind == "parquet"
                for first, lines, pos in _parquet_chunks(source.path) if parquet else _jsonl_chunks(source.path):
                    sink.add(source.name, first, lines, seen, parquet, source.transform)
                    if progress is not None:
                        progress(done + min(pos, source.size), total)
            done += source.size
            if progress is not None and source.kind == "records":
                progress(done, total)
        sink.flush()
        sink.close()
        store.con.commit()
    except BaseException as e:
        sink.close(failed=True)
        store.con.rollback()
        if isinstance(e, duckdb.Error):
            raise StoreError(f"cannot write to store `{store.path}`: {e}") from e
        raise
    if progress is not None:
        progress(total, total)
    return IngestReport(len(sources), sink.read, sink.stored, sink.quarantined, sink.duplicates)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def inspect(given: Path | str, kind: str | None = None) -> Source:
    """A readable file as a `Source` of the action contract, `jsonl` or `parquet` (default: by its name).
    Raises `LogFormatError` when it cannot be read."""
    path, size = Path(given), readable(given)
    name = path.name.lower()
    if kind is None:
        if name.removesuffix(".gz").endswith(JSONL_SUFFIXES):
            kind = "jsonl"
        elif name.endswith(PARQUET_SUFFIXES):
            kind = "parquet"
        else:
            raise LogFormatError(f"cannot read `{given}`: unknown log format, expected .jsonl, .json or .ndjson "
                                 "(optionally .gz) or .parquet")
    return Source(str(given), path, size, kind)


def readable(given: Path | str) -> int:
    """The size of a file that can be opened and read, else `LogFormatError`."""
    path = Path(given)
    try:
        if not path.is_file():
            raise LogFormatError(f"cannot read `{given}`: {'a directory' if path.is_dir() else 'no such file'}")
        with path.open("rb") as f:
            f.read(1)
        size = path.stat().st_size
    except OSError as e:
        raise LogFormatError(f"cannot read `{given}`: {e.strerror or e}") from e
    return size


def json_values(path: Path) -> Iterator[tuple[int, Any, bytes]]:
    """(line number, parsed value or `Rejected`, raw line) of each non-empty line of a JSON Lines file
    (optionally gzip), with the reasons ingest gives to a line it cannot parse."""
    for first, lines, _ in _jsonl_chunks(path):
        for number, line in enumerate(lines, first):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            try:
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    value = _decode_slow(line)[0]
                if _too_deep(value):
                    raise _Bad(_TOO_DEEP)
            except _Bad as e:
                value = e
            yield number, value, line


def _jsonl_chunks(path: Path) -> Iterator[tuple[int, list[bytes], int]]:
    """(first line number, lines, bytes of the file read so far), a few MB at a time."""
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b" or path.name.lower().endswith(".gz")
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            carry, first = b"", 1
            while block := stream.read(_CHUNK_BYTES):
                if first == 1 and not carry and block.startswith(b"\xef\xbb\xbf"):
                    block = block[3:]  # a UTF-8 byte order mark is an editor's artefact, not data
                block = carry + block
                cut = block.rfind(b"\n")
                carry = block[cut + 1:]
                if cut >= 0:
                    lines = block[:cut].split(b"\n")
                    yield first, lines, raw.tell()
                    first += len(lines)
            if carry:
                yield first, [carry], raw.tell()
    except (OSError, EOFError, zlib.error) as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e


def _parquet_chunks(path: Path) -> Iterator[tuple[int, list[bytes], int]]:
    con = duckdb.connect()  # its own connection: the store's is busy inside the ingest transaction
    try:
        con.execute("SET TimeZone = 'UTC'")
        columns = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()[0][0]
        fields = ", ".join(f"{_quote(name)} := {_parquet_expr(name, kind)}" for name, kind, *_ in columns)
        reader = con.sql(
            f"SELECT to_json(struct_pack({fields}))::VARCHAR "
            "FROM read_parquet($path, file_row_number = true) ORDER BY file_row_number",
            params={"path": str(path)},
        ).to_arrow_reader(BATCH_ROWS)
        size, first = path.stat().st_size, 1
        for batch in reader:
            lines = [text.encode("utf-8") for text in batch.column(0).to_pylist()]
            yield first, lines, size * (first + len(lines) - 1) // max(rows, 1)
            first += len(lines)
    except duckdb.Error as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parquet_expr(name: str, kind: str) -> str:
    if kind == "JSON" and name in _JSON_TEXT_COLUMNS:
        return f"{_quote(name)}::VARCHAR"  # parsed in Python like a JSONL line, NaN and all
    if kind.startswith("TIMESTAMP_"):
        return f"{_quote(name)}::TIMESTAMP"  # ns/ms/s precision: the store keeps microseconds
    return _quote(name)


class _Bad(Rejected):
    """A line or row that cannot be stored; `undecodable` when it is not even UTF-8."""

    def __init__(self, reason: str, undecodable: bool = False) -> None:
        super().__init__(reason)
        self.undecodable = undecodable


class _Sink:
    """Validates lines into rows and has a background thread write them to the store in batches.

    DuckDB releases the GIL while it inserts, so the next batch is parsed meanwhile (about 10% faster
    on two cores); one batch in flight keeps memory bounded and the inserts in order.
    """

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self.rows: list[tuple[Any, ...]] = []
        self.bad: list[tuple[Any, ...]] = []
        self.read = self.stored = self.quarantined = self.duplicates = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatekit-ingest")
        self._pending: Future[None] | None = None

    def add(self, source: str, first: int, lines: list[bytes], seen: dict[str, int], parquet: bool,
            transform: Transform | None = None) -> None:
        rows, now, loads, JSONDecodeError = self.rows, self.now, orjson.loads, orjson.JSONDecodeError
        for number, line in enumerate(lines, first):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            self.read += 1
            try:
                if parquet:
                    record, slow = _parquet_record(line)
                else:
                    try:
                        record, slow = loads(line), False
                    except JSONDecodeError:
                        record, slow = _decode_slow(line)
                    # Inline the common case: an object with too few brackets to be nested too deep.
                    if slow or type(record) is not dict or line.count(b"[") + line.count(b"{") > MAX_DEPTH:
                        record = _check(record, slow)
                if transform is not None:
                    record = _check(transform(record), slow)
                rows.append(_to_row(record, slow, now, seen, source, number))
            except Rejected as e:
                self.quarantined += 1
                undecodable = isinstance(e, _Bad) and e.undecodable
                raw, raw_bytes = (None, line) if undecodable else (line.decode("utf-8"), None)
                self.bad.append((source, number, raw, raw_bytes, e.reason))
        if len(rows) >= BATCH_ROWS or len(self.bad) >= BATCH_ROWS:
            self.flush()

    def add_records(self, source: str, records: Iterable[Record], seen: dict[str, int]) -> None:
        """Adapter records: checked as a line the stdlib parsed (NaN, depth, lone surrogates) would be."""
        for number, record, raw in records:
            self.read += 1
            try:
                if isinstance(record, Rejected):
                    raise record
                self.rows.append(_to_row(_check(record, True), True, self.now, seen, source, number))
            except Rejected as e:
                self.quarantined += 1
                text, data = _raw(raw)
                self.bad.append((source, number, text, data, e.reason))
            if len(self.rows) >= BATCH_ROWS or len(self.bad) >= BATCH_ROWS:
                self.flush()

    def flush(self) -> None:
        actions = _table(self.rows, ACTION_BATCH, self.now) if self.rows else None
        bad = _table(self.bad, QUARANTINE_BATCH, self.now) if self.bad else None
        self.rows, self.bad = [], []
        self._wait()
        if actions is not None or bad is not None:
            self._pending = self._writer.submit(self._write, actions, bad)

    def _write(self, actions: pa.Table | None, bad: pa.Table | None) -> None:
        if actions is not None:
            inserted = self.store.insert_actions(actions)
            self.stored += inserted
            self.duplicates += actions.num_rows - inserted
        if bad is not None:
            self.store.insert_quarantine(bad)

    def _wait(self, failed: bool = False) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if failed:
                wait([pending])  # only so that the rollback does not race the insert
            else:
                pending.result()

    def close(self, failed: bool = False) -> None:
        try:
            self._wait(failed)
        finally:
            self._writer.shutdown(wait=True)


def _raw(raw: str | bytes) -> tuple[str | None, bytes | None]:
    """Raw input as the quarantine keeps it: text when it is valid UTF-8, else the bytes."""
    if isinstance(raw, str):
        if not _has_lone_surrogate(raw):
            return raw, None
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, raw


def _table(rows: list[tuple[Any, ...]], schema: pa.Schema, now: datetime) -> pa.Table:
    """Rows (tuples in `schema` order, `ingested_at` last and left out) as an Arrow table."""
    columns = [pa.array(values, field.type) for field, values in zip(schema, zip(*rows))]
    return pa.Table.from_arrays([*columns, pa.repeat(pa.scalar(now, _UTC_US), len(rows))], schema=schema)


def _decode_slow(data: bytes) -> tuple[Any, bool]:
    """Parse what orjson refused: not UTF-8, not JSON, or JSON only the stdlib reads (NaN, Infinity,
    lone surrogates, numbers beyond a double). The flag says the value needs the surrogate check."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Bad(f"invalid utf-8 at byte offset {e.start}", undecodable=True) from None
    try:
        return json.loads(text), True
    except RecursionError:
        raise _Bad(_TOO_DEEP) from None
    except json.JSONDecodeError as e:
        raise _Bad(f"invalid json: {e.msg[:1].lower()}{e.msg[1:]} at column {e.colno}") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise _Bad(f"invalid json: {e}") from None


def _check(value: Any, slow: bool) -> dict[str, Any]:
    if _too_deep(value):
        raise _Bad(_TOO_DEEP)
    if type(value) is not dict:
        raise _Bad(f"not a json object (got {_kind(value)})")
    if slow and _has_lone_surrogate(value):  # orjson refuses lone surrogates: only the stdlib lets them by
        raise _Bad("lone surrogate in string")  # and DuckDB cannot store them
    return value


def _parquet_record(line: bytes) -> tuple[dict[str, Any], bool]:
    try:
        record, slow = orjson.loads(line), False
    except orjson.JSONDecodeError:
        record, slow = _decode_slow(line)  # DOUBLE NaN/Infinity come out of to_json as bare NaN
    if type(record) is dict:
        for name in _JSON_TEXT_COLUMNS:
            text = record.get(name)
            if type(text) is str:
                try:
                    record[name] = orjson.loads(text)
                except orjson.JSONDecodeError:
                    try:
                        record[name], slow = _decode_slow(text.encode("utf-8"))[0], True
                    except _Bad as e:  # name the cell that did not parse; too deep reads as for a line
                        raise _Bad(e.reason if e.reason == _TOO_DEEP else f"`{name}`: {e.reason}") from None
        # A Parquet column cannot be absent, only null: drop nulls so a row matches its JSONL line.
        record = {k: v for k, v in record.items() if v is not None}
    return _check(record, slow), slow


def _to_row(
    record: dict[str, Any], slow: bool, now: datetime, seen: dict[str, int], source: str, number: int
) -> tuple[Any, ...]:
    get = record.get
    tool = get("tool")
    if type(tool) is not str:
        raise _Bad("missing `tool`" if tool is None else f"`tool` is not a string (got {_kind(tool)})")
    if not tool.strip():
        raise _Bad("`tool` is empty")
    ts = get("ts")
    if ts is None:
        ts = now
    elif type(ts) is str:
        try:
            ts = parse_ts(ts)
        except (ValueError, OverflowError):
            raise _Bad(f"bad timestamp {_show(ts)}") from None
    elif type(ts) is int or type(ts) is float:
        if not 0 <= ts < _MAX_EPOCH:  # also false for NaN
            raise _Bad(f"bad timestamp {_show(ts)}: epoch seconds must fall in years 1970..9999")
        ts = datetime.fromtimestamp(ts, timezone.utc)
    else:
        raise _Bad(f"bad timestamp (got {_kind(ts)})")
    args = _object(get("args"), "args", slow)
    context = _object(get("context"), "context", slow)
    strings = tuple(map(get, _STRING_FIELDS))
    if not _STRING_TYPES.issuperset(map(type, strings)):  # one C-level pass on the happy path
        name, value = next((n, v) for n, v in zip(_STRING_FIELDS, strings) if type(v) not in _STRING_TYPES)
        raise _Bad(f"`{name}` is not a string or null (got {_kind(value)})")
    action_id, agent, session, user, evidence_hash, executed_hash, outcome = strings
    label = get("label")
    if label is not None and label not in ("harmful", "benign"):
        raise _Bad(f"`label` must be `harmful`, `benign` or null, not {_show(label)}")
    approvals = get("approvals")
    if approvals is not None:
        if type(approvals) is not list:
            raise _Bad(f"`approvals` is not a list of objects (got {_kind(approvals)})")
        for i, approval in enumerate(approvals):
            if type(approval) is not dict:
                raise _Bad(f"`approvals` is not a list of objects (got {_kind(approval)} at index {i})")
        approvals = _encode(approvals) if slow else _dumps(approvals).decode()
    extra = None
    if not _KNOWN.issuperset(record):  # unknown keys are kept, not refused: nothing is lost
        extra = {k: v for k, v in record.items() if k not in _KNOWN}
        extra = _encode(extra) if slow else _dumps(extra).decode()
    if not action_id:
        action_id = _content_id(record, slow, seen)
    return (action_id, ts, agent, session, user, tool, args, context,
            evidence_hash, executed_hash, outcome, approvals, label, extra, source, number)


def _content_id(record: dict[str, Any], slow: bool, seen: dict[str, int]) -> str:
    """`a-` and 24 hex digits of the sha256 of the record's canonical JSON, without `action_id` and nulls
    (so `"agent": null`, a missing agent and a null Parquet cell hash alike); `#n` on the n-th repeat of
    the same content in one file, so identical calls stay distinct and re-ingesting finds the same ids."""
    content = record
    if "action_id" in record or None in record.values():
        content = {k: v for k, v in record.items() if v is not None and k != "action_id"}
    text = None if slow else _dumps(content, option=orjson.OPT_SORT_KEYS)
    # orjson's sorted output is byte for byte canonical_json's (a property test checks), except that it
    # writes floats below 1e-4 without Python's exponent form (1e-5, not 1e-05): such text has one of these.
    if text is None or b"e-" in text or b"0.0000" in text:
        text = canonical_json(content).encode("utf-8")
    digest = hashlib.sha256(text).hexdigest()[:24]
    n = seen[digest] = seen.get(digest, 0) + 1
    return f"a-{digest}" if n == 1 else f"a-{digest}#{n}"


def _object(value: Any, name: str, slow: bool) -> str:
    if value is None:
        return "{}"
    if type(value) is not dict:
        raise _Bad(f"`{name}` is not an object (got {_kind(value)})")
    # Decoded at once: orjson's bytes are over-allocated, and keeping 50k of them alive costs ~1 us each.
    return _encode(value) if slow else _dumps(value).decode()


def _too_deep(value: Any) -> bool:
    """Depth over MAX_DEPTH, found without recursion (a 5,000-deep line must not blow the stack)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if type(node) is dict else node if type(node) is list else ():
            if type(child) is dict or type(child) is list:
                if depth == MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            stack += node.keys()
            stack += node.values()
        elif type(node) is list:
            stack += node
        elif type(node) is str and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _kind(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else _encode(value)
    return f"`{text[:60]}…`" if len(text) > 60 else f"`{text}`"
