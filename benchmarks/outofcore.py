"""Replay of Parquet files out of core: 100M actions under `--memory-limit 4GB`, peak RSS, cost per action.

    python -m benchmarks outofcore --sizes 1M,10M,100M --memory-limit 4GB

Each size is a directory of Parquet files of at most 10M actions each (benchmarks/out/lake-<size>/, written
once by DuckDB from `synth.rows_sql`: the same rows as the stores `benchmarks scale` builds). The whole process
`gatekit replay --input DIR --out OUT --memory-limit 4GB` replays it for each policy; the table gives its wall
time, its peak RSS (wait4), microseconds per action and their ratio to the smallest size's (flat is 1.00x).
At the smallest size the decisions are checked against the store's replay of the same rows (`gatekit replay
--db`): every action with the same decision, rules, errors and tier, none missing on either side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.scale import HERE, POLICIES, label, parse_size, run, store

CHUNK = 10_000_000  # actions per Parquet file


def lake(n: int, out: Path, chunk: int = CHUNK) -> Path:
    """The directory of Parquet files holding actions 1..n, made once (in its own process: a child's peak RSS
    as the kernel reports it starts from its parent's) and reused."""
    path = out / f"lake-{label(n)}"
    ready = path / "_ready"
    if not (ready.exists() and ready.read_text() == str(n)):
        subprocess.run([sys.executable, "-m", "benchmarks.outofcore", "lake", "--n", str(n), "--dir", str(out),
                        "--chunk", str(chunk)], check=True)
    return path


def write_lake(n: int, out: Path, chunk: int) -> None:
    import duckdb

    from benchmarks.synth import rows_sql

    path = out / f"lake-{label(n)}"
    ready = path / "_ready"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for k, first in enumerate(range(1, n + 1, chunk)):
        last = min(n, first + chunk - 1)
        part = path / f"part-{k:05d}.parquet"
        con.execute(f"COPY (SELECT * EXCLUDE (seq) FROM ({rows_sql(first, last)}) ORDER BY seq) "
                    f"TO '{part}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    ready.write_text(str(n))  # `_` files are not read by `--input`


def differences(db: Path, decisions: Path, run_name: str) -> tuple[int, int]:
    """(actions compared, actions whose decision, rules, errors or tier differ or that one side lacks)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE a.action_id IS NULL OR b.action_id IS NULL "
            "OR a.decision IS DISTINCT FROM b.decision OR a.rules IS DISTINCT FROM b.rules "
            "OR a.errors IS DISTINCT FROM b.errors OR a.tier IS DISTINCT FROM b.tier) "
            "FROM (SELECT action_id, decision, rules, errors, tier FROM decisions WHERE run = ?) a "
            "FULL JOIN read_parquet(?) b ON a.action_id = b.action_id", [run_name, str(decisions)]).fetchall()
    finally:
        con.close()
    return rows[0][0], rows[0][1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["differences"]:  # in its own process too: the harness never loads duckdb
        db, decisions, name = argv[1:4]
        print(json.dumps(differences(Path(db), Path(decisions), name)))
        return 0
    if argv[:1] == ["lake"]:
        sub = argparse.ArgumentParser()
        sub.add_argument("--n", type=int, required=True)
        sub.add_argument("--dir", type=Path, required=True)
        sub.add_argument("--chunk", type=int, required=True)
        made = sub.parse_args(argv[1:])
        write_lake(made.n, made.dir, made.chunk)
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks outofcore")
    ap.add_argument("--sizes", default="1M,10M,100M")
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    ap.add_argument("--policies", default="nowindow,window", help="which of nowindow,window to replay")
    ap.add_argument("--no-check", action="store_true", help="skip the check against the store's replay")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="actions per Parquet file")
    args = ap.parse_args(argv)
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    kinds = [k for k in args.policies.split(",") if k]
    load = os.getloadavg()
    print(f"command: python -m benchmarks outofcore --sizes {args.sizes} --memory-limit {args.memory_limit}"
          + (f" --policies {args.policies}" if args.policies != "nowindow,window" else ""))
    print(f"{os.cpu_count()} cores, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    db = None if args.no_check else store(sizes[0], args.dir)  # (built first: it prints a line)
    print("| actions | policy | files | wall s | actions/s | µs per action | vs the smallest | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    base: dict[str, float] = {}
    checks: list[str] = []
    py = sys.executable
    for n in sizes:
        files = lake(n, args.dir, args.chunk)
        count = len(list(files.glob("*.parquet")))
        for kind in kinds:
            out = args.dir / f"lake-{label(n)}-decided-{kind}"
            shutil.rmtree(out, ignore_errors=True)
            m = run([py, "-m", "gatekit.cli", "replay", "--input", str(files), "--policy", str(POLICIES[kind]),
                     "--out", str(out), "--memory-limit", args.memory_limit, "--quiet"])
            per = m.seconds / n * 1e6
            base.setdefault(kind, per)
            print(f"| {label(n)} | {kind} | {count} | {m.seconds:.2f} | {n / m.seconds:,.0f} | {per:.2f} | "
                  f"{per / base[kind]:.2f}x | {m.rss_mib:,.0f} |", flush=True)
            if n == sizes[0] and db is not None:
                name = f"outofcore-{kind}"
                subprocess.run([py, "-m", "gatekit.cli", "replay", "--db", str(db), "--policy", str(POLICIES[kind]),
                                "--name", name, "--replace", "--quiet"], check=True, stdout=subprocess.DEVNULL)
                compared, differ = json.loads(subprocess.run(
                    [py, "-m", "benchmarks.outofcore", "differences", str(db), str(out / "decisions.parquet"), name],
                    check=True, capture_output=True, text=True).stdout)
                checks.append(f"{label(n)} {kind}: {compared:,} actions compared with the store's replay, "
                              f"{differ:,} differ")
                if differ:
                    print("\n" + "\n".join(checks))
                    return 1
            shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for line in checks:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
