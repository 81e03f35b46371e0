"""Reading the files formats take: whole documents or JSON Lines, gzip or not, with the contract's reasons."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gatekit.errors import LogFormatError
from gatekit.logs.contract import TOO_DEEP, Rejected, loads_slow, too_deep

WHOLE_DOCUMENT = 64 << 20  # a file that is one JSON document (not lines) is parsed whole up to this size
_BOM = b"\xef\xbb\xbf"
_CHUNK_BYTES = 8 << 20
LINES_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")  # the JSON Lines files of a directory
JSON_SUFFIXES = (".json", ".json.gz", *LINES_SUFFIXES)  # and the JSON documents


def read_bytes(path: Path, size: int = -1) -> bytes:
    """The file's bytes (the first `size` of them), gunzipped when it is gzip."""
    try:
        with path.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                raw.seek(0)
                return raw.read(size)
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                return gz.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e


def first_value(path: Path, sniff: int = 1 << 20) -> Any:
    """The first JSON value of a file: its first line, or the whole file when that is one JSON document
    (pretty-printed); None when there is none."""
    try:
        text = read_bytes(path, sniff).lstrip(_BOM + b" \t\r\n")
        try:
            return orjson.loads(text.split(b"\n", 1)[0])
        except orjson.JSONDecodeError:
            pass
        if text[:1] in (b"{", b"[") and path.stat().st_size <= WHOLE_DOCUMENT:
            return orjson.loads(read_bytes(path).lstrip(_BOM))
    except (LogFormatError, OSError, orjson.JSONDecodeError):
        return None
    return None


def parse_document(data: bytes) -> Any:
    """One JSON document, or `Rejected` with the reason ingest gives a line it cannot parse."""
    try:
        value = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data.removeprefix(_BOM).decode("utf-8"))
        except UnicodeDecodeError as e:
            return Rejected(f"invalid utf-8 at byte offset {e.start}")
        except RecursionError:
            return Rejected(TOO_DEEP)
        except ValueError as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            return Rejected(f"invalid json: {msg[:1].lower()}{msg[1:]}{where}")
    return value


def json_items(path: Path) -> Iterator[tuple[int, Any, bytes]]:
    """(line number, value or `Rejected`, raw bytes) of a JSON Lines file; a file that is one JSON document
    spread over lines (pretty-printed) is one item at line 1."""
    head = read_bytes(path, 1 << 16).lstrip(_BOM + b" \t\r\n")
    first = head.split(b"\n", 1)[0]
    if head[:1] in (b"{", b"[") and b"\n" in head.strip():
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            if path.stat().st_size <= WHOLE_DOCUMENT:
                data = read_bytes(path)
                value = parse_document(data)
                if not isinstance(value, Rejected):
                    yield 1, value, data
                    return
    yield from json_values(path)


def read_lines(path: Path) -> Iterator[tuple[int, list[bytes], int]]:
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


def json_values(path: Path) -> Iterator[tuple[int, Any, bytes]]:
    """(line number, parsed value or `Rejected`, raw line) of each non-empty line of a JSON Lines file
    (optionally gzip), with the reasons ingest gives to a line it cannot parse: for adapters that read
    JSON Lines of another shape."""
    for first, batch, _ in read_lines(path):
        for number, line in enumerate(batch, first):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            try:
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    value = loads_slow(line)[0]
                if too_deep(value):
                    raise Rejected(TOO_DEEP)
            except Rejected as e:
                value = e
            yield number, value, line
