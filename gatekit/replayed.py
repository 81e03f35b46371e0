"""What a replay into files wrote (`replay --input ... --out DIR`, on DuckDB or Spark): decisions by verdict,
the errored and quarantined counts, and the quarantine's reasons. Pure Python: both engines return it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ReplayResult"]


@dataclass
class ReplayResult:
    """What a replay into files wrote: decisions by verdict, errored and quarantined counts, quarantine reasons."""

    out: str
    actions: int
    decisions: dict[str, int]
    errored: int
    quarantined: int
    reasons: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "actions": self.actions, "decisions": self.decisions, "errored": self.errored,
                "quarantined": self.quarantined,
                "quarantine_reasons": [{"reason": r, "count": n} for r, n in self.reasons],
                "seconds": round(self.seconds, 3)}
