"""Empty states: with no store, no actions, no runs, no approvals, no labels or no approvals store, every page
says so and says what to run, without an exception."""

from __future__ import annotations

import pytest

from gatekit.logs.store import Store

from .conftest import PAGES, charts, ok, texts

STORE_PAGES = [p for p in PAGES if p != "approvals"]


@pytest.mark.parametrize("page", STORE_PAGES)
def test_no_store_configured(open_page, page) -> None:
    at = ok(open_page(page, None))
    assert "No action store configured" in texts(at.info)
    assert "gatekit dashboard --db" in texts(at.info)


@pytest.mark.parametrize("page", STORE_PAGES)
def test_no_store_at_the_path(open_page, tmp_path, page) -> None:
    at = ok(open_page(page, tmp_path / "missing.duckdb"))
    info = texts(at.info)
    assert "No store at" in info and f"gatekit ingest logs/*.jsonl --db {tmp_path / 'missing.duckdb'}" in info


@pytest.mark.parametrize("page", STORE_PAGES)
def test_not_a_store(open_page, tmp_path, page) -> None:
    path = tmp_path / "other.duckdb"
    path.write_bytes(b"this is not a database")
    at = ok(open_page(page, path))
    assert "Cannot read" in texts(at.info)


@pytest.mark.parametrize("page", STORE_PAGES)
def test_no_actions(open_page, empty_store, page) -> None:
    at = ok(open_page(page, empty_store))
    assert "The store has no actions yet" in texts(at.info) and "gatekit ingest" in texts(at.info)


@pytest.mark.parametrize("page", ["overview", "drift", "reviewers", "evaluate", "explorer"])
def test_no_runs(open_page, unreplayed_store, page) -> None:
    at = ok(open_page(page, unreplayed_store))
    info = texts(at.info)
    assert "No replay runs yet" in info and "gatekit replay --db" in info and "--policy" in info


def test_overview_without_runs_still_shows_volumes(open_page, unreplayed_store) -> None:
    at = ok(open_page("overview", unreplayed_store))
    (volume,) = charts(at)
    with Store(unreplayed_store, read_only=True) as store:
        assert sum(r["count"] for r in volume["_rows"][volume["data"]["name"]]) == store.count_actions()
    assert "color" not in volume["encoding"]  # no decisions to split by


def test_compare_needs_two_runs(open_page, bare_store, unreplayed_store) -> None:
    for store in (bare_store, unreplayed_store):
        at = ok(open_page("compare", store))
        assert "Compare needs two runs" in texts(at.info) and "--name strict" in texts(at.info)


def test_simulate_without_runs_can_still_edit_and_save(open_page, unreplayed_store) -> None:
    at = ok(open_page("simulate", unreplayed_store))
    assert "No runs to compare with yet" in texts(at.info)
    assert [b for b in at.button if b.label == "Save as run"]


def test_no_approvals_recorded(open_page, bare_store) -> None:
    at = ok(open_page("reviewers", bare_store))
    assert "No approvals recorded" in texts(at.info) and "gatekit audit export" in texts(at.info)
    drift = ok(open_page("drift", bare_store))
    assert "No approvals recorded" in texts(drift.info)  # execution drift needs approved actions
    assert len(charts(drift)) == 2  # tool mix and rules still show


def test_no_labels(open_page, bare_store) -> None:
    at = ok(open_page("evaluate", bare_store))
    assert "No labelled actions" in texts(at.info) and "`harmful` or `benign`" in texts(at.info)


def test_no_approvals_store_configured(open_page, sample_store) -> None:
    at = ok(open_page("approvals", sample_store))
    assert "No approvals store configured" in texts(at.info) and "--approvals approvals.db" in texts(at.info)


def test_approvals_store_missing(open_page, sample_store, tmp_path) -> None:
    at = ok(open_page("approvals", sample_store, tmp_path / "nowhere.db"))
    assert "No approvals store at" in texts(at.info)
    assert not (tmp_path / "nowhere.db").exists()  # looking does not create it


def test_no_pending_requests(open_page, sample_store, tmp_path) -> None:
    from gatekit.enforce import Broker

    Broker(tmp_path / "quiet.db").close()
    at = ok(open_page("approvals", sample_store, tmp_path / "quiet.db"))
    assert "No pending requests" in texts(at.info)
