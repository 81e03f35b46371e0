"""gatekit/options.py: progress drawn only for a person, the deprecated alias, duration options."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gatekit.options import DURATION, deprecated_alias, output_options, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _command(phases: list[str]) -> click.Command:
    @click.command()
    @output_options
    def job(as_json: bool, quiet: bool) -> None:
        with progress("replaying") as update:
            for phase in phases:
                update(phase)
            update(3, 4)
    return job


@pytest.mark.parametrize(("flags", "drawn"), [([], True), (["--quiet"], False), (["--json"], False)])
def test_progress_is_drawn_on_a_terminal_unless_quiet_or_json(flags, drawn, monkeypatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _command(["deciding", "writing x.parquet"]).main(flags, standalone_mode=False)
    assert ("replaying" in terminal.getvalue()) is drawn


def test_progress_is_not_drawn_when_stderr_is_not_a_terminal(monkeypatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    _command(["deciding"]).main([], standalone_mode=False)
    assert piped.getvalue() == ""


def test_the_report_calls_progress_once_per_phase(tmp_path: Path) -> None:
    from gatekit import load_policy
    from gatekit.logs import ingest
    from gatekit.logs.store import Store
    from gatekit.replay import replay
    from gatekit.report import build_report

    log = tmp_path / "log.jsonl"
    log.write_text('{"tool": "payment.send", "ts": "2026-11-02T10:00:00Z", "args": {"amount": 5}}\n')
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\nrules: [{id: r, tool: payment.send, action: deny}]\n")
    phases: list[str] = []
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [log])
        replay(store, load_policy(policy), "a")
        build_report(store, "a", against="a", progress=phases.append)
    assert phases == ["reading the run", "rates", "drift", "reviewer fatigue", "control failures", "labels",
                      "diff against `a`"]


def test_a_deprecated_alias_sets_the_new_option_and_says_so() -> None:
    @click.command()
    @click.option("--broker", type=click.Path(path_type=Path))
    @deprecated_alias("--db", "broker")
    def show(broker: Path | None) -> None:
        click.echo(f"broker={broker}")

    result = CliRunner().invoke(show, ["--db", "a.db"])
    assert result.exit_code == 0 and "broker=a.db" in result.stdout and "use `--broker`" in result.stderr
    assert CliRunner().invoke(show, ["--broker", "b.db"]).stdout == "broker=b.db\n"
    assert CliRunner().invoke(show, ["--db", "a.db", "--broker", "b.db"]).exit_code == 2
    assert "--db" not in CliRunner().invoke(show, ["--help"]).stdout


def test_duration_options_are_checked_when_parsed() -> None:
    @click.command()
    @click.option("--for", "duration", type=DURATION)
    def vote(duration: str) -> None:
        click.echo(duration)

    assert CliRunner().invoke(vote, ["--for", "15m"]).stdout == "15m\n"
    bad = CliRunner().invoke(vote, ["--for", "soon"])
    assert bad.exit_code == 2 and "`soon` is not a duration" in bad.stderr
