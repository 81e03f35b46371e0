"""What-if replays: a window gets exactly the decisions a whole-store replay gives it, read-only; saving is
`gatekit replay` in its own process, and its refusals come back as they are."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gatekit.errors import GatekitError
from gatekit.logs.store import Store
from gatekit.metrics.drift import in_window
from gatekit.run import actions_frame, decisions_frame
from gatekit.policy import load_policy, parse_policy
from gatekit.simulation import compare, lookback, replay_window, save_run

from .conftest import STARTER, STRICT

START, END = datetime(2026, 10, 7, 10, 0, tzinfo=timezone.utc), datetime(2026, 10, 9, tzinfo=timezone.utc)


def test_lookback_is_the_longest_window() -> None:
    assert lookback(load_policy(STARTER)) == timedelta(hours=1)  # payments-hourly-total
    assert lookback(parse_policy("version: 1\nname: x\nrules: []\n")) == timedelta(0)


@pytest.mark.parametrize("policy", [STARTER, STRICT])
def test_a_window_is_decided_as_the_whole_store_decides_it(sample_store: Path, policy: Path) -> None:
    """The window starts mid-morning on a weekday, where hourly payment totals cross its start."""
    name = "starter" if policy == STARTER else "strict"
    with Store(sample_store, read_only=True) as store:
        rows = replay_window(store, load_policy(policy), START, END)
        whole = decisions_frame(store, name)
    inside = in_window(whole, (START, END)).select(rows.columns)
    assert rows.height == inside.height > 500
    assert rows.equals(inside)
    without = Store(sample_store, read_only=True)
    try:  # without the look-back the window's first calls would be decided differently: the test has teeth
        from gatekit.policy.compile import compile_sql

        cut = without.con.sql(compile_sql(load_policy(policy), f"SELECT * FROM actions WHERE ts >= "
                                          f"TIMESTAMPTZ '{START.isoformat()}' AND ts < TIMESTAMPTZ '{END.isoformat()}'")
                              ).pl().sort("seq").select(rows.columns)
    finally:
        without.close()
    assert not cut.equals(inside)


def test_compare_a_simulation_with_a_run(sample_store: Path) -> None:
    with Store(sample_store, read_only=True) as store:
        rows = replay_window(store, load_policy(STARTER), START, END)
        current = decisions_frame(store, "strict")
        actions = actions_frame(store)
    result = compare(actions, rows, current, "strict", load_policy(STARTER), load_policy(STRICT), START, END)
    assert result.actions == rows.height
    assert int(result.matrix["count"].sum()) == rows.height
    assert result.changed > 0
    assert result.rate("simulated", "escalate") < result.rate("strict", "escalate")  # starter asks less
    rules = result.rules
    assert rules["rule"].head(3).to_list() == [r.id for r in load_policy(STARTER).rules][:3]
    assert (rules["change"] == rules["fired_simulated"] - rules["fired_run"]).all()


def test_save_run_is_gatekit_replay(tmp_path: Path, sample_store: Path) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copyfile(sample_store, db)
    saved = save_run(db, STARTER.read_text(), "saved")
    assert saved["name"] == "saved" and saved["actions"] == 20_000 and saved["escalate"] == 1935
    with pytest.raises(GatekitError, match="run `saved` already exists"):
        save_run(db, STARTER.read_text(), "saved")
    assert save_run(db, STRICT.read_text(), "saved", replace=True)["policy_name"] == "starter-strict"
    with pytest.raises(GatekitError, match=r"policy\.yaml:3: .*`rules`"):
        save_run(db, "version: 1\nname: x\nrules: 7\n", "broken")
