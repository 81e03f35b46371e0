"""The live window history of enforce mode: the calls a gate has seen, indexed for `rate` and `sum`.

`decide` counts windows by scanning a list of earlier calls; a gate checks every call of a busy agent, so it
keeps this index instead, with running exact sums. Both give the same peers and the same totals.
"""

from __future__ import annotations

import functools
import operator
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from gatekit.policy.semantics import SUM_MARGIN

if TYPE_CHECKING:
    from gatekit.policy._view import View

Slot = tuple  # (tools regex text, per key, summed Field or None): windows that read calls the same way


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """What one window index reads of the calls before: the contract between the evaluator and a history.

    `tools` is the compiled full-match pattern of the rule's tools, `per` the key calls are grouped by,
    `amount` a call's summed value (None for `rate`; it returns None for an unusable value), `span` the
    longest window on this index in microseconds.
    """

    tools: Any
    per: str | None
    amount: Callable[[View], "float | None"] | None
    span: int


class Windows(Protocol):
    """What a window test asks of the calls before this one (a `History`, or decide's list scan)."""

    def window(self, slot: Slot, spec: WindowSpec, key: Any, lo: int, hi: int, own: float | None,
               threshold: float, strict: bool, exact_threshold: int) -> bool:
        """Whether this call plus the earlier ones with `key` and `ts` in `(lo, hi]` pass the threshold."""
        ...


class WindowSource(Protocol):
    """What a history is built from: every window's spec by slot (an `Evaluator`)."""

    windows: Mapping[Slot, WindowSpec]


SCALE = 1 << 1074  # every finite double times this is an integer


