"""The approvals broker: escalated calls wait here for reviewers, durably, in SQLite shared by processes.

Every rule of an approval is enforced inside the store's write transaction, so it holds however many
agents and reviewers act at once: the tier's number of distinct approvers and its roles, no approval by
the requesting agent or user, a deny by any reviewer denies, a request not decided in time is
`timed_out` (denied), an approval expires after the tier's `approval_ttl`, is bound to the evidence hash
of the call the reviewers saw and is used once. Break-glass approves alone, with a mandatory reason, for
a limited time, and flags the request for review afterwards. Every vote, resolution and use is appended
to the receipts chain in the same transaction.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from gatekit.action import Action, canonical_json, evidence_hash
from gatekit.enforce._database import Database, Hook
from gatekit.enforce.identity import canonical
from gatekit.enforce.quorum import tally
from gatekit.enforce.receipts import Receipts, clock_us, from_us, iso
from gatekit.enforce.receipts import to_us as _us
from gatekit.errors import ApprovalError
from gatekit.policy.decision import Decision
from gatekit.policy.model import Tier
from gatekit.policy.values import parse_duration

__all__ = [
    "APPROVED", "DENIED", "EXECUTED", "EXPIRED", "PENDING", "REFUSED", "STATUSES", "TIMED_OUT", "Broker",
    "Refused", "Request", "Vote",
]

PENDING, APPROVED, DENIED, TIMED_OUT, EXECUTED, EXPIRED = (
    "pending", "approved", "denied", "timed_out", "executed", "expired")
STATUSES = (PENDING, APPROVED, DENIED, TIMED_OUT, EXECUTED, EXPIRED)
REFUSED = (DENIED, TIMED_OUT, EXPIRED)  # final, and nothing runs

Notify = Callable[["Request"], None]


class Refused(ApprovalError):
    """The broker refused a vote or an execution; `code` says why (stable, for programs)."""

    def __init__(self, message: str, code: str, request: Request | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request = request


@dataclass(frozen=True)
class Vote:
    """One reviewer's decision on one request."""

    reviewer: str
    decision: str  # approve | deny
    role: str | None = None
    reason: str | None = None
    at: datetime | None = None
    break_glass: bool = False


