"""`python -m benchmarks mcp` runs, every contender answers, and the table it prints has every row."""

from __future__ import annotations

import pytest

from benchmarks import mcp as bench


def test_the_benchmark_runs_every_contender(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--n", "10", "--rounds", "2", "--warmup", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("command: python -m benchmarks mcp --n 10 --rounds 2 --warmup 2 --mode legacy")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "ms" not in line]
    assert rows == ["stdio, direct", "stdio, gateway", "stdio, gateway + log", "HTTP, direct", "HTTP, gateway",
                    "HTTP, gateway, stdio upstream", "HTTP, gateway, JSON responses",
                    "HTTP, gateway, stdio upstream, JSON responses"]
    assert "inside the gateway's tools/call handler" in out
