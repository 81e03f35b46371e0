"""Format detection, directories, the registry and the command line."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit import cli
from gatekit.errors import LogFormatError
from gatekit.logs import FORMATS, Store, detect, ingest, sources
from gatekit.logs.contract import Lines

from .conftest import DATA

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


def test_one_registry_the_contract_first() -> None:
    assert list(FORMATS) == ["jsonl", "parquet", "agentdojo", "otel", "openai-agents"]
    assert {name: set(f.options) for name, f in FORMATS.items() if f.options} == {
        "jsonl": {"mapping"}, "parquet": {"mapping"}, "agentdojo": {"labels"}}


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
    found = {Path(s.name).name: s.format for s in sources([logs])}
    assert "PLANTED.json" not in found and "README.md" not in found
    assert found == {"actions-2026-10-05.jsonl": "jsonl", "actions-2026-10-12.jsonl": "jsonl",
                     "actions-2026-10-19.jsonl": "jsonl", "actions-2026-10-26.jsonl": "jsonl",
                     "agents.json": "openai-agents", "otel.ndjson": "otel"}
    report = ingest(store, [logs])
    assert report.stored == 20_000 + 3 + 5 and report.quarantined == 1


def test_the_contract_is_read_in_batches_of_lines_on_the_fast_path() -> None:
    """JSON Lines are not parsed by the format: the contract's checks parse them, a batch at a time."""
    (source,) = sources([SAMPLE / "actions-2026-10-05.jsonl"])
    batches = list(source.read())
    assert all(type(b) is Lines and b.parse is None and b.transform is None for b in batches)
    assert sum(len(b.lines) for b in batches) >= 5_000 and batches[-1].done == source.size


def test_options_go_to_the_formats_that_declare_them(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE, logs)
    shutil.copy(DATA / "otel-file-exporter.jsonl", logs / "otel.jsonl")
    (tmp_path / "m.yaml").write_text("tool: tool\n", encoding="utf-8")
    # a mapping reads every JSON Lines and Parquet file as mapped lines: the OTel file too, no adapter
    assert {s.format for s in sources([logs], mapping=tmp_path / "m.yaml")} == {"jsonl"}
    # an AgentDojo option leaves AgentDojo alone: the contract's files are not its own, so nothing is left
    with pytest.raises(LogFormatError, match="no log files in `.*logs`: expected files of agentdojo \\(.json\\)"):
        sources([logs], labels=False)
    with pytest.raises(LogFormatError, match="`labels` is an option of agentdojo input, not of `jsonl`"):
        sources([logs], format="jsonl", labels=False)
    with pytest.raises(LogFormatError, match="unknown ingest option `lables`, expected one of labels, mapping"):
        sources([logs], lables=False)
    assert len(sources([logs], mapping=None, labels=None)) == 5  # None is not given


def test_unknown_format_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="unknown format `xml`"):
        sources([tmp_path], format="xml")
    with pytest.raises(LogFormatError, match="no such file"):
        sources([tmp_path / "missing.jsonl"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LogFormatError, match="unknown log format"):
        sources([tmp_path / "notes.txt"])
    assert sources([tmp_path / "notes.txt"], format="jsonl")[0].format == "jsonl"


def test_the_cli_starts_without_the_registry() -> None:
    code = "import sys, gatekit.cli; print(sorted(m for m in sys.modules if m.startswith('gatekit.logs')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _has_format_option() -> bool:
    return any(p.name == "fmt" or "--format" in getattr(p, "opts", []) for p in cli.ingest.params)


@pytest.mark.skipif(not _has_format_option(), reason="`gatekit ingest --format` is not wired in yet")
@pytest.mark.parametrize("fmt", [None, "openai-agents"])
def test_cli_ingest_with_format(fmt: str | None, tmp_path: Path) -> None:
    choices = next(p for p in cli.ingest.params if "--format" in p.opts).type.choices
    assert list(choices) == list(FORMATS)
    args = ["ingest", str(DATA / "openai-agents.jsonl"), "--db", str(tmp_path / "s.duckdb"), "--json"]
    result = CliRunner().invoke(cli.cli, args + (["--format", fmt] if fmt else []))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stored"] == 3
