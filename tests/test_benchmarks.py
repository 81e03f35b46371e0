"""The benchmarks' quick mode: every engine (gatekit replay, the floor, decide, Gate.check, cedarpy, regopy)
decides the same sample the same way. Fails on a wrong decision, never on time."""

from __future__ import annotations

import importlib.util
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
