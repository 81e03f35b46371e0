"""Replay throughput of a 20-rule policy inside DuckDB, with and without window rules.

    python -m benchmarks.replay --n 1000000

Superseded by `python -m benchmarks scale` (the floor side by side, every contender its own process).
Here the `gatekit replay` peak RSS is not that process's own: Linux starts a child's high-water mark at
its parent's, and this parent has built the store and replayed in-process.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.synth import build
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    db = args.dir / f"bench-{args.n}.duckdb"
    t0 = time.perf_counter()
    build(db, args.n)
    print(f"built {args.n:,} actions in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    print(f"command: python -m benchmarks.replay --n {args.n}\n")
    print("| policy | actions | replay s | actions/s | escalate | deny | errored |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("twenty-nowindow", "twenty"):
        policy = load_policy(HERE / "policies" / f"{name}.yaml")
        with Store(db) as store:
            t = time.perf_counter()
            run = replay(store, policy, name, replace=True)
            secs = time.perf_counter() - t
        print(f"| {name} | {run.actions:,} | {secs:.2f} | {run.actions / secs:,.0f} | {run.escalate:,} | "
              f"{run.deny:,} | {run.errored:,} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process (in-process API): {peak:,.0f} MiB\n")
    print("| whole `gatekit replay` process | wall s | peak RSS MiB |")
    print("|---|---:|---:|")
    for name in ("twenty-nowindow", "twenty"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gatekit.cli", "replay", "--db", str(db), "--policy",
                        str(HERE / "policies" / f"{name}.yaml"), "--name", f"{name}-cli", "--replace", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"| {name} | {wall:.2f} | {child:,.0f} |")


if __name__ == "__main__":
    main()
