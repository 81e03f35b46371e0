"""Shadow replay on a Spark cluster through `spark-submit`: the session is the one spark-submit configured
(its master, its executors), not a local one.

    spark-submit --py-files gatekit-0.1.0-py3-none-any.whl examples/spark_replay.py \\
        s3a://logs/agents/ policy.yaml s3a://decisions/agents/

The driver needs gatekit with the `spark` extra; the executors need Python with pyarrow and google-re2.
"""

from __future__ import annotations

import json
import sys

from pyspark.sql import SparkSession

from gatekit import load_policy
from gatekit.errors import GatekitError
from gatekit.spark import replay_spark


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: spark_replay.py INPUT POLICY OUT", file=sys.stderr)
        return 2
    source, policy_file, out = argv
    spark = SparkSession.builder.appName("gatekit-replay").config("spark.sql.session.timeZone", "UTC").getOrCreate()
    try:
        result = replay_spark(spark, load_policy(policy_file), source, out)
    except GatekitError as exc:  # a bad path or policy: the message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
