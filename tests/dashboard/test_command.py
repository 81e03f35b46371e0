"""`gatekit dashboard`: serves the bundled app (gatekit/dashboards/app.py) with Streamlit on 127.0.0.1 only, told where the stores are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit import dashboard
from gatekit.dashboard import ADDRESS, app_path, dashboard_command, streamlit_args


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict]]:
    """What the command hands to Streamlit, instead of starting a server."""
    import os

    from streamlit.web import cli as streamlit_cli

    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(streamlit_cli, "main",
                        lambda args, **kw: calls.append((args, {k: os.environ.get(k) for k in
                                                                 (dashboard.DB_ENV, dashboard.APPROVALS_ENV,
                                                                  dashboard.SERVER_ENV)})))
    for env in (dashboard.DB_ENV, dashboard.APPROVALS_ENV, dashboard.SERVER_ENV):
        # set first, so that undoing restores the variable even when the command (which sets os.environ
        # itself, for Streamlit) wrote it: a left-over GATEKIT_SERVER breaks `gatekit approvals --db` later
        monkeypatch.setenv(env, "")
        monkeypatch.delenv(env)
    return calls


def test_streamlit_runs_the_app_on_loopback_only() -> None:
    args = streamlit_args(8600)
    assert args[:2] == ["run", str(app_path())] and app_path().is_file()
    opts = dict(zip(args[2::2], args[3::2]))
    assert opts["--server.address"] == ADDRESS == "127.0.0.1"
    assert opts["--server.port"] == "8600" and opts["--server.headless"] == "true"
    assert opts["--browser.gatherUsageStats"] == "false" and opts["--server.fileWatcherType"] == "none"


def test_the_command_passes_the_stores(started, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(dashboard_command, ["--db", "store.duckdb", "--port", "9001", "--approvals", "a.db"])
    assert result.exit_code == 0, result.output
    (args, env), = started
    assert args == streamlit_args(9001)
    assert env == {dashboard.DB_ENV: str(tmp_path / "store.duckdb"), dashboard.APPROVALS_ENV: str(tmp_path / "a.db"),
                   dashboard.SERVER_ENV: None}
    assert "http://127.0.0.1:9001" in result.output


def test_without_approvals_the_page_is_not_configured(started, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(dashboard.APPROVALS_ENV, "left-over.db")
    result = CliRunner().invoke(dashboard_command, ["--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0, result.output
    (args, env), = started
    assert env[dashboard.APPROVALS_ENV] is None and "8501" in args


def test_the_approvals_service_url_reaches_the_page(started, tmp_path: Path, monkeypatch) -> None:
    result = CliRunner().invoke(dashboard_command, ["--db", str(tmp_path / "s.duckdb"), "--server",
                                                    "https://approvals.example:8470"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv(dashboard.SERVER_ENV, "http://127.0.0.1:8470")  # as for `gatekit approvals --server`
    assert CliRunner().invoke(dashboard_command, ["--db", str(tmp_path / "s.duckdb")]).exit_code == 0
    assert [env[dashboard.SERVER_ENV] for _, env in started] == ["https://approvals.example:8470",
                                                                 "http://127.0.0.1:8470"]


def test_a_bad_port_is_a_usage_error(started) -> None:
    result = CliRunner().invoke(dashboard_command, ["--db", "s.duckdb", "--port", "70000"])
    assert result.exit_code == 2 and not started


def test_the_module_runs_as_a_script() -> None:
    out = subprocess.run([sys.executable, "-m", "gatekit.dashboard", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--db" in out and "--approvals" in out and "--port" in out and "--server" in out


def test_the_cli_has_the_command() -> None:
    from gatekit.cli import cli

    assert cli.commands.get("dashboard") is dashboard_command
