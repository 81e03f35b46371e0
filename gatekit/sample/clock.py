"""Time in a sample: whole milliseconds since its start, and the hours of the week in which each agent works."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from gatekit.sample.cast import AGENTS

START = datetime(2026, 10, 5, tzinfo=timezone.utc)  # a Monday

# Integer milliseconds rather than datetimes while generating: sums and comparisons stay exact, and only the
# written records are turned into text.
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY


def cum_weights(agent: str, start: datetime, days: int) -> list[float]:
    """Cumulative weights over the period's hours of how likely a session of `agent` starts in each one."""
    _, profile, _, first_day = AGENTS[agent]
    first_day = min(first_day, days // 2)  # a short period still sees a late-starting agent
    total, out = 0.0, []
    for slot in range(days * 24):
        dt = start + timedelta(hours=slot)
        weight = 0.0 if slot < first_day * 24 else _activity(profile, dt.weekday(), dt.hour)
        if agent == "billing-bot" and _month_end(dt.date()):
            weight *= 4
        total += weight
        out.append(total)
    return out


def _activity(profile: str, weekday: int, hour: int) -> float:
    """Relative traffic in one hour of the week: business hours heavy, evenings and weekends light."""
    business, evening = 8 <= hour < 19, hour in (7, 19, 20, 21)
    weekend = weekday >= 5
    if profile == "support":
        return (10 if business else 4 if evening else 1) * (0.35 if weekend else 1)
    if profile == "ops":
        return (6 if business else 3 if evening else 1.5) * (0.5 if weekend else 1)
    if profile == "batch":
        if 1 <= hour <= 4:
            return 9  # nightly jobs, weekends too
        return (6 if business else 2 if evening else 0.5) * (0.15 if weekend else 1)
    return (10 if business else 2.5 if evening else 0.4) * (0.1 if weekend else 1)


def _month_end(day: date) -> bool:
    """The last weekday of its month: the month-end payment run."""
    if day.weekday() >= 5:
        return False
    nxt = day + timedelta(days=1)
    while nxt.weekday() >= 5:
        nxt += timedelta(days=1)
    return nxt.month != day.month


def after_hours(dt: datetime) -> bool:
    return dt.weekday() >= 5 or not 8 <= dt.hour < 19


def moment(start: datetime, ms: int) -> datetime:
    return start + timedelta(milliseconds=ms)


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def fmt(start: datetime, ms: int) -> str:
    dt = moment(start, ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ms(text: str, start: datetime) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt - start) // timedelta(milliseconds=1)
