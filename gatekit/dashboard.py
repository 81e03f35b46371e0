"""`gatekit dashboard`: serve the Streamlit app (`gatekit.dashboards`) on this machine only (127.0.0.1).

The app lives in the repository's dashboards/ folder and installs as `gatekit.dashboards`, so the command
finds it in a wheel, an editable install or a checkout alike.
The app reads the store through short read-only connections (see dashboards/source.py), so it can stay
open while `gatekit replay` or `gatekit ingest` writes to the same file.

    gatekit dashboard --db gatekit-demo.duckdb [--port 8501] [--approvals approvals.db] [--server URL]
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from gatekit._install import bundled, require

__all__ = ["ADDRESS", "app_path", "dashboard_command", "streamlit_args"]

ADDRESS = "127.0.0.1"  # never another interface: the pages show every stored call and its arguments
DB_ENV, APPROVALS_ENV = "GATEKIT_DB", "GATEKIT_APPROVALS"  # what dashboards/source.py reads
SERVER_ENV = "GATEKIT_SERVER"  # the approvals service the Approvals page links to, as for `gatekit approvals`
# What the pages import, loaded before the server starts: ~1 s the first visitor would otherwise wait for.
PRELOAD = ("polars", "duckdb", "altair", "gatekit.charts", "gatekit.metrics.rates", "gatekit.metrics.diff",
           "gatekit.metrics.drift", "gatekit.metrics.fatigue", "gatekit.metrics.evaluate", "gatekit.enforce.broker")


def app_path() -> Path:
    """The app's entry script, `gatekit/dashboards/app.py` in this install."""
    return bundled("dashboards") / "app.py"


def streamlit_args(port: int) -> list[str]:
    """The `streamlit run` arguments: loopback only, no browser launch, no telemetry, no file watching."""
    return ["run", str(app_path()), "--server.address", ADDRESS, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]


@click.command("dashboard")
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path), help="the action store")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option("--approvals", "approvals", type=click.Path(dir_okay=False, path_type=Path),
              help="an enforce-mode approvals store (SQLite): the Approvals page lists its requests, read-only")
@click.option("--server", envvar=SERVER_ENV, show_envvar=True,
              help="the approvals service (gatekit serve): the Approvals page links to it for voting")
def dashboard_command(db: Path, port: int, approvals: Path | None, server: str | None) -> None:
    """Browse runs, simulate policy edits, compare, and review approvals in a local web app."""
    require("dashboard", "gatekit dashboard")
    os.environ[DB_ENV] = str(db.resolve())
    if approvals is not None:
        os.environ[APPROVALS_ENV] = str(approvals.resolve())
    else:
        os.environ.pop(APPROVALS_ENV, None)
    if server:
        os.environ[SERVER_ENV] = server
    else:
        os.environ.pop(SERVER_ENV, None)
    click.echo(f"gatekit dashboard on http://{ADDRESS}:{port} (store {db}); Ctrl+C stops it", err=True)
    for module in PRELOAD:
        importlib.import_module(module)
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(streamlit_args(port), prog_name="streamlit", standalone_mode=True)


if __name__ == "__main__":
    dashboard_command()
