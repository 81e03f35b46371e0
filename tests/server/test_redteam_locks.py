"""Red team of the PostgreSQL store's narrowed locks (gatekit/server/postgres.py): row locks (`FOR UPDATE`) on
the request or agent a write decides on, one advisory lock for the chain's tail. Two replicas (two services,
each its own connection pool, on one real PostgreSQL database) race the writes the locks were narrowed for,
and what must hold is checked on the rows and the chain, never on timing:

- one reviewer voting on both replicas at once (approve/approve, approve/deny): one vote row, a clean
  refusal for the other, never a store error; a deny (a veto) always wins;
- two reviewers completing a quorum of two on both replicas: one approval, one token;
- a token consumed on both replicas with different keys while it is withdrawn: at most one consume, and a
  consumed request is `executed`;
- a vote racing the request's expiry (`expire` on the other replica, its clock past the deadline): timed
  out or approved, never both, and a timed-out request has no token;
- submissions racing the per-agent cap on both replicas;
- after every race: `gatekit audit verify` passes on the store and no two chain entries share a `prev`.

Bounded: every race is a barrier and a join with a timeout; each test stops by itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from gatekit.server.approvals import Service
from gatekit.server.ledger import Ledger
from gatekit.server.registry import Refusal
from gatekit.server.store import open_store

POLICY = """\
version: 1
name: redteam-locks
default: allow
on_error: escalate
tiers:
  pair: {approvals: 2, timeout: 1h}
  one: {approvals: 1, timeout: 1h}
rules:
  - {id: pair, tool: pay.pair, action: escalate, tier: pair}
  - {id: one, tool: pay.one, action: escalate, tier: one}
"""


class Clock:
    """One clock both replicas read (seconds): fixed at `now`, or real time shifted by `real` seconds."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.real: float | None = None

    def __call__(self) -> float:
        return self.now if self.real is None else time.time() + self.real


def _service(own: Path, url: str, clock: Clock, **options: Any) -> Service:
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    (own / "policy.yaml").write_text(POLICY)
    svc = Service(Ledger(own, store=open_store(url, own), clock=clock), own / "policy.yaml", **options)
    svc.start()
    return svc


@pytest.fixture
def two(tmp_path: Path, pg_url: str) -> Any:
    """Two replicas on one PostgreSQL database and one key, and their shared clock."""
    clock = Clock()
    first = _service(tmp_path / "r0", pg_url, clock, max_pending=1000)
    (tmp_path / "r1").mkdir(mode=0o700)
    for name in ("service.key", "service.pub"):
        shutil.copy(tmp_path / "r0" / name, tmp_path / "r1" / name)
    second = _service(tmp_path / "r1", pg_url, clock, max_pending=1000)
    yield first, second, clock, pg_url, tmp_path
    for svc in (first, second):
        svc.ledger.close()


def _race(*fns: Callable[[], Any]) -> list[Any]:
    """Run the functions at once (a barrier); each one's result, its Refusal's code, or the exception."""
    go = threading.Barrier(len(fns))
    out: list[Any] = [None] * len(fns)

    def run(i: int) -> None:
        go.wait(timeout=30)
        try:
            fns[i]()
            out[i] = "ok"
        except Refusal as exc:
            out[i] = exc.code
        except Exception as exc:  # noqa: BLE001  what the race is looking for: must not happen
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing write never finished"
    return out


def _rows(svc: Service, sql: str, params: tuple = ()) -> list[Any]:
    with svc.store.read() as con:
        return con.execute(sql, params).fetchall()


