"""Reading action records into Spark, the quarantine of records that break the contract, and the replay.

JSON Lines are read as text and each line parsed once as a VARIANT (so a value keeps its JSON type: 1e400
stays a bad number, "12" a string); Parquet columns are read as they are typed (args/context as JSON text,
struct or map). The log order (`seq`) is the input's order: files by path, then position in the file (the
split's start offset, then the row's place in the split), the order `gatekit ingest` reads the same files.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gatekit.errors import InputError
from gatekit.policy.model import Policy
from gatekit.replayed import ReplayResult
from gatekit.spark.engine import decide_frame, parse_json_text, register_udfs

__all__ = ["ReplayResult", "read_actions", "replay_spark", "session"]

OUTPUT = ("action_id", "decision", "rules", "errors", "tier")


def session(master: str | None = None, remote: str | None = None, *, app: str = "gatekit",
            conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session: Spark Connect at `remote`, else a classic one on `master` (default `local[*]`).

    Its session time zone is UTC (a TIMESTAMP_NTZ `ts` is then read as UTC); the UI is off for local runs.
    """
    builder = SparkSession.builder.appName(app)
    if remote:
        builder = builder.remote(remote)
    else:
        builder = builder.master(master or "local[*]")
        if (master or "local").startswith("local"):
            builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            # local Python workers run this interpreter (it has pyarrow and google-re2), not the first
            # `python3` on PATH, unless the caller chose one
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    for k, v in (conf or {}).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---- reading -------------------------------------------------------------------------------------------
def _order(frame: DataFrame) -> DataFrame:
    """`seq`: files by path, then the split's start, then the row's place in its split (a struct)."""
    return frame.withColumn("seq", F.struct(F.col("_metadata.file_path").alias("f"),
                                            F.col("_metadata.file_block_start").alias("o"),
                                            F.monotonically_increasing_id().alias("i")))


_JSON_TS = "try_variant_get(rec, '$.ts')"


def _from_jsonl(spark: SparkSession, path: str) -> DataFrame:
    lines = _order(spark.read.option("recursiveFileLookup", "true").text(path))
    register_udfs(spark)
    rec = lines.where("trim(value) != ''").selectExpr("seq", "value AS raw", f"{parse_json_text('value')} AS rec")
    strings = [f"try_variant_get(rec, '$.{n}', 'string') AS {n}_s" for n in
               ("action_id", "agent", "session", "user", "tool")]
    rec = rec.selectExpr(
        "seq", "raw", "rec", *strings,
        "schema_of_variant(rec) AS rec_t",
        *(f"CASE WHEN {_JSON_TS} IS NULL OR is_variant_null({_JSON_TS}) THEN 'NULL' ELSE "
          f"regexp_extract(schema_of_variant({_JSON_TS}), '^[A-Z]+', 0) END AS ts_t",),
        *(f"CASE WHEN try_variant_get(rec, '$.{n}') IS NULL OR is_variant_null(try_variant_get(rec, '$.{n}')) "
          f"THEN 'NULL' ELSE regexp_extract(schema_of_variant(try_variant_get(rec, '$.{n}')), '^[A-Z]+', 0) "
          f"END AS {n}_t" for n in ("action_id", "agent", "session", "user", "tool", "args", "context")),
        f"try_variant_get(rec, '$.ts', 'string') AS ts_s",
        f"try_variant_get(rec, '$.ts', 'double') AS ts_n",
        "try_variant_get(rec, '$.args') AS args", "try_variant_get(rec, '$.context') AS context",
        *_EXTRAS_JSON)
    return _contract(rec, json=True)


# what metrics read beyond the decision: the label, the recorded outcome and how many approvals it carried
_EXTRAS_JSON = ("try_variant_get(rec, '$.label', 'string') AS label",
                "try_variant_get(rec, '$.outcome', 'string') AS outcome",
                "coalesce(array_size(try_variant_get(rec, '$.approvals', 'array<variant>')), 0) AS approvals")
EXTRAS = ("label", "outcome", "approvals")

_ZONE = r"(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"


def _ts_text(s: str) -> str:
    """An ISO 8601 text as a TIMESTAMP, a naive one taken as UTC (as gatekit.action.parse_ts)."""
    return (f"try_cast(CASE WHEN trim({s}) RLIKE {_lit(_ZONE)} THEN trim({s}) ELSE concat(trim({s}), 'Z') END "
            f"AS TIMESTAMP)")


def _lit(text: str) -> str:
    from gatekit.spark.compile import lit
    return lit(text)


