"""Render time of every dashboard page on a large store (target: 3 s a page at 1M actions).

    python -m benchmarks.dashboard --n 1000000

The store is benchmarks/synth.py's, given approvals, labels and evidence hashes (so Reviewers, Evaluate and
execution drift have work to do) and two runs of the 20-rule benchmark policy. Each page is timed with
Streamlit's `AppTest` (the script run, charts serialised, no browser): *cold* with every cache emptied, as
the first visit after `gatekit dashboard` starts, and *warm*, as the next visit. With /usr/bin/chromium it
also times each page in a real browser against `gatekit dashboard`, visited in menu order on a fresh server
(until the script run ends and every chart is drawn), after one visit that loads Streamlit's JavaScript.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.synth import build
from gatekit.dashboard import app_path
from gatekit.dashboards import PAGES as APP_PAGES
from gatekit.logs.store import Store
from gatekit.policy import load_policy
from gatekit.replay import replay
from gatekit.run import list_runs

HERE = Path(__file__).parent
ROOT = HERE.parent
APP = app_path()
PAGES = [p.name for p in APP_PAGES]
CHROMIUM = Path("/usr/bin/chromium")
TARGET_S = 3.0
RUNS = ("twenty-nowindow", "twenty")  # the last is the newest: the run every page shows

# Reviews on the risky tools (about 1 call in 8), labels everywhere (2% harmful), evidence on every call,
# and 1 approved call in 500 run with other arguments than the ones reviewed.
APPROVALS_SQL = """
UPDATE actions SET
  outcome = 'executed',
  label = CASE WHEN hash(seq, 30) % 50 = 0 THEN 'harmful' ELSE 'benign' END,
  evidence_hash = 'sha256:' || md5(action_id),
  executed_hash = 'sha256:' || md5(action_id || CASE WHEN hash(seq, 31) % 500 = 0 THEN '-drift' ELSE '' END),
  approvals = CASE WHEN tool IN ('payment.send', 'payment.refund', 'db.delete', 'db.update', 'deploy.service',
                                 'infra.iam.grant', 'data.export', 'email.campaign.send')
                    AND hash(seq, 32) % 3 = 0
    THEN json_array(json_object(
      'reviewer', 'r-' || CAST(hash(seq, 33) % 24 AS VARCHAR),
      'role', (['finance', 'security', 'sre', 'data-protection'])[1 + CAST(hash(seq, 34) % 4 AS INTEGER)],
      'decision', CASE WHEN hash(seq, 35) % 12 = 0 THEN 'deny' ELSE 'approve' END,
      'requested_at', ts,
      'decided_at', ts + to_seconds(CAST(5 + hash(seq, 36) % 5400 AS BIGINT)),
      'break_glass', hash(seq, 37) % 2000 = 0)) END
