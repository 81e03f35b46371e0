"""Shadow replay of action records kept as Parquet files, without a store: DuckDB reads the files, decides
every row with the compiled policy and writes the decisions as Parquet, out of core.

>>> result = replay_files(load_policy("policy.yaml"), "lake/actions/", "decisions/", memory_limit="4GB")

This is the DuckDB side of `gatekit replay --input PATH --out DIR` (the Spark side is gatekit/spark/io.py)
and reads the files the way the Spark engine reads Parquet: a file or a directory of `.parquet` files, the
log order being files by path and then rows in the file. A row keeps the action contract when it has a
non-empty `tool` and a timestamp (TIMESTAMP, TIMESTAMPTZ, ISO 8601 text or epoch seconds) and `args` and
`context` are objects (JSON text, a JSON column, a struct or a map; NULL is `{}`); other rows are written to
`DIR/_quarantine/` with their reason. `gatekit ingest` applies the contract's full checks (depth, NaN,
duplicate keys, string fields' types) to keep a store; replaying from files trusts the files for those.
A row without `action_id` gets `a-` and 24 hex digits of the SHA-256 of its file's path and row number.

Nothing is held in Python: the query streams, and under `memory_limit` DuckDB spills the windows' sorts to
a temporary directory beside the output (removed after).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from gatekit.errors import InputError
from gatekit.logs.store import check_memory_limit, limit_memory
from gatekit.policy.compile import compile_sql, lit
from gatekit.policy.model import Policy
from gatekit.policy.semantics import JSON_SPACE
from gatekit.replayed import ReplayResult

__all__ = ["FilesResult", "parquet_files", "replay_files", "source_sql"]

OUTPUT = ("action_id", "decision", "rules", "errors", "tier", "error_details")
_SEQ_BITS = 40  # seq = file index << 40 | row number in the file: 2^40 rows a file, 2^23 files
_STRINGS = ("action_id", "agent", "session", "user")
_TEXT = ("VARCHAR", "JSON")


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files at `path` (a file, or a directory searched recursively), by path; hidden and `_`
    files (`_SUCCESS`, `.crc`) left out. InputError when there are none, or when other files are there."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no input at `{path}`")
    if p.is_file():
        files = [p]
    else:
        files = sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith((".", "_"))
                       and not any(part.startswith(("_", ".")) for part in x.relative_to(p).parts[:-1]))
    if not files:
        raise InputError(f"no Parquet files at `{path}`")
    other = [x for x in files if x.suffix not in (".parquet", ".pq")]
    if other:
        raise InputError(f"`{other[0]}` is not a Parquet file: `--input` reads .parquet files with the DuckDB "
                         "engine (JSON Lines: `gatekit ingest` them into a store, or `--engine spark`)")
    return files


def _columns(con: duckdb.DuckDBPyConnection, files: list[Path]) -> dict[str, str]:
    try:
        rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)",
                           [[str(f) for f in files]]).fetchall()
    except duckdb.Error as e:
        raise InputError(f"cannot read the Parquet files at `{files[0].parent}`: {str(e).splitlines()[0]}") from None
    return {name: kind for name, kind, *_ in rows}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _document(name: str, kind: str | None) -> tuple[str, str]:
    """(JSON text of column `name` as an object, NULL when it is not one; the reason a row is refused)."""
    c = _q(name)
    if kind is None:
        return "'{}'", "NULL"
    if kind in _TEXT:
        # one parse (json_valid); valid JSON is an object when it opens with `{` (the type is read, a
        # second parse, only for the rows refused)
        text = f"CAST({c} AS VARCHAR)"
        ok = f"(json_valid({text}) AND starts_with(ltrim({text}, {lit(JSON_SPACE)}), '{{'))"
        value = f"CASE WHEN {c} IS NULL THEN '{{}}' ELSE {text} END"
        why = (f"CASE WHEN {c} IS NULL OR {ok} THEN NULL WHEN NOT json_valid({text}) THEN "
               f"{lit(f'`{name}` is not valid JSON')} ELSE concat({lit(f'`{name}` is not an object (got ')}, "
               f"lower(json_type({text})), ')') END")
        return value, why
    if kind.startswith(("STRUCT", "MAP")):
        return f"COALESCE(CAST(to_json({c}) AS VARCHAR), '{{}}')", "NULL"
    raise InputError(f"column `{name}` is {kind}: `{name}` must be JSON text, a struct or a map")


def _ts(kind: str | None) -> str:
    if kind is None:
        raise InputError("the Parquet files have no `ts` column: every action needs its time")
    if kind.startswith("TIMESTAMP"):
        return "CAST(ts AS TIMESTAMPTZ)"  # a naive TIMESTAMP is UTC (the session's zone)
    if kind == "VARCHAR":
        return "TRY_CAST(trim(ts) AS TIMESTAMPTZ)"
    if kind in ("BIGINT", "INTEGER", "SMALLINT", "UBIGINT", "UINTEGER", "DOUBLE", "FLOAT") or kind.startswith("DECIMAL"):
        return ("CASE WHEN ts >= 0 AND ts < 253402300800 THEN "
                "make_timestamptz(CAST(round(CAST(ts AS DOUBLE) * 1000000) AS BIGINT)) END")
    raise InputError(f"column `ts` is {kind}: use a timestamp, ISO 8601 text or epoch seconds")


def source_sql(con: duckdb.DuckDBPyConnection, files: list[Path]) -> tuple[str, str]:
    """(the SQL of every row as the store's `actions` columns plus `reason`, NULL for a row that keeps the
    contract; the setup that must run first: the `files_` table of file indexes)."""
    cols = _columns(con, files)
    if "tool" not in cols:
        raise InputError(f"`{files[0]}` has no `tool` column: not action records")
    for name in _STRINGS + ("tool",):
        if name in cols and cols[name] not in _TEXT:
            raise InputError(f"column `{name}` is {cols[name]}: it must be a string column")
    args, args_why = _document("args", cols.get("args"))
    context, context_why = _document("context", cols.get("context"))
    ts = _ts(cols.get("ts"))
    strings = [f"CAST({_q(n)} AS VARCHAR) AS {_q(n)}" if n in cols else f"CAST(NULL AS VARCHAR) AS {_q(n)}"
               for n in ("agent", "session", "user")]
    given = "CAST(action_id AS VARCHAR)" if "action_id" in cols else "CAST(NULL AS VARCHAR)"
    action_id = (f"COALESCE(NULLIF({given}, ''), concat('a-', substr(sha256(concat(filename, ':', "
                 f"file_row_number)), 1, 24)))")
    reason = ("CASE WHEN tool IS NULL THEN 'missing `tool`' WHEN trim(tool) = '' THEN '`tool` is empty' "
              "WHEN ts_ IS NULL THEN 'missing or bad `ts`' "
              f"ELSE COALESCE({args_why}, {context_why}) END")
    setup = "CREATE OR REPLACE TEMP TABLE files_ (filename VARCHAR, idx BIGINT)"
    body = (f"SELECT (f.idx << {_SEQ_BITS}) + file_row_number AS seq, {action_id} AS action_id, ts_ AS ts, "
            f"{', '.join(strings)}, CAST(tool AS VARCHAR) AS tool, args_ AS args, context_ AS context, "
            f"{reason} AS reason, filename, file_row_number "
            f"FROM (SELECT *, {ts} AS ts_, {args} AS args_, {context} AS context_ "
            f"FROM read_parquet(getvariable('gatekit_files'), filename = true, file_row_number = true, "
            f"union_by_name = true)) JOIN files_ f USING (filename)")
    return body, setup


@dataclass
class FilesResult(ReplayResult):
    """A replay of files on DuckDB: what every engine's replay reports, and the memory limit it held to."""

    memory_limit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"memory_limit": self.memory_limit}


