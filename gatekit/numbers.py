"""How numbers read in text outputs (the CLI's and the report's): one style for each kind of number.

A count has thousands separators (`1,935`); a share is a percentage with one decimal (`9.7%`), never rounded
to a misleading `0.0%` or `100.0%`; a measured quantity (per day, hours a week) has one decimal and
separators (`483.8`). A missing value reads `-`.

>>> count(17893), percent(0.0967), percent(0.00005), quantity(483.79)
('17,893', '9.7%', '<0.1%', '483.8')
"""

from __future__ import annotations

__all__ = ["count", "percent", "quantity"]

MISSING = "-"


def count(n: int | None) -> str:
    """`1,935`: a whole number of things."""
    return MISSING if n is None else f"{int(n):,}"


def percent(share: float | None) -> str:
    """`9.7%`: a share (0.097) as a percentage. Above zero but under 0.05% reads `<0.1%`, and under 100% but
    above 99.95% reads `>99.9%`, so a rare deny or a near-total catch is not shown as none or all."""
    if share is None:
        return MISSING
    value = 100 * share
    if 0 < value < 0.05:
        return "<0.1%"
    if 99.95 <= value < 100:
        return ">99.9%"
    return f"{value:,.1f}%"


def quantity(x: float | None) -> str:
    """`483.8`: a measured amount (a rate per day, hours a week), with one decimal."""
    return MISSING if x is None else f"{x:,.1f}"
