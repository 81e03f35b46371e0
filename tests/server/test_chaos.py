"""3 agent processes and 2 reviewers (one on the CLI, one in Chromium through the web page) against one
service for 30 seconds, with the service killed (-9) and restarted twice. Afterwards every request has
ended exactly once, no approval ran twice, and the chain and its checkpoints verify."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.server.conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
SECONDS = 30.0
POLICY = """\
version: 1
name: chaos
default: allow
tiers:
  standard: {approvals: 1, timeout: 12s}
  critical: {approvals: 2, roles: [security, finance], timeout: 12s, approval_ttl: 30s}
rules:
  - {id: pay-100, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 100}}}
  - {id: pay-10k, tool: payment.send, action: escalate, tier: critical, when: {args.amount: {gte: 10000}}}
"""
FINAL = {"executed", "denied", "timed_out", "revoked", "expired"}
AGENT = Path(__file__).with_name("chaos_agent.py")


def cli(served: Served, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEKIT_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "gatekit.cli", "approvals", *args, "--server", served.url],
                          capture_output=True, text=True, env=env, timeout=60)


def cli_reviewer(served: Served, token: str, stop: threading.Event, votes: list[str]) -> None:
    rng = random.Random(1)
    while not stop.is_set():
        listed = cli(served, token, "list", "--json")
        if listed.returncode != 0:
            time.sleep(0.2)  # the service is restarting
            continue
        for request in json.loads(listed.stdout):
            if stop.is_set():
                return
            if any(v["reviewer"] == "carol" for v in request["votes"]):
                continue
            verb = "deny" if rng.random() < 0.15 else "approve"
            if cli(served, token, verb, request["id"]).returncode == 0:
                votes.append(request["id"])
        time.sleep(0.1)


def web_reviewer(served: Served, token: str, stop: threading.Event, votes: list[str], shots: Path,
                 ready: threading.Event) -> None:
    from playwright.sync_api import Error, sync_playwright

    rng = random.Random(2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.set_default_timeout(5000)
        logged_in = False
        while not stop.is_set():
            try:
                if not logged_in:
                    page.goto(served.url + "/login")
                    page.fill("input[name=credential]", token)
                    page.click("button[type=submit]")
                    logged_in = "/login" not in page.url
                    if logged_in:
                        ready.set()  # the browser is up and signed in: the run can start
                    continue
                page.goto(served.url + "/")
                if "/login" in page.url:
                    logged_in = False
                    continue
                links = [a.get_attribute("href") for a in page.locator("a[href^='/requests/']").all()]
                fresh = [h for h in links if h and h.rsplit("/", 1)[1] not in votes]
                if not fresh:
                    time.sleep(0.2)
                    continue
                page.goto(served.url + fresh[0])
                rid = fresh[0].rsplit("/", 1)[1]
                button = "Deny" if rng.random() < 0.15 else "Approve"
                page.get_by_role("button", name=button).click()
                votes.append(rid)
                if len(votes) == 1:
                    page.screenshot(path=str(shots / "chaos-web.png"), full_page=True)
            except Error:
                time.sleep(0.3)  # the service was killed under the page: try again
        browser.close()


def read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_three_agents_two_reviewers_and_two_kills(tmp_path: Path) -> None:
    served = Served(tmp_path, POLICY, extra=("--approval-ttl", "20s"))
    try:
        agents = {name: served.add("agent", name) for name in ("ann-bot", "ben-bot", "cat-bot")}
        carol = served.add("reviewer", "carol", "finance")
        wendy = served.add("reviewer", "wendy", "security")
        policy = tmp_path / "agent-policy.yaml"
        policy.write_text(POLICY)
        logs = {name: tmp_path / f"{name}.jsonl" for name in agents}
        stop, ready = threading.Event(), threading.Event()
        cli_votes: list[str] = []
        web_votes: list[str] = []
        reviewers = [threading.Thread(target=cli_reviewer, args=(served, carol, stop, cli_votes)),
                     threading.Thread(target=web_reviewer, args=(served, wendy, stop, web_votes, tmp_path, ready))]
        for t in reviewers:
            t.start()
        # the agents and the kills start once the browser reviewer is signed in: on a loaded machine Chromium
        # takes seconds to start, and a run it slept through would test one reviewer only
        if not ready.wait(timeout=120):
            stop.set()
            pytest.fail("the browser reviewer could not sign in within 120 s")
        procs = [subprocess.Popen([sys.executable, str(AGENT), served.url, cred, name, str(policy), str(logs[name]),
                                   str(SECONDS)], stderr=open(tmp_path / f"{name}.err", "w"), start_new_session=True)
                 for name, cred in agents.items()]
        kills = 0
        start = time.monotonic()
        for at in (SECONDS / 3, 2 * SECONDS / 3):
            time.sleep(max(0.0, start + at - time.monotonic()))
            served.restart()  # kill -9, then the same state on the same port
            kills += 1
        time.sleep(max(0.0, start + SECONDS - time.monotonic()))
        for p in procs:
            p.wait(timeout=120)  # their last requests end within the tiers' 12 s timeouts
        stop.set()
        for t in reviewers:
            t.join(timeout=60)
        assert kills == 2 and all(p.returncode == 0 for p in procs), [
            (tmp_path / f"{n}.err").read_text()[-2000:] for n in agents]

        carol_client = served.client(carol)
        deadline = time.monotonic() + 60  # requests whose agent never heard back end by their own time
        while True:
            final = {r["id"]: r for r in carol_client.list("all")}
            if all(r["status"] in FINAL for r in final.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        events = {name: read_log(path) for name, path in logs.items()}
        ran = Counter(e["rid"] for evs in events.values() for e in evs if e["event"] == "ran")
        ends = Counter(e["rid"] for evs in events.values() for e in evs if e["event"] == "end")
        executed_at_gate = {e["rid"] for evs in events.values() for e in evs
                            if e["event"] == "end" and e["how"] == "executed"}

        assert len(final) >= 10 and cli_votes and web_votes  # the run did real work on both reviewers
        assert all(r["status"] in FINAL for r in final.values()), Counter(r["status"] for r in final.values())
        assert max(ran.values(), default=0) == 1  # no approval ran twice
        assert max(ends.values(), default=0) == 1  # every handle ended exactly once
        executed = {rid for rid, r in final.items() if r["status"] == "executed"}
        assert set(ran) == executed == executed_at_gate  # ran once at the gate iff consumed once at the service
        assert set(ends) <= set(final)
        with served_store(served) as con:
            consumes = Counter(rid for (rid,) in con.execute("SELECT request_id FROM audit WHERE kind = 'consume'"))
        assert max(consumes.values(), default=0) == 1 and set(consumes) == executed
        served.stop()
        assert served.verify() == 0
    finally:
        served.kill()


def served_store(served: Served):  # noqa: ANN201  a read-only look at the service's store
    import contextlib
    import sqlite3

    @contextlib.contextmanager
    def opened():  # noqa: ANN202
        con = sqlite3.connect(f"file:{served.state / 'approvals.sqlite'}?mode=ro", uri=True)
        try:
            yield con
        finally:
            con.close()
    return opened()
