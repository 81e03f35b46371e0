"""Which approvals count toward a tier's quorum, and what is still missing: one reading for the approvals
service, the local broker, the CLI, the reviewer page and a waiting gate.

A tier `{approvals: N, roles: [R1, R2]}` has one seat per required role, filled by the first approval given
in that role, and N - len(roles) open seats, filled by any other approval in the order given. An approval that
finds no seat (its role is already filled, or it holds none of the missing roles, and no open seat is left)
does not count: the service refuses it at vote time, so it can never make the count look met. Approval is
reached when every seat is filled, so it cannot be reached without each required role.

>>> t = tally([{"reviewer": "ann", "role": "finance", "decision": "approve"}], 2, ["finance", "security"])
>>> t.summary()
'1 of 2 approvals; missing role `security`'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Tally:
    required: int  # approvals the tier needs
    roles: tuple[str, ...]  # roles it requires
    counted: tuple[str, ...]  # reviewers whose approval fills a seat, in the order given
    not_counting: tuple[str, ...]  # reviewers whose approval fills none
    missing_roles: tuple[str, ...]
    denied_by: tuple[str, ...] = ()

    @property
    def missing(self) -> int:
        """Approvals still needed (each missing role needs one of them)."""
        return self.required - len(self.counted)

    @property
    def met(self) -> bool:
        return self.missing <= 0 and not self.missing_roles

    def summary(self) -> str:
        """`1 of 2 approvals; missing role `security``: never a count above what is needed."""
        text = f"{len(self.counted)} of {self.required} approval{'s' if self.required != 1 else ''}"
        if self.met:
            return text
        if self.missing_roles:
            names = ", ".join(f"`{r}`" for r in self.missing_roles)
            text += f"; missing role{'s' if len(self.missing_roles) > 1 else ''} {names}"
            other = self.missing - len(self.missing_roles)
            if other > 0:
                text += f" and {other} more approval{'s' if other > 1 else ''}"
        else:
            text += f"; {self.missing} more needed"
        if self.not_counting:
            text += f" ({len(self.not_counting)} not counting: " + ", ".join(self.not_counting) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"required": self.required, "roles": list(self.roles), "counted": len(self.counted),
                "counted_by": list(self.counted), "not_counting": list(self.not_counting),
                "missing": max(self.missing, 0), "missing_roles": list(self.missing_roles), "met": self.met,
                "summary": self.summary()}

    def seat_for(self, role: str | None) -> bool:
        """Whether one more approval, given in `role`, would fill a seat."""
        return (role is not None and role in self.missing_roles) or \
            len(self.counted) < self.required - len(self.missing_roles)


def tally(votes: Iterable[Mapping[str, Any]], approvals: int, roles: Iterable[str]) -> Tally:
    """Seat the approvals among `votes` (mappings with `reviewer`, `role`, `decision`, oldest first)."""
    roles = tuple(dict.fromkeys(roles))
    required = max(int(approvals), len(roles))
    filled: dict[str, str] = {}
    spare: list[str] = []
    order: list[str] = []
    given: list[str] = []
    seen: set[str] = set()
    denied = []
    for v in votes:
        who = v["reviewer"]
        if v["decision"] != "approve":
            denied.append(who)
            continue
        if who in seen:  # one person, one approval
            continue
        seen.add(who)
        given.append(who)
        if v.get("role") in roles and v["role"] not in filled:
            filled[v["role"]] = who
            order.append(who)
        else:
            spare.append(who)
    open_seats = required - len(roles)
    seated = {*order, *spare[:open_seats]}
    counted = tuple(w for w in given if w in seated)
    return Tally(required, roles, counted, tuple(spare[open_seats:]),
                 tuple(r for r in roles if r not in filled), tuple(denied))
