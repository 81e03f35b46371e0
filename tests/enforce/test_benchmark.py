"""`python -m benchmarks gate` runs, prints its tables and the exact command, and both paths decide alike
(timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gate_benchmark_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "gate", "--n", "2000", "--warmup", "500"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300).stdout
    assert "command: python -m benchmarks gate --n 2000 --warmup 500" in out
    assert "| policy | Gate.check with | calls | p50 µs | p90 µs | p99 µs |" in out
    for policy in ("no windows", "2 windows"):
        for path in ("decide's evaluator (before)", "the closure evaluator (now)"):
            assert f"| {policy} | {path} | 2,000 |" in out
    assert "decisions that differ between the two paths: 0" in out  # check=True: exit 0 says so too
    assert "| evaluate: closure evaluator |" in out and "| reading the call into a View (`_view`) |" in out