def scaled(x: float) -> int:
    """A finite number scaled by 2^1074: exact, so sums of these are exact."""
    if isinstance(x, int):
        return x << 1074
    n, d = x.as_integer_ratio()
    return n * (SCALE // d)


HUGE = scaled(1e300)


def live_window(calls: Calls | None, lo: int, hi: int, own: float | None, threshold: float, strict: bool,
                 exact_threshold: int) -> bool:
    """A window over a History index: the same peers and the same total as the scan of a history list.

    When every call kept is in the window (calls arrive in time order: the usual case) a count is the
    length of the index, and a sum is decided from the exact sum the index keeps whenever it is further
    from the threshold than the float rounding of adding the values in ascending order could move it
    (semantics.sum_margin: SUM_MARGIN·(n+2)·2^-53·Σ|x|, the one margin every engine
    uses; no overflow); only otherwise are the values sorted and added.
    """
    entries = calls.entries if calls is not None else ()
    every = not entries or (calls.ordered and entries[0][0] > lo and entries[-1][0] <= hi)  # type: ignore[union-attr]
    if own is None:
        total: float = 1 + (len(entries) if every else sum(1 for ts, _, _ in entries if lo < ts <= hi))
        return total > threshold if strict else total >= threshold
    if every:
        own_exact = scaled(own)
        magnitude = abs(own_exact) + (calls.magnitude if calls is not None else 0)
        if magnitude < HUGE:
            diff = own_exact + (calls.total if calls is not None else 0) - exact_threshold
            margin = ((SUM_MARGIN * (len(entries) + 3) * magnitude) >> 53) + 1  # semantics.sum_margin, n + 1 values
            if diff > margin:
                return True
            if -diff > margin:
                return False
        values = [own] + [a for _, a, _ in entries]
    else:
        values = [own] + [a for ts, a, _ in entries if lo < ts <= hi]
    total = functools.reduce(operator.add, sorted(values))
    return total > threshold if strict else total >= threshold


class Calls:
    """The calls kept on one window index under one `per` key, in arrival order, with exact sums."""

    __slots__ = ("entries", "ordered", "total", "magnitude")

    def __init__(self) -> None:
        self.entries: deque[tuple[int, float | None, int]] = deque()
        self.ordered = True  # timestamps never went down: entries[0] is the oldest, entries[-1] the newest
        self.total = 0  # exact sum of the amounts (scaled by 2^1074)
        self.magnitude = 0  # exact sum of their absolute values

    def append(self, ts: int, value: float | None) -> None:
        entries = self.entries
        if entries and ts < entries[-1][0]:
            self.ordered = False
        exact = 0 if value is None else scaled(value)
        entries.append((ts, value, exact))
        self.total += exact
        self.magnitude += abs(exact)

    def drop(self, until: int) -> None:
        """Forget calls from the front with a timestamp at or before `until`."""
        entries = self.entries
        while entries and entries[0][0] <= until:
            exact = entries.popleft()[2]
            self.total -= exact
            self.magnitude -= abs(exact)
        if not entries:
            self.ordered = True


class History:
    """The calls a gate has seen, in arrival order, indexed for the policy's `rate` and `sum` windows.

    >>> history = History(evaluator(policy)); history.add(View(call))

    `Evaluator.evaluate(view, history)` counts exactly the calls that passing them as a list would count,
    but reads only the calls of each window's tools and `per` key, with running exact sums, so a check
    costs microseconds however busy the agent. A call is kept while it can still fall in a window: for
    the longest window on its index before the newest timestamp seen (so a call arriving after calls with
    later timestamps may miss the oldest of its peers). Only `(ts, amount)` is kept of a call, never its
    arguments. Not thread-safe: the gate holds a lock around it.

    `History(evaluator(new_policy), old)` carries over what `old` counted for every window the new
    policy reads the same way (same tools, `per` key and summed field); its other windows start empty.
    """

    __slots__ = ("_windows", "_index", "_tools", "_latest", "_adds")

    def __init__(self, ev: WindowSource, previous: History | None = None) -> None:
        self._windows = ev.windows
        self._index: dict[Any, dict[Any, Calls]] = {slot: {} for slot in ev.windows}
        self._tools: dict[str, list[Any]] = {}
        self._latest: int | None = None
        self._adds = 0
        if previous is not None:
            self._latest = previous._latest
            for slot in self._index.keys() & previous._index.keys():
                self._index[slot] = previous._index[slot]

    def calls(self, slot: Any, key: Any, ts: int) -> Calls | None:
        """The calls kept on one window's index under one `per` key, for a call at `ts`."""
        calls = self._index[slot].get(key)
        if calls is not None:
            latest = self._latest if self._latest is not None and self._latest > ts else ts
            calls.drop(latest - self._windows[slot].span)
        return calls

    def window(self, slot: Slot, spec: WindowSpec, key: Any, lo: int, hi: int, own: float | None,
               threshold: float, strict: bool, exact_threshold: int) -> bool:
        return live_window(self.calls(slot, key, hi), lo, hi, own, threshold, strict, exact_threshold)

    def add(self, view: View) -> None:
        """Count a call in every window that reads it (a call without a timestamp is never counted)."""
        ts, tool = view.ts_us, view.tool
        if ts is None or not self._windows or not isinstance(tool, str):
            return
        if self._latest is None or ts > self._latest:
            self._latest = ts
        latest = self._latest
        slots = self._tools.get(tool)
        if slots is None:
            slots = [slot for slot, spec in self._windows.items() if spec.tools.fullmatch(tool) is not None]
            if len(self._tools) < 65536:
                self._tools[tool] = slots
        for slot in slots:
            spec = self._windows[slot]
            per, amount = spec.per, spec.amount
            key = getattr(view, per) if per else None
            if per and key is None:
                continue
            value = None
            if amount is not None:
                value = amount(view)
                if value is None:  # unusable in an earlier call: counts 0
                    value = 0.0
            calls = self._index[slot].get(key)
            if calls is None:
                calls = self._index[slot][key] = Calls()
            calls.append(ts, value)
            calls.drop(latest - spec.span)
        self._adds += 1
        if self._adds % 4096 == 0:
            self._sweep()

    def _sweep(self) -> None:
        """Drop what no window can count any more from the indexes calls have stopped arriving on."""
        latest = self._latest
        if latest is None:
            return
        for slot, index in self._index.items():
            span = self._windows[slot].span
            for key in list(index):
                index[key].drop(latest - span)
                if not index[key].entries:
                    del index[key]
