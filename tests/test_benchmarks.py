"""The benchmarks' quick mode: every engine (gatekit replay, the floor, decide, Gate.check, cedarpy, regopy)
decides the same sample the same way. Fails on a wrong decision, never on time."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks import quick  # noqa: E402


def test_every_engine_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    peers = all(importlib.util.find_spec(m) for m in ("cedarpy", "regopy"))
    argv = ["--n", "20000", "--sample", "3000"] + ([] if peers else ["--no-peers"])
    code = quick.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "every engine gave the same decision" in out


def test_a_wrong_engine_is_caught(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import floor
    from benchmarks.synth import build

    # the floor forgets the blocked-recipient rule: the check must notice
    monkeypatch.setattr(floor, "_DENY", floor._DENY[1:])
    problems, _ = quick.check(build(tmp_path / "s.duckdb", 2000), 200, peers=False)
    assert problems and all("floor" in p for p in problems)


def test_the_approvals_benchmark_loses_nothing_across_a_kill(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks approvals --quick`: agents, reviewers, SQLite and two PostgreSQL replicas, one
    killed -9 in the middle; exits 1 if a request is lost, duplicated or consumed twice, or the chain breaks."""
    from tests.server.postgres import binaries

    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    from benchmarks import approvals

    code = approvals.main(["--quick", "--json"])
    out = capsys.readouterr().out
    results = json.loads(out)
    assert code == 0, out
    assert [(r["store"], r["replicas"]) for r in results] == [("sqlite", 1), ("postgresql", 2)]
    for r in results:
        assert r["lost"] == r["duplicated"] == r["double_consumed"] == 0 and r["verified"], r
        assert r["executed"] > 0 and r["killed_at"] is not None, r


def test_spark_decides_the_sample_as_duckdb(spark, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks spark --quick`: Spark (the test run's session) decides 3,000 synthetic actions
    through the 20-rule policy exactly as DuckDB's replay does."""
    from benchmarks import spark as spark_bench

    code = spark_bench.main(["--quick"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "as duckdb does" in out


def test_the_out_of_core_benchmark_checks_its_decisions_against_the_store(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks outofcore` at a small size: Parquet files in two parts, replayed under a memory
    limit, every action compared with the store's replay of the same rows; a changed row is caught."""
    import duckdb

    from benchmarks import outofcore

    code = outofcore.main(["--sizes", "2k", "--memory-limit", "256MB", "--dir", str(tmp_path), "--chunk", "1500"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2k nowindow: 2,000 actions compared with the store's replay, 0 differ" in out
    assert "2k window: 2,000 actions compared with the store's replay, 0 differ" in out
    assert sorted(p.name for p in (tmp_path / "lake-2k").glob("*.parquet")) == ["part-00000.parquet",
                                                                               "part-00001.parquet"]
    # a lake whose payments all go to a blocked recipient no longer decides as the store does
    part = tmp_path / "lake-2k" / "part-00001.parquet"
    duckdb.execute(f"COPY (SELECT * REPLACE (replace(args::VARCHAR, 'acme', 'mallory') AS args) "
                   f"FROM '{part}') TO '{part}.tmp' (FORMAT parquet)")
    Path(f"{part}.tmp").replace(part)
    code = outofcore.main(["--sizes", "2k", "--policies", "nowindow", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "0 differ" not in out, out
