from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekit.logs import Store
from gatekit.logs.adapters.agentdojo import BUNDLED

DATA = Path(__file__).parent / "data"
# The shared AgentDojo runs sit beside the checkout; they are never copied into the repository.
RUNS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "agentdojo-runs"
# The ground truth of AgentDojo's injection tasks, recorded once from the `agentdojo` package (recorders.py)
# and shipped with gatekit.
GROUND_TRUTH = BUNDLED

# The tests read the committed recordings and need no SDK. GATEKIT_RERECORD=1 also runs the tests that record
# afresh with the real SDKs (`pip install -e ".[agentdojo,traces]"`) and check the recordings still hold.
# They are deselected otherwise (not skipped: nothing the product does is left untested without them).
RERECORD = os.environ.get("GATEKIT_RERECORD") == "1"
rerecord = pytest.mark.rerecord


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if RERECORD:
        return
    recording = [item for item in items if item.get_closest_marker("rerecord")]
    if recording:
        config.hook.pytest_deselected(items=recording)
        items[:] = [item for item in items if not item.get_closest_marker("rerecord")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "gatekit.duckdb") as s:
        yield s


@pytest.fixture(scope="session")
def runs() -> Path:
    if not RUNS.is_dir():
        pytest.skip(f"no AgentDojo runs at {RUNS}")
    return RUNS.resolve()
