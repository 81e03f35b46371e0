"""A recording: one generation run's calls, grouped in sessions, drawn from one random stream.

A class because a run has a lifecycle: scenarios and planted episodes append sessions to it in a fixed order,
findings are then planted on its calls, and only then are they turned into records. Every draw goes through
the one `rng`, so the order of those steps is part of what makes a seed reproduce its bytes.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime, timedelta
from typing import Any

from gatekit.sample.cast import AGENTS, TEAMS
from gatekit.sample.clock import DAY, HOUR, cum_weights
from gatekit.sample.review import review


class Recording:
    """The calls recorded so far, the planted episodes among them, and the time and random stream they share."""

    def __init__(self, n: int, seed: int, start: datetime, days: int) -> None:
        self.n, self.seed, self.start, self.days = n, seed, start, days
        self.end = days * DAY
        self.rng = random.Random(seed)
        self.calls: list[dict[str, Any]] = []
        self.sessions = 0
        self.episodes: dict[str, list[dict[str, Any]]] = {"email_bursts": [], "split_payments": [],
                                                          "incidents": [], "injections": []}
        self.reused: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.cum = {agent: cum_weights(agent, start, days) for agent in AGENTS}

    def when(self, agent: str) -> int:
        """A random time at which `agent` might start a session, following its hours of work."""
        slot = self.rng.choices(range(len(self.cum[agent])), cum_weights=self.cum[agent])[0]
        return slot * HOUR + self.rng.randrange(HOUR)

    def when_at(self, hours: tuple[int, ...], weekdays: tuple[int, ...], first_day: int = 0) -> int:
        """A random time whose hour and weekday are among those given."""
        slots = [s for s in range(first_day * 24, self.days * 24 - 3)
                 if (self.start + timedelta(hours=s)).hour in hours
                 and (self.start + timedelta(hours=s)).weekday() in weekdays]
        return self.rng.choice(slots) * HOUR + self.rng.randrange(HOUR)

    def session(self, agent: str, at: int, steps: list[dict[str, Any]], *, user: str | None = None,
                gap: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Record `steps` as one session of `agent` from `at`, each reviewed; return the calls recorded.

        A session ends early at the end of the period or after `limit` calls. The next call waits for the
        review of the last one, as an agent blocked on an approval would.
        """
        rng = self.rng
        self.sessions += 1
        session = "s-" + hashlib.sha256(f"{self.seed}:{self.sessions}".encode()).hexdigest()[:10]
        user = user or rng.choice(TEAMS[agent])
        median = gap if gap is not None else AGENTS[agent][2]
        out: list[dict[str, Any]] = []
        t = at
        for i, step in enumerate(steps[:limit]):
            if i:
                t += max(200, int(rng.lognormvariate(math.log(median * 1000), 0.9)))
            if t >= self.end:
                break
            call = {"ts": t, "agent": agent, "session": session, "user": user, **step, "seq": len(self.calls)}
            call.setdefault("tags", [])
            self.calls.append(call)
            out.append(call)
            t = max(t, review(rng, self.start, call))
        return out
