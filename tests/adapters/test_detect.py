"""Format detection, directories, the registry and the command line."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit import cli
from gatekit.errors import LogFormatError
from gatekit.logs import Store
from gatekit.logs import ingest as contract_ingest
from gatekit.logs.adapters import ADAPTERS, FORMATS, detect, ingest, sources

from .conftest import DATA

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


def test_formats_are_the_registry_and_the_contract() -> None:
    assert FORMATS == ("agentdojo", "otel", "openai-agents", "jsonl", "parquet")
    assert list(ADAPTERS) == ["agentdojo", "otel", "openai-agents"]


def test_detect_by_content(tmp_path: Path) -> None:
    assert detect(DATA / "otel-file-exporter.jsonl") == "otel"
    assert detect(DATA / "otel-protobuf.jsonl") == "otel"
    assert detect(DATA / "openai-agents.jsonl") == "openai-agents"
    assert detect(SAMPLE / "actions-2026-10-05.jsonl") == "jsonl"
    assert detect(SAMPLE / "PLANTED.json") is None
    (tmp_path / "x.parquet").write_bytes(b"")
    assert detect(tmp_path / "x.parquet") == "parquet"
    both = tmp_path / "both.jsonl"
    both.write_text(json.dumps({"tool": "t", "resourceSpans": []}) + "\n")
    assert detect(both) == "jsonl"  # a record with a `tool` is an action, whatever else it holds
    gz = tmp_path / "traces.jsonl.gz"
    gz.write_bytes(gzip.compress((DATA / "otel-file-exporter.jsonl").read_bytes()))
    assert detect(gz) == "otel"


def test_a_directory_keeps_the_contract_rule_and_adds_recognised_json(tmp_path: Path, store: Store) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE, logs)
    shutil.copy(DATA / "openai-agents.jsonl", logs / "agents.json")
    (logs / "nested").mkdir()
    shutil.copy(DATA / "otel-file-exporter.jsonl", logs / "nested" / "otel.ndjson")
    found = {Path(s.name).name: s.kind for s in sources([logs])}
    assert "PLANTED.json" not in found and "README.md" not in found
    assert found == {"actions-2026-10-05.jsonl": "jsonl", "actions-2026-10-12.jsonl": "jsonl",
                     "actions-2026-10-19.jsonl": "jsonl", "actions-2026-10-26.jsonl": "jsonl",
                     "agents.json": "records", "otel.ndjson": "records"}
    report = ingest(store, [logs])
    assert report.stored == 20_000 + 3 + 5 and report.quarantined == 1


def test_the_contract_path_is_unchanged(tmp_path: Path) -> None:
    """Plain JSONL through the adapters gives exactly what `gatekit.logs.ingest` gives."""
    with Store(tmp_path / "a.duckdb") as a, Store(tmp_path / "b.duckdb") as b:
        files = sorted(SAMPLE.glob("*.jsonl"))[:1]
        ra, rb = contract_ingest(a, files), ingest(b, files)
        assert ra == rb
        q = "SELECT action_id, ts, tool, args, context, label FROM actions ORDER BY seq"
        assert a.con.execute(q).fetchall() == b.con.execute(q).fetchall()


def test_unknown_format_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="unknown format `xml`"):
        sources([tmp_path], format="xml")
    with pytest.raises(LogFormatError, match="no such file"):
        sources([tmp_path / "missing.jsonl"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LogFormatError, match="unknown log format"):
        sources([tmp_path / "notes.txt"])
    assert sources([tmp_path / "notes.txt"], format="jsonl")[0].kind == "jsonl"


def _has_format_option() -> bool:
    return any(p.name == "fmt" or "--format" in getattr(p, "opts", []) for p in cli.ingest.params)


@pytest.mark.skipif(not _has_format_option(), reason="`gatekit ingest --format` is not wired in yet")
@pytest.mark.parametrize("fmt", [None, "openai-agents"])
def test_cli_ingest_with_format(fmt: str | None, tmp_path: Path) -> None:
    choices = next(p for p in cli.ingest.params if "--format" in p.opts).type.choices
    assert tuple(choices) == FORMATS
    args = ["ingest", str(DATA / "openai-agents.jsonl"), "--db", str(tmp_path / "s.duckdb"), "--json"]
    result = CliRunner().invoke(cli.cli, args + (["--format", fmt] if fmt else []))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stored"] == 3
