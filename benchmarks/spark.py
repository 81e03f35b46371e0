"""Shadow replay on Spark: 1M (and 10M) actions on local[1] and local[2], DuckDB on the same data.

    python -m benchmarks spark                 # 1M actions: DuckDB, Spark local[1], local[2]; scaling efficiency
    python -m benchmarks spark --sizes 1M,10M  # also 10M
    python -m benchmarks spark --quick         # CI: 3,000 actions, Spark must decide every one as DuckDB does

Each Spark run is its own process (a JVM's master cannot change): `--worker MASTER` decides the Parquet at
`--input` and prints its seconds. The data is benchmarks/synth.py's store exported to Parquet (args and
context as JSON text), the policy benchmarks/policies/twenty.yaml (20 rules, windows included). Spark's
time includes reading the Parquet and writing the decisions; DuckDB's is `replay` over its store. The
scaling efficiency is the local[1] time over the local[2] time (2.0 is perfect on two cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
POLICY = HERE / "policies" / "twenty.yaml"


def _size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * mult)


def _data(root: Path, n: int) -> tuple[Path, Path, float, list[tuple]]:
    """The synthetic store, its actions as Parquet, DuckDB's replay seconds and decisions."""
    from benchmarks.synth import build
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import replay

    db = root / f"spark-{n}.duckdb"
    build(db, n)
    parquet = root / f"actions-{n}.parquet"
    with Store(db) as store:
        store.con.execute(f"COPY (SELECT action_id, ts, agent, session, \"user\", tool, CAST(args AS VARCHAR) AS args, "
                          f"CAST(context AS VARCHAR) AS context FROM actions ORDER BY seq) TO '{parquet}' "
                          f"(FORMAT parquet)")
        t0 = time.perf_counter()
        replay(store, load_policy(POLICY), "bench", replace=True)
        seconds = time.perf_counter() - t0
        rows = store.con.execute("SELECT action_id, decision, rules, errors, tier FROM decisions "
                                 "WHERE run = 'bench' ORDER BY action_id").fetchall()
    return db, parquet, seconds, rows


def _worker(master: str, parquet: str, out: str) -> dict:
    from gatekit.policy import load_policy
    from gatekit.spark import replay_spark, session

    spark = session(master, conf={"spark.sql.shuffle.partitions": str(2 * int(master[6:-1] or 1))
                                  if master.startswith("local[") and master[6:-1].isdigit() else "8",
                                  "spark.driver.memory": "4g"})
    t0 = time.perf_counter()
    result = replay_spark(spark, load_policy(POLICY), parquet, out)
    return {"master": master, "seconds": time.perf_counter() - t0, "actions": result.actions}


def _spark(master: str, parquet: Path, out: Path) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.spark", "--worker", master, "--input", str(parquet),
                           "--out", str(out)], capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def quick() -> int:
    """Spark decides a small synthetic sample exactly as DuckDB does (in this process, local[2])."""
    import duckdb

    with tempfile.TemporaryDirectory() as tmp:
        _, parquet, _, want = _data(Path(tmp), 3000)
        _worker("local[2]", str(parquet), f"{tmp}/out")
        got = duckdb.connect().execute(f"SELECT action_id, decision, rules, errors, tier FROM "
                                       f"read_parquet('{tmp}/out/*.parquet') ORDER BY action_id").fetchall()
    if got != [tuple(r) for r in want]:
        bad = sum(1 for a, b in zip(got, want) if a != tuple(b)) + abs(len(got) - len(want))
        print(f"spark and duckdb disagree on {bad} of {len(want)} actions", file=sys.stderr)
        return 1
    print(f"spark decided all {len(want):,} actions as duckdb does")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks spark")
    ap.add_argument("--sizes", default="1M")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.input, args.out)))
        return 0
    if args.quick:
        return quick()
    print(f"command: python -m benchmarks spark --sizes {args.sizes}\n")
    print("| actions | duckdb s | spark local[1] s | spark local[2] s | local[1] / local[2] | local[2] actions/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in (_size(s) for s in args.sizes.split(",")):
            _, parquet, duck, _ = _data(Path(tmp), n)
            one = _spark("local[1]", parquet, Path(tmp) / f"out1-{n}")
            two = _spark("local[2]", parquet, Path(tmp) / f"out2-{n}")
            print(f"| {n:,} | {duck:.1f} | {one:.1f} | {two:.1f} | {one / two:.2f}x | {n / two:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
