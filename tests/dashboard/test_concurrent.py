"""`gatekit replay`, a separate process, writes a new run to the store while the dashboard renders its pages
from it: both succeed, and the dashboard shows the new run once the replay is done."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.synth import build
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay

from .conftest import PAGES as ALL_PAGES
from .conftest import STARTER, STRICT, ok

PAGES = [p for p in ALL_PAGES if p != "approvals"]  # the pages that read the action store


def gatekit() -> list[str]:
    script = Path(sys.executable).with_name("gatekit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gatekit.cli"]


def test_replay_writes_while_the_dashboard_reads(open_page, tmp_path: Path) -> None:
    db = build(tmp_path / "busy.duckdb", 150_000)
    with Store(db) as store:
        replay(store, load_policy(STARTER), "before")
    for page in PAGES:  # the dashboard is open: every page read once
        ok(open_page(page, db))

    proc = subprocess.Popen([*gatekit(), "replay", "--db", str(db), "--policy", str(STRICT), "--name", "during",
                             "--json", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    during, i = 0, 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        ok(open_page(PAGES[i % len(PAGES)], db))  # renders, from the store or from what it read before
        i += 1
        during += proc.poll() is None
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["name"] == "during"
    assert during >= 1, "no page rendered while the replay ran"
    print(f"{during} of {i} renders while the replay ran")

    at = ok(open_page("overview", db))
    assert at.sidebar.selectbox[0].options[0].startswith("during")  # the new run, newest first
    compare = ok(open_page("compare", db))
    assert compare.selectbox[0].value == "during" and compare.selectbox[1].value == "before"