def _chain_holds(svc: Service, state: Path, url: str) -> None:
    """One chain: `audit verify` on the store passes, seqs have no gap, no two entries share a `prev`."""
    result = svc.verify()
    assert result.ok, result.problems
    rows = _rows(svc, "SELECT seq, prev, hash FROM audit ORDER BY seq")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    prevs = [r[1] for r in rows]
    assert len(set(prevs)) == len(prevs), "two chain entries share a prev: the chain forked"
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
    done = subprocess.run([sys.executable, "-m", "gatekit.cli", "audit", "verify", "--state", str(state),
                           "--store", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _principals(svc: Service, agents: int, reviewers: int) -> tuple[list[Any], list[Any]]:
    reg = svc.registry
    return ([svc.authenticate(reg.add("agent", f"bot{i}")) for i in range(agents)],
            [svc.authenticate(reg.add("reviewer", f"rev{i}")) for i in range(reviewers)])


def _submit(svc: Service, bot: Any, tool: str, n: int) -> dict[str, Any]:
    return svc.submit(bot, {"action": {"tool": tool, "args": {"n": n}}})


ROUNDS = 6


def test_one_reviewer_voting_twice_on_both_replicas_counts_once(two: Any) -> None:
    """The same reviewer's two votes at once, one per replica: one is recorded, the other is refused
    (`already_voted`), never a store error; approve then deny is the reviewer taking the approval back, so a
    deny racing an approve always leaves the request denied."""
    a, b, _, url, root = two
    (bot,), (rev,) = _principals(a, 1, 1)
    for n in range(ROUNDS):
        for second in ("approve", "deny"):
            req = _submit(a, bot, "pay.pair", n if second == "approve" else 100 + n)
            got = _race(lambda: a.vote(rev, req["id"], "approve", evidence=req["digest"]),
                        lambda: b.vote(rev, req["id"], second, evidence=req["digest"]))
            assert not [g for g in got if isinstance(g, BaseException)], got
            votes = _rows(a, "SELECT reviewer FROM votes WHERE request_id = ?", (req["id"],))
            status = a.get(bot, req["id"])["status"]
            if second == "approve":
                assert sorted(got, key=str) == ["already_voted", "ok"], got
                assert len(votes) == 1 and status == "pending", (votes, status)
            else:
                assert status == "denied", (got, status)
                assert "ok" in got and set(got) <= {"ok", "not_pending"}, got
    _chain_holds(a, root / "r0", url)


def test_a_quorum_completed_on_both_replicas_at_once_approves_once(two: Any) -> None:
    """Two reviewers (and a third, too late) approve one request of a two-approval tier on two replicas at
    once: one approval, one token, the third refused."""
    a, b, _, url, root = two
    (bot,), revs = _principals(a, 1, 3)
    for n in range(ROUNDS):
        req = _submit(b, bot, "pay.pair", n)
        got = _race(*[(lambda r=r, svc=svc: svc.vote(r, req["id"], "approve", evidence=req["digest"]))
                      for r, svc in zip(revs, (a, b, a))])
        assert not [g for g in got if isinstance(g, BaseException)], got
        assert got.count("ok") == 2 and set(got) <= {"ok", "not_pending"}, got
        kinds = [k for (k,) in _rows(a, "SELECT kind FROM audit WHERE request_id = ?", (req["id"],))]
        assert kinds.count("approve") == 1 and kinds.count("token") == 1, kinds
        assert a.get(bot, req["id"])["status"] == "approved"
    _chain_holds(b, root / "r1", url)


def test_a_token_consumed_on_both_replicas_while_withdrawn_runs_at_most_once(two: Any) -> None:
    """Two consumes (different keys, one per replica) and a withdrawal at once: at most one consume
    succeeds; if one did the request is `executed`, else it is withdrawn and nothing consumed it."""
    a, b, _, url, root = two
    (bot,), (rev,) = _principals(a, 1, 1)
    for n in range(ROUNDS):
        req = _submit(a, bot, "pay.one", n)
        b.vote(rev, req["id"], "approve", evidence=req["digest"])
        token = a.get(bot, req["id"])["token"]
        got = _race(lambda: a.consume(bot, token, f"key-a-{n:04d}"),
                    lambda: b.consume(bot, token, f"key-b-{n:04d}"),
                    lambda: (a if n % 2 else b).withdraw(bot, req["id"]))
        assert not [g for g in got if isinstance(g, BaseException)], got
        consumed = got[:2].count("ok")
        status = a.get(bot, req["id"])["status"]
        assert consumed <= 1, got
        assert status == ("executed" if consumed else "withdrawn"), (got, status)
        kinds = [k for (k,) in _rows(a, "SELECT kind FROM audit WHERE request_id = ?", (req["id"],))]
        assert kinds.count("consume") == consumed and kinds.count("withdraw") == (0 if consumed else 1), kinds
    _chain_holds(a, root / "r0", url)


def test_a_vote_racing_the_expiry_on_the_other_replica_is_one_or_the_other(two: Any) -> None:
    """Across the request's deadline (the clock runs), a vote on one replica and `expire` on the other: it
    ends timed out (no token, the vote refused) or approved (one token), never both."""
    a, b, clock, url, root = two
    (bot,), (rev,) = _principals(a, 1, 1)
    for n in range(ROUNDS):
        clock.now, clock.real = clock.now + 10_000, None
        req = _submit(a, bot, "pay.one", n)
        (deadline,), = _rows(a, "SELECT expires_at FROM requests WHERE id = ?", (req["id"],))
        clock.real = deadline / 1e6 - time.time() - 0.002  # real time from here: the deadline in 2 ms
        got = _race(lambda: b.vote(rev, req["id"], "approve", evidence=req["digest"]), a.expire)
        assert not [g for g in got if isinstance(g, BaseException)], got
        row = _rows(a, "SELECT status, token FROM requests WHERE id = ?", (req["id"],))[0]
        kinds = [k for (k,) in _rows(a, "SELECT kind FROM audit WHERE request_id = ?", (req["id"],))]
        if row[0] == "approved":
            assert got[0] == "ok" and row[1] and kinds.count("token") == 1 and "timeout" not in kinds, (got, kinds)
        else:
            assert row[0] == "timed_out" and got[0] in ("timed_out", "not_pending"), (got, row)
            assert "token" not in kinds and kinds.count("timeout") == 1, kinds
    _chain_holds(b, root / "r1", url)


def test_the_pending_cap_raced_on_both_replicas_is_never_exceeded(two: Any) -> None:
    """Three waiting requests at most per agent (max_pending=1000), however the submissions interleave on two
    replicas; a withdrawal racing them frees exactly one place."""
    a, b, _, url, root = two
    a.max_pending = b.max_pending = 3
    bots, _ = _principals(a, 2, 0)
    for bot in bots:
        first = _submit(a, bot, "pay.one", -1)
        got = _race(*[(lambda i=i: (a, b)[i % 2].submit(bot, {"action": {"tool": "pay.one", "args": {"i": i}}}))
                      for i in range(8)], lambda: b.withdraw(bot, first["id"]))
        assert not [g for g in got if isinstance(g, BaseException)], got
        pending = _rows(a, "SELECT count(*) FROM requests WHERE agent = ? AND status = 'pending'", (bot.id,))[0][0]
        assert pending <= 3 and set(got[:8]) <= {"ok", "too_many_pending"}, (pending, got)
        assert got[:8].count("ok") in (2, 3) and pending == got[:8].count("ok"), (pending, got)
    _chain_holds(a, root / "r0", url)