def replay_files(policy: Policy, path: str | Path, out: str | Path, *, memory_limit: str | None = None,
                 threads: int | None = None) -> FilesResult:
    """Decide every action in the Parquet files at `path` and write `out/decisions.parquet` (action_id,
    decision, rules, errors, tier, error_details); rows that break the contract go to
    `out/_quarantine/quarantine.parquet` (file, row, reason)."""
    start = time.perf_counter()
    if memory_limit is not None:
        check_memory_limit(memory_limit)
    files = parquet_files(path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write `{out}`: it is a file (`--out` names a directory)")
    out.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".gatekit-spill-", dir=out))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if memory_limit is not None:
            limit_memory(con, memory_limit, spill)
        else:
            con.execute("SET temp_directory = ?", [str(spill)])
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        names = [str(f) for f in files]
        con.execute("SET VARIABLE gatekit_files = ?", [names])
        body, setup = source_sql(con, files)
        con.execute(setup)
        con.executemany("INSERT INTO files_ VALUES (?, ?)", [[n, i] for i, n in enumerate(names)])
        good = f"SELECT * EXCLUDE (reason, filename, file_row_number) FROM ({body}) WHERE reason IS NULL"
        decisions, quarantine = out / "decisions.parquet", out / "_quarantine"
        shutil.rmtree(quarantine, ignore_errors=True)
        part = out / ".decisions.parquet.part"
        con.execute(f"COPY (SELECT {', '.join(OUTPUT)} FROM ({compile_sql(policy, good)})) TO {lit(str(part))} "
                    "(FORMAT parquet, COMPRESSION zstd)")
        part.replace(decisions)
        written = f"read_parquet({lit(str(decisions))})"
        counts = dict(con.execute(f"SELECT decision, count(*) FROM {written} GROUP BY ALL").fetchall())
        errored = con.execute(f"SELECT count(*) FROM {written} WHERE len(errors) > 0").fetchall()[0][0]
        # the refused rows in one more pass over the files, kept (they are few) to count and to write
        con.execute(f"CREATE TEMP TABLE refused_ AS SELECT filename AS file, file_row_number AS row, reason "
                    f"FROM ({body}) WHERE reason IS NOT NULL")
        reasons = [(r, n) for r, n in con.execute(
            "SELECT reason, count(*) AS n FROM refused_ GROUP BY ALL ORDER BY n DESC, reason").fetchall()]
        if reasons:
            quarantine.mkdir()
            con.execute(f"COPY (SELECT * FROM refused_ ORDER BY file, row) "
                        f"TO {lit(str(quarantine / 'quarantine.parquet'))} (FORMAT parquet)")
    except duckdb.OutOfMemoryException as e:
        raise InputError(f"out of memory under `--memory-limit {memory_limit}`: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return FilesResult(str(out), sum(counts.values()), {d: counts.get(d, 0) for d in ("allow", "escalate", "deny")},
                       errored, sum(n for _, n in reasons), reasons, time.perf_counter() - start, memory_limit)
