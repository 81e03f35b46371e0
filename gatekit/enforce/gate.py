"""The gate: the policy in-process, one tool call at a time, in shadow or enforce mode.

`check` decides (the very meaning of `decide` and replay, windows counted over the calls this gate has
seen); `run`, `guard` and `submit` also act on the decision: in shadow mode they record it and run the
call anyway; in enforce mode a deny raises `Denied`, an escalation waits for the broker's reviewers and
the call runs only once approved, with exactly the evidence they saw, once. Whatever goes wrong on the
way (an evaluation error, a broken broker store, a broken audit chain) ends in a deny, never an allow.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import logging
import secrets
import threading
import time
from collections import deque
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from gatekit.action import Action, evidence_hash, format_ts, read_ts
from gatekit.enforce.broker import PENDING, REFUSED, Broker, Refused, Request
from gatekit.enforce.identity import check_id, visible
from gatekit.enforce.quorum import Tally, tally
from gatekit.enforce.receipts import Receipts, clock_us, from_us
from gatekit.errors import ApprovalError
from gatekit.policy import Decision, Policy, load_policy
from gatekit.policy.closure import closure
from gatekit.policy.decide import History, View
from gatekit.policy.names import variants

__all__ = ["MODES", "Denied", "Gate", "Pending"]

T = TypeVar("T")
MODES = ("shadow", "enforce")
log = logging.getLogger("gatekit.enforce")  # waiting for reviewers is reported here, at INFO


@dataclasses.dataclass(frozen=True)
class Waiting:
    """What a call waiting for reviewers is waiting for: given to `Gate(on_wait=...)` and logged at INFO on
    the `gatekit.enforce` logger when the wait starts, when the votes change, every `report_every` seconds
    and when it ends (`status` is then no longer `pending`)."""

    request_id: str
    tool: str
    status: str
    waited: float  # seconds since this wait began
    left: float | None  # seconds until the request times out, if known
    needs: str  # "1 of 2 approvals; missing role `security`"
    missing: int  # approvals still needed
    missing_roles: tuple[str, ...]

    @property
    def message(self) -> str:
        tool = _shown(self.tool)  # the agent's model picked it: no line breaks, escapes or bidi in the log
        if self.status != "pending":
            return f"`{tool}` ({self.request_id}): {self.status} after {_span(self.waited)}"
        left = f", {_span(self.left)} left" if self.left is not None else ""
        return (f"waiting for approval of `{tool}` ({self.request_id}): {self.needs}; "
                f"waited {_span(self.waited)}{left}")


def _shown(text: str) -> str:
    """Agent-written text as one log line may show it: what `visible` escapes for reviewers, and line
    breaks too (a tool name must not forge a second log line)."""
    return visible(text).replace("\n", "\\u000a")


def _span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Reporter:
    """Reports one wait through the gate: at the start, on a change, every `report_every` s, at the end."""

    def __init__(self, gate: Gate, request_id: str, tool: str) -> None:
        self.gate, self.request_id, self.tool = gate, request_id, tool
        self.start = gate.clock()
        self.last: tuple[str, str] | None = None
        self.at = 0.0

    def __call__(self, status: str, quorum: Tally | None, left: float | None) -> None:
        now = self.gate.clock()
        needs = quorum.summary() if quorum is not None else "a reviewer's decision"
        if (status, needs) == self.last and now - self.at < self.gate.report_every:
            return
        self.last, self.at = (status, needs), now
        report = Waiting(self.request_id, self.tool, status, now - self.start, left, needs,
                         max(quorum.missing, 0) if quorum else 1, quorum.missing_roles if quorum else ())
        log.info("%s", report.message, extra={"request_id": self.request_id, "waiting": report})
        if self.gate.on_wait is not None:
            try:
                self.gate.on_wait(report)
            except Exception:  # host code's reporter failing must not decide anything
                log.exception("the gate's on_wait callback failed")
_SHOWN = ("action_id", "ts", "agent", "session", "user", "tool", "args", "context")
_IDENTITY = ("agent", "session", "user")
PINNED = ("ts", "agent", "session", "user", "context")  # the gate's, never the payload's
_PINNED_KEYS = frozenset(PINNED)


class Denied(ApprovalError):
    """The gate refused a call. `decision` is the policy's decision; `code` says what refused it.

    `code`: `policy` (the policy denies), `denied` (a reviewer denied), `timed_out`, `expired` (the
    approval's TTL passed), `revoked` (the service's policy changed), `drift` (the call changed after
    approval), `replay` or `used` (already executed), `signature`, `action`, `fingerprint` (the approval
    token does not check out), `no_broker`, `malformed` (not a call the gate can read), `error` (the
    broker store, the approvals service or the audit log failed: fail closed).
    """

    def __init__(self, message: str, decision: Decision, code: str = "policy",
                 request: Request | None = None, action: Action | None = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.code = code
        self.request = request
        self.action = action  # the call as decided (stamped, with its id), when it got that far


class Gate:
    """One policy, enforced (or shadowed) in-process.

    >>> gate = Gate(load_policy("policy.yaml"), mode="enforce", broker=Broker("approvals.db"), agent="billing-bot")
    >>> gate.check({"tool": "payment.send", "args": {"amount": 250}}).decision
    'escalate'
    >>> @gate.guard("payment.send")
    ... def send(amount: float, recipient: str) -> str: ...

    `agent`, `session`, `user` and `context` are the gate's (also per block: `gate.scope`, or per call as
    keyword arguments of `check`, `submit` and `run`), and `ts` is stamped from `clock()`: what a call's
    payload says for any of them is recorded as claimed and never decides (the model writes the payload).
    `timeout` (seconds) caps how long an escalation waits. While it waits, the gate reports what for (which
    approvals and roles are missing, how long it has waited) at INFO on the `gatekit.enforce` logger and to
    `on_wait(Waiting)`, when the wait starts, when votes come in, every `report_every` seconds and at the end.

    Escalations go to the approvals service (`approvals=URL, credential=TOKEN`: the agent's credential
    from `gatekit principals add agent ...`) or, for tests and single-user experiments, to a local `broker`
    that trusts every process able to write its file. With the service, a call runs only with an approval
    token signed by the service for exactly this call, consumed once; `public_key` pins the service's key
    (default: asked of the service on first use).
    """

    def __init__(self, policy: Policy | str | Path, mode: str = "enforce", broker: Broker | str | Path | None = None,
                 *, approvals: Any = None, credential: str | None = None, public_key: Any = None,
                 receipts: Receipts | str | Path | None = None, agent: str | None = None,
                 session: str | None = None, user: str | None = None, context: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], Any] = time.sleep,
                 timeout: float | None = None, poll: float = 0.05,
                 on_wait: Callable[[Waiting], Any] | None = None, report_every: float = 30.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be `shadow` or `enforce`, not `{mode}`")
        if broker is not None and approvals is not None:
            raise ValueError("pass `approvals` (the service) or `broker` (local), not both")
        self.source = None if isinstance(policy, Policy) else Path(policy)
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)  # invalid: refuse to start
        self.mode = mode
        self.broker = Broker(broker) if isinstance(broker, (str, Path)) else broker
        self.service = None
        if approvals is not None:
            from gatekit.enforce.client import ApprovalsClient

            if isinstance(approvals, ApprovalsClient):
                self.service = approvals
            else:
                if credential is None:
                    raise ValueError("an approvals service needs the agent's `credential`")
                self.service = ApprovalsClient(str(approvals), credential)
            if agent is None:
                raise ValueError("a gate on the approvals service needs `agent=`: the id its credential was "
                                 "registered as (`gatekit principals add agent ID`)")
            agent = check_id(agent, "the gate's agent")
            user = check_id(user, "the gate's user") if user is not None else None
        self.public_key = public_key
        if isinstance(receipts, (str, Path)):
            receipts = Receipts(receipts)
        if receipts is not None and self.broker is not None and receipts.db is not self.broker.db:
            raise ValueError("with a broker, receipts go to the broker's store: pass one or the other")
        self.receipts = receipts if receipts is not None else (self.broker.receipts if self.broker else None)
        self.clock = clock or (self.broker.clock if self.broker else time.time)
        self.sleep = sleep
        self.timeout = timeout
        self.poll = poll
        self.on_wait = on_wait
        self.report_every = report_every
        self.defaults = {"agent": agent, "session": session, "user": user}
        self.context = dict(context or {})
        self.errors: deque[str] = deque(maxlen=100)  # what went wrong without blocking (shadow mode)
        self._scope: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(f"gatekit-scope-{id(self)}",
                                                                                     default={})
        self._lock = threading.Lock()
        self._evaluator = closure(self.policy)  # decide's meaning, specialised (gatekit/policy/closure.py)
        self._variants = variants(self.policy)
        self._history = History(self._evaluator)
        self._windowed = bool(self._evaluator.windows)  # a policy without windows keeps no history
        self._tools: dict[str, tuple[str | None, Callable[[View, Any], Decision]]] = {}

    # -- deciding -----------------------------------------------------------------------------------------
    def check(self, action: Action | Mapping[str, Any], **asserted: Any) -> Decision:
        """Decide one call and count it in the windows; nothing is recorded, run or waited for.

        Keyword arguments (`ts`, `agent`, `session`, `user`, `context`) are host code's assertions for this
        call, as `scope` is for a block: for a host replaying a recorded log through a gate, say.
        """
        return self._decide(action, asserted)[1]

    def _decide(self, action: Action | Mapping[str, Any], asserted: Mapping[str, Any]
                ) -> tuple[View | None, Decision]:
        try:
            view = self._view(action, asserted)
        except Exception as exc:  # noqa: BLE001  a call the gate cannot read is denied
            return None, Decision("deny", reasons=(f"malformed call: {exc}",), details=(f"gate: {exc}",))
        with self._lock:  # the variant check and the evaluator of one policy, even during a reload
            tool = view.tool
            known = self._tools.get(tool)  # type: ignore[arg-type]  # a str: _view checked it
            if known is None:
                known = self._tool(tool)  # type: ignore[arg-type]
            variant, plan = known
            if view.ts is None:  # stamped under the lock, so stamped calls arrive in time order
                us = clock_us(self.clock)
                view.ts, view.ts_us = from_us(us), us
            try:
                decision = plan(view, self._history)
            except Exception as exc:  # noqa: BLE001  an evaluator bug must not become an allow
                decision = Decision(self.policy.on_error, reasons=(f"could not evaluate the call: {exc}",),
                                    details=(f"gate: {type(exc).__name__}: {exc}",))
            if self._windowed:
                self._history.add(view)
        if variant is not None:
            decision = dataclasses.replace(
                decision, decision="deny", tier=None,
                reasons=(f"tool `{view.tool}` differs from `{variant}` only by case or Unicode form",))
        return view, decision

    def _tool(self, tool: str) -> tuple[str | None, Callable[[View, Any], Decision]]:
        """What the gate keeps per tool name: the policy's pattern it imitates (or None), and the evaluator's
        plan for its calls (gatekit/policy/closure.py). Called under the lock."""
        known = (self._variants.of(tool), self._evaluator.plan(tool))
        if len(self._tools) < 65536:
            self._tools[tool] = known
        return known

    def _view(self, action: Action | Mapping[str, Any], asserted: Mapping[str, Any]) -> View:
        """The call as the policy sees it: the payload's tool and args; identity, context and time pinned."""
        if asserted and not _PINNED_KEYS.issuperset(asserted):
            unknown = set(asserted) - _PINNED_KEYS
            raise TypeError(f"unknown call assertions: {sorted(unknown)} (use {', '.join(PINNED)})")
        if isinstance(action, Action):
            tool, args = action.tool, action.args
        else:
            get = action.get
            tool, args = get("tool"), get("args")
        if type(tool) is not str or not tool:
            raise TypeError(f"`tool` must be a non-empty string, not {tool!r}")
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            raise TypeError(f"`args` must be an object, not {type(args).__name__}")
        scope = self._scope.get()
        defaults = self.defaults
        if scope:
            agent = asserted.get("agent", scope.get("agent", defaults["agent"]))
            session = asserted.get("session", scope.get("session", defaults["session"]))
            user = asserted.get("user", scope.get("user", defaults["user"]))
        else:
            agent = asserted.get("agent", defaults["agent"])
            session = asserted.get("session", defaults["session"])
            user = asserted.get("user", defaults["user"])
        if (agent is not None and type(agent) is not str or session is not None and type(session) is not str
                or user is not None and type(user) is not str):
            for name, value in (("agent", agent), ("session", session), ("user", user)):
                if value is not None and type(value) is not str:
                    raise TypeError(f"`{name}` must be a string, not {value!r}")
        if self.service is not None:
            agent = check_id(agent, "the call's agent") if agent is not None else None
            user = check_id(user, "the call's user") if user is not None else None
        extra = asserted.get("context")
        if scope or self.context:
            context = {**self.context, **scope.get("context", {}), **(extra or {})}
        else:
            context = {**extra} if extra else {}
        ts = asserted.get("ts")
        if ts is not None and (type(ts) is not datetime or ts.tzinfo is None):
            ts = read_ts(ts)
        return View.of(tool, agent, session, user, ts, args, context)

    @staticmethod
    def claimed(action: Action | Mapping[str, Any], view: View) -> dict[str, Any]:
        """What the payload said for the pinned fields, where it differs from what decided (for the audit)."""
        out = {}
        for name in PINNED:
            raw = getattr(action, name) if isinstance(action, Action) else action.get(name)
            if raw is None or raw == {} or raw == getattr(view, name):
                continue
            out[name] = format_ts(raw) if isinstance(raw, datetime) else raw
        return out

    @contextmanager
    def scope(self, **identity: Any) -> Iterator[None]:
        """Calls made in this block (this thread or task) default to these `agent`/`session`/`user`/`context`.

        >>> with gate.scope(user="u-3", session="s-9"):
        ...     send(250, "ACME")
        """
        unknown = set(identity) - {*_IDENTITY, "context"}
        if unknown:
            raise TypeError(f"unknown scope fields: {sorted(unknown)}")
        token = self._scope.set({**self._scope.get(), **identity})
        try:
            yield
        finally:
            self._scope.reset(token)

    def reload(self, policy: Policy | str | Path | None = None) -> Policy:
        """Swap in a new policy (default: reread the file). If it fails validation, the old one stays."""
        source = policy if policy is not None else self.source
        if source is None:
            raise ValueError("this gate was given a Policy object: pass the new policy to reload")
        new = source if isinstance(source, Policy) else load_policy(source)  # PolicyError: nothing changes
        ev = closure(new)
        with self._lock:
            self._history = History(ev, self._history)  # windows read the same way keep their counts
            self._evaluator, self._variants, self.policy = ev, variants(new), new
            self._windowed = bool(ev.windows)
            self._tools = {}
            if not isinstance(source, Policy):
                self.source = Path(source)
        self._record("reload", {"policy": new.name, "fingerprint": new.fingerprint}, None, required=False)
        return new

    # -- acting -------------------------------------------------------------------------------------------
    def run(self, action: Action | Mapping[str, Any], execute: Callable[[Action], T], **asserted: Any) -> T:
        """Decide, then act: run `execute(action)` if allowed (or approved), else raise `Denied`.

        >>> gate.run(Action(tool="payment.send", args={"amount": 250}), lambda a: pay(**a.args))
        """
        return self.submit(action, **asserted).run(execute)

    async def arun(self, action: Action | Mapping[str, Any], execute: Callable[[Action], Any], **asserted: Any) -> Any:
        """`run` for asyncio: waits without blocking the loop; `execute` may be sync or async."""
        pending = await asyncio.to_thread(functools.partial(self.submit, action, **asserted))
        return await pending.arun(execute)

    def submit(self, action: Action | Mapping[str, Any], **asserted: Any) -> Pending:
        """Decide and file the call: a `Pending` handle to poll and run later. A deny raises `Denied`."""
        view, decision = self._decide(action, asserted)
        try:
            act = self._action(action, view)
        except Exception as exc:  # noqa: BLE001  not even an action: nothing to record, nothing runs
            if self.mode == "enforce":
                raise Denied(f"malformed call: {exc}", decision, "malformed") from exc
            self.errors.append(f"malformed call run in shadow mode: {exc}")
            return Pending(self, Action(tool="<malformed>"), decision, None)
        # what the payload claimed, for the receipt and the approvals service: not worked out when neither is there
        needed = self.receipts is not None or self.service is not None
        claimed = self.claimed(action, view) if view is not None and needed else {}
        if self.receipts is not None:  # the receipt's body is built only when there is a receipt to write
            self._record("decision", {
                "action": {k: v for k, v in act.to_record().items() if k in _SHOWN},
                "evidence_hash": act.evidence_hash, "decision": decision.to_dict(), "mode": self.mode,
                "policy": self.policy.name, "fingerprint": self.policy.fingerprint,
                **({"claimed": claimed} if claimed else {})},
                act, required=self.mode == "enforce", decision=decision)
        if self.mode == "shadow" or decision.decision == "allow":
            return Pending(self, act, decision, None)
        if view is None:
            raise Denied(f"`{act.tool}` denied: {_why(decision)}", decision, "malformed", action=act)
        if decision.decision == "deny":
            raise Denied(f"`{act.tool}` denied by policy `{self.policy.name}`: {_why(decision)}", decision,
                         action=act)
        if self.service is not None:
            from gatekit.enforce._remote import submit

            return submit(self, act, decision, claimed)
        if self.broker is None:
            raise Denied(f"`{act.tool}` needs approval ({_why(decision)}) but this gate has no broker", decision,
                         "no_broker", action=act)
        tier = self.policy.tiers.get(decision.tier) if decision.tier else None
        try:
            request = self.broker.submit(act, decision, tier,
                                         timeout_us=None if self.timeout is None else int(self.timeout * 1e6))
        except Exception as exc:  # noqa: BLE001  no broker, no approval: fail closed
            raise Denied(f"`{act.tool}` needs approval but the broker failed: {exc}", decision, "error",
                         action=act) from exc
        return Pending(self, act, decision, request)

    def resume(self, request_id: str) -> Pending:
        """A handle on a request filed earlier (by this process or one that restarted)."""
        if self.service is not None:
            from gatekit.enforce._remote import resume

            return resume(self, request_id)
        if self.broker is None:
            raise ValueError("this gate has no broker")
        request = self.broker.get(request_id)
        act = Action.from_record({**request.action, "evidence_hash": request.evidence_hash})
        decision = Decision("escalate", request.rules, (), request.tier, request.reasons)
        return Pending(self, act, decision, request)

    def guard(self, tool: str, *, args: Callable[..., Mapping[str, Any]] | None = None,
              exclude: tuple[str, ...] = ("self", "cls")) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a tool function: each call becomes an action (args: its bound arguments) and is gated.

        >>> @gate.guard("payment.send")
        ... def send(amount: float, recipient: str) -> str: ...
        >>> send(250, "ACME")        # runs, waits for approval, or raises Denied

        `args(*a, **kw)` builds the action's args instead, when the arguments are not plain JSON values.
        Works on `async def` functions too.
        """
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            signature = inspect.signature(fn)

            def action_of(a: tuple[Any, ...], kw: dict[str, Any]) -> tuple[Action, inspect.BoundArguments]:
                bound = signature.bind(*a, **kw)
                bound.apply_defaults()
                if args is not None:
                    call_args = dict(args(*a, **kw))
                else:
                    call_args = {}
                    for name, value in bound.arguments.items():
                        kind = signature.parameters[name].kind
                        if name in exclude:
                            continue
                        if kind is inspect.Parameter.VAR_KEYWORD:
                            # `def run(*argv, **env)` called as `run("rm", "-rf", "/", argv=["ls"])` must not
                            # be decided as `argv: ["ls"]`: a keyword may not stand in for another argument
                            hidden = sorted(set(value) & (set(call_args) | set(signature.parameters)))
                            if hidden:
                                raise Denied(f"`{tool}`: keyword argument(s) {', '.join(hidden)} would stand in "
                                             "for the function's own argument of that name: refused",
                                             Decision("deny", reasons=("ambiguous arguments",)), "malformed")
                            call_args.update(value)
                        elif kind is inspect.Parameter.VAR_POSITIONAL:
                            call_args[name] = list(value)
                        else:
                            call_args[name] = value
                return Action(tool=tool, args=call_args), bound

            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_guarded(*a: Any, **kw: Any) -> Any:
                    action, bound = action_of(a, kw)
                    return await self.arun(action, lambda _: fn(*bound.args, **bound.kwargs))
                async_guarded.gate = self  # type: ignore[attr-defined]
                return async_guarded

            @functools.wraps(fn)
            def guarded(*a: Any, **kw: Any) -> Any:
                action, bound = action_of(a, kw)
                return self.run(action, lambda _: fn(*bound.args, **bound.kwargs))
            guarded.gate = self  # type: ignore[attr-defined]
            return guarded
        return decorate

    # -- internals ----------------------------------------------------------------------------------------
    def _action(self, action: Action | Mapping[str, Any], view: View | None) -> Action:
        """The call as recorded: the caller's, with the filled identity, context, timestamp and an id."""
        if isinstance(action, Action):
            act = dataclasses.replace(action)
        else:  # the payload's pinned fields are only claimed: not parsed, so a bad one cannot refuse the call
            act = _from_mapping(action if view is None else {k: v for k, v in action.items() if k not in PINNED})
        if view is not None:
            act.agent, act.session, act.user, act.ts = view.agent, view.session, view.user, view.ts
            if isinstance(view.context, dict):
                act.context = view.context
        act.action_id = act.action_id or "g-" + secrets.token_hex(12)
        act.evidence_hash = evidence_hash(act)
        return act

    def _record(self, kind: str, body: dict[str, Any], act: Action | None, *, required: bool,
                decision: Decision | None = None) -> None:
        """Append a receipt. When `required` (enforce mode, before anything runs) a failure is a deny."""
        if self.receipts is None:
            return
        action_id = act.action_id if act is not None else None
        try:
            self.receipts.append(kind, {"action_id": action_id, **body} if act is not None else body,
                                 action_id=action_id)
        except Exception as exc:  # noqa: BLE001
            if required:
                raise Denied(f"cannot record the decision, so nothing runs: {exc}",
                             decision or Decision("deny"), "error") from exc
            self.errors.append(f"{kind} receipt for {action_id}: {exc}")


