"""`gatekit dashboard`: serve the Streamlit app (`gatekit.dashboards`) on this machine only (127.0.0.1).

The app lives in the repository's dashboards/ folder and installs as `gatekit.dashboards`, so the command
finds it in a wheel, an editable install or a checkout alike.
The app reads the store through short read-only connections (see dashboards/source.py), so it can stay
open while `gatekit replay` or `gatekit ingest` writes to the same file.

    gatekit dashboard --db gatekit-demo.duckdb [--port 8501] [--broker approvals.db] [--server URL]
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import click

from gatekit._install import bundled, require
from gatekit.options import broker_option, db_option, note, output_options, server_option

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
@db_option()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@broker_option(old_name="--approvals", help="a local approvals broker (SQLite): the Approvals page lists its "
                                              "requests, read-only (`--approvals` is its old name)")
@server_option
@output_options
def dashboard_command(db: Path, port: int, broker: Path | None, server: str | None, as_json: bool,
                      quiet: bool) -> None:
    """Browse runs, simulate policy edits, compare, and review approvals in a local web app.

    --server: the approvals service the Approvals page links to for voting. --json: the first line is
    `{"url": ...}`."""
    require("dashboard", "gatekit dashboard")
    os.environ[DB_ENV] = str(db.resolve())
    if broker is not None:
        os.environ[APPROVALS_ENV] = str(broker.resolve())
    else:
        os.environ.pop(APPROVALS_ENV, None)
    if server:
        os.environ[SERVER_ENV] = server
    else:
        os.environ.pop(SERVER_ENV, None)
    url = f"http://{ADDRESS}:{port}"
    if as_json:
        click.echo(json.dumps({"url": url, "db": str(db), "broker": str(broker) if broker else None}))
    note(f"gatekit dashboard on {url} (store {db}); Ctrl+C stops it")
    for module in PRELOAD:
        importlib.import_module(module)
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(streamlit_args(port), prog_name="streamlit", standalone_mode=True)


if __name__ == "__main__":
    dashboard_command()
