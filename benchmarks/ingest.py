"""Ingest throughput: `gatekit ingest` (whole process) of the synthetic actions as JSON Lines and as Parquet.

    python -m benchmarks ingest --n 1000000

The files are written once from the synthetic store (benchmarks/synth.py) by DuckDB: one action a line or
a row, `args` and `context` as nested JSON (Parquet: JSON text columns), timestamps as ISO 8601 strings.
Each ingest goes into a fresh store, in its own process (time and peak RSS of that process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.scale import label, run, store

HERE = Path(__file__).parent


def write_files(db: Path, n: int, out: Path) -> dict[str, Path]:
    files = {"JSONL": out / f"actions-{n}.jsonl", "Parquet": out / f"actions-{n}.parquet"}
    if all(p.exists() for p in files.values()):
        return files
    code = f"""
import duckdb
con = duckdb.connect({str(db)!r}, read_only=True)
cols = "action_id, strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS ts, agent, session, \\"user\\", tool"
con.execute(f"COPY (SELECT {{cols}}, args, context FROM actions ORDER BY seq) TO {str(files['JSONL'])!r} (FORMAT json)")
con.execute(f"COPY (SELECT {{cols}}, CAST(args AS VARCHAR) AS args, CAST(context AS VARCHAR) AS context "
            f"FROM actions ORDER BY seq) TO {str(files['Parquet'])!r} (FORMAT parquet)")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks ingest")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    files = write_files(store(args.n, args.dir), args.n, args.dir)
    load = os.getloadavg()
    print(f"command: python -m benchmarks ingest --n {args.n}")
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| format | actions | file MiB | `gatekit ingest` wall s | actions/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, path in files.items():
        target = args.dir / f"ingest-{fmt.lower()}.duckdb"
        target.unlink(missing_ok=True)
        m = run([sys.executable, "-m", "gatekit.cli", "ingest", str(path), "--db", str(target), "--quiet"])
        print(f"| {fmt} | {label(args.n)} | {path.stat().st_size / 2**20:,.0f} | {m.seconds:.2f} | "
              f"{args.n / m.seconds:,.0f} | {m.rss_mib:,.0f} |", flush=True)
        target.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
