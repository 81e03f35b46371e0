"""The approvals service's rules, over its store: who may ask, who may vote, when a request is approved, what
an approval token binds, and that it is used once. No HTTP here (`gatekit.server.app` is the transport).

Every decision is taken inside one store transaction and appended to the audit chain in it, so it holds
however many agents, reviewers and replicas act at once, and a killed process leaves nothing half-done:

- a request's requirements come from the service's own policy (the gate's claimed tier can only make them
  stricter), its agent from the credential that filed it, its user from the gate's configuration;
- a vote counts for a registered reviewer, in a role the registry gives it, on the evidence it was shown;
  nobody approves a call they are the agent or user of, or votes twice; an approval that would fill no seat
  of the quorum (`gatekit.enforce.quorum`) is refused, so every approval on record counts; any reviewer's
  deny ends the request, that of one who approved it earlier included (a vote is otherwise final);
- an approval becomes a token signed by the service, bound to the request, the call's digest, the agent,
  the policy fingerprint and an expiry, consumed once (a retried consume with the same key is answered
  again, so a lost reply neither loses nor repeats the call);
- when the policy changes, open requests are decided again and revoked where their approval no longer
  satisfies it.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from gatekit.enforce.identity import canonical, check_id
from gatekit.enforce.quorum import Tally, tally
from gatekit.enforce.receipts import iso as _iso
from gatekit.enforce.tokens import Approval, TokenRefused, action_digest, sign_approval, strict_json, \
    verify_signature
from gatekit.errors import PolicyError
from gatekit.policy import Decision, decide
from gatekit.policy.load import load_policy
from gatekit.policy.model import Policy, Tier
from gatekit.policy.names import variant_of
from gatekit.policy.values import parse_duration
from gatekit.server.audit import Verification
from gatekit.server.ledger import Ledger
from gatekit.server.registry import Principal, Refusal, Registry
from gatekit.server.store import for_update, in_turn

PENDING, APPROVED, DENIED, TIMED_OUT, EXPIRED, REVOKED, EXECUTED, WITHDRAWN = (
    "pending", "approved", "denied", "timed_out", "expired", "revoked", "executed", "withdrawn")
STATUSES = (PENDING, APPROVED, DENIED, TIMED_OUT, EXPIRED, REVOKED, EXECUTED, WITHDRAWN)
OPEN = (PENDING, APPROVED)
FINAL = (DENIED, TIMED_OUT, EXPIRED, REVOKED, EXECUTED, WITHDRAWN)
MIN_REASON = 10  # a break-glass reason shorter than this is not a reason
MAX_PENDING = 100  # open requests one agent may have waiting: more would bury everyone else's for reviewers
LIST_MAX = 1000  # requests in one list (the oldest first): a reviewer's page at most


class Service:
    """The approvals service over a state directory: its store, key, policy and checkpoint export.

    >>> service = Service(Path("state"), "policy.yaml")
    >>> alice = service.authenticate(credential)
    """

    def __init__(self, state: str | Path | Ledger, policy: str | Path, *, clock: Callable[[], float] = time.time,
                 default_timeout: str = "1h", approval_ttl: str = "15m", break_glass_limit: str = "1h",
                 checkpoints: str | Path | None = None, reload_every: float = 0.5,
                 max_pending: int = MAX_PENDING) -> None:
        self.ledger = state if isinstance(state, Ledger) else Ledger(state, clock=clock, checkpoints=checkpoints)
        self.registry = Registry(self.ledger)
        self.store = self.ledger.store
        self.clock = self.ledger.clock
        self.key, self.public_key, self.key_id = self.ledger.key, self.ledger.public_key, self.ledger.key_id
        self.default_timeout_us = parse_duration(default_timeout)
        self.approval_ttl_us = parse_duration(approval_ttl)
        self.break_glass_limit_us = parse_duration(break_glass_limit)
        self.max_pending = max_pending
        self.policy_path = Path(policy)
        self.policy = load_policy(self.policy_path)  # invalid: refuse to start
        self._stat = self._policy_stat()
        self._checked_at = 0.0
        self.reload_every = reload_every
        self._reload_lock = threading.Lock()
        self.reload_errors: list[str] = []
        self._write = self.ledger.write
        self.authenticate = self.registry.authenticate

    def now_us(self) -> int:
        return self.ledger.now_us()

    def start(self) -> None:
        """Refuse a store that does not verify; record the start (policy and key) and export a checkpoint."""
        self.ledger.verify_or_refuse()

        def started(con: Any, now: int, audit: list) -> None:
            # so `gatekit principals add` and `audit verify` export to and read the same file
            con.execute("INSERT INTO meta (key, value) VALUES ('checkpoints', ?) ON CONFLICT (key) DO UPDATE SET "
                        "value = excluded.value", (str(self.ledger.checkpoints.resolve()),))
            audit.append(("start", {"policy": self.policy.name, "fingerprint": self.policy.fingerprint,
                                    "key": self.key_id, "checkpoints": str(self.ledger.checkpoints.resolve())}, None))
        self._write(started)

    def verify(self) -> Verification:
        return self.ledger.verify()

    # -- the policy --------------------------------------------------------------------------------------
    def _policy_stat(self) -> tuple[int, int] | None:
        try:
            st = self.policy_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def maybe_reload(self, force: bool = False) -> bool:
        """Reread the policy file if it changed; an invalid file keeps the old policy. True if it changed."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.reload_every:
            return False
        with self._reload_lock:
            self._checked_at = now
            stat = self._policy_stat()
            if not force and stat == self._stat:
                return False
            self._stat = stat
            try:
                new = load_policy(self.policy_path)
            except (PolicyError, OSError) as exc:
                self.reload_errors.append(f"policy not reloaded, the old one stays: {exc}")
                return False
            if new.fingerprint == self.policy.fingerprint:
                return False
            self.apply_policy(new)
            return True

    def apply_policy(self, new: Policy) -> None:
        """Switch to `new` and decide every open request again under it."""
        old, self.policy = self.policy, new

        def redecide(con: Any, now: int, audit: list) -> None:
            audit.append(("policy", {"policy": new.name, "fingerprint": new.fingerprint,
                                     "previous": old.fingerprint}, None))
            for row in con.execute("SELECT * FROM requests WHERE status IN (?, ?) ORDER BY id" + for_update(con),
                                   OPEN).fetchall():
                req = _row(con, row)
                if self._settle(con, req, now, audit):
                    continue
                self._redecide(con, req, now, audit)
        self._write(redecide, order="r:")  # open requests in id order

    def _redecide(self, con: Any, req: dict[str, Any], now: int, audit: list) -> None:
        action = json.loads(req["action"])
        decision = self._service_decision(action, now)
        rid = req["id"]
        if decision.decision == "deny":
            self._finish(con, req, REVOKED, now, audit, note="the new policy denies this call: "
                         + "; ".join(decision.reasons))
            return
        need = self._requirements(decision, json.loads(req["gate"]).get("tier"), req["timeout_cap_us"])
        before = (req["approvals"], json.loads(req["roles"]), req["approval_ttl_us"])
        after = (need.approvals, list(need.roles), need.ttl_us)
        if req["status"] == APPROVED:
            if req["break_glass"] or self._quorum(req["votes"], need.approvals, need.roles):
                until = min(req["approved_until"], req["decided_at"] + need.ttl_us)  # a shorter TTL applies now
                if until != req["approved_until"]:
                    con.execute("UPDATE requests SET approved_until = ? WHERE id = ?", (until, rid))
                    req = self._load(con, rid)
                    if self._settle(con, req, now, audit):
                        return
                self._issue(con, req, now, audit, reissue=True)
            else:
                self._finish(con, req, REVOKED, now, audit,
                             note=f"the new policy needs {need.approvals} approval(s)"
                                  + (f" with roles {', '.join(need.roles)}" if need.roles else "")
                                  + "; the approval given does not satisfy it")
            return
        if before != after or need.tier != req["tier"]:
            con.execute("UPDATE requests SET approvals = ?, roles = ?, approval_ttl_us = ?, tier = ?, "
                        "fingerprint = ? WHERE id = ?", (need.approvals, json.dumps(list(need.roles)), need.ttl_us,
                                                         need.tier, self.policy.fingerprint, rid))
            audit.append(("requirements", {"request_id": rid, "tier": need.tier, "approvals": need.approvals,
                                           "roles": list(need.roles), "approval_ttl_us": need.ttl_us,
                                           "fingerprint": self.policy.fingerprint}, rid))
            req = self._load(con, rid)
            if self._quorum(req["votes"], need.approvals, need.roles):
                self._approve(con, req, now, audit)

    def _service_decision(self, action: Mapping[str, Any], now: int) -> Decision:
        """The service's own decision on a call (its policy, its clock; windows are the gate's to count)."""
        tool = action.get("tool")
        variant = variant_of(self.policy, tool) if isinstance(tool, str) else None
        if variant is not None:
            return Decision("deny", reasons=(f"tool `{tool}` differs from `{variant}` only by case or Unicode form",))
        return decide(self.policy, {**action, "ts": _iso(now)})

    @dataclass(frozen=True)
    class Need:
        tier: str | None
        approvals: int
        roles: tuple[str, ...]
        timeout_us: int
        ttl_us: int

    def _requirements(self, decision: Decision, claimed_tier: Any, timeout_cap_us: int | None) -> Need:
        """What approving needs: the strictest of the service's decided tier, the gate's claimed one and the
        tier of every escalate rule that errored (a rule that cannot be evaluated may have matched: an amount
        written `9_0000` must not need less than the rule for 90000 asks)."""
        tiers = self.policy.tiers
        errored = [r.tier for r in self.policy.rules
                   if r.id in decision.errors and r.enforced and r.action == "escalate" and r.tier]
        names = [t for t in (decision.tier, claimed_tier, *errored) if isinstance(t, str) and t in tiers]
        rank = self.policy.tier_rank()
        tier: Tier | None = tiers[min(names, key=rank.__getitem__)] if names else None
        timeout = (tier.timeout_us if tier and tier.timeout_us else None) or self.default_timeout_us
        if timeout_cap_us:
            timeout = min(timeout, timeout_cap_us)
        ttl = (tier.approval_ttl_us if tier and tier.approval_ttl_us else None) or self.approval_ttl_us
        roles = tuple(canonical(r) for r in tier.roles) if tier else ()  # as the registry keeps them
        return Service.Need(tier.name if tier else None, tier.approvals if tier else 1, roles, timeout, ttl)

    # -- requests ----------------------------------------------------------------------------------------
    def submit(self, agent: Principal, payload: Mapping[str, Any]) -> dict[str, Any]:
        """File an escalated call for `agent` (from its credential); returns the request as the agent sees it."""
        if agent.kind != "agent":
            raise Refusal("only an agent credential files requests", "forbidden", 403)
        self.maybe_reload()
        action, claimed, gate, cap = _submission(agent, payload)
        digest = action_digest(action)
        if gate["fingerprint"] is not None and gate["fingerprint"] != self.policy.fingerprint:
            raise Refusal(f"the gate runs policy {gate['fingerprint']}, this service {self.policy.fingerprint}: "
                          "deploy the same policy file to both (an approval is bound to the service's)",
                          "fingerprint", 409)

        def file(con: Any, now: int, audit: list) -> str:
            # one agent's submissions one at a time (on any replica), so its count of waiting ones holds
            # (the lock, then the count: in one message on PostgreSQL, the count read once the lock is held)
            waiting = in_turn(con, ("SELECT 1 FROM principals WHERE id = ?" + for_update(con), (agent.id,)),
                              ("SELECT count(*) FROM requests WHERE agent = ? AND status = ? AND expires_at > ?",
                               (agent.id, PENDING, now))).fetchone()[0]
            if waiting >= self.max_pending:
                raise Refusal(f"agent `{agent.id}` already has {waiting} requests waiting for reviewers: wait for "
                              "them to be decided", "too_many_pending", 429)
            decision = self._service_decision(action, now)
            need = self._requirements(decision, gate.get("tier"), cap)
            rid = "req-" + secrets.token_hex(12)
            status = DENIED if decision.decision == "deny" else PENDING
            note = ("the service's policy denies this call: " + "; ".join(decision.reasons)) if status == DENIED else None
            req = _returning(
                con, 'INSERT INTO requests (id, status, agent, "user", session, tool, action, digest, claimed, gate, '
                "rules, reasons, tier, approvals, roles, approval_ttl_us, fingerprint, requested_at, expires_at, "
                "decided_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, status, agent.id, action["user"], action["session"], action["tool"], strict_json(action), digest,
                 json.dumps(claimed, default=repr), json.dumps({**gate, "timeout_cap_us": cap}),
                 json.dumps(list(decision.rules) or gate.get("rules") or []),
                 json.dumps(list(decision.reasons) if decision.decision != "allow" else gate.get("reasons") or []),
                 need.tier, need.approvals, json.dumps(list(need.roles)), need.ttl_us, self.policy.fingerprint, now,
                 now + need.timeout_us, now if status == DENIED else None, note), rid, [])
            audit.append(("submit", {"request_id": rid, "agent": agent.id, "digest": digest, "action": action,
                                     "claimed": claimed, "gate": gate, "service_decision": decision.to_dict(),
                                     "tier": need.tier, "approvals": need.approvals, "roles": list(need.roles),
                                     "approval_ttl_us": need.ttl_us, "expires_at": now + need.timeout_us}, rid))
            if status == DENIED:
                audit.append(("deny", {"request_id": rid, "by": "policy", "note": note}, rid))
            return req
        # the request as filed (the row the INSERT returned): no second read
        return _view(self._write(file, order="a:" + agent.id), owner=True)

    def get(self, who: Principal, request_id: str) -> dict[str, Any]:
        """One request, settled (timed out or expired if its time is up), as `who` may see it."""
        req = self._settled(request_id)
        self._may_see(who, req)
        return _view(req, owner=who.kind == "agent")

    def list(self, who: Principal, status: str | None = PENDING, limit: int = LIST_MAX) -> list[dict[str, Any]]:
        """Requests, oldest first, at most `limit` (1 to 1000: a page): every request for a reviewer, its
        own for an agent."""
        if who.kind == "executor":
            raise Refusal("an executor credential lists nothing", "forbidden", 403)
        if status is not None and status not in STATUSES:
            raise Refusal(f"unknown status `{status}`", "bad_request", 400)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_MAX:
            raise Refusal(f"`limit` is a whole number from 1 to {LIST_MAX}", "bad_request", 400)
        self.expire()
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if who.kind == "agent":
            where.append("agent = ?")
            args.append(who.id)
        sql = "SELECT * FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + \
            f" ORDER BY requested_at, id LIMIT {limit}"
        with self.store.read() as con:
            return [_view(r, owner=who.kind == "agent") for r in _rows(con, con.execute(sql, args).fetchall())]

    def expire(self) -> int:
        """Settle every request whose time is up; returns how many changed."""
        now = self.now_us()
        due = self.store.query("SELECT 1 FROM requests WHERE (status = ? AND expires_at <= ?) OR "
                               "(status = ? AND approved_until <= ?) LIMIT 1", (PENDING, now, APPROVED, now))
        if not due:
            return 0

        def settle(con: Any, now: int, audit: list) -> int:
            rows = con.execute("SELECT * FROM requests WHERE (status = ? AND expires_at <= ?) OR "
                               "(status = ? AND approved_until <= ?) ORDER BY id" + for_update(con),
                               (PENDING, now, APPROVED, now)).fetchall()
            return sum(self._settle(con, _row(con, r), now, audit) for r in rows)
        return self._write(settle, order="r:")  # requests in id order

    def _settled(self, request_id: str) -> dict[str, Any]:
        req = self._peek(request_id)
        if req["status"] in OPEN and self._due(req, self.now_us()):
            def settle(con: Any, now: int, audit: list) -> None:
                self._settle(con, self._load(con, request_id), now, audit)
            self._write(settle, order="r:" + request_id)
            req = self._peek(request_id)
        return req

    def _peek(self, request_id: Any) -> dict[str, Any]:
        """A request and its votes as they are now: one statement, its own snapshot (a read's three
        round trips are two more than one row needs)."""
        _checked_id(request_id)
        if not _REQUEST_COLUMNS:
            with self.store.read() as con:
                return self._load(con, request_id)
        return _joined(request_id, self.store.query(_LOAD, (request_id,)))

    @staticmethod
    def _due(req: dict[str, Any], now: int) -> bool:
        return (req["status"] == PENDING and now >= req["expires_at"]) or \
            (req["status"] == APPROVED and req["approved_until"] is not None and now >= req["approved_until"])

    def _settle(self, con: Any, req: dict[str, Any], now: int, audit: list) -> bool:
        if not self._due(req, now):
            return False
        if req["status"] == PENDING:
            self._finish(con, req, TIMED_OUT, now, audit, note="not decided in time")
        else:
            self._finish(con, req, EXPIRED, now, audit, note="approved but not used before the approval expired")
        return True

    def _may_see(self, who: Principal, req: dict[str, Any]) -> None:
        if who.kind == "reviewer" or (who.kind == "agent" and req["agent"] == who.id):
            return
        raise Refusal(f"no request `{req['id']}` for this credential", "unknown_request", 404)

    # -- votes -------------------------------------------------------------------------------------------
    def vote(self, reviewer: Principal, request_id: str, decision: str, *, evidence: Any, role: str | None = None,
             reason: str | None = None, break_glass: bool = False, duration: str | None = None) -> dict[str, Any]:
        """Approve or deny as `reviewer`, on the evidence (the call's digest) it was shown."""
        if reviewer.kind != "reviewer":
            raise Refusal("only a reviewer credential votes", "forbidden", 403)
        if decision not in ("approve", "deny"):
            raise Refusal(f"a vote is `approve` or `deny`, not `{decision}`", "bad_request", 400)
        if not isinstance(evidence, str) or not evidence:
            raise Refusal("a vote names the evidence it was shown (the request's `digest`)", "evidence_required", 400)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise Refusal("a reason is text of at most 2000 characters", "bad_request", 400)
        _storable(reason, "the reason")
        span = None
        if break_glass:
            if decision != "approve":
                raise Refusal("break-glass approves; to refuse, deny", "bad_request", 400)
            if not reviewer.break_glass:
                raise Refusal(f"`{reviewer.id}` may not break glass (the registry does not allow it)",
                              "break_glass_not_allowed", 403)
            if not reason or len(reason.strip()) < MIN_REASON or len(set(reason.strip().lower())) < 4:
                raise Refusal(f"break-glass needs a real reason (at least {MIN_REASON} characters)",
                              "reason_required", 400)
            try:
                span = min(parse_duration(duration), self.break_glass_limit_us) if duration else \
                    self.break_glass_limit_us
            except ValueError as exc:
                raise Refusal(f"break-glass duration: {exc}", "bad_request", 400) from exc
        self.maybe_reload()

        def cast(con: Any, now: int, audit: list) -> dict[str, Any]:
            if for_update(con) and _checked_id(request_id):
                # PostgreSQL: the row lock first, its votes after. `_load`'s join takes its snapshot before
                # it waits for the lock, so a vote another replica committed meanwhile would be missing from
                # the votes it returns (a second vote of one reviewer then broke the primary key instead of
                # being refused; a quorum counted from them would miss a vote)
                con.execute("SELECT 1 FROM requests WHERE id = ?" + for_update(con), (request_id,)).fetchall()
            req = self._load(con, request_id)
            if self._settle(con, req, now, audit):
                req = self._load(con, request_id)
                raise Refusal(f"request `{request_id}` is {req['status']}: {req['note']}", req["status"])
            if req["status"] != PENDING:
                raise Refusal(f"request `{request_id}` is already {req['status']}", "not_pending")
            if not hmac.compare_digest(evidence.encode("utf-8", "surrogatepass"), req["digest"].encode()):
                raise Refusal(f"request `{request_id}` is not the call you were shown (its digest is "
                              f"{req['digest']}): look at it again", "evidence_changed")
            if action_digest(json.loads(req["action"])) != req["digest"]:
                raise Refusal(f"request `{request_id}` was altered in the store: refusing to vote on it", "tampered")
            if decision == "approve" and reviewer.id in {req["agent"], canonical(req["user"] or "")}:
                who = "agent" if reviewer.id == req["agent"] else "user"
                raise Refusal(f"`{reviewer.id}` cannot approve request `{request_id}`: it is the call's {who} "
                              "(no self-approval)", "self_approval", 403)
            earlier = next((v for v in req["votes"] if v["reviewer"] == reviewer.id), None)
            if earlier is not None:
                if earlier["decision"] == "approve" and decision == "deny":
                    # a reviewer may take back an approval while the request is open, as a deny: a veto any
                    # reviewer holds anyway. Their approve stays on the record, the deny is a new audit entry.
                    return self._finish(con, req, DENIED, now, audit, by=reviewer.id,
                                        note=f"denied by {reviewer.id}, who had approved it earlier"
                                             + (f": {reason}" if reason else ""))
                raise Refusal(f"`{reviewer.id}` has already voted on request `{request_id}` (a vote is final; "
                              "an approval can still be taken back by denying while the request is pending)",
                              "already_voted")
            required = json.loads(req["roles"])
            standing = tally(req["votes"], req["approvals"], required)
            chosen = role
            if chosen is not None:
                chosen = canonical(chosen)
                if chosen not in reviewer.roles:
                    raise Refusal(f"`{reviewer.id}` does not hold the role `{role}`", "role_not_held", 403)
            else:
                chosen = next((r for r in standing.missing_roles if r in reviewer.roles),
                              reviewer.roles[0] if reviewer.roles else None)
            if decision == "approve" and not break_glass and not standing.seat_for(chosen):
                raise Refusal(_not_counting(reviewer, request_id, chosen, standing), "vote_not_counted")
            vote = (request_id, reviewer.id, chosen, decision, reason, evidence, now, int(break_glass))
            cast_vote = (_INSERT_VOTE, vote)  # sent with the request's UPDATE when there is one: one round trip
            audit.append(("break_glass" if break_glass else "vote", {
                "request_id": request_id, "reviewer": reviewer.id, "role": chosen, "decision": decision,
                "reason": reason, "evidence": evidence, "requested_at": req["requested_at"],
                **({"duration_us": span} if span else {})}, request_id))
            # the votes as a read would now return them (ordered by time, then reviewer), without the read
            req["votes"] = sorted([*req["votes"], dict(zip(_VOTE, vote[1:]))], key=lambda v: (v["at"], v["reviewer"]))
            if decision == "deny":
                return self._finish(con, req, DENIED, now, audit, before=cast_vote,
                                    note=f"denied by {reviewer.id}" + (f": {reason}" if reason else ""))
            if break_glass:
                return self._approve(con, req, now, audit, ttl_us=span, glass=True, before=cast_vote)
            if self._quorum(req["votes"], req["approvals"], required):
                return self._approve(con, req, now, audit, before=cast_vote)
            con.execute(*cast_vote)
            return req
        # the request as this write left it (its rows as the UPDATE returned them): no second read
        return _view(self._write(cast, order="r:" + request_id), owner=False)

    @staticmethod
    def _quorum(votes: list[dict[str, Any]], approvals: int, roles: Any) -> bool:
        return tally(votes, approvals, roles).met

    def _approve(self, con: Any, req: dict[str, Any], now: int, audit: list, ttl_us: int | None = None,
                 glass: bool = False, before: tuple[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
        """Approve (`glass`: by break-glass, flagged, for at most `ttl_us`) and issue the token: one UPDATE."""
        ttl = min(req["approval_ttl_us"], ttl_us) if ttl_us else req["approval_ttl_us"]
        audit.append(("approve", {"request_id": req["id"], "approved_until": now + ttl,
                                  "approved_by": [v["reviewer"] for v in req["votes"] if v["decision"] == "approve"],
                                  "break_glass": bool(ttl_us)}, req["id"]))
        claims, token = self._token(req, now + ttl, now, audit)
        flags = ", break_glass = 1, flagged = 1" if glass else ""
        return _returning(con, f"UPDATE requests SET status = ?, decided_at = ?, approved_until = ?, token = ?, "
                               f"nonce = ?, fingerprint = ?{flags} WHERE id = ?",
                          (APPROVED, now, now + ttl, token, claims.nonce, self.policy.fingerprint, req["id"]),
                          req["id"], req["votes"], before)

    def _issue(self, con: Any, req: dict[str, Any], now: int, audit: list, reissue: bool = False) -> None:
        claims, token = self._token(req, req["approved_until"], now, audit, reissue)
        con.execute("UPDATE requests SET token = ?, nonce = ?, fingerprint = ? WHERE id = ?",
                    (token, claims.nonce, self.policy.fingerprint, req["id"]))

    def _token(self, req: dict[str, Any], until: int, now: int, audit: list, reissue: bool = False
               ) -> tuple[Approval, str]:
        """A signed approval of `req` until `until` (microseconds), and its audit entry."""
        claims = Approval(req["id"], req["digest"], req["agent"], self.policy.fingerprint, until,
                          secrets.token_hex(16), now, self.key_id)
        token = sign_approval(self.key, claims)
        audit.append(("token", {"request_id": req["id"], "nonce": claims.nonce, "digest": claims.digest,
                                "agent": claims.agent, "fingerprint": claims.fingerprint, "expires": claims.expires_us,
                                "reissued": reissue}, req["id"]))
        return claims, token

    def _finish(self, con: Any, req: dict[str, Any], status: str, now: int, audit: list, note: str,
                by: str | None = None, before: tuple[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
        """End `req` as `status` (`before`: a statement to run first); returns it as the UPDATE left it."""
        done = _returning(con, "UPDATE requests SET status = ?, decided_at = coalesce(decided_at, ?), note = ? "
                               "WHERE id = ?", (status, now, note, req["id"]), req["id"], req["votes"], before)
        kind = {DENIED: "deny", TIMED_OUT: "timeout", EXPIRED: "timeout", REVOKED: "revoke",
                WITHDRAWN: "withdraw"}[status]
        audit.append((kind, {"request_id": req["id"], "status": status, "note": note,
                             **({"by": by} if by else {})}, req["id"]))
        return done

    # -- tokens ------------------------------------------------------------------------------------------
    def consume(self, who: Principal, token: Any, key: Any, action: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
        """Use an approval once. `key` names this attempt: a retry with the same key gets the same answer.

        The request's agent or an executor may consume; `action`, when given, must be the approved call.
        """
        if who.kind not in ("agent", "executor"):
            raise Refusal("only the requesting agent or an executor consumes approvals", "forbidden", 403)
        if not isinstance(key, str) or not 8 <= len(key) <= 128:
            raise Refusal("a consume names its attempt with a `key` of 8-128 characters", "bad_request", 400)
        _storable(key, "the consume's `key`")
        try:
            claims = verify_signature(token, self.public_key)
            if action is not None and action_digest(action) != claims.digest:
                raise TokenRefused(f"the approval for `{claims.request_id}` is for another call", "action")
        except TokenRefused as exc:
            raise Refusal(str(exc), exc.code, 403 if exc.code == "signature" else 409) from exc
        except ValueError as exc:
            raise Refusal(f"the call cannot be checked against its approval: {exc}", "action") from exc
        self.maybe_reload()

        def use(con: Any, now: int, audit: list) -> dict[str, Any]:
            req = self._load(con, claims.request_id)
            if not (who.kind == "executor" or req["agent"] == who.id):
                raise Refusal(f"no request `{claims.request_id}` for this credential", "unknown_request", 404)

            def refuse(message: str, code: str) -> Refusal:
                audit.append(("refuse", {"request_id": req["id"], "refusal": code, "by": who.id, "key": key,
                                         "nonce": claims.nonce}, req["id"]))
                return Refusal(message, code)
            if req["status"] == EXECUTED:
                # the same attempt again (its reply was lost): answered again only to the agent, whose gate
                # makes its key; an executor's key may come from the call it is sent, so a replayed call
                # would be answered "executed" again and run twice
                if who.kind == "agent" and req["consume_key"] == key and req["consumed_by"] == who.id \
                        and req["nonce"] == claims.nonce:
                    return _view(req, owner=True)
                raise refuse(f"the approval for `{req['id']}` was already used: an approval is used once", "used")
            if self._settle(con, req, now, audit):
                raise refuse(f"the approval for `{req['id']}` expired before it was used", "expired")
            if req["status"] == REVOKED:
                raise refuse(f"the approval for `{req['id']}` was revoked: {req['note']}", "revoked")
            if req["status"] != APPROVED:
                raise refuse(f"request `{req['id']}` is {req['status']}, not approved", req["status"])
            if claims.nonce != req["nonce"]:
                raise refuse(f"this token for `{req['id']}` was replaced (the policy changed): fetch the new one",
                             "revoked")
            if claims.fingerprint != self.policy.fingerprint:
                raise refuse(f"the approval for `{req['id']}` was given under another policy", "fingerprint")
            if claims.digest != req["digest"] or action_digest(json.loads(req["action"])) != req["digest"]:
                raise refuse(f"request `{req['id']}` does not match its approval: refusing", "action")
            used = _returning(con, "UPDATE requests SET status = ?, consumed_at = ?, consumed_by = ?, consume_key = ? "
                                   "WHERE id = ?", (EXECUTED, now, who.id, key, req["id"]), req["id"], req["votes"])
            audit.append(("consume", {"request_id": req["id"], "by": who.id, "key": key, "nonce": claims.nonce,
                                      "digest": req["digest"]}, req["id"]))
            return _view(used, owner=True)
        return self._write(use, order="r:" + claims.request_id)

    def withdraw(self, agent: Principal, request_id: str, reason: Any = None) -> dict[str, Any]:
        """The requesting agent no longer wants the call (its client gave up): nothing will run for it."""
        if agent.kind != "agent":
            raise Refusal("only the requesting agent withdraws a request", "forbidden", 403)
        note = "withdrawn by the agent" + (f": {reason[:500]}" if isinstance(reason, str) and reason else "")
        _storable(note, "the reason")

        def pull(con: Any, now: int, audit: list) -> None:
            req = self._load(con, request_id)
            self._may_see(agent, req)
            if self._settle(con, req, now, audit):
                return
            if req["status"] in OPEN:
                self._finish(con, req, WITHDRAWN, now, audit, note=note)
        self._write(pull, order="r:" + str(request_id))
        return self.get(agent, request_id)

    def outcome(self, agent: Principal, request_id: str, outcome: Any, error: Any = None) -> None:
        """What happened when the consumed call ran (`executed` or `failed`), for the audit."""
        if outcome not in ("executed", "failed"):
            raise Refusal("an outcome is `executed` or `failed`", "bad_request", 400)

        def record(con: Any, now: int, audit: list) -> None:
            _checked_id(request_id)
            # the checks in the UPDATE's WHERE (its row lock waited for, READ COMMITTED checks them again on
            # the row as its holder left it): one statement; only a refusal reads the request, to say why
            changed = agent.kind == "agent" and con.execute(
                "UPDATE requests SET outcome = ? WHERE id = ? AND agent = ? AND status = ? AND outcome IS NULL",
                (outcome, request_id, agent.id, EXECUTED)).rowcount == 1
            if not changed:
                self._may_see(agent, self._load(con, request_id))
                raise Refusal(f"request `{request_id}` has no outcome to record", "not_consumed")
            audit.append(("outcome", {"request_id": request_id, "outcome": outcome,
                                      "error": str(error)[:500] if error else None}, request_id))
        self._write(record, order="r:" + str(request_id))

    # -- rows --------------------------------------------------------------------------------------------
    def _load(self, con: Any, request_id: Any) -> dict[str, Any]:
        _checked_id(request_id)
        _columns(con)
        # in a write, locked until its commit: another write to this request waits, then sees this one's
        return _joined(request_id, con.execute(_LOAD + for_update(con, of="r"), (request_id,)).fetchall())


_REQUEST_COLUMNS: tuple[str, ...] = ()


_VOTE = ("reviewer", "role", "decision", "reason", "evidence", "at", "break_glass")


def _row(con: Any, row: Any) -> dict[str, Any]:
    return _rows(con, [row])[0]


def _columns(con: Any) -> tuple[str, ...]:
    global _REQUEST_COLUMNS
    if not _REQUEST_COLUMNS:
        # from the cursor, so on any store (both stores' schemas come from one text: one column order)
        _REQUEST_COLUMNS = tuple(d[0] for d in con.execute("SELECT * FROM requests WHERE 1 = 0").description)
    return _REQUEST_COLUMNS


# one request with its votes in one statement: the request's columns, then a vote's (none: NULLs)
_LOAD = ("SELECT r.*, " + ", ".join(f"v.{c}" for c in _VOTE) + " FROM requests r LEFT JOIN votes v ON "
         "v.request_id = r.id WHERE r.id = ? ORDER BY v.at, v.reviewer")


def _joined(request_id: str, rows: list[Any]) -> dict[str, Any]:
    """The request `_LOAD` read (one row per vote), as `_rows` makes it."""
    if not rows:
        raise Refusal(f"no request `{request_id}`", "unknown_request", 404)
    n = len(_REQUEST_COLUMNS)
    req = _request(rows[0][:n])
    req["votes"] = [dict(zip(_VOTE, row[n:])) for row in rows if row[n] is not None]
    return req


def _request(row: Any) -> dict[str, Any]:
    req = dict(zip(_REQUEST_COLUMNS, row))
    req["timeout_cap_us"] = json.loads(req["gate"]).get("timeout_cap_us")
    req["votes"] = []
    return req


def _rows(con: Any, rows: list[Any]) -> list[dict[str, Any]]:
    """Request rows as dicts with their votes: one query for the votes of all of them (a page of a list)."""
    _columns(con)
    reqs = [_request(row) for row in rows]
    by_id = {req["id"]: req for req in reqs}
    ids = list(by_id)
    for start in range(0, len(ids), 500):  # SQLite's oldest builds take 999 parameters
        chunk = ids[start:start + 500]
        for rid, *vote in con.execute("SELECT request_id, " + ", ".join(_VOTE) + " FROM votes WHERE request_id IN ("
                                      + ", ".join("?" * len(chunk)) + ") ORDER BY at, reviewer", chunk):
            by_id[rid]["votes"].append(dict(zip(_VOTE, vote)))
    return reqs


def _returning(con: Any, sql: str, params: tuple[Any, ...], request_id: str, votes: list[dict[str, Any]],
               before: tuple[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """Run an INSERT or UPDATE of the request `request_id` (after `before`, in the same message on
    PostgreSQL); returns the request as it left it, with `votes` (`RETURNING *`: the row in the same
    statement; read again where SQLite is older than 3.35)."""
    _columns(con)
    first = (before,) if before else ()
    if _RETURNS or not isinstance(con, sqlite3.Connection):
        rows = in_turn(con, *first, (sql + " RETURNING *", params)).fetchall()
    else:
        in_turn(con, *first, (sql, params))
        rows = con.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchall()
    if len(rows) != 1:
        raise Refusal(f"no request `{request_id}`", "unknown_request", 404)
    req = _request(rows[0])
    req["votes"] = votes
    return req


_INSERT_VOTE = ("INSERT INTO votes (request_id, reviewer, role, decision, reason, evidence, at, break_glass) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_RETURNS = sqlite3.sqlite_version_info >= (3, 35)  # PostgreSQL has RETURNING; SQLite from 3.35


def _view(req: dict[str, Any], *, owner: bool) -> dict[str, Any]:
    """A request as JSON; the token goes only to the agent that asked."""
    out = {k: req[k] for k in ("id", "status", "agent", "user", "session", "tool", "digest", "tier", "approvals",
                               "fingerprint", "note", "outcome")}
    out.update(action=json.loads(req["action"]), claimed=json.loads(req["claimed"]), rules=json.loads(req["rules"]),
               reasons=json.loads(req["reasons"]), roles=json.loads(req["roles"]),
               requested_at=_iso(req["requested_at"]), expires_at=_iso(req["expires_at"]),
               decided_at=_iso(req["decided_at"]), approved_until=_iso(req["approved_until"]),
               consumed_at=_iso(req["consumed_at"]), break_glass=bool(req["break_glass"]), flagged=bool(req["flagged"]),
               votes=[{**v, "at": _iso(v["at"]), "break_glass": bool(v["break_glass"])} for v in req["votes"]],
               quorum=tally(req["votes"], req["approvals"], json.loads(req["roles"])).to_dict())
    if owner and req["status"] == APPROVED:
        out["token"] = req["token"]
    return out


def _not_counting(reviewer: Principal, request_id: str, role: str | None, standing: Tally) -> str:
    """Why an approval would fill no seat of the quorum, and what would."""
    text = f"`{reviewer.id}`'s approval would not count toward request `{request_id}` ({standing.summary()}): "
    missing = ("role " if len(standing.missing_roles) == 1 else "roles ") + \
        ", ".join(f"`{r}`" for r in standing.missing_roles)
    if role is not None and role in standing.roles:
        text += f"role `{role}` is already approved and the approvals left need {missing}"
    else:
        held = ", ".join(f"`{r}`" for r in reviewer.roles) or "no role"
        text += f"the approvals left need {missing} and `{reviewer.id}` holds {held}"
    return text


def _submission(agent: Principal, payload: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any],
                                                                          dict[str, Any], int | None]:
    """The call to file, what it claimed, what the gate said, and the gate's timeout cap, checked."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("action"), Mapping):
        raise Refusal("a submission is an object with an `action` object", "bad_request", 400)
    raw = payload["action"]
    tool, args, context = raw.get("tool"), raw.get("args", {}), raw.get("context", {})
    if not isinstance(tool, str) or not tool or len(tool) > 512:
        raise Refusal("`tool` must be a non-empty string", "bad_request", 400)
    if not isinstance(args, Mapping) or not isinstance(context, Mapping):
        raise Refusal("`args` and `context` must be objects", "bad_request", 400)
    if raw.get("agent") is not None and raw.get("agent") != agent.id:
        raise Refusal(f"this credential is agent `{agent.id}`, the call says `{raw.get('agent')}`: configure the "
                      "gate with the agent id it was registered as", "agent_mismatch", 403)
    try:
        user = check_id(raw["user"], "the call's user") if raw.get("user") is not None else None
    except ValueError as exc:
        raise Refusal(str(exc), "bad_user", 400) from exc
    if agent.users is not None and user not in agent.users:
        raise Refusal(f"agent `{agent.id}` is not registered to act for user `{user}`", "user_not_allowed", 403)
    for key, value in (agent.context or {}).items():
        if context.get(key) != value:
            raise Refusal(f"agent `{agent.id}` is registered with context `{key}` = {json.dumps(value)}, the call "
                          f"says {json.dumps(context.get(key))}: configure the gate's context to match",
                          "context_mismatch", 403)
    session = raw.get("session")
    if session is not None and (not isinstance(session, str) or len(session) > 256):
        raise Refusal("`session` must be a string", "bad_request", 400)
    _storable(tool, "`tool`")
    _storable(session, "`session`")
    action = {"tool": tool, "agent": agent.id, "session": session, "user": user, "args": dict(args),
              "context": dict(context)}
    try:
        strict_json(action)
    except ValueError as exc:
        raise Refusal(f"the call has a value with no exact JSON form: {exc}", "bad_request", 400) from exc
    claimed = payload.get("claimed") if isinstance(payload.get("claimed"), Mapping) else {}
    gate = payload.get("decision") if isinstance(payload.get("decision"), Mapping) else {}
    gate = {"tier": gate.get("tier") if isinstance(gate.get("tier"), str) else None,
            "rules": [r for r in gate.get("rules", []) if isinstance(r, str)][:100],
            "reasons": [r for r in gate.get("reasons", []) if isinstance(r, str)][:100],
            "fingerprint": payload.get("fingerprint") if isinstance(payload.get("fingerprint"), str) else None,
            "ts": raw.get("ts") if isinstance(raw.get("ts"), str) else None}
    cap = payload.get("timeout")
    cap_us = round(cap * 1e6) if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0 else None
    return action, dict(claimed), gate, cap_us


def _checked_id(request_id: Any) -> str:
    """A request id as the client sent it, refused unless every store can look it up: text without NUL or a
    lone surrogate (PostgreSQL's driver refuses both before sending: a store error, not a refusal, and one
    in a group commit failed the other writes of its batch with it)."""
    if not isinstance(request_id, str):
        raise Refusal("a request id is a string", "bad_request", 400)
    _storable(request_id, "the request id")
    return request_id


def _storable(text: str | None, what: str) -> None:
    """Text kept in a column as it is must be what every store holds: no NUL (PostgreSQL's text cannot) and
    no lone surrogate (nor UTF-8)."""
    if text is None:
        return
    if "\x00" in text:
        raise Refusal(f"{what} contains a NUL character", "bad_request", 400)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(f"{what} is not valid Unicode text", "bad_request", 400) from None
