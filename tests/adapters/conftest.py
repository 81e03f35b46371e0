from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekit.logs import Store

DATA = Path(__file__).parent / "data"
# The shared AgentDojo runs sit beside the checkout; they are never copied into the repository.
RUNS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "agentdojo-runs"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "gatekit.duckdb") as s:
        yield s


@pytest.fixture(scope="session")
def runs() -> Path:
    if not RUNS.is_dir():
        pytest.skip(f"no AgentDojo runs at {RUNS}")
    return RUNS.resolve()
