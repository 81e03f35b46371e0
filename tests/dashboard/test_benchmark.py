"""`python -m benchmarks.dashboard` runs and prints its table with the exact command (times are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import PAGES, ROOT


def test_dashboard_benchmark_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.dashboard", "--n", "3000", "--dir", str(tmp_path),
                          "--no-browser"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "command: python -m benchmarks.dashboard --n 3000 --no-browser" in out
    assert "| page | cold s (AppTest) | warm s (AppTest) |" in out
    for page in PAGES:
        assert f"| {page} | " in out
    assert "| simulate: replay the default window |" in out