"""


def store(n: int, out: Path, rebuild: bool) -> Path:
    path = out / f"dashboard-{n}.duckdb"
    if path.exists() and not rebuild:
        with Store(path, read_only=True) as s:
            if {r.name for r in list_runs(s)} >= set(RUNS):
                return path
    started = time.perf_counter()
    build(path, n)
    with Store(path) as s:
        s.con.execute("SET enable_progress_bar = false")
        s.con.execute(APPROVALS_SQL)
        for name in RUNS:
            replay(s, load_policy(HERE / "policies" / f"{name}.yaml"), name, replace=True)
        s.con.execute("CHECKPOINT")
    print(f"built {path} ({n:,} actions) in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def describe(path: Path) -> str:
    with Store(path, read_only=True) as s:
        n, approved, labelled = s.con.execute(
            "SELECT count(*), count(*) FILTER (json_array_length(approvals) > 0), count(label) FROM actions"
        ).fetchall()[0]
        runs = ", ".join(f"`{r.name}`" for r in list_runs(s))
    return f"{n:,} actions, {approved:,} with an approval, {labelled:,} labelled; runs {runs}"


def apptest(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Cold and warm render time of every page (seconds, best of `repeat`), and two interactions."""
    os.environ["GATEKIT_DB"] = str(path)
    os.environ.pop("GATEKIT_APPROVALS", None)
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def run(page: str) -> tuple[float, AppTest]:
        at = AppTest.from_file(str(APP), default_timeout=600)
        if page != PAGES[0]:
            at.switch_page(f"app_pages/{page}.py")
        started = time.perf_counter()
        at.run()
        took = time.perf_counter() - started
        if at.exception:
            raise RuntimeError(f"{page}: {at.exception[0].value}")
        return took, at

    run("approvals")  # imports everything once, reads nothing
    out: dict[str, dict[str, float]] = {}
    for page in PAGES:
        cold, warm = [], []
        for _ in range(repeat):
            st.cache_resource.clear()
            cold.append(run(page)[0])
            warm.append(run(page)[0])
        out[page] = {"cold": min(cold), "warm": min(warm)}
    took, at = run("simulate")
    button = next(b for b in at.button if b.label == "Replay on window")
    window = next(c.value for c in at.caption if "actions in the window" in c.value)
    started = time.perf_counter()
    button.click().run()
    out["simulate: replay the default window"] = {"warm": time.perf_counter() - started, "note": window}
    took, at = run("drift")
    started = time.perf_counter()
    at.toggle[0].set_value(True).run()
    out["drift: compare tested arguments"] = {"warm": time.perf_counter() - started}
    return out


def browser(path: Path) -> dict[str, float]:
    """Seconds from navigation to the end of the script run with every chart drawn, pages in menu order."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gatekit.dashboard", "--db", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.25)
        drawn = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks'
        idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
        with sync_playwright() as pw:
            chrome = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = chrome.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{url}/approvals")  # loads Streamlit's JavaScript once: the pages are what is timed
            page.wait_for_selector(idle, timeout=600_000)
            for name in PAGES:
                started = time.perf_counter()
                page.goto(f"{url}/{'' if name == PAGES[0] else name}")
                page.get_by_role("heading", name=name.capitalize(), exact=True).wait_for(timeout=600_000)
                page.wait_for_selector(idle, timeout=600_000)
                charts = page.locator('[data-testid="stVegaLiteChart"]').count()
                page.wait_for_function(f"document.querySelectorAll({json.dumps(drawn)}).length >= {charts}",
                                       timeout=600_000)
                out[name] = time.perf_counter() - started
            chrome.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=HERE / "out")
    ap.add_argument("--repeat", type=int, default=1, help="best of this many cold and warm renders")
    ap.add_argument("--rebuild", action="store_true", help="build the store even if it exists")
    ap.add_argument("--no-browser", dest="browser", action="store_false", help="skip the Chromium timings")
    args = ap.parse_args(argv)
    path = store(args.n, args.dir, args.rebuild)
    times = apptest(path, args.repeat)
    shown = browser(path) if args.browser and CHROMIUM.exists() else {}

    flags = "".join([f" --n {args.n}", f" --repeat {args.repeat}" if args.repeat != 1 else "",
                     "" if args.browser else " --no-browser"])
    print(f"command: python -m benchmarks.dashboard{flags}\n")
    print(f"store: {describe(path)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| page | cold s (AppTest) | warm s (AppTest) | Chromium s (first visit, menu order) | within 3 s |")
    print("|---|---:|---:|---:|---|")
    for page in PAGES:
        t = times[page]
        real = shown.get(page)
        worst = max(t["cold"], real or 0.0)
        print(f"| {page} | {t['cold']:.2f} | {t['warm']:.2f} | {'-' if real is None else f'{real:.2f}'} | "
              f"{'yes' if worst <= TARGET_S else 'NO'} |")
    print("\n| interaction | s | |\n|---|---:|---|")
    for name, t in times.items():
        if name not in PAGES:
            print(f"| {name} | {t['warm']:.2f} | {t.get('note', '')} |")


if __name__ == "__main__":
    main()
