"""Ingest JSON Lines and Parquet logs into the action store.

A file that cannot be read at all raises `LogFormatError`; anything bad *inside* a readable file is
quarantined with a reason, never raised, so one hostile line cannot stop an ingest. Parquet rows are
turned into the same JSON records a JSONL line parses to and go through the same checks, so a bad row
gets the same reason as the equivalent line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
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
from gatekit.logs.store import Store

__all__ = ["IngestReport", "ingest"]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_DEPTH = 64
BATCH_ROWS = 50_000
_CHUNK_BYTES = 8 << 20
_MAX_EPOCH = 253402300800  # 10000-01-01T00:00:00Z: timestamps must fall in years 1970..9999
_TOO_DEEP = f"nesting too deep (more than {MAX_DEPTH} levels)"
_KNOWN = frozenset(FIELDS)
_STRINGS = ("agent", "session", "user", "evidence_hash", "executed_hash", "outcome")
_JSON_TEXT_COLUMNS = ("args", "context", "approvals")  # Parquet string columns that hold JSON text
# JSON text for the store. orjson is ~10x faster but writes NaN as null, so values the stdlib had to
# parse (the only ones that can hold NaN or Infinity) are written by the stdlib, built once because
# json.dumps with options builds a new encoder per call. Both write compact text with UTF-8 kept.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_STRING_FIELDS = ("action_id", *_STRINGS)
_STRING_TYPES = frozenset((str, type(None)))
_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}

Progress = Callable[[int, int], None]


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
    store: Store,
    paths: Sequence[Path | str],
    *,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Read log files into `store`, in the order given, all or nothing.

    >>> with Store("gatekit.duckdb") as store:
    ...     ingest(store, ["agents.jsonl"]).stored
    """
    now = _utc(now or datetime.now(timezone.utc))
    files = [_inspect(p) for p in paths]  # every file is checked before anything is stored
    total = sum(size for _, _, _, size in files)
    sink = _Sink(store, now)
    done = 0
    store.con.begin()
    try:
        for given, path, kind, size in files:
            chunks = _jsonl_chunks(path) if kind == "jsonl" else _parquet_chunks(path)
            seen: dict[str, int] = {}
            for first, lines, pos, from_parquet in chunks:
                sink.add(given, first, lines, seen, from_parquet)
                if progress is not None:
                    progress(done + min(pos, size), total)
            done += size
        sink.flush()
        sink.wait()
        sink.close()
        store.con.commit()
    except BaseException as e:
        sink.close()
        store.con.rollback()
        if isinstance(e, duckdb.Error):
            raise StoreError(f"cannot write to store `{store.path}`: {e}") from e
        raise
    if progress is not None:
        progress(total, total)
    return IngestReport(len(files), sink.read, sink.stored, sink.quarantined, sink.duplicates)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _inspect(given: Path | str) -> tuple[str, Path, str, int]:
    path = Path(given)
    try:
        if not path.is_file():
            raise LogFormatError(f"cannot read `{given}`: no such file")
        with path.open("rb") as f:
            f.read(1)
        size = path.stat().st_size
    except OSError as e:
        raise LogFormatError(f"cannot read `{given}`: {e.strerror or e}") from e
    name = path.name.lower()
    if name.removesuffix(".gz").endswith(JSONL_SUFFIXES):
        return str(given), path, "jsonl", size
    if name.endswith(PARQUET_SUFFIXES):
        return str(given), path, "parquet", size
    raise LogFormatError(
        f"cannot read `{given}`: unknown log format, expected .jsonl, .json or .ndjson (optionally .gz) "
        "or .parquet"
    )


Chunk = tuple[int, list[bytes], int, bool]  # first line number, lines, bytes read so far, from Parquet


def _jsonl_chunks(path: Path) -> Iterator[Chunk]:
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
                if cut < 0:
                    carry = block
                    continue
                carry = block[cut + 1:]
                lines = block[:cut].split(b"\n")
                yield first, lines, raw.tell(), False
                first += len(lines)
            if carry:
                yield first, [carry], raw.tell(), False
    except (OSError, EOFError, zlib.error) as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e


