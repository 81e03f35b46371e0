"""Empty states: when the store has nothing for a page yet, say so and say what to run.

Each `*_or_stop` function either returns what the page needs or shows the page's empty state and ends
the page there (`st.stop`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import streamlit as st

from gatekit.dashboards import source
from gatekit.dashboards.source import Contents
from gatekit.errors import StoreError

RUN_KEY = "run"  # the sidebar's run picker
SELECT_RUN_KEY = "gatekit_select_run"  # set by a page that saved a run: the picker shows it on the next run


def _shown(path: Path | None) -> str:
    return str(path) if path else "store.duckdb"


def _stop(title: str, body: str) -> NoReturn:
    st.info(f"**{title}**\n\n{body}", icon=":material/info:")
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises; this tells type checkers so


def store_or_stop() -> Contents:
    """What the store holds, or the empty state of a missing, unreadable or empty store."""
    path = source.db_path()
    if path is None:
        _stop("No action store configured", "Start the dashboard on a store:\n\n"
              "```bash\ngatekit demo                      # builds gatekit-demo.duckdb from the sample logs\n"
              "gatekit dashboard --db gatekit-demo.duckdb\n```")
    if not path.exists():
        _stop(f"No store at `{path}` yet", "Ingest logs into it, or build the demo store:\n\n"
              f"```bash\ngatekit ingest logs/*.jsonl --db {path}\n# or\ngatekit demo --db {path}\n```")
    try:
        found = source.contents()
    except source.Busy as exc:
        busy(exc)
    except StoreError as exc:
        _stop(f"Cannot read `{path}`", f"{exc}\n\nIngest logs into a new store:\n\n"
              f"```bash\ngatekit ingest logs/*.jsonl --db store.duckdb\n```")
    if found.actions == 0:
        _stop("The store has no actions yet", f"```bash\ngatekit ingest logs/*.jsonl --db {path}\n```")
    return found


def run_or_stop(found: Contents) -> str:
    """The run picked in the sidebar, or the empty state of a store with no runs."""
    if not found.runs:
        _stop("No replay runs yet", "Replay a policy over the stored actions, then reload:\n\n"
              f"```bash\ngatekit replay --db {_shown(source.db_path())} --policy policies/starter.yaml "
              "--name starter\n```\n\nor write one on the **Simulate** page and save it as a run.")
    run = st.session_state.get(RUN_KEY)
    return run if run in found.run_names else found.run_names[0]


def second_run_or_stop(found: Contents) -> None:
    if len(found.runs) < 2:
        _stop("Compare needs two runs", "Replay a second policy over the same actions:\n\n"
              f"```bash\ngatekit replay --db {_shown(source.db_path())} --policy policies/starter-strict.yaml "
              "--name strict\n```\n\nor edit the policy on the **Simulate** page and save it as a run.")


def approvals_or_stop(found: Contents) -> None:
    if found.with_approvals == 0:
        _stop("No approvals recorded", "Reviewer metrics come from the `approvals` of each action. Ingest logs "
              "that carry them, or export an enforce-mode broker's audit trail and ingest it:\n\n"
              "```bash\ngatekit audit export --db approvals.db --out approvals.jsonl\n"
              f"gatekit ingest approvals.jsonl --db {_shown(source.db_path())}\n```")


def labels_or_stop(found: Contents) -> None:
    if found.labelled == 0:
        _stop("No labelled actions", "Scoring a policy needs ground truth: give actions a `label` of "
              "`harmful` or `benign` in the logs (the action contract's `label` field) and ingest them:\n\n"
              f"```bash\ngatekit ingest labelled/*.jsonl --db {_shown(source.db_path())}\n```")


def broker_or_stop() -> Path:
    """The enforce-mode approvals store the dashboard was started with, or how to configure one."""
    path = source.approvals_path()
    if path is None:
        _stop("No approvals store configured", "Agents in enforce mode file escalated calls with a broker "
              "(`Gate(policy, broker=Broker(\"approvals.db\"))`). Point the dashboard at the same file:\n\n"
              f"```bash\ngatekit dashboard --db {_shown(source.db_path())} --approvals approvals.db\n```")
    if not path.exists():
        _stop(f"No approvals store at `{path}` yet", "It is created when an agent's gate first escalates a "
              "call through `Broker(\"" + str(path) + "\")`; pending requests show here then.")
    return path


def busy(exc: Exception) -> NoReturn:
    _stop("The store is being written", f"{exc}\n\nAnother process (`gatekit replay` or `gatekit ingest`) holds "
          "the file; this page reads it as soon as the writer is done. Rerun the page (press `R`) to retry.")
