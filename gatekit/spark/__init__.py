"""Shadow replay on Apache Spark: a policy decided over a DataFrame of actions, every row inside Spark.

A heavy layer: pyspark is imported only here (never from `gatekit` or `gatekit.policy`), installed by the
`spark` extra, and only when a name that runs Spark is first used: `gatekit.spark.compile` (the policy as
Spark SQL text, the semantics backend registered as `"spark"`) imports without it. `decide_frame` decides a DataFrame; `read_actions` reads the action contract from JSON Lines or
Parquet (a file or a directory); `replay_spark` does both and writes the decisions as Parquet.
"""

from __future__ import annotations

import importlib

__all__ = ["ReplayResult", "decide_frame", "read_actions", "replay_spark", "session"]

_HOMES = {"decide_frame": "gatekit.spark.engine", "ReplayResult": "gatekit.spark.io",
          "read_actions": "gatekit.spark.io", "replay_spark": "gatekit.spark.io", "session": "gatekit.spark.io"}


def __getattr__(name: str) -> object:  # the names that need pyspark load it on first use
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
