"""The policy's time zone from ONE tz database: the pinned `tzdata` package, on every engine.

The system's tz database, the `tzdata` package and DuckDB's ICU data are different releases, so the same
instant can have two local times (America/Vancouver late in 2026: UTC-7 in one, UTC-8 in another). gatekit
reads zones only from the `tzdata` package (`zone`), accepts only its names (`zone_names`), and gives every
engine the zone's UTC offsets as data (`offsets`): `decide` reads local time through `zone`, the SQL compiler
and any other backend apply `offsets`, so they read the same local time by construction.

`offsets(name)` is a table of `(start_us, offset_us)` rows, sorted, the first starting at `-2**63`: the offset
of an instant is that of the last row starting at or before it. Past `cycle_start_us` the zone follows its
fixed rule (the TZif footer, as `zoneinfo` applies it), whose transitions repeat every 400 Gregorian years
(`CYCLE_US`, a whole number of weeks): an instant past `cycle_start_us` reads the offset of
`reduce(ts_us)`, which falls in the table's last 400 years.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo
from zoneinfo._common import load_data  # the stdlib's own TZif reader, the one ZoneInfo itself uses

import tzdata

__all__ = ["CYCLE_US", "LOCAL_MAX_US", "LOCAL_MIN_US", "TZDATA_VERSION", "Offsets", "offsets", "zone",
           "zone_names"]

TZDATA_VERSION: str = tzdata.IANA_VERSION
CYCLE_US = 146_097 * 86_400 * 1_000_000  # 400 Gregorian years: the calendar (and the weekdays) repeat
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# local time must fall in years 1..9999 (what datetime, and so decide, can hold): [LOCAL_MIN_US, LOCAL_MAX_US)
LOCAL_MIN_US = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
LOCAL_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) \
    // timedelta(microseconds=1) + 1


def _files() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("tzdata")


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA names the pinned `tzdata` lists (no `localtime`, `posixrules`, `right/...`, `posix/...`)."""
    return frozenset((_files() / "zones").read_text(encoding="utf-8").split())


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The zone `name` from the pinned `tzdata` package, never the system's tz database. Raises ValueError."""
    if name not in zone_names():
        raise ValueError(f"unknown time zone `{name}`")
    path = _files() / "zoneinfo"
    for part in name.split("/"):
        path = path / part
    with path.open("rb") as fobj:
        return ZoneInfo.from_file(fobj, key=name)


@dataclass(frozen=True)
class Offsets:
    """A zone's UTC offsets as data (see the module doc): rows `(start_us, offset_us)`."""

    name: str
    rows: tuple[tuple[int, int], ...]
    cycle_start_us: int

    def reduce(self, ts_us: int) -> int:
        """The instant whose offset `ts_us` has: itself, or past the cycle start, its place in the last cycle."""
        if ts_us < self.cycle_start_us:
            return ts_us
        return self.cycle_start_us + (ts_us - self.cycle_start_us) % CYCLE_US

    def offset_us(self, ts_us: int) -> int:
        """The UTC offset at `ts_us` (microseconds since the epoch), in microseconds."""
        key = self.reduce(ts_us)
        lo, hi = 0, len(self.rows) - 1
        while lo < hi:  # the last row starting at or before key
            mid = (lo + hi + 1) // 2
            if self.rows[mid][0] <= key:
                lo = mid
            else:
                hi = mid - 1
        return self.rows[lo][1]


def _offset_at(tz: ZoneInfo, seconds: int) -> int:
    return tz.utcoffset(datetime.fromtimestamp(seconds, tz)) // _SECOND  # type: ignore[operator]


_SECOND = timedelta(seconds=1)


@lru_cache(maxsize=None)
def offsets(name: str) -> Offsets:
    """The UTC offsets of zone `name` (pinned `tzdata`), read through `zoneinfo` itself. Raises ValueError."""
    tz = zone(name)
    path = _files() / "zoneinfo"
    for part in name.split("/"):
        path = path / part
    with path.open("rb") as fobj:
        _, transitions, _, _, _, rule = load_data(fobj)
    if transitions:
        before = int(tz.utcoffset(datetime(1, 1, 2)).total_seconds())  # zoneinfo's offset before the first
        points = [(-(2 ** 63) // _US, before)] + [(t, _offset_at(tz, t)) for t in transitions]
        last = transitions[-1]
    else:
        last = 0
        points = [(-(2 ** 63) // _US, _offset_at(tz, 0))]
    # past the last transition the zone's rule: find its transitions week by week (a rule's periods last
    # months), then to the second
    cycle_start = int((datetime(datetime.fromtimestamp(last, timezone.utc).year + 1, 1, 1, tzinfo=timezone.utc)
                       - _EPOCH).total_seconds())
    end = cycle_start + CYCLE_US // _US if rule and b"," in rule else last  # a rule without DST: none
    step, t, cur = 7 * 86_400, last, _offset_at(tz, last)
    while t < end:
        nxt = min(t + step, end)
        off = _offset_at(tz, nxt)
        if off != cur:
            lo, hi = t, nxt  # offset(lo) == cur, offset(hi) != cur
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_at(tz, mid) == cur:
                    lo = mid
                else:
                    hi = mid
            points.append((hi, _offset_at(tz, hi)))
            cur = _offset_at(tz, hi)
            t = hi
        else:
            t = nxt
    rows: list[tuple[int, int]] = []
    for start, off in points:
        if not rows or rows[-1][1] != off:
            rows.append((max(start * _US, -(2 ** 63)), off * _US))
    return Offsets(name, tuple(rows), cycle_start * _US)
