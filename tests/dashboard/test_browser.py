"""The dashboard in a real browser: `python -m gatekit.dashboard` serves it on a free loopback port, Playwright
drives Debian's Chromium through every page, and each page renders its charts without an exception and so that
a person can read them (tests/dashboard/readable.py: a usable size, legends for several series, no text over
other text, numbers that fit their cells). Each page is opened first from its own URL, in a fresh browser
session; the Approvals page shows its requests read-only and links to the approvals service.

Playwright cannot download browsers here, so this needs /usr/bin/chromium (`apt-get install chromium`);
without it the test is skipped. Screenshots of every page are kept under the artifacts folder (conftest.py:
$GATEKIT_ARTIFACTS, or pytest's base temporary directory), printed at the end of the run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekit.dashboards import PAGES as APP_PAGES

from . import readable
from .conftest import ROOT, STRICT

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# the charts each page draws on the sample store before any interaction (a page not listed: none)
# (the store has a `gatekit tune` record: Evaluate draws its frontier as a third chart)
CHARTS = {"overview": 4, "simulate": 0, "compare": 2, "drift": 3, "reviewers": 4, "evaluate": 3, "explorer": 0,
          "approvals": 0, "quarantine": 0}
# page -> (url path, charts), for every page of the app
PAGES = {p.name: (p.url_path, CHARTS.get(p.name, 0)) for p in APP_PAGES}
TITLES = {p.name: p.title for p in APP_PAGES}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHART = '[data-testid="stVegaLiteChart"]'
DRAWN = f'{CHART} canvas, {CHART} svg.marks'
VIEWPORT = {"width": 1400, "height": 2400}
SERVICE = "http://127.0.0.1:8470"  # the approvals service the Approvals page links to (not started here)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium: apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path, tuned_store: Path, approvals_db: Path) -> Iterator[tuple[str, Path, Path]]:
    """The dashboard on a copy of the sample store after a `gatekit tune`, with the approvals store; stopped by
    its own PID."""
    db = tmp_path / "store.duckdb"
    db.write_bytes(tuned_store.read_bytes())
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gatekit.dashboard", "--db", str(db), "--port", str(port),
                             "--approvals", str(approvals_db), "--server", SERVICE], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start within 90 s"
            time.sleep(0.25)
        yield url, db, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def shots(artifacts: Path) -> Path:
    out = artifacts / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def settle(page, charts: int = 0, timeout: float = 60_000) -> None:
    """Wait for the script run to end and `charts` charts to be drawn."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_function(f"document.querySelectorAll({json.dumps(DRAWN)}).length >= {charts}", timeout=timeout)
    page.wait_for_selector(IDLE, timeout=timeout)


def check(page, name: str, charts: int, shots: Path) -> list[str]:
    """Asserts the page drew `charts` charts without an exception, keeps its screenshot, and returns what
    keeps its charts from being read (readable.problems), each prefixed with the page's name."""
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()
    assert page.locator(CHART).count() == charts
    assert page.locator(DRAWN).count() == charts  # every chart drew its marks
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    return [f"{name}: {problem}" for problem in readable.problems(page)]


def test_every_page_in_chromium(server, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, db, tmp = server
    unreadable: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for name, (path, charts) in PAGES.items():  # each first from its URL, in a session of its own
                with browser.new_context(viewport=VIEWPORT) as context:
                    page = context.new_page()
                    page.goto(f"{url}/{path}")
                    page.get_by_role("heading", name=TITLES[name], exact=True).wait_for(timeout=60_000)
                    settle(page, charts)
                    unreadable += check(page, name, charts, shots)
                    if name == "simulate":  # its charts show once a window is replayed against the run
                        page.get_by_role("button", name="Replay on window").click()
                        page.get_by_text("Actions in window").wait_for(timeout=60_000)
                        settle(page, 3)
                        unreadable += check(page, "simulate-replayed", 3, shots)
            assert not unreadable, "charts that do not read:\n" + "\n".join(unreadable)

            page = browser.new_page(viewport=VIEWPORT)
            # explorer: open one action by its id
            page.goto(f"{url}/explorer")
            settle(page)
            page.get_by_role("textbox", name="Action id").fill("a-00048")
            page.get_by_role("textbox", name="Action id").press("Enter")
            page.get_by_text("every run's decision").wait_for(timeout=60_000)
            settle(page)
            assert page.get_by_text("DIFFERENT: what ran is not what was reviewed").count() == 1
            check(page, "explorer-action", 0, shots)

            # approvals: read-only, the requests shown and a link to the service for voting
            page.goto(f"{url}/approvals")
            settle(page)
            assert "2 pending" in page.get_by_text("pending ·", exact=False).inner_text()
            assert page.get_by_text("payment.send", exact=True).count() == 2
            main = page.locator('[data-testid="stMain"]')
            assert main.get_by_role("button", name="Approve").count() == 0
            assert main.get_by_role("button", name="Deny").count() == 0 and main.get_by_role("textbox").count() == 0
            assert page.get_by_role("link", name="the approvals service's page").get_attribute("href") == SERVICE
            check(page, "approvals-read-only", 0, shots)

            # gatekit replay writes a new run while the dashboard is open
            proc = subprocess.Popen([sys.executable, "-m", "gatekit.cli", "replay", "--db", str(db), "--policy",
                                     str(STRICT), "--name", "during", "--quiet"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in ("overview", "drift", "explorer"):
                page.goto(f"{url}/{PAGES[name][0]}")
                settle(page)
                assert page.locator('[data-testid="stException"]').count() == 0
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            page.goto(url)
            settle(page, PAGES["overview"][1])
            picked = page.get_by_role("combobox", name="Run").input_value()
            assert picked == "during (starter-strict)"  # the new run, newest, picked by default
            check(page, "overview-after-replay", PAGES["overview"][1], shots)
        finally:
            browser.close()
    assert len(list(shots.glob("*.png"))) == len(PAGES) + 4


def test_a_page_opened_first_by_its_url_runs_inside_the_app(server) -> None:
    """A bookmarked page on a fresh server: it runs through app.py (titled navigation, the run picker), and
    imports the app as gatekit.dashboards (it once failed with `No module named 'dashboards'`)."""
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{url}/approvals")
            page.get_by_role("heading", name="Approvals", exact=True).wait_for(timeout=60_000)
            settle(page)
            assert page.locator('[data-testid="stException"]').count() == 0
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert all(p.title in nav for p in APP_PAGES) and "app_pages" not in nav and "\napp\n" not in nav
            assert page.get_by_role("combobox", name="Run").count() == 1  # the sidebar app.py draws
        finally:
            browser.close()
