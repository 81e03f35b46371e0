from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekit.logs import Store

DATA = Path(__file__).parent / "data"
# The shared AgentDojo runs sit beside the checkout; they are never copied into the repository.
RUNS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "agentdojo-runs"
# The ground truth of AgentDojo's injection tasks, recorded once from the `agentdojo` package (recorders.py).
GROUND_TRUTH = DATA / "agentdojo-ground-truth.json"

# The tests read the committed recordings and need no SDK. GATEKIT_RERECORD=1 also runs the tests that record
# afresh with the real SDKs (`pip install -e ".[agentdojo,traces]"`) and check the recordings still hold.
RERECORD = os.environ.get("GATEKIT_RERECORD") == "1"
rerecord = pytest.mark.skipif(not RERECORD, reason="records with the real SDKs: run with GATEKIT_RERECORD=1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "gatekit.duckdb") as s:
        yield s


@pytest.fixture(scope="session")
def runs() -> Path:
    if not RUNS.is_dir():
        pytest.skip(f"no AgentDojo runs at {RUNS}")
    return RUNS.resolve()