class Pending:
    """A decided call, waiting for reviewers (or already allowed): poll it, wait for it, run it once.

    >>> pending = gate.submit(action)
    >>> pending.status()        # 'pending', 'approved', 'denied', 'timed_out', ... or 'allowed'
    >>> pending.run(lambda a: pay(**a.args))
    """

    def __init__(self, gate: Gate, action: Action, decision: Decision, request: Request | None) -> None:
        self.gate, self.action, self.decision, self.request = gate, action, decision, request
        self._ran = False
        self._lock = threading.Lock()

    @property
    def request_id(self) -> str | None:
        return self.request.id if self.request else None

    def status(self) -> str:
        """`allowed` (no approval needed), or the request's status now."""
        if self.request is None:
            return "executed" if self._ran else "allowed"
        try:
            self.request = self.gate.broker.get(self.request.id)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            self.gate.errors.append(f"status of {self.request.id}: {exc}")
            return "error"
        return self.request.status

    def done(self) -> bool:
        return self.status() != PENDING

    def withdraw(self, reason: str | None = None) -> str:
        """Give up on the call: this handle runs nothing from now on. (A local broker's request then times
        out; the approvals service ends it at once as `withdrawn`.)"""
        with self._lock:
            self._ran = True
        return self.status()

    def wait(self, timeout: float | None = None) -> str:
        """Block until decided (or `timeout` seconds); returns the status."""
        if self.request is None:
            return self.status()
        report = _Reporter(self.gate, self.request.id, self.action.tool)
        # The wait is timed on the broker's clock, the one its requests expire by: the gate's own clock may
        # be injected (replaying recorded calls) and stand still.
        clock = self.gate.broker.clock  # type: ignore[union-attr]
        start = clock()
        while True:
            req = self.request
            report(req.status, tally([{"reviewer": v.reviewer, "role": v.role, "decision": v.decision}
                                      for v in req.votes], req.approvals, req.roles),
                   max(0.0, req.expires_at.timestamp() - clock()))
            if req.status != PENDING:
                return req.status
            waited = clock() - start
            if timeout is not None and waited >= timeout:
                return req.status
            chunk = min(self.gate.report_every, 1.0)  # to notice a vote (the broker wakes only on a decision)
            if timeout is not None:
                chunk = min(chunk, timeout - waited)
            try:
                self.request = self.gate.broker.wait(req.id, chunk, poll=self.gate.poll,  # type: ignore[union-attr]
                                                     sleep=self.gate.sleep)
            except Exception as exc:  # noqa: BLE001
                self.gate.errors.append(f"wait for {req.id}: {exc}")
                return "error"

    async def wait_async(self, timeout: float | None = None) -> str:
        """`wait` for asyncio: polls without blocking the loop."""
        start, delay = self.gate.clock(), self.gate.poll
        while True:
            status = await asyncio.to_thread(self.status)
            if status != PENDING or (timeout is not None and self.gate.clock() - start >= timeout):
                return status
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def run(self, execute: Callable[[Action], T]) -> T:
        """Wait for the decision, then run `execute(action)` once if allowed; else raise `Denied`."""
        if self.request is not None:
            self._refuse_if_refused(self.wait())  # bounded by the request's own timeout
        self._release()
        return self._execute(execute)

    async def arun(self, execute: Callable[[Action], Any]) -> Any:
        """`run` for asyncio; `execute` may return an awaitable."""
        if self.request is not None:
            self._refuse_if_refused(await self.wait_async())
        await asyncio.to_thread(self._release)
        return await self._aexecute(execute)

    def _refuse_if_refused(self, status: str) -> None:
        if status not in REFUSED:
            return
        tool, req = self.action.tool, self.request
        if status == "denied":
            who = ", ".join(f"{v.reviewer}" + (f" ({v.reason})" if v.reason else "")
                            for v in (req.votes if req else ()) if v.decision == "deny")
            message = f"`{tool}` was denied by a reviewer: {who}"
        elif status == "timed_out":
            message = f"`{tool}` was not approved in time: denied"
        else:
            message = f"`{tool}` was approved but the approval expired before it ran"
        raise Denied(message, self.decision, status, req)

    def _release(self) -> None:
        gate, act = self.gate, self.action
        with self._lock:
            if self._ran:
                gate._record("refusal", {"refusal": "replay", "request_id": self.request_id,
                                         "evidence_hash": act.evidence_hash, "attempted_hash": evidence_hash(act),
                                         "message": "this call was already run"}, act, required=False)
                raise Denied(f"`{act.tool}` was already run: a decision is used once", self.decision, "replay",
                             self.request)
            self._ran = True
        if self.request is None or gate.mode == "shadow":
            return
        try:
            self.request = gate.broker.release(self.request.id, act)  # type: ignore[union-attr]
        except Refused as exc:
            raise Denied(f"`{act.tool}` refused: {exc}", self.decision, exc.code, exc.request or self.request) from exc
        except Exception as exc:  # noqa: BLE001
            raise Denied(f"`{act.tool}` could not be released by the broker: {exc}", self.decision, "error",
                         self.request) from exc

    def _finish(self, outcome: str, error: BaseException | None) -> None:
        act = self.action
        self.gate._record("execution", {
            "request_id": self.request_id, "outcome": outcome, "mode": self.gate.mode,
            "executed_hash": evidence_hash(act) if outcome in ("executed", "failed") else None,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }, act, required=False)

    def _execute(self, execute: Callable[[Action], T]) -> T:
        try:
            result = execute(self.action)
        except BaseException as exc:
            self._finish("failed", exc)
            raise
        self._finish("executed", None)
        return result

    async def _aexecute(self, execute: Callable[[Action], Any]) -> Any:
        try:
            result = execute(self.action)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            await asyncio.to_thread(self._finish, "failed", exc)
            raise
        await asyncio.to_thread(self._finish, "executed", None)
        return result


def _why(decision: Decision) -> str:
    rules = f" (rules: {', '.join(decision.rules)})" if decision.rules else ""
    return "; ".join(decision.reasons) + rules


def _from_mapping(record: Mapping[str, Any]) -> Action:
    fields = {f.name for f in dataclasses.fields(Action)}
    return Action.from_record({k: v for k, v in record.items() if k in fields})
