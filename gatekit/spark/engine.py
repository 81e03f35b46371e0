"""Deciding a Spark DataFrame of actions with a policy: the plan of compile.py run as DataFrame layers.

`decide_frame(policy, frame)` takes the action contract's columns (args/context as JSON text, VARIANT, struct
or map) and returns `seq, action_id, decision, rules, errors, tier, error_details`, one row per action, every
decision made inside Spark. The only Python that runs per row is google-re2 (`matches` and the tool globs
with `?` or `[`) and the re-encoding of the rare JSON text Spark's parser refuses but JSON readers accept
(NaN, Infinity, duplicate keys): both Arrow UDFs, fed NULL on every other row.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gatekit.policy.model import Policy
from gatekit.spark.compile import local_time, plan

__all__ = ["decide_frame", "normalise", "register_udfs"]

_FIELDS = ("action_id", "agent", "session", "user", "tool")


# ---- the Arrow UDFs ------------------------------------------------------------------------------------
def _udfs() -> dict[str, Any]:
    """The UDFs' functions, defined in here so that they are pickled by value: an executor needs pyarrow and
    google-re2 (gatekit's own dependency), not gatekit itself."""

    def re2_udf(full: bool) -> Any:
        patterns: dict[str, Any] = {}

        def run(texts: pa.Array, regexes: pa.Array) -> pa.Array:
            import re2

            out: list[bool | None] = []
            for text, pattern in zip(texts.to_pylist(), regexes.to_pylist()):
                if text is None or pattern is None:
                    out.append(None)
                    continue
                rx = patterns.get(pattern)
                if rx is None:  # RE2's defaults, as gatekit.policy.values.compile_re2 compiles for decide
                    options = re2.Options()
                    options.log_errors = False
                    rx = patterns[pattern] = re2.compile(pattern, options)
                out.append((rx.fullmatch(text) if full else rx.search(text)) is not None)
            return pa.array(out, pa.bool_())
        return run

    def dump(value: Any) -> str:
        # NaN and the infinities are bad numbers in decide, as is 1e400, which Spark reads as an infinite DOUBLE
        if isinstance(value, float) and not math.isfinite(value):
            return "-1e400" if value < 0 else "1e400"
        if isinstance(value, dict):
            return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(dump(v) for v in value) + "]"
        return json.dumps(value)

    def repair_one(text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return dump(json.loads(text))  # duplicate keys: the last wins, as in decide's json.loads
        except (ValueError, RecursionError):
            return None

    def repair(texts: pa.Array) -> pa.Array:
        return pa.array([repair_one(t) for t in texts.to_pylist()], pa.string())

    return {"gatekit_re2_search": (re2_udf(False), "boolean"), "gatekit_re2_fullmatch": (re2_udf(True), "boolean"),
            "gatekit_json_repair": (repair, "string")}


def register_udfs(spark: SparkSession) -> None:
    """Register the Arrow UDFs the compiled expressions call (per session)."""
    for name, (fn, returns) in _udfs().items():
        spark.udf.register(name, F.arrow_udf(fn, returns))


# ---- normalising the input -----------------------------------------------------------------------------
def parse_json_text(text: str) -> str:
    """SQL: JSON text as a VARIANT; the text Spark's parser refuses goes once through the repair UDF."""
    first = f"try_parse_json({text})"
    return (f"(CASE WHEN {text} IS NULL THEN NULL ELSE COALESCE({first}, try_parse_json(gatekit_json_repair("
            f"CASE WHEN {first} IS NULL THEN {text} END))) END)")


def _variant(frame: DataFrame, name: str) -> Column:
    if name not in frame.columns:
        return F.lit(None).cast("variant")
    dtype = frame.schema[name].dataType
    if isinstance(dtype, T.StringType):
        return F.expr(parse_json_text(f"`{name}`"))
    if isinstance(dtype, T.VariantType):
        return F.col(name)
    if isinstance(dtype, (T.StructType, T.MapType)):
        return F.expr(f"to_variant_object(`{name}`)")
    if isinstance(dtype, T.NullType):
        return F.lit(None).cast("variant")
    raise TypeError(f"`{name}` must be JSON text, a struct or a map, not {dtype.simpleString()}")


def normalise(frame: DataFrame, policy: Policy, by: str | None = None) -> DataFrame:
    """The columns the plan reads: seq, action_id, ts_us (and lt_us, the local time in the policy's timezone,
    in microseconds), agent, session, user, tool, args_v and context_v (VARIANT).

    `ts` is a TIMESTAMP (or TIMESTAMP_NTZ, taken as UTC). `seq` is the log order: the frame's own `seq`
    column when it has one, else its partition order.
    """
    cols: list[Column] = [F.col("seq") if "seq" in frame.columns else F.monotonically_increasing_id().alias("seq")]
    for name in _FIELDS:
        cols.append((F.col(name).cast("string") if name in frame.columns else F.lit(None).cast("string")).alias(name))
    # a TIMESTAMP is an instant; a TIMESTAMP_NTZ is read in the session's time zone (UTC in gatekit's sessions)
    cols.append(F.expr("unix_micros(CAST(ts AS TIMESTAMP))").alias("ts_us"))
    cols += [_variant(frame, "args").alias("args_v"), _variant(frame, "context").alias("context_v")]
    if by is not None:
        cols.append(F.col(by).alias("log_"))
    out = frame.select(*cols)
    # the local time from the pinned tzdata's offsets (gatekit.policy.timezones), never Java's tz data:
    # NULL outside local years 1..9999, where the time fields are missing
    key, local = local_time(policy.timezone)
    return out.withColumn("tzk_", F.expr(key)).withColumn("lt_us", F.expr(local)).drop("tzk_")


# ---- deciding ------------------------------------------------------------------------------------------
def _sum_join(frame: DataFrame, s: Any, grouped: bool) -> DataFrame:
    """The exact sum (sorted, added in ascending order) of the frames of the rows near a threshold."""
    k, r = s.k, s.rule
    key = f"`{s.per}`" if s.per else "CAST(NULL AS STRING)"
    if grouped:
        key = f"named_struct('log', log_, 'key', {key})"
    b = frame.where(f"tm{r}").selectExpr("seq AS b_seq", "ts_us AS b_ts", f"{key} AS b_k", f"a{k} AS b_a")
    nseq = "named_struct('log', log_, 'seq', seq)" if grouped else "seq"
    n = frame.where(f"near{k}").selectExpr(f"{nseq} AS n_seq", "ts_us AS n_ts", f"{key} AS n_k")
    on = (F.col("b_ts") > F.col("n_ts") - F.lit(s.window_us)) & (F.col("b_ts") <= F.col("n_ts")) \
        & ~((F.col("b_ts") == F.col("n_ts")) & (F.col("b_seq") > (F.col("n_seq.seq") if grouped else F.col("n_seq"))))
    if s.per or grouped:
        on = on & F.col("b_k").eqNullSafe(F.col("n_k"))
    exact = (n.join(b, on).groupBy("n_seq")
             .agg(F.expr("aggregate(array_sort(collect_list(b_a)), CAST(0 AS DOUBLE), (p_, q_) -> p_ + q_)")
                  .alias(f"x{k}")))
    if grouped:  # seq is unique within a log only
        exact = exact.withColumnRenamed("n_seq", "n_key")
        return frame.join(exact, F.struct(frame["log_"].alias("log"), frame["seq"].alias("seq")) == exact["n_key"], "left").drop("n_key")
    return frame.join(exact, frame["seq"] == exact["n_seq"], "left").drop("n_seq")


def decide_frame(policy: Policy, frame: DataFrame, *, by: str | None = None,
                 held: list[DataFrame] | None = None) -> DataFrame:
    """Decide every action of `frame`: `seq, action_id, decision, rules, errors, tier, error_details`.

    >>> decide_frame(load_policy("policy.yaml"), spark.read.parquet("actions/")).groupBy("decision").count()

    `by` names a column telling apart many logs decided at once (windows count within each; kept as `log_`).
    `held`: when given, a policy with `sum` windows has its frame before the exact-sum joins persisted (and
    appended to `held`, for the caller to unpersist once the result is written) instead of computed again
    from the input for each join.
    """
    p = plan(policy, grouped=by is not None)
    spark = frame.sparkSession
    register_udfs(spark)
    out = normalise(frame, policy, by)
    for layer in p.layers[:p.windows_at]:
        out = out.selectExpr(*layer)
    if p.sums and held is not None:
        # the sum joins read this frame three times (the rows, a window's calls, the rows near its threshold):
        # kept once rather than computed again from the input for each; the caller unpersists it. On disk
        # only: a partition is as big as an input split (2.5M wide rows at 10M on local[1]), and a block kept
        # with memory is read back from disk whole into one heap buffer (Java heap space at 10M, 4 GB driver)
        out = out.persist(StorageLevel.DISK_ONLY)
        held.append(out)
    for s in p.sums:
        out = _sum_join(out, s, p.grouped)
    for layer in p.layers[p.windows_at:]:
        out = out.selectExpr(*layer)
    return out
