"""CI gates: replay a policy over the store and hold its figures to thresholds.

>>> result = check_policy(store, load_policy("policies/starter.yaml"), max_escalation_rate=0.15)
>>> [(g.name, g.passed) for g in result.gates]
[('escalation rate', True)]

The policy is replayed into a temporary run that is removed afterwards (a check leaves no run behind); the
figures are the metrics' own: the escalation rate from `summarize_rates`, catch and bother from `evaluate`
(the store's labels), the changed fraction from `summarize_diff` against a stored run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatekit.errors import InputError, StoreError
from gatekit.policy import Policy

if TYPE_CHECKING:
    from gatekit.logs.store import Store

__all__ = ["CheckResult", "GateResult", "check_policy"]


@dataclass(frozen=True)
class GateResult:
    """One gate: its name and option, the threshold, the figure found and whether it holds."""

    name: str
    option: str
    bound: str  # "max" or "min"
    threshold: float
    value: float
    detail: str  # the counts behind the figure: "1,935 of 20,000 actions"

    @property
    def passed(self) -> bool:
        return self.value <= self.threshold if self.bound == "max" else self.value >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "option": self.option, "bound": self.bound, "threshold": self.threshold,
                "value": self.value, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class CheckResult:
    """Every gate of a `gatekit check`, in the order of the options."""

    policy: str
    actions: int
    gates: tuple[GateResult, ...]

    @property
    def ok(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "actions": self.actions, "passed": self.ok,
                "gates": [g.to_dict() for g in self.gates]}


def _of(n: int, total: int, what: str) -> str:
    return f"{n:,} of {total:,} {what}"


def check_policy(store: Store, policy: Policy, *, max_escalation_rate: float | None = None,
                 min_catch: float | None = None, max_bother: float | None = None, against: str | None = None,
                 max_changed: float | None = None) -> CheckResult:
    """Replay `policy` over the store's actions (a temporary run, removed after) and check each threshold given.

    `min_catch` and `max_bother` need labelled actions (`label: harmful|benign`), `max_changed` a stored run
    `against` to compare with; a gate that cannot be computed is an error (`InputError`), never a pass.
    """
    from gatekit.metrics.diff import summarize_diff
    from gatekit.metrics.evaluate import evaluate
    from gatekit.metrics.rates import summarize_rates
    from gatekit.replay import delete_run, replay
    from gatekit.run import Reader

    if (against is None) != (max_changed is None):
        raise InputError("`--against RUN` and `--max-changed F` go together: give both or neither")
    if all(v is None for v in (max_escalation_rate, min_catch, max_bother, max_changed)):
        raise InputError("no gate given: add --max-escalation-rate, --min-catch, --max-bother or "
                         "--against RUN --max-changed F")
    for option, value in (("--max-escalation-rate", max_escalation_rate), ("--min-catch", min_catch),
                          ("--max-bother", max_bother), ("--max-changed", max_changed)):
        if value is not None and not 0 <= value <= 1:
            raise InputError(f"`{option}` is a fraction from 0 to 1, got `{value:g}`")
    actions = store.count_actions()
    if actions == 0:
        raise StoreError("the store has no actions: run `gatekit ingest FILES --db STORE` first")
    if against is not None:
        Reader(store).run(against)  # an unknown run is an error before the replay, not after

    name = f"gatekit-check-{uuid.uuid4().hex[:12]}"
    replay(store, policy, name)
    try:
        reader = Reader(store)
        run = reader.run(name)
        gates: list[GateResult] = []
        if max_escalation_rate is not None:
            decisions = summarize_rates(run, by=()).decisions
            total = sum(decisions.values())
            gates.append(GateResult("escalation rate", "--max-escalation-rate", "max", max_escalation_rate,
                                    decisions["escalate"] / total if total else 0.0,
                                    _of(decisions["escalate"], total, "actions")))
        if min_catch is not None or max_bother is not None:
            scored = evaluate(run)
            if min_catch is not None:
                if not scored.harmful:
                    raise InputError("`--min-catch` needs actions labelled `harmful` and the store has none: "
                                     "add `label: harmful|benign` to the logs")
                gates.append(GateResult("catch rate", "--min-catch", "min", min_catch, scored.catch_rate or 0.0,
                                        _of(scored.caught, scored.harmful, "harmful caught")))
            if max_bother is not None:
                if not scored.benign:
                    raise InputError("`--max-bother` needs actions labelled `benign` and the store has none: "
                                     "add `label: harmful|benign` to the logs")
                gates.append(GateResult("bother rate", "--max-bother", "max", max_bother,
                                        scored.bother_rate or 0.0,
                                        _of(scored.bothered, scored.benign, "benign bothered")))
        if against is not None and max_changed is not None:
            diff = summarize_diff(reader.run(against), run, examples=0)
            gates.append(GateResult(f"changed against `{against}`", "--max-changed", "max", max_changed,
                                    diff.changed / diff.actions if diff.actions else 0.0,
                                    _of(diff.changed, diff.actions, "actions change decision")))
        return CheckResult(policy.name, actions, tuple(gates))
    finally:
        delete_run(store, name)
