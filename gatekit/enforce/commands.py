"""`gatekit approvals` and `gatekit audit`: reviewers and auditors at the command line.

Thin, like the rest of the CLI: parse, call the approvals service (`--server`, credential from
`GATEKIT_TOKEN`) or a local broker (`--broker`; `--db` is its old name), print. Errors are raised, never
turned into exit codes here: refusals are `ApprovalError` (exit 6 in `gatekit.cli.main`), a broken store
`StoreError` (exit 4), a chain that does not verify `ChainError` (exit 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from gatekit.enforce.broker import STATUSES
from gatekit.enforce.identity import visible
from gatekit.enforce.receipts import ChainError
from gatekit.errors import InputError, StoreError
from gatekit.options import (DURATION, broker_option, note, output_options, server_option, state_option,
                             store_url_option)

__all__ = ["approvals", "audit"]

# `--db` was this option's name before `--db` meant the DuckDB action store everywhere: kept, hidden
_BROKER = broker_option(envvar="GATEKIT_BROKER", old_name="--db")

_KEY = click.option("--key-env", default="GATEKIT_AUDIT_KEY", show_default=True,
                    help="environment variable holding a local broker's HMAC key, if it has one")


def _broker(path: Path, key_env: str = "GATEKIT_AUDIT_KEY") -> Any:
    from gatekit.enforce.broker import Broker

    if not path.exists():
        raise StoreError(f"no broker store at `{path}`")
    return Broker(path, key=os.environ.get(key_env) or None)


def _client(server: str) -> Any:
    from gatekit.enforce.client import ApprovalsClient

    token = os.environ.get("GATEKIT_TOKEN")
    if not token:
        raise click.UsageError("set GATEKIT_TOKEN to your reviewer credential (from `gatekit principals add`)")
    try:
        return ApprovalsClient(server, token)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--server") from None


def _where(broker: Path | None, server: str | None) -> tuple[Any, Any]:
    """(broker, client): exactly one of them."""
    if (broker is None) == (server is None):
        raise click.UsageError("pass --server URL (the approvals service) or --broker FILE (a local broker)")
    return (_broker(broker), None) if broker is not None else (None, _client(server))  # type: ignore[arg-type]


def _emit(data: Any) -> None:
    click.echo(visible(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def _v(value: Any) -> str:
    """A value for a reviewer's terminal: the agent wrote it, so no escape sequence or bidi override in it acts."""
    return visible(str(value))


def _line(r: Any) -> str:
    who = f"{r.agent or '-'}/{r.user or '-'}"
    need = f"{len(r.approved_by)}/{r.approvals}" + (f" roles {','.join(r.roles)}" if r.roles else "")
    flag = "  [break-glass: review]" if r.flagged else ""
    return (f"{r.id}\t{r.status}\t{_v(r.tool)}\t{_v(who)}\ttier {r.tier or '-'}\tapprovals {need}\t"
            f"expires {r.expires_at:%Y-%m-%d %H:%M:%SZ}{flag}")


def _served_line(r: dict[str, Any]) -> str:
    yes = sum(1 for v in r.get("votes", []) if v.get("decision") == "approve")
    need = f"{yes}/{r.get('approvals')}" + (f" roles {','.join(r.get('roles') or [])}" if r.get("roles") else "")
    flag = "  [break-glass: review]" if r.get("flagged") else ""
    return (f"{_v(r['id'])}\t{_v(r['status'])}\t{_v(r.get('tool'))}\t{r.get('agent') or '-'}/{r.get('user') or '-'}\t"
            f"tier {r.get('tier') or '-'}\tapprovals {need}\texpires {r.get('expires_at')}{flag}")


def _show_served(r: dict[str, Any]) -> None:
    click.echo(_served_line(r))
    click.echo(f"evidence {r.get('digest')}")
    click.echo("call:")
    click.echo(_v(json.dumps(r.get("action"), indent=2, ensure_ascii=False)))
    if r.get("claimed"):
        click.echo("claimed by the call (not believed):")
        click.echo(_v(json.dumps(r["claimed"], indent=2, ensure_ascii=False)))
    click.echo("why:")
    for reason in r.get("reasons") or []:
        click.echo(f"  {_v(reason)}")
    if r.get("rules"):
        click.echo(f"  rules: {_v(', '.join(r['rules']))}")
    if r.get("note"):
        click.echo(f"note: {_v(r['note'])}")
    for v in r.get("votes") or []:
        extra = " (break-glass)" if v.get("break_glass") else ""
        click.echo(f"  {v['reviewer']} ({v.get('role') or '-'}) {v['decision']}{extra}"
                   + (f": {_v(v['reason'])}" if v.get("reason") else ""))


