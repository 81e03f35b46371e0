"""`python -m benchmarks.gate` runs and prints its table and the exact command (timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gate_benchmark_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.gate", "--n", "3000", "--warmup", "1000"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "command: python -m benchmarks.gate --n 3000 --warmup 1000" in out
    assert "| calls | p50 µs | p90 µs | p99 µs |" in out and "| 3,000 |" in out
