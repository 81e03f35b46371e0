"""Every page through `AppTest`: it renders without an exception, its charts are the right charts over
aggregated data (read from the Vega-Lite specs in the element protos), and its interactions work."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from .conftest import PAGES, charts, marks, ok, rows, texts, titled

ACTIONS = 20_000
SHIPPED = 2_000  # rows a page may send with all its charts, against 20,000 actions: aggregates only


def shipped(at) -> int:
    return sum(len(rows(c)) for c in charts(at))


# -- Overview ------------------------------------------------------------------------------------------
def test_overview_shows_the_latest_run(open_page, sample_store) -> None:
    at = ok(open_page("overview", sample_store))
    assert at.title[0].value == "Overview"
    assert {m.label: m.value for m in at.metric}["Actions"] == "20,000"
    assert at.sidebar.selectbox[0].value == "strict"  # newest run first
    mix = titled(at, "Would-be decisions of strict")
    assert marks(mix) == ["bar"]
    assert {r["decision"] for r in rows(mix)} == {"allow", "escalate", "deny"}
    assert sum(r["count"] for r in rows(mix)) == ACTIONS
    assert mix["encoding"]["color"]["scale"]["domain"] == ["allow", "escalate", "deny"]
    per_day = titled(at, "Actions per day")
    assert per_day["encoding"]["x"]["type"] == "temporal" and per_day["encoding"]["y"]["stack"] == "zero"
    assert sum(r["count"] for r in rows(per_day)) == ACTIONS
    assert len(rows(per_day)) == 3 * 28  # every decision on each of the four weeks' days
    tools = titled(at, "Top escalating tools")
    assert marks(tools) == ["bar", "errorbar"]  # the rate and its Wilson interval
    assert all(r["lower"] <= r["rate"] <= r["upper"] for r in rows(tools))
    assert len({r["tool"] for r in rows(tools)}) == 10
    firing = titled(at, "Top escalating and denying rules")
    assert all(r["action"] != "allow" for r in rows(firing))
    assert shipped(at) < SHIPPED
    assert "Smell test" in texts(at.success) + texts(at.error)


def test_overview_follows_the_run_picked_in_the_sidebar(open_page, sample_store) -> None:
    at = open_page("overview", sample_store)
    at.sidebar.selectbox[0].set_value("starter").run()
    ok(at)
    assert sum(r["count"] for r in rows(titled(at, "Would-be decisions of starter"))
               if r["decision"] == "escalate") == 1935


# -- Simulate ------------------------------------------------------------------------------------------
def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_simulate_replays_a_window_against_the_run(open_page, sample_store) -> None:
    at = ok(open_page("simulate", sample_store))
    assert "valid: `starter-strict`" in texts(at.success)
    at.selectbox(key="sim_source").set_value("file: policies/starter.yaml").run()
    at.date_input[0].set_value((dt.date(2026, 10, 19), dt.date(2026, 11, 1)))
    _button(at, "Replay on window").click().run()
    ok(at)
    metrics = {m.label: m for m in at.metric}
    window = duckdb.connect(str(sample_store), read_only=True).execute(
        "SELECT count(*) FROM actions WHERE ts >= '2026-10-19' AND ts < '2026-11-02'").fetchall()[0][0]
    assert metrics["Actions in window"].value == f"{window:,}"
    assert metrics["Decisions changed"].value != "0"  # starter against the strict run
    mix = titled(at, "Simulated vs strict")
    assert {r["run"] for r in rows(mix)} == {"strict", "simulated"} and len(rows(mix)) == 6
    heat = titled(at, "Decisions, strict to simulated")
    assert marks(heat) == ["rect", "text"] and len(rows(heat)) == 9
    assert sum(r["count"] for r in rows(heat)) == window
    assert "Rule firing of the simulated policy" in str([c["title"] for c in charts(at)])


def test_simulate_shows_each_problem_at_its_line(open_page, sample_store) -> None:
    at = open_page("simulate", sample_store)
    text = "version: 1\nname: broken\nrules:\n  - id: r\n    tool: t\n    action: maybe\n    colour: red\n"
    at.text_area[0].set_value(text).run()
    ok(at)
    assert "2 problems" in texts(at.error)
    shown = texts(at.markdown)
    assert "**line 6**" in shown and "maybe" in shown
    assert "**line 7**" in shown and "unknown key `colour`" in shown
    assert any(">    7 |     colour: red" in c.value for c in at.code)
    assert not [b for b in at.button if b.label == "Replay on window"]  # nothing to replay


def test_simulate_saves_a_run_through_gatekit_replay(open_page, tmp_path, sample_store) -> None:
    db = tmp_path / "copy.duckdb"
    db.write_bytes(sample_store.read_bytes())
    at = open_page("simulate", db)
    at.text_input[0].set_value("edited")
    _button(at, "Save as run").click().run()
    ok(at)
    assert "saved run `edited`" in texts(at.success)
    overview = ok(open_page("overview", db))
    assert overview.sidebar.selectbox[0].options[0].startswith("edited")  # newest first
    again = open_page("simulate", db)
    again.text_input[0].set_value("edited")
    _button(again, "Save as run").click().run()
    assert "already exists" in texts(again.error)  # the CLI's message, shown as is


# -- Compare -------------------------------------------------------------------------------------------
def test_compare_shows_the_transition_matrix_and_its_examples(open_page, sample_store) -> None:
    at = ok(open_page("compare", sample_store))
    heat = titled(at, "Decisions, strict to starter")
    assert marks(heat) == ["rect", "text"]
    assert heat["layer"][0]["encoding"]["x"]["sort"] == ["allow", "escalate", "deny"]
    cells = rows(heat)
    assert len(cells) == 9 and sum(r["count"] for r in cells) == ACTIONS
    changed = sum(r["count"] for r in cells if r["changed"])
    assert {m.label: m.value for m in at.metric}["Decisions changed"] == f"{changed:,}"
    cell = at.selectbox[2]
    assert cell.options[0].startswith("escalate → allow")
    examples = at.dataframe[1].value
    assert 0 < len(examples) <= 20
    assert any(link.proto.label.startswith("open a-") for link in at.get("page_link"))


def test_compare_swaps_runs(open_page, sample_store) -> None:
    at = open_page("compare", sample_store)
    at.selectbox[0].set_value("starter").run()
    at.selectbox[1].set_value("strict").run()
    ok(at)
    assert titled(at, "Decisions, starter to strict")


# -- Drift ---------------------------------------------------------------------------------------------
def test_drift_shows_tool_mix_rules_and_execution(open_page, sample_store) -> None:
    at = ok(open_page("drift", sample_store))
    psi = titled(at, "Tool mix: PSI term per tool")
    assert psi["encoding"]["color"]["scale"]["domain"] == ["both", "new", "vanished"]
    assert {m.label for m in at.metric} >= {"Tool-mix PSI", "Escalation rate in B", "Ran with other arguments"}
    drift = titled(at, "Rule firing rate over time")
    assert marks(drift) == ["area", "line"]
    picked = set(at.multiselect[0].value)
    assert 0 < len(picked) <= 6 and {r["rule"] for r in rows(drift)} == picked
    execution = titled(at, "Execution drift")
    assert sum(r["drifted"] for r in rows(execution)) == 8  # the planted execution drift
    assert shipped(at) < SHIPPED


def test_drift_compares_tested_arguments_on_request(open_page, sample_store) -> None:
    at = open_page("drift", sample_store)
    at.toggle[0].set_value(True).run()
    ok(at)
    numbers = at.dataframe[-1].value
    assert {"field", "tool", "ks", "ks_p"} <= set(numbers.columns)
    assert "args.amount" in set(numbers["field"])


# -- Reviewers -----------------------------------------------------------------------------------------
def test_reviewers_shows_load_latency_queue_and_signals(open_page, sample_store) -> None:
    at = ok(open_page("reviewers", sample_store))
    load = titled(at, "Reviews per reviewer per day")
    assert marks(load) == ["rect"] and load["encoding"]["color"]["field"] == "reviews"
    assert marks(titled(at, "Review latency by tier")) == ["bar", "tick"]
    assert marks(titled(at, "Review latency by reviewer")) == ["bar", "tick"]
    queue = titled(at, "Open review requests")
    assert queue["layer"][0]["encoding"]["x"]["type"] == "temporal"
    warnings = texts(at.warning)
    assert "Rubber-stamp signals" in warnings and "u-tom" in warnings  # the sample logs' planted reviewers
    assert "Overloaded" in warnings and "u-omar" in warnings
    assert at.toggle[0].value  # a store this size finds promotion candidates without being asked
    assert "promote-" in texts(at.code)
    assert shipped(at) < SHIPPED


# -- Evaluate ------------------------------------------------------------------------------------------
def test_evaluate_scores_the_run_and_sweeps_a_threshold(open_page, sample_store) -> None:
    at = ok(open_page("evaluate", sample_store))
    labels = {m.label for m in at.metric}
    assert {"Harm caught", "Humans bothered", "Sessions caught"} <= labels
    scores = titled(at, "harm caught vs humans bothered")
    assert scores["encoding"]["yOffset"]["field"] == "outcome"
    assert {r["outcome"] for r in rows(scores)} == {"caught", "missed", "bothered"}
    sweep = titled(at, "Harm caught vs humans bothered, by threshold")
    assert marks(sweep) == ["line", "point", "point", "text"]
    assert sum(1 for r in rows(sweep) if r["current"]) == 1  # the policy's own threshold, marked
    assert at.selectbox[0].value.startswith("payments")
    at.selectbox[0].set_value(at.selectbox[0].options[-1]).run()
    ok(at)
    assert titled(at, "by threshold")


def test_evaluate_draws_the_last_tunings_frontier(open_page, sample_store, tuned_store) -> None:
    """The frontier `gatekit tune` kept in the store: each candidate alone, coloured by kind, and the path of
    the changes chosen; a store never tuned says how to get one instead."""
    at = ok(open_page("evaluate", sample_store))
    assert not [c for c in charts(at) if "Tuning" in str(c.get("title", ""))]
    assert "No `gatekit tune` has run on this store" in texts(at.info)
    at = ok(open_page("evaluate", tuned_store))
    frontier = titled(at, "Tuning: harm caught vs humans bothered")
    assert marks(frontier) == ["point", "line", "point", "text"]
    kinds = {r["kind"] for r in rows(frontier)}
    assert "base" in kinds and len(kinds) >= 3
    assert frontier["layer"][0]["encoding"]["color"]["title"] == "candidate (alone)"
    assert "candidates tried on train" in texts(at.caption)


# -- Explorer ------------------------------------------------------------------------------------------
def test_explorer_searches_and_opens_an_action(open_page, sample_store) -> None:
    at = ok(open_page("explorer", sample_store, run="starter"))
    assert "20,000 of 20,000 actions match under `starter`" in texts(at.caption)
    at.multiselect[0].set_value(["payment.send"])
    at.multiselect[2].set_value(["escalate"]).run()
    found = at.dataframe[0].value
    assert len(found) > 0 and set(found["tool"]) == {"payment.send"} and set(found["decision"]) == {"escalate"}
    at.selectbox[0].set_value("payments-over-100").run()
    assert all("payments-over-100" in r for r in at.dataframe[0].value["rules"])
    first = at.dataframe[0].value["action_id"][0]
    at.text_input[1].set_value(first).run()
    ok(at)
    shown = texts(at.markdown)
    assert f"`{first}`" in texts(at.subheader)
    assert "**`starter` decides `escalate`**" in shown
    reasons = at.dataframe[1].value
    assert "payments-over-100" in set(reasons["rule"]) and "Payments over $100" in " ".join(reasons["reason"])
    assert len(at.json) >= 2  # args and context
    assert "evidence sha256:" in texts(at.code)
    assert set(at.dataframe[-1].value["run"]) == {"starter", "strict"}  # every run's decision


def test_explorer_opens_an_action_from_a_link(open_page, sample_store) -> None:
    at = ok(open_page("explorer", sample_store, action="a-00048", run="starter"))
    assert "`a-00048`" in texts(at.subheader)
    assert "DIFFERENT" in texts(at.error)  # a planted execution drift: reviewed and executed hashes differ
    (approvals,) = [d.value for d in at.dataframe if "reviewer" in d.value.columns]
    assert len(approvals) >= 1 and set(approvals["decision"]) == {"approve"}


# -- Approvals -----------------------------------------------------------------------------------------
def test_approvals_lists_pending_requests_with_evidence(open_page, sample_store, approvals_db) -> None:
    at = ok(open_page("approvals", sample_store, approvals_db))
    assert "2 pending" in texts(at.caption)
    shown = texts(at.markdown)
    assert "**`payment.send`** by agent `billing-bot` for user `u-ann`" in shown
    assert "0/2 approvals, roles finance, security" in shown and "payments-over-10k" in shown
    assert "evidence sha256:" in texts(at.code)
    assert len(at.json) == 2


def test_approvals_is_read_only(open_page, sample_store, approvals_db) -> None:
    at = ok(open_page("approvals", sample_store, approvals_db))
    assert not at.main.button and not at.main.text_input and not at.main.selectbox  # nothing to vote with
    note = texts(at.info)
    assert "Read-only" in note and "gatekit approvals approve REQUEST --server URL" in note
    assert "`gatekit serve`" in note  # no service configured: named, not linked


def test_approvals_links_to_the_approvals_service(open_page, sample_store, approvals_db) -> None:
    at = ok(open_page("approvals", sample_store, approvals_db, server="http://127.0.0.1:8470"))
    note = texts(at.info)
    assert "[the approvals service's page](http://127.0.0.1:8470)" in note
    assert "--server http://127.0.0.1:8470" in note
    odd = ok(open_page("approvals", sample_store, approvals_db, server="javascript:alert(1)"))
    assert "](javascript" not in texts(odd.info)  # only an http(s) URL becomes a link


def test_approvals_lists_recently_decided_requests(open_page, sample_store, approvals_db) -> None:
    from gatekit.enforce import Broker

    broker = Broker(approvals_db)
    first = broker.list()[0]
    broker.approve(first.id, "alice", reason="fine")
    broker.close()
    at = ok(open_page("approvals", sample_store, approvals_db))
    assert "1 pending" in texts(at.caption) and "2 requests in all" in texts(at.caption)
    (decided,) = [d.value for d in at.dataframe]
    assert decided["request"].to_list() == [first.id] and decided["status"].to_list() == ["approved"]
    assert decided["reviewers"].to_list() == ["alice"]
    assert "Recently decided" in texts(at.subheader)


# -- every page ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_sample_store(open_page, sample_store, approvals_db, page) -> None:
    at = ok(open_page(page, sample_store, approvals_db))
    assert at.title[0].value == page.capitalize()
    assert shipped(at) < SHIPPED


# -- Catalog -------------------------------------------------------------------------------------------
def _frame(at, first_column: str):
    return next(d.value for d in at.dataframe if d.value.columns[0] == first_column)


def test_catalog_lists_the_tools_with_the_runs_decisions(open_page, sample_store) -> None:
    at = ok(open_page("catalog", sample_store))
    assert at.title[0].value == "Catalog"
    tools = _frame(at, "tool")
    with duckdb.connect(str(sample_store), read_only=True) as con:
        counts = dict(con.execute("SELECT tool, count(*) FROM actions GROUP BY tool").fetchall())
        strict = dict(con.execute("SELECT decision, count(*) FROM decisions WHERE run = 'strict' GROUP BY ALL")
                      .fetchall())
    assert dict(zip(tools["tool"], tools["calls"])) == counts
    assert int(tools["escalate"].sum()) == strict["escalate"] and int(tools["deny"].sum()) == strict["deny"]
    assert {m.label: m.value for m in at.metric}["Actions"] == f"{ACTIONS:,}"


def test_catalog_shows_the_paths_of_the_picked_tool(open_page, sample_store) -> None:
    at = open_page("catalog", sample_store)
    at.sidebar.selectbox[0].set_value("starter").run()
    at.selectbox(key="catalog_tool").set_value("payment.send").run()
    ok(at)
    paths = _frame(at, "path").set_index("path")
    assert "number" in paths.loc["args.amount", "types"]
    assert paths.loc["args.amount", "min"] < paths.loc["args.amount", "max"]
    assert "payments-over-100" in paths.loc["args.amount", "read by"]
    assert paths.loc["context.env", "read by"] == ""


def test_catalog_without_runs_still_lists_the_tools(open_page, unreplayed_store) -> None:
    at = ok(open_page("catalog", unreplayed_store))
    tools = _frame(at, "tool")
    assert tools["escalate"].isna().all() and tools["calls"].sum() > 0


def _column_config(element) -> dict:
    return json.loads(element.proto.columns or "{}")


def test_drift_shows_p_values_to_three_significant_digits(open_page, sample_store) -> None:
    at = ok(open_page("drift", sample_store))
    rules = next(d for d in at.dataframe if "p_value" in d.value.columns)
    assert _column_config(rules)["p_value"]["type_config"]["format"] == "%.3g"
    at.toggle[0].set_value(True).run()
    assert _column_config(ok(at).dataframe[-1])["ks_p"]["type_config"]["format"] == "%.3g"


def test_catalog_shows_first_and_last_seen_as_times_to_the_second(open_page, sample_store) -> None:
    at = ok(open_page("catalog", sample_store))
    table = next(d for d in at.dataframe if "first seen" in d.value.columns)
    assert str(table.value["first seen"].dtype).startswith("datetime64")
    config = _column_config(table)
    assert config["first seen"]["type_config"]["format"] == config["last seen"]["type_config"]["format"] \
        == "YYYY-MM-DD HH:mm:ss"
