"""Shared fixtures for the analytics tests: one store built from sample_logs/, and golden files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("GATEKIT_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def planted() -> dict:
    """What the sample generator planted in sample_logs/ (ids, reviewers, counts)."""
    return json.loads((REPO / "sample_logs" / "PLANTED.json").read_text())


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of sample_logs/ with runs `starter` and `strict` (the two bundled policies)."""
    path = tmp_path_factory.mktemp("store") / "sample.duckdb"
    with Store(path) as store:
        ingest(store, sorted((REPO / "sample_logs").glob("*.jsonl")))
        replay(store, load_policy(REPO / "policies" / "starter.yaml"), "starter")
        replay(store, load_policy(REPO / "policies" / "starter-strict.yaml"), "strict")
    return path


@pytest.fixture
def store(sample_store: Path):
    with Store(sample_store, read_only=True) as s:
        yield s


def check_golden(name: str, frame: pl.DataFrame) -> None:
    """Compare `frame` with tests/golden/NAME.csv; GATEKIT_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / f"{name}.csv"
    text = frame.write_csv(float_precision=6)
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden file {path.relative_to(REPO)}: run with GATEKIT_UPDATE_GOLDEN=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert text == path.read_text(), (
        f"{name} differs from {path.relative_to(REPO)}; if the change is intended, rerun with "
        "GATEKIT_UPDATE_GOLDEN=1 and review the diff")
