"""Shared pieces of the dashboard tests: stores in every state the pages handle, an approvals store with
pending requests, a way to open one page with `AppTest` and read its charts' Vega-Lite specs, and the folder
the browser tests keep their screenshots in (printed at the end of the run, for CI to keep as artifacts)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is imported from the checkout
    sys.path.insert(0, str(ROOT))
# dashboards/ is imported as gatekit.dashboards, the name an (editable) install maps it to
_app = importlib.util.find_spec("gatekit.dashboards")
if _app is None or Path(next(iter(_app.submodule_search_locations or []), "")).resolve() != ROOT / "dashboards":
    raise RuntimeError(f"gatekit.dashboards is not this checkout's dashboards/ ({_app and _app.origin}): "
                       "reinstall it, pip install -e \".[dev]\"")

from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks.synth import build  # noqa: E402
from gatekit import Gate, load_policy  # noqa: E402
from gatekit.dashboard import SERVER_ENV, app_path  # noqa: E402
from gatekit.dashboards import PAGES as APP_PAGES  # noqa: E402
from gatekit.dashboards.source import APPROVALS_ENV, DB_ENV  # noqa: E402
from gatekit.enforce import Broker  # noqa: E402
from gatekit.logs.ingest import ingest  # noqa: E402
from gatekit.logs.store import Store  # noqa: E402
from gatekit.replay import replay  # noqa: E402

APP = app_path()
PAGES = [p.name for p in APP_PAGES]  # every page of the app, the default first
STARTER, STRICT = ROOT / "policies" / "starter.yaml", ROOT / "policies" / "starter-strict.yaml"
ARTIFACTS_ENV = "GATEKIT_ARTIFACTS"
_artifacts: list[Path] = []  # the folder, once a test asked for it


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests keep what a person looks at after the run (the dashboard's screenshots): $GATEKIT_ARTIFACTS,
    or `artifacts` under pytest's base temporary directory."""
    path = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path_factory.getbasetemp() / "artifacts").resolve()
    path.mkdir(parents=True, exist_ok=True)
    _artifacts.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in _artifacts:
        terminalreporter.write_line(f"dashboard screenshots and other artifacts: {path}")


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_logs/ (20,000 actions with approvals and labels), runs `starter` then `strict`."""
    path = tmp_path_factory.mktemp("dash-sample") / "sample.duckdb"
    with Store(path) as store:
        ingest(store, sorted((ROOT / "sample_logs").glob("*.jsonl")))
        replay(store, load_policy(STARTER), "starter")
        replay(store, load_policy(STRICT), "strict")
    return path


def save_a_tuning(db: Path) -> None:
    """What `gatekit tune` keeps in a store, as it does: the starter policy tuned on the store's labels."""
    from gatekit.authoring import tune
    from gatekit.run import save_tuning

    with Store(db) as store:
        result = tune(store, load_policy(STARTER))
        save_tuning(store, {"policy": "starter", "out": "starter-tuned.yaml", **result.to_dict()})


@pytest.fixture(scope="session")
def tuned_store(tmp_path_factory: pytest.TempPathFactory, sample_store: Path) -> Path:
    """The sample store after a `gatekit tune`: the Evaluate page draws its frontier."""
    path = tmp_path_factory.mktemp("dash-tuned") / "tuned.duckdb"
    path.write_bytes(sample_store.read_bytes())
    save_a_tuning(path)
    return path


@pytest.fixture(scope="session")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 synthetic actions with one run, no approvals and no labels."""
    path = build(tmp_path_factory.mktemp("dash-bare") / "bare.duckdb", 5000)
    with Store(path) as store:
        replay(store, load_policy(STARTER), "starter")
    return path


@pytest.fixture(scope="session")
def unreplayed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first week of sample_logs/ (approvals and labels included) and no run."""
    path = tmp_path_factory.mktemp("dash-noruns") / "noruns.duckdb"
    with Store(path) as store:
        ingest(store, sorted((ROOT / "sample_logs").glob("*.jsonl"))[:1])
    return path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the schema and nothing in it."""
    path = tmp_path_factory.mktemp("dash-empty") / "empty.duckdb"
    Store(path).close()
    return path


@pytest.fixture
def approvals_db(tmp_path: Path) -> Path:
    """An approvals store with two pending requests from `billing-bot` for user `u-ann`: a standard one
    (one approval) and a critical one (two, from finance and security)."""
    path = tmp_path / "approvals.db"
    broker = Broker(path)
    gate = Gate(load_policy(STARTER), mode="enforce", broker=broker, agent="billing-bot")
    for amount in (250, 25_000):
        gate.submit({"tool": "payment.send", "args": {"amount": amount, "recipient": "ACME", "currency": "USD"}},
                    user="u-ann")
    broker.close()
    return path


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """`open_page(page, db, approvals=None, server=None, **query)`: the app on that page, run once."""

    def open_(page: str, db: Path | None, approvals: Path | None = None, server: str | None = None,
              **query: str) -> AppTest:
        for env, value in ((DB_ENV, db), (APPROVALS_ENV, approvals), (SERVER_ENV, server)):
            if value is None:
                monkeypatch.delenv(env, raising=False)
            else:
                monkeypatch.setenv(env, str(value))
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.query_params.update(query)
        # AppTest drops the sidebar after switch_page (the browser does not): the default page runs unswitched
        return (at if page == PAGES[0] else at.switch_page(f"app_pages/{page}.py")).run()

    return open_


def charts(at: AppTest) -> list[dict[str, Any]]:
    """The Vega-Lite spec of every chart on the page, each with its datasets as `_rows` (name -> rows)."""
    out = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        spec["_rows"] = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist()
                         for d in element.proto.datasets}
        out.append(spec)
    return out


def titled(at: AppTest, title: str) -> dict[str, Any]:
    found = [c for c in charts(at) if title in str(c.get("title", ""))]
    assert len(found) == 1, f"no single chart titled {title!r}: {[c.get('title') for c in charts(at)]}"
    return found[0]


def rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row shipped with a chart (all its datasets)."""
    return [row for data in spec["_rows"].values() for row in data]


def marks(spec: dict[str, Any]) -> list[str]:
    layers = spec.get("layer", [spec])
    return [m["type"] if isinstance(m, dict) else m for m in (layer["mark"] for layer in layers)]


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, texts(at.exception)
    return at
