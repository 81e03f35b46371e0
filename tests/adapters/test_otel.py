"""The OTel GenAI adapter on files recorded with the OpenTelemetry Python SDK (see recorders.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekit.logs import Store
from gatekit.logs import detect, ingest
from gatekit.logs.adapters.otel import hex_id

from .conftest import DATA, rerecord
from .recorders import record_otel_file, record_otel_protobuf

FILES = ["otel-file-exporter.jsonl", "otel-protobuf.jsonl"]


def _actions(store: Store) -> list[dict[str, Any]]:
    cursor = store.con.execute('SELECT action_id, ts, agent, session, "user", tool, args, context, outcome, '
                               "source_line FROM actions ORDER BY seq")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def _shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What does not depend on the recording's ids and clock."""
    return [(r["agent"], r["tool"], json.loads(r["args"]), r["user"], r["outcome"],
             {k: v for k, v in json.loads(r["context"]).items() if k not in ("trace_id", "span_id")},
             r["session"] if not r["session"] or r["session"].startswith("conv") else "<trace>") for r in rows]


EXPECTED = [
    ("billing-bot", "get_balance", {}, "u-ann", "executed",
     {"tool_call_id": "call_0", "tool_type": "function", "provider": "openai", "service": "agents-demo"}, "conv-7"),
    ("billing-bot", "send_money", {"recipient": "US133000000121212121212", "amount": 250.0}, "u-ann", "executed",
     {"tool_call_id": "call_1", "tool_type": "function", "provider": "openai", "service": "agents-demo"}, "conv-7"),
    ("billing-bot", "send_money", {"recipient": "GB29NWBK60161331926819", "amount": 1e6}, "u-ann", "failed",
     {"tool_call_id": "call_2", "tool_type": "function", "provider": "openai", "service": "agents-demo"}, "conv-7"),
    ("asst_ops", "delete_file", {"file_id": "13", "force": True}, None, "executed",
     {"tool_call_id": "call_0", "tool_type": "function", "provider": "anthropic", "service": "agents-demo"}, "<trace>"),
    ("asst_ops", "search_files", {}, None, "executed",
     {"tool_call_id": "call_1", "tool_type": "function", "provider": "anthropic", "service": "agents-demo"}, "<trace>"),
]


@pytest.mark.parametrize("name", FILES)
def test_recorded_file_reads_as_actions(name: str, store: Store) -> None:
    assert detect(DATA / name) == "otel"
    report = ingest(store, [DATA / name])
    assert (report.read, report.stored, report.quarantined) == (6, 5, 1)
    rows = _actions(store)
    assert _shape(rows) == EXPECTED
    for r in rows:
        ctx = json.loads(r["context"])
        assert r["action_id"] == f"otel:{ctx['trace_id']}:{ctx['span_id']}"
        assert len(ctx["trace_id"]) == 32 and len(ctx["span_id"]) == 16  # hex, whatever the file held
        if r["session"] and not r["session"].startswith("conv"):
            assert r["session"] == ctx["trace_id"]
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    (reason,) = store.con.execute("SELECT reason FROM quarantine").fetchall()[0]
    assert reason.startswith("`gen_ai.tool.call.arguments` of `send_email` is not JSON")


def test_hex_and_base64_files_give_the_same_ids_for_the_same_span() -> None:
    assert hex_id("Un1VOa44x/qALCwE3JuVQw==", 16) == "527d5539ae38c7fa802c2c04dc9b9543"
    assert hex_id("527D5539AE38C7FA802C2C04DC9B9543", 16) == "527d5539ae38c7fa802c2c04dc9b9543"
    assert hex_id("OZgZdOAsp4c=", 8) == "39981974e02ca787"
    assert hex_id("", 8) is None
    with pytest.raises(ValueError):
        hex_id("abc", 8)


@rerecord
@pytest.mark.parametrize("record", [record_otel_file, record_otel_protobuf])
def test_a_fresh_recording_reads_the_same(record: Any, tmp_path: Path, store: Store) -> None:
    path = tmp_path / "traces.jsonl"
    record(path)
    ingest(store, [path], format="otel")
    assert _shape(_actions(store)) == EXPECTED


def _line(spans: list[dict[str, Any]]) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]})


def _span(**over: Any) -> dict[str, Any]:
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "2", "name": "execute_tool t",
            "startTimeUnixNano": 1_700_000_000_123_456_789,
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                           {"key": "gen_ai.tool.name", "value": {"stringValue": "t"}}]}
    return span | over


def test_bad_spans_and_lines_are_quarantined_with_reasons(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spans.jsonl"
    ok = _span(attributes=[*_span()["attributes"],
                           {"key": "gen_ai.tool.call.arguments", "value": {"kvlistValue": {"values": [
                               {"key": "n", "value": {"intValue": "3"}}]}}}])
    lines = [
        _line([ok, _span(spanId="zz"), _span(spanId="0" * 15 + "3", startTimeUnixNano="soon"),
               _span(spanId="0" * 15 + "4", attributes=[_span()["attributes"][0]], name="execute_tool "),
               _span(spanId="0" * 15 + "5", name="chat", attributes=[])]),
        '{"resourceSpans": [], "x": 1',
        '{"hello": "world"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest(store, [path], format="otel")
    assert (report.stored, report.quarantined) == (1, 5)
    (ts, args), = store.con.execute("SELECT ts, args FROM actions").fetchall()
    assert ts.isoformat().startswith("2023-11-14T22:13:20.123456") and json.loads(args) == {"n": 3}
    reasons = sorted(r for r, in store.con.execute("SELECT reason FROM quarantine").fetchall())
    assert [r.split(":")[0] for r in reasons] == [
        "bad `startTimeUnixNano` \"soon\"", "bad span id", "execute_tool span without `gen_ai.tool.name`",
        "invalid json", "not OTLP JSON traces"]
