"""One style per kind of number in text outputs (gatekit/numbers.py): laws over every value."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gatekit.numbers import count, percent, quantity


@given(st.integers(min_value=-10**15, max_value=10**15))
def test_a_count_reads_back_and_groups_by_thousands(n: int) -> None:
    text = count(n)
    assert int(text.replace(",", "")) == n
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*", text)


@given(st.floats(min_value=0, max_value=1))
def test_a_percentage_has_one_decimal_and_is_never_misleadingly_none_or_all(share: float) -> None:
    text = percent(share)
    if 0 < share < 0.0005:
        assert text == "<0.1%"
    elif 0.9995 <= share < 1:
        assert text == ">99.9%"
    else:
        assert re.fullmatch(r"\d{1,3}\.\d%", text)
        assert abs(float(text[:-1]) - 100 * share) <= 0.05 + 1e-9
    assert (text == "0.0%") == (share == 0) and (text == "100.0%") == (share == 1)


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_a_quantity_has_one_decimal_and_separators(x: float) -> None:
    text = quantity(x)
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d", text)
    assert abs(float(text.replace(",", "")) - x) <= 0.05 + 1e-6 * abs(x)


def test_a_missing_value_reads_a_dash() -> None:
    assert count(None) == percent(None) == quantity(None) == "-"