def _parquet_chunks(path: Path) -> Iterator[Chunk]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        columns = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()[0][0]
        fields = ", ".join(f"{_quote(name)} := {_parquet_expr(name, kind)}" for name, kind, *_ in columns)
        # Each row becomes the JSON object a JSONL line would hold, so both formats share one path.
        reader = con.sql(
            f"SELECT to_json(struct_pack({fields}))::VARCHAR AS j "
            "FROM read_parquet($path, file_row_number = true) ORDER BY file_row_number",
            params={"path": str(path)},
        ).to_arrow_reader(BATCH_ROWS)
        size, first = path.stat().st_size, 1
        for batch in reader:
            lines = [text.encode("utf-8") for text in batch.column(0).to_pylist()]
            yield first, lines, size * (first + len(lines) - 1) // max(rows, 1), True
            first += len(lines)
    except duckdb.Error as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parquet_expr(name: str, kind: str) -> str:
    column = _quote(name)
    if kind == "JSON":
        return f"{column}::VARCHAR"  # JSON text is parsed (and checked) like any other line
    if kind.startswith("TIMESTAMP_"):
        return f"{column}::TIMESTAMP"  # ns/ms/s precision: microseconds are what the store keeps
    return column


class _Bad(Exception):
    """A line or row that cannot be stored; `undecodable` when it is not even UTF-8."""

    def __init__(self, reason: str, undecodable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.undecodable = undecodable


class _Sink:
    """Validates lines and writes them to the store in batches."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self.rows: list[tuple[Any, ...]] = []
        self.bad: list[tuple[Any, ...]] = []
        self.read = self.stored = self.quarantined = self.duplicates = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatekit-ingest")
        self._pending: Future[None] | None = None

    def add(self, source: str, first: int, lines: list[bytes], seen: dict[str, int], from_parquet: bool) -> None:
        rows, now = self.rows, self.now
        loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
        for number, line in enumerate(lines, first):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            self.read += 1
            try:
                if from_parquet:
                    record, slow = _parquet_record(line)
                else:
                    try:
                        record, slow = loads(line), False
                    except JSONDecodeError:
                        record, slow = _decode_slow(line)
                    # The common case inline: a JSON object with too few brackets to be too deep.
                    if slow or type(record) is not dict or line.count(b"[") + line.count(b"{") > MAX_DEPTH:
                        record = _check(record, slow, line)
                rows.append(_to_row(record, slow, now, seen, source, number))
            except _Bad as e:
                self.quarantined += 1
                text = None if e.undecodable else line.decode("utf-8")
                self.bad.append((source, number, text, line if e.undecodable else None, e.reason))
        if len(rows) >= BATCH_ROWS or len(self.bad) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the batch to the writer thread. DuckDB releases the GIL while it inserts, so the next
        batch is parsed meanwhile; one batch in flight keeps memory bounded and inserts in order."""
        actions = _actions_table(self.rows, self.now) if self.rows else None
        bad = _quarantine_table(self.bad, self.now) if self.bad else None
        self.rows, self.bad = [], []
        self.wait()
        if actions is not None or bad is not None:
            self._pending = self._writer.submit(self._write, actions, bad)

    def _write(self, actions: pa.Table | None, bad: pa.Table | None) -> None:
        if actions is not None:
            inserted = self.store.insert_actions(actions)
            self.stored += inserted
            self.duplicates += actions.num_rows - inserted
        if bad is not None:
            self.store.insert_quarantine(bad)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Stop the writer; after a failure, let the batch in flight finish so the rollback is safe."""
        if self._pending is not None:
            wait([self._pending])
            self._pending = None
        self._writer.shutdown(wait=True)


_ROW_COLUMNS = (
    ("action_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("agent", pa.string()),
    ("session", pa.string()), ("user", pa.string()), ("tool", pa.string()), ("args", pa.string()),
    ("context", pa.string()), ("evidence_hash", pa.string()), ("executed_hash", pa.string()),
    ("outcome", pa.string()), ("approvals", pa.string()), ("label", pa.string()), ("extra", pa.string()),
    ("source", pa.string()), ("source_line", pa.int64()),
)


def _actions_table(rows: list[tuple[Any, ...]], now: datetime) -> pa.Table:
    columns = list(zip(*rows))
    data = {name: pa.array(values, kind) for (name, kind), values in zip(_ROW_COLUMNS, columns)}
    data["ingested_at"] = pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(rows))
    return pa.table(data)


def _quarantine_table(bad: list[tuple[Any, ...]], now: datetime) -> pa.Table:
    source, line, raw, raw_bytes, reason = zip(*bad)
    return pa.table({
        "source": pa.array(source, pa.string()),
        "source_line": pa.array(line, pa.int64()),
        "raw": pa.array(raw, pa.string()),
        "raw_bytes": pa.array(raw_bytes, pa.binary()),
        "reason": pa.array(reason, pa.string()),
        "ingested_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(bad)),
    })


def _decode_slow(data: bytes) -> tuple[Any, bool]:
    """What orjson refused: not UTF-8, not JSON, or JSON only the stdlib reads (NaN, Infinity, lone
    surrogates, numbers too large for a double). Returns the value and that it needs the surrogate check."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Bad(f"invalid utf-8 at byte offset {e.start}", undecodable=True) from None
    try:
        return json.loads(text), True
    except RecursionError:
        raise _Bad(_TOO_DEEP) from None
    except json.JSONDecodeError as e:
        raise _Bad(f"invalid json: {_lower(e.msg)} at column {e.colno}") from None
    except ValueError as e:  # e.g. an integer with more digits than Python will convert
        raise _Bad(f"invalid json: {_lower(str(e))}") from None


def _check(value: Any, slow: bool, line: bytes | None) -> dict[str, Any]:
    # Counting brackets is a cheap upper bound on depth; walk the value only when it could be too deep.
    if (line is None or line.count(b"[") + line.count(b"{") > MAX_DEPTH) and _too_deep(value):
        raise _Bad(_TOO_DEEP)
    if type(value) is not dict:
        raise _Bad(f"not a json object (got {_kind(value)})")
    # orjson refuses lone surrogates, so only values the stdlib parsed can hold one.
    if slow and _has_lone_surrogate(value):
        raise _Bad("lone surrogate in string")
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
                        record[name], _ = _decode_slow(text.encode("utf-8"))
                    except _Bad as e:  # say which cell did not parse; too deep is said as for a line
                        raise _Bad(e.reason if e.reason == _TOO_DEEP else f"`{name}`: {e.reason}") from None
                    slow = True
        # A Parquet column cannot be absent, only null: drop nulls so a row matches its JSONL line.
        record = {k: v for k, v in record.items() if v is not None}
    return _check(record, slow, None), slow


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
    strings = (
        get("action_id"), get("agent"), get("session"), get("user"),
        get("evidence_hash"), get("executed_hash"), get("outcome"),
    )
    if not _STRING_TYPES.issuperset(map(type, strings)):  # one C-level pass on the happy path
        for name, value in zip(_STRING_FIELDS, strings):
            if value is not None and type(value) is not str:
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
    if not _KNOWN.issuperset(record):
        extra = {k: v for k, v in record.items() if k not in _KNOWN}
        extra = _encode(extra) if slow else _dumps(extra).decode()
    if not action_id:
        action_id = _content_id(record, slow, seen)
    return (
        action_id, ts, agent, session, user, tool, args, context,
        evidence_hash, executed_hash, outcome, approvals, label, extra, source, number,
    )


def _content_id(record: dict[str, Any], slow: bool, seen: dict[str, int]) -> str:
    # Nulls are left out so `"agent": null` and a missing agent (or a null Parquet cell) hash alike;
    # the n-th repeat of the same content in one file gets `#n` so identical calls stay distinct.
    content = record
    if "action_id" in record or None in record.values():
        content = {k: v for k, v in record.items() if v is not None and k != "action_id"}
    text = None if slow else _dumps(content, option=_SORT_KEYS)
    # orjson's sorted output is byte for byte canonical_json's (tested), except that it writes floats
    # below 1e-4 without Python's exponent form (1e-5, not 1e-05): such text contains one of these.
    if text is None or b"e-" in text or b"0.0000" in text:
        text = canonical_json(content).encode("utf-8")
    digest = hashlib.sha256(text).hexdigest()[:24]
    n = seen.get(digest, 0) + 1
    seen[digest] = n
    return f"a-{digest}" if n == 1 else f"a-{digest}#{n}"


def _object(value: Any, name: str, slow: bool) -> str:
    if value is None:
        return "{}"
    if type(value) is not dict:
        raise _Bad(f"`{name}` is not an object (got {_kind(value)})")
    # Decoded at once: orjson's bytes are over-allocated, and keeping 50k of them alive costs ~1 us each.
    return _encode(value) if slow else _dumps(value).decode()


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node if type(node) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth + 1 > MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            stack.extend(node.keys())
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
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


def _lower(message: str) -> str:
    return message[:1].lower() + message[1:]
