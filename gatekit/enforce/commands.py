"""`gatekit approvals` and `gatekit audit`: reviewers and auditors at the command line.

Thin, like the rest of the CLI: parse, call the broker or the receipts, print. Refusals raise
`ApprovalError` (exit 6 in `gatekit.cli.main`); a broken store raises `StoreError` (exit 4);
`audit verify` exits 1 when it finds a problem in the chain.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from gatekit.enforce.broker import STATUSES
from gatekit.errors import StoreError

_DB = click.option("--db", required=True, envvar="GATEKIT_BROKER", show_envvar=True,
                   type=click.Path(dir_okay=False, path_type=Path), help="the broker store (SQLite)")
_KEY = click.option("--key-env", default="GATEKIT_AUDIT_KEY", show_default=True,
                    help="environment variable holding the audit chain's HMAC key, if it has one")
EXIT_TAMPERED = 1


def _broker(db: Path, key_env: str = "GATEKIT_AUDIT_KEY") -> Any:
    from gatekit.enforce.broker import Broker

    if not db.exists():
        raise StoreError(f"no broker store at `{db}`")
    return Broker(db, key=os.environ.get(key_env) or None)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _line(r: Any) -> str:
    who = f"{r.agent or '-'}/{r.user or '-'}"
    need = f"{len(r.approved_by)}/{r.approvals}" + (f" roles {','.join(r.roles)}" if r.roles else "")
    flag = "  [break-glass: review]" if r.flagged else ""
    return (f"{r.id}\t{r.status}\t{r.tool}\t{who}\ttier {r.tier or '-'}\tapprovals {need}\t"
            f"expires {r.expires_at:%Y-%m-%d %H:%M:%SZ}{flag}")


# ---- approvals -----------------------------------------------------------------------------------------
@click.group()
def approvals() -> None:
    """List, show, approve and deny escalated calls waiting in a broker store."""


@approvals.command("list")
@_DB
@click.option("--status", default="pending", show_default=True,
              type=click.Choice([*STATUSES, "all"]))
@click.option("--flagged", is_flag=True, help="only break-glass approvals flagged for review")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(db: Path, status: str, flagged: bool, as_json: bool) -> None:
    """List requests (default: the pending ones, oldest first)."""
    found = _broker(db).list(None if status == "all" else status, flagged=True if flagged else None)
    if as_json:
        _emit({"requests": [r.to_dict() for r in found]})
        return
    if not found:
        click.echo(f"no {'' if status == 'all' else status + ' '}requests", err=True)
    for r in found:
        click.echo(_line(r))


@approvals.command()
@_DB
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
def show(db: Path, request_id: str, as_json: bool) -> None:
    """Show one request: the call, why it was escalated, what it needs, and the votes so far."""
    r = _broker(db).get(request_id)
    if as_json:
        _emit(r.to_dict() | {"evidence_intact": r.evidence_intact})
        return
    click.echo(_line(r))
    if not r.evidence_intact:
        click.echo("WARNING: the stored call does not match its evidence hash: the store was edited", err=True)
    click.echo(f"evidence {r.evidence_hash}")
    click.echo("call:")
    click.echo(json.dumps(r.action, indent=2, ensure_ascii=False, default=str))
    click.echo("why:")
    for rule, reason in zip(r.rules, r.reasons):
        click.echo(f"  {rule}: {reason}")
    for reason in r.reasons[len(r.rules):]:
        click.echo(f"  {reason}")
    if r.votes:
        click.echo("votes:")
    for v in r.votes:
        extra = " (break-glass)" if v.break_glass else ""
        click.echo(f"  {v.reviewer} ({v.role or '-'}) {v.decision}{extra}" + (f": {v.reason}" if v.reason else ""))


@approvals.command()
@_DB
@click.argument("request_id")
@click.option("--reviewer", required=True, help="who approves (not the call's agent or user)")
@click.option("--role", help="the role approved in (the tier may require roles)")
@click.option("--reason")
@click.option("--break-glass", "break_glass", is_flag=True,
              help="emergency: approve alone, time-limited, flagged for review (needs --reason)")
@click.option("--for", "duration", help="break-glass duration, e.g. 15m (at most the broker's limit)")
@click.option("--json", "as_json", is_flag=True)
def approve(db: Path, request_id: str, reviewer: str, role: str | None, reason: str | None, break_glass: bool,
            duration: str | None, as_json: bool) -> None:
    """Approve a request (it is approved once its tier's approvals and roles are all in)."""
    broker = _broker(db)
    if break_glass:
        r = broker.break_glass(request_id, reviewer, reason or "", duration=duration, role=role)
    else:
        r = broker.approve(request_id, reviewer, role=role, reason=reason)
    _done(r, as_json)


@approvals.command()
@_DB
@click.argument("request_id")
@click.option("--reviewer", required=True)
@click.option("--role")
@click.option("--reason")
@click.option("--json", "as_json", is_flag=True)
def deny(db: Path, request_id: str, reviewer: str, role: str | None, reason: str | None, as_json: bool) -> None:
    """Deny a request: one deny denies it."""
    _done(_broker(db).deny(request_id, reviewer, role=role, reason=reason), as_json)


def _done(r: Any, as_json: bool) -> None:
    if as_json:
        _emit(r.to_dict())
    else:
        click.echo(_line(r))


# ---- audit ---------------------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """Verify the hash-chained audit log of a broker store, or export it as action records."""


@audit.command()
@_DB
@_KEY
@click.option("--expect", help="COUNT:HEAD kept elsewhere earlier (from a previous verify): catches a wiped log")
@click.option("--json", "as_json", is_flag=True)
def verify(db: Path, key_env: str, expect: str | None, as_json: bool) -> None:
    """Check every entry links to the one before and the anchor agrees; exit 1 on any problem."""
    anchor = None
    if expect:
        count, _, head = expect.partition(":")
        if not count.isdigit() or not head:
            raise click.BadParameter("use COUNT:HEAD, e.g. 120:sha256:ab12...", param_hint="--expect")
        anchor = (int(count), head)
    result = _broker(db, key_env).receipts.verify(expect=anchor)
    if as_json:
        _emit(result.to_dict())
    else:
        for problem in result.problems:
            click.echo(problem)
        state = "ok" if result.ok else f"TAMPERED ({len(result.problems)} problem(s))"
        click.echo(f"{state}: {result.count} entries, head {result.count}:{result.head}", err=not result.ok)
    if not result.ok:
        sys.exit(EXIT_TAMPERED)


@audit.command()
@_DB
@_KEY
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="a .jsonl file")
@click.option("--force", is_flag=True, help="export even if the chain does not verify")
def export(db: Path, key_env: str, out: Path, force: bool) -> None:
    """Write one action record per call (JSON Lines) for `gatekit ingest`."""
    from gatekit.enforce.export import export_actions

    receipts = _broker(db, key_env).receipts
    result = receipts.verify()
    if not result.ok and not force:
        for problem in result.problems:
            click.echo(problem, err=True)
        click.echo("refusing to export a chain that does not verify (use --force to export anyway)", err=True)
        sys.exit(EXIT_TAMPERED)
    n = export_actions(receipts, out)
    click.echo(f"wrote {n} action records to {out}")
    click.echo(f"next: gatekit ingest {out} --db store.duckdb", err=True)