# ---- approvals -----------------------------------------------------------------------------------------
@click.group()
def approvals() -> None:
    """List, show, approve and deny escalated calls: on the approvals service (--server) or a local broker."""


@approvals.command("list")
@server_option
@_BROKER
@click.option("--status", default="pending", show_default=True,
              type=click.Choice([*STATUSES, "revoked", "all"]))
@click.option("--flagged", is_flag=True, help="only break-glass approvals flagged for review")
@output_options
def list_cmd(server: str | None, broker: Path | None, status: str, flagged: bool, as_json: bool, quiet: bool) -> None:
    """List requests (default: the pending ones, oldest first); --json: a JSON list of requests."""
    local, client = _where(broker, server)
    if client is not None:
        found = [r for r in client.list(status) if r.get("flagged") or not flagged]
        if as_json:
            _emit(found)
            return
        lines = [_served_line(r) for r in found]
    else:
        found_local = local.list(None if status == "all" else status, flagged=True if flagged else None)
        if as_json:
            _emit([r.to_dict() for r in found_local])
            return
        lines = [_line(r) for r in found_local]
    if not lines:
        note(f"no {'' if status == 'all' else status + ' '}requests")
    for line in lines:
        click.echo(line)


@approvals.command()
@server_option
@_BROKER
@click.argument("request_id")
@output_options
def show(server: str | None, broker: Path | None, request_id: str, as_json: bool, quiet: bool) -> None:
    """Show one request: the call, why it was escalated, what it needs, and the votes so far."""
    local, client = _where(broker, server)
    if client is not None:
        served = client.get(request_id)
        if as_json:
            _emit(served)
        else:
            _show_served(served)
        return
    r = local.get(request_id)
    if as_json:
        _emit(r.to_dict() | {"evidence_intact": r.evidence_intact})
        return
    click.echo(_line(r))
    if not r.evidence_intact:
        click.echo("WARNING: the stored call does not match its evidence hash: the store was edited", err=True)
    click.echo(f"evidence {r.evidence_hash}")
    click.echo("call:")
    click.echo(_v(json.dumps(r.action, indent=2, ensure_ascii=False, default=str)))
    click.echo("why:")
    for rule, reason in zip(r.rules, r.reasons):
        click.echo(f"  {_v(rule)}: {_v(reason)}")
    for reason in r.reasons[len(r.rules):]:
        click.echo(f"  {_v(reason)}")
    if r.votes:
        click.echo("votes:")
    for v in r.votes:
        extra = " (break-glass)" if v.break_glass else ""
        click.echo(f"  {v.reviewer} ({v.role or '-'}) {v.decision}{extra}" + (f": {v.reason}" if v.reason else ""))


_EVIDENCE = click.option("--evidence", help="the digest you were shown (`approvals show`); default: the request "
                                            "is fetched and shown on stderr, and that digest is voted on")


def _vote_served(client: Any, request_id: str, decision: str, evidence: str | None, **kwargs: Any) -> dict[str, Any]:
    if evidence is None:
        current = client.get(request_id)
        note(f"{decision} {_v(current['tool'])} {_v(json.dumps(current['action'].get('args'), ensure_ascii=False))} "
             f"(evidence {current['digest']})")
        evidence = current["digest"]
    return client.vote(request_id, decision, evidence, **kwargs)


@approvals.command()
@server_option
@_BROKER
@click.argument("request_id")
@click.option("--reviewer", help="a local broker only: who approves (the service knows you by your credential)")
@click.option("--role", help="the role approved in (one the registry gives you)")
@click.option("--reason")
@_EVIDENCE
@click.option("--break-glass", "break_glass", is_flag=True,
              help="emergency: approve alone, time-limited, flagged for review (needs --reason)")
@click.option("--for", "duration", type=DURATION,
              help="break-glass duration, e.g. 15m (at most the service's limit)")
@output_options
def approve(server: str | None, broker: Path | None, request_id: str, reviewer: str | None, role: str | None,
            reason: str | None, evidence: str | None, break_glass: bool, duration: str | None, as_json: bool,
            quiet: bool) -> None:
    """Approve a request (it is approved once its tier's approvals and roles are all in)."""
    local, client = _where(broker, server)
    if client is not None:
        if reviewer is not None:
            raise click.UsageError("the approvals service takes no --reviewer: you are who your credential says")
        _done_served(_vote_served(client, request_id, "approve", evidence, role=role, reason=reason,
                                  break_glass=break_glass, duration=duration), as_json)
        return
    if not reviewer:
        raise click.UsageError("a local broker needs --reviewer")
    if break_glass:
        r = local.break_glass(request_id, reviewer, reason or "", duration=duration, role=role)
    else:
        r = local.approve(request_id, reviewer, role=role, reason=reason)
    _done(r, as_json)


