"""One tz database for every engine: the pinned `tzdata` package (gatekit.policy.timezones).

decide reads local time through `zone`, the SQL compiler through `offsets` applied in SQL (never DuckDB's
ICU data): over many instants and zones both give the same local time, and both agree with zoneinfo.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import tzdata
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekit.policy._view import View
from gatekit.policy.compile import local_time_sql, tz_key_sql
from gatekit.policy.timezones import (
    LOCAL_MAX_US, LOCAL_MIN_US, TZDATA_VERSION, offsets, zone, zone_names,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
NAMES = sorted(zone_names())
# instants from year 1 to year 9999 in UTC, denser around now and the edges
INSTANTS = st.one_of(
    st.integers(LOCAL_MIN_US, LOCAL_MAX_US - 1),
    st.integers(-2_500_000_000 * 10**6, 4_200_000_000 * 10**6),
    st.integers(LOCAL_MIN_US, LOCAL_MIN_US + 2 * 86_400 * 10**6),
    st.integers(LOCAL_MAX_US - 2 * 86_400 * 10**6, LOCAL_MAX_US - 1),
)
ZONES = st.sampled_from(["America/Vancouver", "America/New_York", "Europe/London", "Asia/Kolkata",
                         "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "Africa/Casablanca",
                         "Asia/Tehran", "UTC", "Pacific/Kiritimati"]) | st.sampled_from(NAMES[::29])


def test_the_tz_database_is_the_pinned_tzdata_package() -> None:
    """The version gatekit reads is the installed tzdata's, at least what pyproject pins, and a zone's
    bytes are the package's file, never the system's /usr/share/zoneinfo."""
    assert TZDATA_VERSION == tzdata.IANA_VERSION
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    [pin] = [d for d in pyproject["project"]["dependencies"] if d.startswith("tzdata")]
    assert pin.split("#")[0].strip() == f"tzdata>={importlib.metadata.version('tzdata')}"
    with (importlib.resources.files("tzdata") / "zoneinfo" / "America" / "Vancouver").open("rb") as f:
        pinned = ZoneInfo.from_file(f)
    at = datetime(2026, 12, 17, 20, 30, tzinfo=timezone.utc)  # the disagreeing instant fuzzing found
    assert at.astimezone(zone("America/Vancouver")).utcoffset() == at.astimezone(pinned).utcoffset()
    assert offsets("America/Vancouver").offset_us((at - _EPOCH) // _US) == at.astimezone(pinned).utcoffset() // _US


@settings(max_examples=300, deadline=None)
@given(ZONES, INSTANTS)
def test_offsets_are_zoneinfos(name: str, us: int) -> None:
    at = _EPOCH + timedelta(microseconds=us)
    try:
        expected = at.astimezone(zone(name)).utcoffset() // _US
    except OverflowError:  # local time outside years 1..9999: the SQL has none either (below)
        return
    assert offsets(name).offset_us(us) == expected


@settings(max_examples=40, deadline=None)
@given(ZONES, st.lists(INSTANTS, min_size=1, max_size=30))
def test_sql_local_time_is_decides(name: str, instants: list[int]) -> None:
    """decide's local time (View.local) == the compiled SQL's, instant by instant; None on both beyond 1..9999."""
    instants.append((datetime(2026, 12, 17, 20, 30, tzinfo=timezone.utc) - _EPOCH) // _US)
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE i (k INTEGER, us BIGINT)")
        con.executemany("INSERT INTO i VALUES (?, ?)", list(enumerate(instants)))
        got = [r[0] for r in con.execute(
            f"SELECT {local_time_sql(name, 'us')} FROM i ORDER BY k").fetchall()]
        # the compiled query's form: the offset's key in a column of its own
        keyed = [r[0] for r in con.execute(
            f"SELECT {local_time_sql(name, 'us', 'tzk')} FROM (SELECT k, us, {tz_key_sql(name, 'us')} AS tzk "
            "FROM i) ORDER BY k").fetchall()]
        assert keyed == got
    finally:
        con.close()
    tz = zone(name)
    for us, sql in zip(instants, got):
        local = View({"tool": "t", "ts": _EPOCH + timedelta(microseconds=us)}).local(tz)
        assert (None if local is None else local.replace(tzinfo=None)) == sql, (name, us)


def test_the_zone_names_are_the_pinned_tzdatas_and_duckdb_knows_them() -> None:
    names = set((importlib.resources.files("tzdata") / "zones").read_text().split())
    assert zone_names() == names and "America/Vancouver" in names
    assert not {"localtime", "posixrules", "right/UTC", "posix/UTC"} & names
    with duckdb.connect() as con:
        known = {r[0] for r in con.execute("SELECT name FROM pg_timezone_names()").fetchall()}
    assert names <= known
