"""The `parquet` format's own rules: detected by its name, read through a mapping like JSON Lines.

The contract's checks on Parquet rows (the same reasons as the equivalent lines) are in
tests/logs/test_ingest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gatekit.logs import Store, detect, ingest, sources
from gatekit.logs.adapters.mapping import parse_mapping


def test_detected_by_name_and_taken_from_a_directory(tmp_path: Path) -> None:
    pq.write_table(pa.table({"tool": ["t"]}), tmp_path / "a.pq")
    pq.write_table(pa.table({"tool": ["t"]}), tmp_path / "b.parquet")
    assert detect(tmp_path / "a.pq") == detect(tmp_path / "b.parquet") == "parquet"
    found = [(Path(s.name).name, s.format) for s in sources([tmp_path])]
    assert found == [("a.pq", "parquet"), ("b.parquet", "parquet")]


def test_mapped_columns_become_actions_and_a_row_without_tool_is_quarantined(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"name": ["payment.send", None], "params": ['{"amount": 250}', "{}"],
                             "who": ["billing-bot", "x"]}), path)
    mapping = parse_mapping("tool: name\nargs: params\nagent: who\n")
    report = ingest(store, [path], mapping=mapping)
    assert (report.read, report.stored, report.quarantined) == (2, 1, 1)
    (tool, args, agent), = store.con.execute("SELECT tool, args, agent FROM actions").fetchall()
    assert (tool, json.loads(args), agent) == ("payment.send", {"amount": 250}, "billing-bot")
    assert store.con.execute("SELECT reason FROM quarantine").fetchall() == [("missing `tool` (mapped from `name`)",)]
