"""The benchmark harness: `python -m benchmarks COMMAND [options]`, each command prints markdown tables
headed by the exact command that produced them (BENCHMARKS.md is assembled from them).

    python -m benchmarks quick                     # < 60 s: every engine decides a sample; exits 1 on a mismatch
    python -m benchmarks scale --sizes 10k,100k,1M,10M   # replay vs the floor, whole process and API, RSS
    python -m benchmarks peers --n 20000           # per-decision throughput: decide, cedarpy, regopy (+ check)
    python -m benchmarks enforce --n 20000         # Gate.check vs cedarpy vs regopy latency, same requests
    python -m benchmarks gate --n 100000           # Gate.check: the closure evaluator vs decide's, and its parts
    python -m benchmarks ingest --n 1000000        # gatekit ingest of JSONL and Parquet
    python -m benchmarks report --n 1000000        # the full report (benchmarks/report.py)
    python -m benchmarks dashboard                 # dashboard page render (benchmarks/dashboard.py, if present)
    python -m benchmarks mcp                       # latency the MCP gateway adds per tools/call (stdio and HTTP)
    python -m benchmarks approvals                 # the approvals service: agents, reviewers, replicas, kill -9
    python -m benchmarks spark [--sizes 1M,10M]    # replay on Spark local[1] / local[2] vs DuckDB (--quick: CI)
    python -m benchmarks outofcore --sizes 1M,10M,100M   # Parquet files replayed under --memory-limit 4GB, RSS
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"quick": "benchmarks.quick", "scale": "benchmarks.scale", "peers": "benchmarks.quick",
            "enforce": "benchmarks.enforce", "ingest": "benchmarks.ingest", "report": "benchmarks.report",
            "dashboard": "benchmarks.dashboard", "replay": "benchmarks.replay", "gate": "benchmarks.gate",
            "approvals": "benchmarks.approvals", "mcp": "benchmarks.mcp", "spark": "benchmarks.spark",
            "outofcore": "benchmarks.outofcore"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as e:
        if e.name == COMMANDS[name]:
            print(f"`{COMMANDS[name].replace('.', '/')}.py` does not exist (yet): nothing to run", file=sys.stderr)
            return 2
        raise
    if name == "peers" and not any(a.startswith("--sample") for a in rest):
        rest = [*rest, "--sample", "20000"]
    code = module.main(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
