"""The full report over a store of 1M realistic actions (approvals, labels): in-process and as a process.

    python -m benchmarks.report --n 1000000

Target (issue 3): the full report in under 10 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay
from gatekit.report import build_report
from gatekit.sample import write_sample

HERE = Path(__file__).parent
REPO = HERE.parent


def sample_store(n: int, out: Path) -> Path:
    """A store of `n` generated actions with the starter policy replayed (built once, then reused)."""
    db = out / f"sample-{n}.duckdb"
    if db.exists():
        return db
    logs = out / f"sample-{n}"
    t = time.perf_counter()
    write_sample(logs, n_actions=n, seed=7)
    print(f"generated {n:,} actions in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    with Store(db) as store:
        t = time.perf_counter()
        ingest(store, sorted(logs.glob("*.jsonl")))
        print(f"ingested in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        replay(store, load_policy(REPO / "policies" / "starter.yaml"), "starter")
    return db


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    db = sample_store(args.n, args.dir)
    print(f"command: python -m benchmarks.report --n {args.n}\n")
    print("| what | actions | seconds |")
    print("|---|---:|---:|")
    with Store(db, read_only=True) as store:
        t = time.perf_counter()
        report = build_report(store, "starter")
        json.dumps(report.to_dict(), default=str)
        print(f"| build_report + JSON (in-process) | {args.n:,} | {time.perf_counter() - t:.2f} |")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gatekit.cli", "report", "--db", str(db), "--run", "starter", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"| `gatekit report --json` (whole process) | {args.n:,} | {time.perf_counter() - t:.2f} |")


if __name__ == "__main__":
    main()