@dataclass(frozen=True)
class Request:
    """An escalated call and everything a reviewer needs to decide it.

    `action` is the call as the reviewers see it, `evidence_hash` its hash (an approval is bound to it),
    `rules` and `reasons` why the policy escalated it, `approvals` and `roles` what its tier needs.
    """

    id: str
    action_id: str
    status: str
    action: dict[str, Any]
    evidence_hash: str
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    tier: str | None
    approvals: int
    roles: tuple[str, ...]
    requested_at: datetime
    expires_at: datetime
    approval_ttl_us: int | None = None
    decided_at: datetime | None = None
    approved_until: datetime | None = None
    used_at: datetime | None = None
    executed_hash: str | None = None
    break_glass: bool = False
    break_glass_reason: str | None = None
    flagged: bool = False
    votes: tuple[Vote, ...] = field(default=())

    @property
    def tool(self) -> str:
        return self.action["tool"]

    @property
    def agent(self) -> str | None:
        return self.action.get("agent")

    @property
    def user(self) -> str | None:
        return self.action.get("user")

    @property
    def approved_by(self) -> tuple[str, ...]:
        return tuple(v.reviewer for v in self.votes if v.decision == "approve")

    @property
    def evidence_intact(self) -> bool:
        """The stored call still hashes to the evidence hash (false: the store was edited)."""
        return evidence_hash(self.action) == self.evidence_hash

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            elif name == "votes":
                value = [{"reviewer": v.reviewer, "decision": v.decision, "role": v.role, "reason": v.reason,
                          "at": v.at.isoformat().replace("+00:00", "Z") if v.at else None,
                          "break_glass": v.break_glass} for v in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


def _votes(req: Request) -> list[dict[str, Any]]:
    """A request's votes as `gatekit.enforce.quorum.tally` reads them."""
    return [{"reviewer": v.reviewer, "role": v.role, "decision": v.decision} for v in req.votes]


def _person(name: str) -> str:
    """The form a reviewer's, agent's or user's name is compared in: `canonical` (NFKC, casefold), without
    format characters (zero-width, bidi) or surrounding space."""
    return "".join(c for c in canonical(name) if unicodedata.category(c) != "Cf").strip()


def _dt(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


_COLUMNS = ("id, action_id, status, action, evidence_hash, rules, reasons, tier, approvals, roles, "
            "requested_at, expires_at, approval_ttl_us, decided_at, approved_until, used_at, executed_hash, "
            "break_glass, break_glass_reason, flagged")


class Broker:
    """Approval requests in a SQLite file that agent processes and reviewers share.

    >>> broker = Broker("approvals.db")
    >>> broker.approve(request_id, "alice", role="finance")

    `clock` (seconds since the epoch) is injectable for tests. `notify` callables get every new request
    (a `Webhook` is one); their failures never block a request and are kept in `notify_errors`.
    `durable=False` trades power-loss durability for speed (a killed process still loses nothing).
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 default_timeout: str | int = "1h", break_glass_limit: str | int = "1h",
                 notify: Iterable[Notify] = (), key: bytes | str | None = None, durable: bool = True,
                 busy_timeout: float = 10.0, hook: Hook | None = None) -> None:
        self.db = Database(path, busy_timeout=busy_timeout, durable=durable, hook=hook)
        self.receipts = Receipts(self.db, key=key, clock=clock)
        self.clock = clock
        self.default_timeout_us = parse_duration(default_timeout)
        self.break_glass_limit_us = parse_duration(break_glass_limit)
        self.notify: list[Notify] = list(notify)
        self.notify_errors: deque[str] = deque(maxlen=100)

    @property
    def path(self) -> str:
        return self.db.path

    def now_us(self) -> int:
        return clock_us(self.clock)

    def close(self) -> None:
        self.db.close()

    # -- requests ---------------------------------------------------------------------------------------
    def submit(self, action: Action, decision: Decision, tier: Tier | None = None, *,
               timeout_us: int | None = None) -> Request:
        """File an escalated call; the request waits for reviewers until its tier's timeout."""
        if not action.action_id:
            raise ValueError("an action needs an `action_id` to be escalated")
        now = self.now_us()
        wait_us = (tier.timeout_us if tier and tier.timeout_us else None) or self.default_timeout_us
        if timeout_us is not None:
            wait_us = min(wait_us, timeout_us)
        record = action.to_record()
        shown = {k: record[k] for k in ("action_id", "ts", "agent", "session", "user", "tool", "args", "context")}
        rid = "req-" + secrets.token_hex(8)
        row = dict(
            id=rid, action_id=action.action_id, status=PENDING, action=canonical_json(shown),
            tool=action.tool, agent=action.agent, session=action.session, user=action.user,
            evidence_hash=evidence_hash(action), rules=json.dumps(list(decision.rules)),
            reasons=json.dumps(list(decision.reasons)), tier=decision.tier,
            approvals=tier.approvals if tier else 1, roles=json.dumps(list(tier.roles) if tier else []),
            approval_ttl_us=tier.approval_ttl_us if tier else None, requested_at=now, expires_at=now + wait_us)
        with self.db.write("submit") as con:
            con.execute(f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        tuple(row.values()))
            self.receipts.append_in(con, "request", {
                "request_id": rid, "action_id": action.action_id, "evidence_hash": row["evidence_hash"],
                "action": shown, "rules": list(decision.rules), "reasons": list(decision.reasons), "tier": decision.tier, "approvals": row["approvals"],
                "roles": json.loads(row["roles"]), "requested_at": iso(now), "expires_at": iso(now + wait_us),
            }, action_id=action.action_id)
            request = self._load(con, rid)
        for hook in self.notify:
            try:
                hook(request)
            except Exception as exc:  # noqa: BLE001  a lost notification only lets the request time out
                self.notify_errors.append(f"{request.id}: {type(exc).__name__}: {exc}")
        return request

    def get(self, request_id: str) -> Request:
        """The request now; one whose time ran out is resolved `timed_out` first."""
        with self.db.read() as con:
            request = self._load(con, request_id)
        if request.status == PENDING and self.now_us() >= _us(request.expires_at):
            self.expire()
            with self.db.read() as con:
                request = self._load(con, request_id)
        return request

    def list(self, status: str | None = PENDING, *, flagged: bool | None = None) -> list[Request]:
        """Requests, oldest first: by status (None: all), or only those flagged for review."""
        self.expire()
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if flagged is not None:
            where.append("flagged = ?")
            args.append(int(flagged))
        sql = f"SELECT {_COLUMNS} FROM requests" + (" WHERE " + " AND ".join(where) if where else "")
        with self.db.read() as con:
            rows = con.execute(sql + " ORDER BY requested_at, id", args).fetchall()
            return [self._request(con, row) for row in rows]

    def expire(self) -> int:
        """Resolve every pending request whose time is up as `timed_out`; returns how many."""
        now = self.now_us()
        with self.db.read() as con:
            due = con.execute("SELECT 1 FROM requests WHERE status = ? AND expires_at <= ? LIMIT 1",
                              (PENDING, now)).fetchone()
        if due is None:
            return 0
        with self.db.write("expire") as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM requests WHERE status = ? AND expires_at <= ?",
                               (PENDING, now)).fetchall()
            for row in rows:
                self._resolve(con, self._request(con, row), TIMED_OUT, now)
        return len(rows)

    def wait(self, request_id: str, timeout: float | None = None, *, poll: float = 0.05,
             sleep: Callable[[float], None] = time.sleep) -> Request:
        """Block until the request is decided (or its time runs out, or `timeout` seconds pass)."""
        start = self.clock()
        delay = poll
        while True:
            request = self.get(request_id)
            if request.status != PENDING:
                return request
            if timeout is not None and self.clock() - start >= timeout:
                return request
            left = (_us(request.expires_at) - self.now_us()) / 1e6
            sleep(max(0.0, min(delay, left, timeout - (self.clock() - start) if timeout is not None else delay)))
            delay = min(delay * 1.5, 1.0)

    # -- reviewers --------------------------------------------------------------------------------------
    def add_reviewer(self, reviewer: str, *roles: str) -> None:
        """Put a reviewer in the directory. Once it has anyone, only listed reviewers may vote, in their roles."""
        if not reviewer or not roles:
            raise ValueError("a reviewer needs a name and at least one role")
        with self.db.write("reviewers") as con:
            con.executemany("INSERT OR IGNORE INTO reviewers VALUES (?, ?)", [(reviewer, r) for r in roles])

    def approve(self, request_id: str, reviewer: str, *, role: str | None = None, reason: str | None = None) -> Request:
        """Approve as `reviewer`; the request is approved once its tier's approvals and roles are all in."""
        return self._vote(request_id, reviewer, "approve", role, reason)

    def deny(self, request_id: str, reviewer: str, *, role: str | None = None, reason: str | None = None) -> Request:
        """Deny as `reviewer`: one deny denies the request."""
        return self._vote(request_id, reviewer, "deny", role, reason)

    def break_glass(self, request_id: str, reviewer: str, reason: str, *, duration: str | int | None = None,
                    role: str | None = None) -> Request:
        """Approve alone, in an emergency: needs a reason, lasts at most `break_glass_limit`, is flagged."""
        if not isinstance(reason, str) or not reason.strip():
            raise Refused("break-glass needs a reason", "reason_required")
        limit = self.break_glass_limit_us
        span = min(parse_duration(duration), limit) if duration is not None else limit
        return self._vote(request_id, reviewer, "approve", role, reason.strip(), break_glass_us=span)

    def _vote(self, request_id: str, reviewer: str, decision: str, role: str | None, reason: str | None,
              break_glass_us: int | None = None) -> Request:
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise Refused("a vote needs a reviewer name", "reviewer_required")
        now = self.now_us()
        refusal: Refused | None = None
        with self.db.write("vote") as con:
            req = self._load(con, request_id)
            if req.status == PENDING and now >= _us(req.expires_at):
                req = self._resolve(con, req, TIMED_OUT, now)  # committed: the time is up whatever happens
                refusal = Refused(f"request `{request_id}` timed out at {iso(_us(req.expires_at))}", TIMED_OUT, req)
            elif req.status != PENDING:
                raise Refused(f"request `{request_id}` is already {req.status}", "not_pending", req)
            else:
                role = self._check_voter(con, req, reviewer, decision, role, break_glass_us is not None)
                con.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (request_id, reviewer, role, decision, reason, now, int(break_glass_us is not None)))
                self.receipts.append_in(con, "vote", {
                    "request_id": request_id, "action_id": req.action_id, "reviewer": reviewer, "role": role,
                    "decision": decision, "reason": reason, "break_glass": break_glass_us is not None,
                    "requested_at": iso(_us(req.requested_at)), "decided_at": iso(now),
                }, action_id=req.action_id)
                req = self._load(con, request_id)
                if decision == "deny":
                    req = self._resolve(con, req, DENIED, now)
                elif break_glass_us is not None:
                    until = now + min(break_glass_us, req.approval_ttl_us or break_glass_us)
                    con.execute("UPDATE requests SET break_glass = 1, break_glass_reason = ?, flagged = 1 "
                                "WHERE id = ?", (reason, request_id))
                    req = self._resolve(con, self._load(con, request_id), APPROVED, now, until)
                elif self._quorum(req):
                    until = now + req.approval_ttl_us if req.approval_ttl_us else None
                    req = self._resolve(con, req, APPROVED, now, until)
        if refusal is not None:
            raise refusal
        return req

    def _check_voter(self, con: sqlite3.Connection, req: Request, reviewer: str, decision: str,
                     role: str | None, break_glass: bool = False) -> str | None:
        if decision not in ("approve", "deny"):
            raise ValueError(f"a vote is `approve` or `deny`, not `{decision}`")
        me = _person(reviewer)  # names compare as people: case, width, spacing and invisible marks folded
        if decision == "approve" and me in (_person(req.agent or ""), _person(req.user or "")):
            who = "agent" if me == _person(req.agent or "") else "user"
            raise Refused(f"`{reviewer}` cannot approve request `{req.id}`: it is the call's {who} "
                          "(no self-approval)", "self_approval", req)
        if any(_person(v.reviewer) == me for v in req.votes):
            raise Refused(f"`{reviewer}` has already voted on request `{req.id}`", "already_voted", req)
        directory = con.execute("SELECT count(*) FROM reviewers").fetchone()[0]
        if directory:
            held = {r for (r,) in con.execute("SELECT role FROM reviewers WHERE reviewer = ?", (reviewer,))}
            if not held:
                raise Refused(f"`{reviewer}` is not a listed reviewer", "unknown_reviewer", req)
            missing = tally(_votes(req), req.approvals, req.roles).missing_roles
            if role is None and len(held) == 1:
                role = next(iter(held))
            elif role is None:
                role = next((r for r in (*missing, *req.roles) if r in held), None)
            if role is not None and role not in held:
                raise Refused(f"`{reviewer}` does not hold the role `{role}`", "role_not_held", req)
        standing = tally(_votes(req), req.approvals, req.roles)
        if decision == "approve" and not break_glass and not standing.seat_for(role):
            raise Refused(f"`{reviewer}`'s approval would not count toward request `{req.id}` ({standing.summary()})"
                          + (f": role `{role}` is already approved" if role in req.roles else
                             f": `{reviewer}` approves in " + (f"role `{role}`" if role else "no role")),
                          "vote_not_counted", req)
        return role

    @staticmethod
    def _quorum(req: Request) -> bool:
        return tally(_votes(req), req.approvals, req.roles).met

    def _resolve(self, con: sqlite3.Connection, req: Request, status: str, now: int,
                 until: int | None = None) -> Request:
        con.execute("UPDATE requests SET status = ?, decided_at = ?, approved_until = ? WHERE id = ?",
                    (status, now, until, req.id))
        self.receipts.append_in(con, "resolution", {
            "request_id": req.id, "action_id": req.action_id, "status": status, "decided_at": iso(now),
            "approved_until": iso(until), "break_glass": req.break_glass,
        }, action_id=req.action_id)
        return self._load(con, req.id)

    # -- execution --------------------------------------------------------------------------------------
    def release(self, request_id: str, action: Action | dict[str, Any]) -> Request:
        """Use the approval, once, for exactly the call the reviewers saw; then the caller runs it.

        Raises `Refused` (and records why) for a changed call (`drift`), a second use (`replay`), an
        approval past its TTL (`expired`), or a request that is not approved.
        """
        now = self.now_us()
        seen = evidence_hash(action)
        refusal: Refused | None = None
        with self.db.write("release") as con:
            req = self._load(con, request_id)
            if req.status == PENDING and now >= _us(req.expires_at):
                req = self._resolve(con, req, TIMED_OUT, now)
            if req.status == APPROVED and req.approved_until and now >= _us(req.approved_until):
                req = self._resolve(con, req, EXPIRED, now)
            code = None
            if req.status == EXECUTED:
                code, msg = "replay", f"request `{request_id}` was already executed: an approval is used once"
            elif req.status != APPROVED:
                code, msg = req.status, f"request `{request_id}` is {req.status}, not approved"
            elif seen != req.evidence_hash:
                code, msg = "drift", (f"the call differs from what reviewers approved for `{request_id}` "
                                      f"({seen} != {req.evidence_hash})")
            if code is not None:
                self.receipts.append_in(con, "refusal", {
                    "request_id": request_id, "action_id": req.action_id, "refusal": code,
                    "evidence_hash": req.evidence_hash, "attempted_hash": seen, "message": msg,
                }, action_id=req.action_id)
                refusal = Refused(msg, code, req)
            else:
                con.execute("UPDATE requests SET status = ?, used_at = ?, executed_hash = ? WHERE id = ?",
                            (EXECUTED, now, seen, request_id))
                self.receipts.append_in(con, "release", {
                    "request_id": request_id, "action_id": req.action_id, "executed_hash": seen,
                }, action_id=req.action_id)
                req = self._load(con, request_id)
        if refusal is not None:
            raise refusal
        return req

    # -- rows -------------------------------------------------------------------------------------------
    def _load(self, con: sqlite3.Connection, request_id: str) -> Request:
        row = con.execute(f"SELECT {_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise Refused(f"no request `{request_id}`", "unknown_request")
        return self._request(con, row)

    @staticmethod
    def _request(con: sqlite3.Connection, row: Sequence[Any]) -> Request:
        (rid, action_id, status, action, digest, rules, reasons, tier, approvals, roles, requested_at, expires_at,
         ttl, decided_at, approved_until, used_at, executed_hash, break_glass, bg_reason, flagged) = row
        votes = tuple(
            Vote(reviewer, decision, role, reason, _dt(at), bool(bg))
            for reviewer, role, decision, reason, at, bg in con.execute(
                "SELECT reviewer, role, decision, reason, at, break_glass FROM votes WHERE request_id = ? "
                "ORDER BY at, rowid", (rid,)))
        return Request(
            rid, action_id, status, json.loads(action), digest, tuple(json.loads(rules)), tuple(json.loads(reasons)),
            tier, approvals, tuple(json.loads(roles)), _dt(requested_at), _dt(expires_at), ttl,  # type: ignore[arg-type]
            _dt(decided_at), _dt(approved_until), _dt(used_at), executed_hash, bool(break_glass), bg_reason,
            bool(flagged), votes)