def _contract(rec: DataFrame, json: bool) -> DataFrame:
    """Each record with `reason`: NULL when it keeps the action contract, else why not (as ingest says it)."""
    checks = []
    if json:
        checks.append(("rec IS NULL", "'not valid JSON'"))
        checks.append(("NOT startswith(rec_t, 'OBJECT')", "'not a JSON object'"))
    checks += [
        ("tool_t = 'NULL'", "'missing `tool`'"),
        ("tool_t != 'STRING'", "concat('`tool` is not a string (got ', lower(tool_t), ')')"),
        ("trim(tool_s) = ''", "'`tool` is empty'"),
        ("ts_t NOT IN ('NULL', 'STRING', 'BIGINT', 'DECIMAL', 'DOUBLE')", "'bad timestamp'"),
        ("ts_t = 'STRING' AND ts IS NULL", "concat('bad timestamp `', ts_s, '`')"),
        ("ts_t IN ('BIGINT', 'DECIMAL', 'DOUBLE') AND NOT (ts_n >= 0 AND ts_n < 253402300800)",
         "'bad timestamp: epoch seconds must fall in years 1970..9999'"),
        ("args_t NOT IN ('NULL', 'OBJECT')", "concat('`args` is not an object (got ', lower(args_t), ')')"),
        ("context_t NOT IN ('NULL', 'OBJECT')", "concat('`context` is not an object (got ', lower(context_t), ')')"),
    ]
    for n in ("action_id", "agent", "session", "user"):
        checks.append((f"{n}_t NOT IN ('NULL', 'STRING')", f"'`{n}` is not a string or null'"))
    reason = "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r in checks) + " END"
    ts = (f"CASE ts_t WHEN 'STRING' THEN {_ts_text('ts_s')} WHEN 'NULL' THEN current_timestamp() "
          f"ELSE timestamp_micros(CAST(round(ts_n * 1000000) AS BIGINT)) END")
    out = rec.withColumn("ts", F.expr(f"CASE WHEN ts_t IN ('STRING', 'NULL', 'BIGINT', 'DECIMAL', 'DOUBLE') "
                                      f"THEN {ts} END"))
    out = out.withColumn("reason", F.expr(reason))
    return out.selectExpr(
        "seq", "raw", "reason",
        "COALESCE(NULLIF(action_id_s, ''), concat('a-', substr(sha2(raw, 256), 1, 24))) AS action_id",
        "ts", "agent_s AS agent", "session_s AS session", "user_s AS user", "tool_s AS tool",
        "args", "context", *EXTRAS)


def read_actions(spark: SparkSession, path: str, fmt: str | None = None) -> DataFrame:
    """The action records at `path` (a file or a directory; JSON Lines or Parquet, from the name when `fmt` is
    None) with `seq` (the log order) and `reason` (why a record breaks the contract, NULL when it keeps it);
    `label`, `outcome` and `approvals` (how many it carried) are what the metrics read beyond decisions."""
    fmt = fmt or _format(path)
    if fmt == "jsonl":
        return _from_jsonl(spark, path)
    frame = _order(spark.read.option("recursiveFileLookup", "true").parquet(path))
    missing = {"tool"} - set(frame.columns)
    if missing:
        raise InputError(f"`{path}` has no `tool` column: not action records")
    cols = []
    for n in ("action_id", "agent", "session", "user", "tool", "args", "context", "ts"):
        cols.append(F.col(n) if n in frame.columns else F.lit(None).alias(n))
    cols += [(F.col(n).cast("string") if n in frame.columns else F.lit(None).cast("string")).alias(n)
             for n in ("label", "outcome")]
    listed = "approvals" in frame.columns and isinstance(frame.schema["approvals"].dataType, T.ArrayType)
    cols.append(F.coalesce(F.size("approvals"), F.lit(0)).alias("approvals") if listed else F.lit(0).alias("approvals"))
    return frame.select("seq", *cols).selectExpr(
        "seq", "CAST(NULL AS STRING) AS raw",
        "CASE WHEN tool IS NULL THEN 'missing `tool`' WHEN trim(tool) = '' THEN '`tool` is empty' "
        "WHEN ts IS NULL THEN 'missing or bad `ts`' END AS reason",
        "COALESCE(CAST(action_id AS STRING), concat('a-', CAST(seq.i AS STRING))) AS action_id",
        "ts", "agent", "session", "user", "tool", "args", "context", *EXTRAS)


def _format(path: str) -> str:
    p = Path(path)
    names = [p] if not p.is_dir() else sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith((".", "_")))
    suffixes = {x.suffix for x in names}
    if suffixes and suffixes <= {".parquet"}:
        return "parquet"
    if suffixes and suffixes <= {".jsonl", ".json", ".ndjson", ".gz", ".txt", ".log"}:
        return "jsonl"
    if not p.exists() and "://" in path:  # a remote path: by its name
        return "parquet" if path.rstrip("/").endswith(".parquet") else "jsonl"
    raise InputError(f"cannot tell the format of `{path}`: use .jsonl or .parquet files")


# ---- the replay ----------------------------------------------------------------------------------------
def replay_spark(spark: SparkSession, policy: Policy, path: str, out: str) -> ReplayResult:
    """Decide every action at `path` and write `out/` (Parquet: action_id, decision, rules, errors, tier,
    error_details); records that break the contract go to `out/_quarantine/` (Parquet: seq, raw, reason)."""
    start = time.perf_counter()
    actions = read_actions(spark, path)
    good = actions.where("reason IS NULL").drop("raw", "reason")
    held: list[DataFrame] = []
    decided = decide_frame(policy, good, held=held)
    try:
        decided.select(*OUTPUT, "error_details").write.mode("overwrite").parquet(out)
    finally:
        for frame in held:
            frame.unpersist()
    bad = actions.where("reason IS NOT NULL").selectExpr("seq.f AS file", "raw", "reason")
    written = spark.read.parquet(out)
    counts = {r["decision"]: r["count"] for r in written.groupBy("decision").count().collect()}
    errored = written.where("size(errors) > 0").count()
    reasons = [(r["reason"], r["count"]) for r in bad.groupBy("reason").count().orderBy(F.desc("count")).collect()]
    quarantined = sum(n for _, n in reasons)
    if quarantined:
        bad.write.mode("overwrite").parquet(str(Path(out) / "_quarantine") if "://" not in out else out + "/_quarantine")
    return ReplayResult(out, sum(counts.values()), {d: counts.get(d, 0) for d in ("allow", "escalate", "deny")},
                        errored, quarantined, reasons, time.perf_counter() - start)