@approvals.command()
@server_option
@_BROKER
@click.argument("request_id")
@click.option("--reviewer", help="a local broker only")
@click.option("--role")
@click.option("--reason")
@_EVIDENCE
@output_options
def deny(server: str | None, broker: Path | None, request_id: str, reviewer: str | None, role: str | None,
         reason: str | None, evidence: str | None, as_json: bool, quiet: bool) -> None:
    """Deny a request: one deny denies it."""
    local, client = _where(broker, server)
    if client is not None:
        if reviewer is not None:
            raise click.UsageError("the approvals service takes no --reviewer: you are who your credential says")
        _done_served(_vote_served(client, request_id, "deny", evidence, role=role, reason=reason), as_json)
        return
    if not reviewer:
        raise click.UsageError("a local broker needs --reviewer")
    _done(local.deny(request_id, reviewer, role=role, reason=reason), as_json)


def _done(r: Any, as_json: bool) -> None:
    if as_json:
        _emit(r.to_dict())
    else:
        click.echo(_line(r))


def _done_served(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(r)
    else:
        click.echo(_served_line(r))


# ---- audit ---------------------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """Verify the hash-chained audit log of a broker store, or export it as action records."""


def _tampered(result: Any) -> ChainError:
    return ChainError(f"audit chain TAMPERED: {len(result.problems)} problem(s) in {result.count} entries, "
                      f"head {result.count}:{result.head}")


@audit.command()
@_BROKER
@state_option(required=False)
@store_url_option("the service's PostgreSQL store (postgresql://...), when it has one [env: GATEKIT_STORE]")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="the service's public key, kept elsewhere; repeat for retired keys (default: STATE/service.pub "
                   "and STATE/retired-keys/*.pub)")
@click.option("--checkpoints", type=click.Path(dir_okay=False, path_type=Path),
              help="the exported checkpoints (default: STATE/checkpoints.jsonl)")
@_KEY
@click.option("--expect", help="local broker: COUNT:HEAD kept elsewhere earlier (catches a wiped log)")
@output_options
def verify(broker: Path | None, state: Path | None, store: str | None, public_key: tuple[Path, ...],
           checkpoints: Path | None, key_env: str, expect: str | None, as_json: bool, quiet: bool) -> None:
    """Check the audit chain; exit 1 on any problem.

    With --state: the service's chain, its signed checkpoints and the last exported checkpoint, checked with
    the public key (modified, deleted, reordered, truncated, wiped or re-chained entries are all found).
    """
    if (broker is None) == (state is None):
        raise click.UsageError("pass --state DIR (the approvals service) or --broker FILE (a local broker)")
    if state is not None:
        from gatekit.server.verify import verify_state

        result: Any = verify_state(state, public_key=public_key or None, checkpoints=checkpoints, store=store)
    else:
        anchor = None
        if expect:
            count, _, head = expect.partition(":")
            if not count.isdigit() or not head:
                raise click.BadParameter("use COUNT:HEAD, e.g. 120:sha256:ab12...", param_hint="--expect")
            anchor = (int(count), head)
        result = _broker(broker, key_env).receipts.verify(expect=anchor)  # type: ignore[arg-type]
    if as_json:
        _emit(result.to_dict())
    else:
        for problem in result.problems:
            click.echo(problem)
        if result.ok:
            click.echo(f"ok: {result.count} entries, head {result.count}:{result.head}")
    if not result.ok:
        raise _tampered(result)


@audit.command()
@_BROKER
@_KEY
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="a .jsonl file")
@click.option("--force", is_flag=True, help="export even if the chain does not verify")
@output_options
def export(broker: Path | None, key_env: str, out: Path, force: bool, as_json: bool, quiet: bool) -> None:
    """Write one action record per call (JSON Lines) for `gatekit ingest`."""
    from gatekit.enforce._export import export_actions

    if broker is None:
        raise click.UsageError("pass --broker FILE (the local broker store to export)")
    receipts = _broker(broker, key_env).receipts
    result = receipts.verify()
    if not result.ok and not force:
        for problem in result.problems:
            click.echo(problem, err=True)
        raise ChainError(f"{_tampered(result)}: refusing to export it (use --force to export anyway)")
    try:
        n = export_actions(receipts, out)
    except OSError as exc:
        raise InputError(f"cannot write `{out}`: {exc.strerror or exc}") from None
    if as_json:
        _emit({"out": str(out), "records": n, "verified": result.ok})
        return
    click.echo(f"wrote {n} action records to {out}")
    note(f"next: gatekit ingest {out} --db store.duckdb")
