"""Shadow replay on Apache Spark: a policy decided over a DataFrame of actions, every row inside Spark.

A heavy layer: pyspark is imported only here (never from `gatekit` or `gatekit.policy`), installed by the
`spark` extra. `decide_frame` decides a DataFrame; `read_actions` reads the action contract from JSON Lines or
Parquet (a file or a directory); `replay_spark` does both and writes the decisions as Parquet.
"""

from __future__ import annotations

from gatekit.spark.engine import decide_frame
from gatekit.spark.io import ReplayResult, read_actions, replay_spark, session

__all__ = ["ReplayResult", "decide_frame", "read_actions", "replay_spark", "session"]
