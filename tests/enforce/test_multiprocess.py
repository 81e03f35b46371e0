"""Three agent processes and two reviewer processes on one broker store: nothing lost, nothing decided twice.

Every request needs both reviewers (two approvals, roles `security` and `finance`), so the reviewers race
on the same rows; the finance reviewer denies every tenth call. Each agent files its calls, polls them,
runs the approved ones and then tries each a second time from a fresh handle (a replay).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter
from pathlib import Path

from gatekit import Denied, Gate, parse_policy
from gatekit.enforce import Broker, Refused

AGENTS, PER_AGENT = 3, 100
POLICY = """
version: 1
name: multiprocess
tiers:
  critical: {approvals: 2, roles: [security, finance], timeout: 10m}
rules:
  - {id: every-payment, tool: payment.send, action: escalate, tier: critical}
"""


def agent(db: str, out: str, name: str) -> None:
    gate = Gate(parse_policy(POLICY), broker=Broker(db, durable=False), agent=name, user=f"u-{name}", poll=0.01)
    pending = [gate.submit({"tool": "payment.send", "args": {"n": i, "by": name}}) for i in range(PER_AGENT)]
    while any(p.status() == "pending" for p in pending):
        time.sleep(0.02)
    with open(out, "a") as f:
        for p in pending:
            try:
                p.run(lambda a: f.write(f"ran {a.action_id}\n") and f.flush())
            except Denied as exc:
                f.write(f"denied {p.action.action_id} {exc.code}\n")
        for p in pending:
            try:
                gate.resume(p.request_id).run(lambda a: f.write(f"ran-twice {a.action_id}\n"))
            except Denied as exc:
                f.write(f"second {p.action.action_id} {exc.code}\n")


def reviewer(db: str, name: str, role: str, total: int) -> None:
    broker = Broker(db, durable=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        waiting = broker.list()
        for request in waiting:
            if any(v.reviewer == name for v in request.votes):
                continue
            try:
                if role == "finance" and request.action["args"]["n"] % 10 == 0:
                    broker.deny(request.id, name, role=role, reason="no invoice")
                else:
                    broker.approve(request.id, name, role=role)
            except Refused as exc:
                assert exc.code == "not_pending", exc  # the other reviewer denied it first: fine
        if not waiting and len(broker.list(None)) == total:
            return
        time.sleep(0.005)


def test_three_agents_two_reviewers_one_store(tmp_path: Path) -> None:
    db = str(tmp_path / "approvals.db")
    Broker(db, durable=False).close()  # create the schema once, so the workers race on data, not DDL
    ctx = mp.get_context("fork")
    outs = [str(tmp_path / f"agent-{i}.log") for i in range(AGENTS)]
    procs = [ctx.Process(target=agent, args=(db, outs[i], f"agent-{i}")) for i in range(AGENTS)]
    procs += [ctx.Process(target=reviewer, args=(db, name, role, AGENTS * PER_AGENT))
              for name, role in (("sam", "security"), ("fiona", "finance"))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * len(procs)

    broker = Broker(db, durable=False)
    requests = broker.list(None)
    assert len(requests) == AGENTS * PER_AGENT
    assert len({r.action_id for r in requests}) == len(requests)
    statuses = Counter(r.status for r in requests)
    assert statuses == {"executed": AGENTS * PER_AGENT * 9 // 10, "denied": AGENTS * PER_AGENT // 10}
    for r in requests:
        voters = [v.reviewer for v in r.votes]
        assert len(voters) == len(set(voters))
        if r.status == "executed":
            assert sorted((v.reviewer, v.role, v.decision) for v in r.votes) == [
                ("fiona", "finance", "approve"), ("sam", "security", "approve")]
        else:
            assert ("fiona", "deny") in [(v.reviewer, v.decision) for v in r.votes]
            assert r.action["args"]["n"] % 10 == 0

    lines = [line.split() for out in outs for line in Path(out).read_text().splitlines()]
    ran = [a for kind, a, *_ in lines if kind == "ran"]
    executed = {r.action_id for r in requests if r.status == "executed"}
    assert sorted(ran) == sorted(executed)  # each approved call ran exactly once
    assert not [line for line in lines if line[0] == "ran-twice"]
    assert Counter(line[2] for line in lines if line[0] == "second") == {
        "replay": len(executed), "denied": AGENTS * PER_AGENT - len(executed)}
    assert Counter(line[2] for line in lines if line[0] == "denied") == {"denied": AGENTS * PER_AGENT // 10}

    result = broker.receipts.verify()
    assert result.ok, result.problems
    kinds = Counter(r.kind for r in broker.receipts.entries())
    assert kinds["decision"] == kinds["request"] == kinds["resolution"] == AGENTS * PER_AGENT
    assert kinds["release"] == kinds["execution"] == len(executed)
    assert kinds["vote"] == sum(len(r.votes) for r in requests)
