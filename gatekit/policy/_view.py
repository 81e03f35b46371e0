"""`View`: an action as the scalar evaluator reads it, and the lookup of a field in it.

A view is built once per call (fields read once, `ts` in microseconds, local time computed on demand); a
field compiles to a getter that returns the value, or `_ABSENT` when it is missing.
"""

from __future__ import annotations

import operator
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from gatekit.action import Action, read_ts
from gatekit.policy.conditions import WEEKDAYS, Field
from gatekit.policy.values import _ABSENT

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNSET = object()


class View:
    """An action as the evaluator reads it: fields looked up once, local time computed on demand."""

    __slots__ = ("tool", "agent", "session", "user", "ts", "ts_us", "args", "context", "_local")

    def __init__(self, action: Action | Mapping[str, Any]) -> None:
        if isinstance(action, Action):
            get = action.__getattribute__
            self.tool, self.agent, self.session, self.user = get("tool"), get("agent"), get("session"), get("user")
            ts, self.args, self.context = action.ts, action.args, action.context
        else:
            self.tool = action.get("tool")
            self.agent, self.session, self.user = action.get("agent"), action.get("session"), action.get("user")
            ts, self.args, self.context = action.get("ts"), action.get("args"), action.get("context")
        if ts is not None and type(ts) is not datetime or ts is not None and ts.tzinfo is None:
            ts = read_ts(ts)  # text or epoch seconds, as ingest reads them (InputError otherwise)
        self.ts = ts
        self.ts_us = None if ts is None else _us(ts)
        self._local: Any = _UNSET

    @classmethod
    def of(cls, tool: Any, agent: Any, session: Any, user: Any, ts: datetime | None, args: Any,
           context: Any) -> View:
        """A view of fields already read, as `View(action)` would read them: `ts` an aware datetime (what
        `read_ts` gives) or None. The gate builds its views so, once per call."""
        view = cls.__new__(cls)
        view.tool, view.agent, view.session, view.user = tool, agent, session, user
        view.ts, view.args, view.context = ts, args, context
        view.ts_us = None if ts is None else _us(ts)
        view._local = _UNSET
        return view

    def local(self, tz: ZoneInfo) -> datetime | None:
        """The local time in `tz`; None without a timestamp, or when it falls outside years 1..9999 (then the
        call has no local time: its `time.*` fields are missing, on every engine)."""
        if self._local is _UNSET:
            try:
                self._local = None if self.ts is None else self.ts.astimezone(tz)
            except OverflowError:
                self._local = None
        return self._local


def _us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime: `(ts - epoch) // 1 µs`, without timedelta division
    (a timedelta is normalised: 0 <= seconds < 86400, 0 <= microseconds < 10^6, so the sum is exact)."""
    d = ts - _EPOCH
    return d.days * 86_400_000_000 + d.seconds * 1_000_000 + d.microseconds


def _path_get(root: Any, path: tuple[str, ...]) -> Any:
    value = root
    for seg in path:
        if isinstance(value, dict):
            value = value.get(seg, _ABSENT)
            if value is _ABSENT:
                return _ABSENT
        elif isinstance(value, list) and seg.isdigit() and seg.isascii() and (seg == "0" or seg[0] != "0"):
            idx = int(seg)
            if idx >= len(value):
                return _ABSENT
            value = value[idx]
        else:
            return _ABSENT
    return value


def getter(field: Field, tz: ZoneInfo) -> Callable[[View], Any]:
    """How to read `field` from a view: the value, or `_ABSENT` when missing (a JSON null stays None)."""
    if field.root in ("tool", "agent", "session", "user"):
        name = field.root
        return lambda v: _absent_if_none(getattr(v, name))
    if field.root in ("args", "context"):
        root, path = field.root, field.path
        if len(path) == 1:
            key = path[0]
            read = operator.attrgetter(root)

            def get_one(v: View) -> Any:
                obj = read(v)
                return obj.get(key, _ABSENT) if isinstance(obj, dict) else _ABSENT
            return get_one
        return lambda v: _path_get(getattr(v, root), path)
    part = field.path[0]
    if part == "hour":
        return lambda v: _ABSENT if (lt := v.local(tz)) is None else lt.hour
    if part == "weekday":
        return lambda v: _ABSENT if (lt := v.local(tz)) is None else WEEKDAYS[lt.weekday()]
    return lambda v: _ABSENT if (lt := v.local(tz)) is None else lt.date().isoformat()


def _absent_if_none(value: Any) -> Any:
    return _ABSENT if value is None else value
