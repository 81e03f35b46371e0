"""Two `gatekit serve` replicas on one PostgreSQL store: a call filed through one and approved through the other
runs once; a gate waiting on one hears a vote cast on the other at once (LISTEN/NOTIFY, no polling); kill -9
of either replica, at any point, loses nothing, duplicates nothing and runs nothing twice.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gatekit import Denied, Gate, load_policy
from gatekit.enforce.client import ServiceError
from tests.server.conftest import Served
from tests.server.replicas import FailoverClient, census, start_replicas


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Any:
    started = start_replicas(tmp_path, pg_url + "&connect_timeout=1", 2)  # an unreachable database fails fast
    yield started
    for r in started:
        r.kill()


def gate(served: Served, agent: str, credential: str, urls: list[str], **kwargs: Any) -> Gate:
    kwargs.setdefault("timeout", 30)
    return Gate(load_policy(served.policy_path), mode="enforce", approvals=FailoverClient(urls, credential),
                agent=agent, poll=0.02, **kwargs)


def test_filed_through_one_replica_approved_through_the_other_runs_once(replicas: list[Served]) -> None:
    a, b = replicas
    bot = a.add("agent", "billing-bot")
    alice = b.client(b.add("reviewer", "alice", "finance"))  # registered through the other replica's state
    pending = a.gate("billing-bot", bot, user="u-bob").submit(
        {"tool": "payment.send", "args": {"amount": 250, "recipient": "ACME"}})
    ran: list[Any] = []
    finished: list[float] = []
    worker = threading.Thread(target=lambda: (ran.append(pending.run(lambda act: act.args)),
                                              finished.append(time.monotonic())))
    worker.start()
    time.sleep(0.5)  # the gate is long-polling replica a
    shown = alice.get(pending.request_id)
    assert shown["status"] == "pending" and "token" not in shown
    voted = time.monotonic()
    alice.vote(pending.request_id, "approve", shown["digest"])
    worker.join(timeout=20)
    assert ran == [{"amount": 250, "recipient": "ACME"}]
    # woken by the vote's NOTIFY, not by the long poll's 2 s re-read
    assert finished[0] - voted < 1.0, finished[0] - voted
    with pytest.raises(Denied) as again:
        pending.run(lambda act: ran.append(act))
    assert again.value.code == "replay" and len(ran) == 1
    assert alice.get(pending.request_id)["status"] == "executed"
    assert a.verify() == 0 and b.verify() == 0, a.verified + b.verified


def test_a_replica_started_with_only_the_key_joins_and_verifies(replicas: list[Served], tmp_path: Path) -> None:
    a, b = replicas
    assert (b.state / "checkpoints.jsonl").exists()  # its start was its first checkpoint
    assert b.verify() == 0, b.verified
    (a.state / "checkpoints.jsonl").write_text("")  # a replica's own export emptied: that one refuses
    a.kill()
    with pytest.raises(RuntimeError, match="does not verify"):
        a.start()


@pytest.mark.parametrize("victim", [0, 1])
def test_kill_9_of_either_replica_at_each_step_loses_nothing(replicas: list[Served], victim: int) -> None:
    a, b = replicas
    urls = [a.url, b.url]
    bot = a.add("agent", f"bot-{victim}")
    alice = FailoverClient(urls[::-1], b.add("reviewer", f"alice-{victim}"))
    agent_gate = gate(a, f"bot-{victim}", bot, urls)
    acknowledged: dict[str, str] = {}
    ran: dict[str, int] = {}
    for step in ("after_submit", "while_waiting", "after_vote", "after_approved"):
        call = f"{step}-{victim}"
        pending = agent_gate.submit({"tool": "payment.send", "args": {"amount": 500, "call": call}})
        acknowledged[pending.request_id] = call
        if step == "after_submit":
            replicas[victim].kill()
        if step == "after_approved":
            alice.vote(pending.request_id, "approve", alice.get(pending.request_id)["digest"])
            agent_gate.service.get(pending.request_id)  # the gate sees it approved
            replicas[victim].kill()
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(
            pending.run(lambda act: ran.__setitem__(act.args["call"], ran.get(act.args["call"], 0) + 1))))
        worker.start()
        if step == "while_waiting":
            time.sleep(0.3)
            replicas[victim].kill()
        if step in ("after_submit", "while_waiting", "after_vote"):
            alice.vote(pending.request_id, "approve", alice.get(pending.request_id)["digest"])
        if step == "after_vote":
            replicas[victim].kill()
        worker.join(timeout=30)
        assert not worker.is_alive() and ran.get(call) == 1, (step, ran)
        replicas[victim].start()  # same port, same state: back behind the "load balancer"
    counts = census(a.store, acknowledged, ran)
    assert counts["lost"] == counts["duplicated"] == counts["double_consumed"] == counts["failed_closed"] == 0, counts
    assert a.verify() == 0 and b.verify() == 0, a.verified + b.verified


def test_kill_9_under_load_loses_nothing(replicas: list[Served]) -> None:
    a, b = replicas
    urls = [a.url, b.url]
    agents = [(f"agent-{i}", a.add("agent", f"agent-{i}")) for i in range(3)]
    reviewers = [b.add("reviewer", f"rev-{i}") for i in range(2)]
    acknowledged: dict[str, str] = {}
    ran: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def agent(name: str, credential: str) -> None:
        g = gate(a, name, credential, random.sample(urls, 2))
        n = 0
        while not stop.is_set():
            n += 1
            call = f"{name}-{n}"
            try:
                pending = g.submit({"tool": "payment.send", "args": {"amount": 500, "call": call}})
            except Denied:
                continue  # the submission broke in flight: failed closed, filed at most once
            with lock:
                acknowledged[pending.request_id] = call
            try:
                pending.run(lambda act: ran.__setitem__(act.args["call"], ran.get(act.args["call"], 0) + 1))
            except Denied:
                pass

    def reviewer(credential: str) -> None:
        client = FailoverClient(random.sample(urls, 2), credential, timeout=5)
        while True:
            try:
                waiting = client.list()
            except ServiceError:
                time.sleep(0.05)
                continue
            if stop.is_set() and not waiting:
                return
            for r in waiting:
                try:
                    client.vote(r["id"], "approve", r["digest"])
                except ServiceError:
                    pass
            time.sleep(0.01)

    threads = [threading.Thread(target=agent, args=pair) for pair in agents]
    threads += [threading.Thread(target=reviewer, args=(cred,)) for cred in reviewers]
    for t in threads:
        t.start()
    try:
        for victim in (a, b, a, b):
            time.sleep(0.7)
            victim.kill()
            time.sleep(0.3)
            victim.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    counts = census(a.store, acknowledged, ran)
    assert counts["executed"] > 20, counts
    assert counts["lost"] == counts["duplicated"] == counts["double_consumed"] == 0, counts
    assert counts["failed_closed"] <= 8, counts  # only calls caught by a kill with no way to finish
    assert a.verify() == 0 and b.verify() == 0, a.verified + b.verified


def test_a_replica_fails_closed_while_its_database_is_unreachable(replicas: list[Served], postgres: Any) -> None:
    a, _ = replicas
    bot = a.add("agent", "bot")
    alice = a.client(a.add("reviewer", "alice"))
    g = a.gate("bot", bot, timeout=3)
    waiting = g.submit({"tool": "payment.send", "args": {"amount": 500}})
    database = a.store.split("/")[3].split("?")[0]
    postgres.sql("postgres", f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    postgres.sql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                 (database,))
    try:
        with pytest.raises(Denied) as new:  # a new escalation: refused, nothing filed
            g.submit({"tool": "payment.send", "args": {"amount": 600}})
        assert new.value.code == "error"
        ran: list[Any] = []
        with pytest.raises(Denied):  # one that was waiting: not approved in time, never run
            waiting.run(ran.append)
        assert ran == []
        with pytest.raises(ServiceError) as vote:
            alice.list()
        assert vote.value.status == 503
    finally:
        postgres.sql("postgres", f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    deadline = time.monotonic() + 20
    while True:  # back without a restart: the pool reconnects
        try:
            later = g.submit({"tool": "payment.send", "args": {"amount": 700}})
            break
        except Denied:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    alice.vote(later.request_id, "approve", alice.get(later.request_id)["digest"])
    assert later.run(lambda act: "ran") == "ran"
    assert a.verify() == 0, a.verified
