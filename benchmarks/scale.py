"""Replay against the floor, side by side, from 10k to 10M actions: time and peak RSS of each whole process.

    python -m benchmarks scale --sizes 10k,100k,1M,10M

For each size, one store (benchmarks/synth.py, built once and kept in benchmarks/out/), then each
contender as its own fresh process, one after the other, so every peak RSS is that process's own:

- `gatekit replay` (the CLI, whole process: interpreter start, imports, policy load, replay, exit), twice:
  *first* on a store with no shred (`gatekit/logs/shred.py`: the replay shreds the paths the policy reads,
  one pass over the JSON, then decides from the typed columns), and *shredded*, the replay after it;
- the in-process API, `replay(store, policy)`, timed around the call (`python -m benchmarks.scale api`),
  reading the JSON (`shred_paths=False`, replay as it was before shredding) and reading the shred;
- the floor, `python -m benchmarks.floor` (typed columns, and `--json-columns` on the stored JSON).

Each with and without the two window rules. Ratios are taken within the same size, minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
POLICIES = {"nowindow": HERE / "policies" / "twenty-nowindow.yaml", "window": HERE / "policies" / "twenty.yaml"}


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n % 1000 == 0 else str(n))


def store(n: int, out: Path) -> Path:
    """The synthetic store of `n` actions with its typed columns, built once (in its own process) and reused.

    The harness itself never loads duckdb or a store: a child's peak RSS as the kernel reports it is at
    least its parent's at fork time, so the parent stays small (~20 MiB).
    """
    db = out / f"bench-{n}.duckdb"
    ready = out / f"bench-{n}.ready"
    if not (db.exists() and ready.exists()):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchmarks.scale", "build", "--db", str(db), "--n", str(n)], check=True)
        ready.write_text("ok\n")
        print(f"built {n:,} actions in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return db


def build(argv: list[str]) -> None:
    import duckdb

    from benchmarks.floor import prepare
    from benchmarks.synth import build

    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True)
    args = ap.parse_args(argv)
    build(args.db, args.n)
    con = duckdb.connect(str(args.db))
    prepare(con, replace=True)
    con.close()


@dataclass
class Measure:
    seconds: float  # wall time of the whole process
    rss_mib: float  # its peak resident set
    inner: float | None = None  # the time it reports for the work itself (API call, floor query)


def run(cmd: list[str], before: list[str] | None = None) -> Measure:
    """Run `cmd` as a process; wall time and its own peak RSS (wait4), and the time it printed, if any.
    `before`: a process run first, untimed (dropping the shred for a first replay)."""
    if before:
        subprocess.run(before, check=True, stdout=subprocess.DEVNULL)
    t = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=devnull)
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}")
    inner = None
    lines = out.decode().strip().splitlines()
    if lines and lines[-1].startswith("{"):
        inner = json.loads(lines[-1]).get("seconds")
    return Measure(wall, usage.ru_maxrss / 1024, inner)


def contenders(db: Path) -> dict[str, list[str]]:
    py = sys.executable
    out = {}
    for kind, policy in POLICIES.items():
        w = ["--window"] if kind == "window" else []
        out[f"floor, typed ({kind})"] = [py, "-m", "benchmarks.floor", "--db", str(db), *w]
        out[f"floor, JSON ({kind})"] = [py, "-m", "benchmarks.floor", "--db", str(db), "--json-columns", *w]
        cli = [py, "-m", "gatekit.cli", "replay", "--db", str(db), "--policy", str(policy),
               "--name", f"bench-{kind}", "--replace", "--quiet"]
        out[f"gatekit replay, first ({kind})"] = cli  # after UNSHRED: shreds, then decides
        out[f"gatekit replay, shredded ({kind})"] = cli
        api = [py, "-m", "benchmarks.scale", "api", "--db", str(db), "--policy", str(policy)]
        out[f"API replay(), JSON ({kind})"] = [*api, "--json"]  # no shred: what replay did before shredding
        out[f"API replay(), shredded ({kind})"] = api
    return out


def unshred(argv: list[str]) -> None:
    """Drop the store's shred (its side tables), so the next replay shreds from the JSON again."""
    import duckdb

    from gatekit.logs.shred import PATHS_TABLE, TABLE

    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    con = duckdb.connect(ap.parse_args(argv).db)
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {PATHS_TABLE}")
    con.execute("CHECKPOINT")
    con.close()


def api(argv: list[str]) -> None:
    """One in-process replay, timed around the call; prints its seconds and this process's peak RSS."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--json", action="store_true", help="read the JSON, not the shred")
    args = ap.parse_args(argv)
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import replay

    policy = load_policy(args.policy)
    with Store(args.db) as s:
        t = time.perf_counter()
        r = replay(s, policy, "bench-api", replace=True, shred_paths=not args.json)
        secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "actions": r.actions, "deny": r.deny, "escalate": r.escalate,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["api"]:
        api(argv[1:])
        return 0
    if argv[:1] == ["unshred"]:
        unshred(argv[1:])
        return 0
    if argv[:1] == ["build"]:
        build(argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks scale")
    ap.add_argument("--sizes", default="10k,100k,1M")
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    ap.add_argument("--repeat", type=int, default=1, help="run each process this many times, keep the fastest")
    ap.add_argument("--only", default="", help="comma-separated substrings of contender names to run")
    ap.add_argument("--cedar-per-s", type=float, default=0.0,
                    help="cedarpy decisions per second (from `python -m benchmarks peers`) for the ratio column")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    only = [o for o in args.only.split(",") if o]
    load = os.getloadavg()
    print(f"command: python -m benchmarks scale --sizes {args.sizes}" + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
          + (f" --only {args.only}" if only else "") + (f" --cedar-per-s {args.cedar_per_s:.0f}" if args.cedar_per_s else ""))
    print(f"{os.cpu_count()} cores, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| actions | process | wall s | inner s | actions/s (wall) | peak RSS MiB | vs floor, typed (wall) |"
          + (" vs cedarpy |" if args.cedar_per_s else ""))
    print("|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if args.cedar_per_s else ""))
    for n in sizes:
        db = store(n, args.dir)
        results: dict[str, Measure] = {}
        for name, cmd in contenders(db).items():
            if only and not any(o in name for o in only):
                continue
            before = [sys.executable, "-m", "benchmarks.scale", "unshred", "--db", str(db)] if ", first" in name else None
            m = results[name] = min((run(cmd, before) for _ in range(args.repeat)), key=lambda x: x.seconds)
            kind = "window" if "(window)" in name else "nowindow"
            floor = results.get(f"floor, typed ({kind})")
            ratio = f"{m.seconds / floor.seconds:.2f}x" if floor and not name.startswith("floor, typed") else ""
            vs_cedar = f" {n / m.seconds / args.cedar_per_s:.0f}x |" if args.cedar_per_s else ""
            inner = f"{m.inner:.2f}" if m.inner is not None else ""
            print(f"| {label(n)} | {name} | {m.seconds:.2f} | {inner} | {n / m.seconds:,.0f} | {m.rss_mib:,.0f} | "
                  f"{ratio} |{vs_cedar}", flush=True)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
