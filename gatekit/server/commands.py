"""`gatekit serve` and `gatekit principals`: run the approvals service, and register who may use it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gatekit.errors import GatekitError, InputError, StoreError
from gatekit.options import DURATION, emit, output_options, policy_option, state_option, store_url_option

__all__ = ["context_pairs", "principals", "serve"]

_STATE = state_option()
_STORE = store_url_option("a PostgreSQL store replicas share (postgresql://USER@HOST/DB, or with "
                          "?host=SOCKETDIR); default: the SQLite file in STATE [env: GATEKIT_STORE]")


def _needs_server_extra() -> None:
    from gatekit._install import require

    require("server", "the approvals service")


@click.command()
@_STATE
@_STORE
@policy_option(help="the service's own copy of the policy (what a tier requires comes from it)")
@click.option("--host", default="127.0.0.1", show_default=True, help="loopback unless TLS is set")
@click.option("--port", default=8470, show_default=True, type=int, help="0 picks a free port")
@click.option("--tls-cert", "certfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", "keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="a Host header to answer besides the bound address (repeat)")
@click.option("--checkpoints", type=click.Path(dir_okay=False, path_type=Path),
              help="where signed checkpoints are exported (default: STATE/checkpoints.jsonl); keep it elsewhere")
@click.option("--approval-ttl", default="15m", show_default=True, type=DURATION,
              help="how long an approval stays usable when its tier sets no approval_ttl")
@click.option("--default-timeout", default="1h", show_default=True, type=DURATION,
              help="how long a request waits when its tier sets no timeout")
@click.option("--break-glass-limit", default="1h", show_default=True, type=DURATION)
@click.option("--max-pending", default=100, show_default=True, type=click.IntRange(min=1),
              help="requests one agent may have waiting for reviewers at once")
@output_options
def serve(state: Path, store: str | None, policy_path: Path, host: str, port: int, certfile: Path | None,
          keyfile: Path | None, allowed_hosts: tuple[str, ...], checkpoints: Path | None, approval_ttl: str,
          default_timeout: str, break_glass_limit: str, max_pending: int, as_json: bool, quiet: bool) -> None:
    """Run the approvals service; its URL is the first line printed (--json: `{"url": ...}`). Stop it with
    SIGTERM or Ctrl-C."""
    _needs_server_extra()
    from gatekit.server.serve import serve as run

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the state directory `{state}`: {exc.strerror or exc}") from None

    def echo(url: str) -> None:
        click.echo(json.dumps({"url": url}) if as_json else url)

    run(state, policy_path, host=host, port=port, certfile=certfile, keyfile=keyfile,
        allowed_hosts=list(allowed_hosts) or None, checkpoints=checkpoints, approval_ttl=approval_ttl,
        default_timeout=default_timeout, break_glass_limit=break_glass_limit, max_pending=max_pending,
        store=store, echo=echo)


@click.group()
def principals() -> None:
    """Register reviewers, agents and executors with the approvals service (it sees them without a restart)."""


def _registry(state: Path, store: str | None) -> object:
    _needs_server_extra()
    from gatekit.server.ledger import Ledger
    from gatekit.server.registry import Registry
    from gatekit.server.store import open_store

    if not state.is_dir():
        raise StoreError(f"no state directory `{state}`: start `gatekit serve --state {state}` once, or create it")
    ledger = Ledger(state, store=open_store(store, state))
    click.get_current_context().call_on_close(ledger.close)
    return Registry(ledger)


@principals.command("add")
@click.argument("kind", type=click.Choice(["reviewer", "agent", "executor"]))
@click.argument("principal_id")
@click.option("--role", "roles", multiple=True, help="a reviewer's role (repeat)")
@click.option("--break-glass", "break_glass", is_flag=True, help="a reviewer who may approve alone in an emergency")
@click.option("--user", "users", multiple=True,
              help="an agent: a user it acts for (repeat); its calls for any other user are refused")
@click.option("--context", "context", multiple=True, metavar="KEY=VALUE",
              help="an agent: context its calls must carry, e.g. env=prod (repeat); VALUE is JSON or text")
@_STATE
@_STORE
@output_options
def add(kind: str, principal_id: str, roles: tuple[str, ...], break_glass: bool, users: tuple[str, ...],
        context: tuple[str, ...], state: Path, store: str | None, as_json: bool, quiet: bool) -> None:
    """Register a principal; prints its credential alone on stdout (only its hash is kept: store it now).
    With --json: `{"kind", "id", "credential"}`.

    Bind an agent to the users it acts for and the context it runs in (`--user`, `--context`): then even
    an agent process that talks to the service directly cannot claim another user or environment.
    """
    from gatekit.server.registry import Refusal

    registry = _registry(state, store)
    bound = context_pairs(context)
    try:
        credential = registry.add(kind, principal_id, roles, break_glass=break_glass,  # type: ignore[attr-defined]
                                  users=users or None, context=bound or None)
    except Refusal as exc:
        raise InputError(str(exc)) from None
    if as_json:
        emit({"kind": kind, "id": principal_id, "credential": credential})
    else:
        click.echo(credential)


@principals.command("list")
@_STATE
@_STORE
@output_options
def list_cmd(state: Path, store: str | None, as_json: bool, quiet: bool) -> None:
    """Every registered principal, its kind and roles (never a credential)."""
    found = _registry(state, store).list()  # type: ignore[attr-defined]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for p in found:
        extra = " break-glass" if p["break_glass"] else ""
        if p["users"] is not None:
            extra += " users " + ",".join(p["users"])
        if p["context"]:
            extra += " context " + json.dumps(p["context"], sort_keys=True)
        click.echo(f"{p['kind']}\t{p['id']}\t{','.join(p['roles']) or '-'}{extra}")


def context_pairs(pairs: tuple[str, ...]) -> dict[str, object]:
    """`--context KEY=VALUE` options as a context object; VALUE is read as JSON when it is JSON, else as text."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"`{pair}` is not KEY=VALUE", param_hint="--context")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
