"""The Agents SDK adapter on a trace recorded with the real SDK (see recorders.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekit.logs import Store
from gatekit.logs import detect, ingest

from .conftest import DATA, rerecord
from .recorders import record_openai_agents

EXPECTED = [
    ("get_balance", {}, "executed"),
    ("send_money", {"recipient": "US133000000121212121212", "amount": 250.0}, "failed"),  # the tool raised
    ("send_money", {"recipient": "GB29NWBK60161331926819", "amount": 10}, "executed"),
]


def _actions(store: Store) -> list[dict[str, Any]]:
    cursor = store.con.execute("SELECT action_id, ts, agent, session, tool, args, context, outcome FROM actions "
                               "ORDER BY seq")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def _check(rows: list[dict[str, Any]]) -> None:
    assert [(r["tool"], json.loads(r["args"]), r["outcome"]) for r in rows] == EXPECTED
    for r in rows:
        ctx = json.loads(r["context"])
        assert r["agent"] == "billing-bot" and r["session"] == "conv-42"
        assert r["action_id"] == ctx["span_id"] and r["action_id"].startswith("span_")
        assert ctx["workflow"] == "pay-bills" and ctx["metadata"] == {"env": "prod"}
        assert ctx["trace_id"].startswith("trace_")
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)


def test_recorded_export_reads_as_actions(store: Store) -> None:
    assert detect(DATA / "openai-agents.jsonl") == "openai-agents"
    report = ingest(store, [DATA / "openai-agents.jsonl"])
    assert (report.read, report.stored, report.quarantined) == (3, 3, 0)
    _check(_actions(store))


@rerecord
def test_a_fresh_recording_reads_the_same(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "trace.jsonl"
    record_openai_agents(path)
    ingest(store, [path], format="openai-agents")
    _check(_actions(store))


def test_batches_documents_and_bad_spans(tmp_path: Path, store: Store) -> None:
    items = [json.loads(line) for line in (DATA / "openai-agents.jsonl").read_text().splitlines()]
    bad = dict(items[1], id="span_bad", span_data=dict(items[1]["span_data"], input="{oops"))
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"data": [*items, bad]}, indent=2), encoding="utf-8")  # one pretty document
    assert detect(path) == "openai-agents"
    report = ingest(store, [path])
    assert (report.stored, report.quarantined) == (3, 1)
    _check(_actions(store))
    (reason,), = store.con.execute("SELECT reason FROM quarantine").fetchall()
    assert reason.startswith("`input` of `get_balance` is not JSON")
