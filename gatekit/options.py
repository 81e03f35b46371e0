"""The command line's shared options, each defined once, and the output every command shares.

Every command takes `--json` (machine-readable result on stdout) and `--quiet` (no progress, no hints on
stderr) through `output_options`; a store has one name per kind: `--db` is the DuckDB action store,
`--broker` a local approvals broker (SQLite), `--state` the approvals service's directory.

    @cli.command()
    @db_option()
    @output_options
    def runs(db: Path, as_json: bool, quiet: bool) -> None: ...
"""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import click

from gatekit.errors import InputError, StoreError

F = Callable[..., Any]
_OUTPUT = "gatekit.output"  # ctx.meta key: {"json": bool, "quiet": bool}


# ---- options ---------------------------------------------------------------------------------------------
def _file(**kwargs: Any) -> click.Path:
    return click.Path(dir_okay=False, path_type=Path, **kwargs)


def db_option(required: bool = True, **kwargs: Any) -> Callable[[F], F]:
    """`--db PATH`: the DuckDB action store (actions, quarantine, runs)."""
    kwargs.setdefault("help", "the action store (DuckDB)")
    return click.option("--db", required=required, type=_file(), **kwargs)


_BROKER_HELP = "a local approvals broker (SQLite; tests and single-user experiments)"


def broker_option(*, envvar: str | None = None, old_name: str | None = None,
                  help: str = _BROKER_HELP) -> Callable[[F], F]:
    """`--broker FILE`: a local approvals broker; `old_name` (e.g. `--db`) still works, hidden, deprecated."""
    option = click.option("--broker", envvar=envvar, show_envvar=envvar is not None, type=_file(), help=help)

    def decorate(f: F) -> F:
        return option(deprecated_alias(old_name, "broker")(f) if old_name else f)
    return decorate


def policy_option(required: bool = True, multiple: bool = False, **kwargs: Any) -> Callable[[F], F]:
    """`--policy FILE`: a policy file (repeatable where a command compares policies)."""
    dest = "policies" if multiple else "policy_path"
    return click.option("--policy", dest, required=required, multiple=multiple, type=_file(), **kwargs)


def run_option(required: bool = False, multiple: bool = False, **kwargs: Any) -> Callable[[F], F]:
    """`--run NAME`: a stored replay run (repeatable where a command compares runs). A single `--run` is
    optional: the command then reads the store's only run, through `only_run`."""
    kwargs.setdefault("help", "the run to read")
    if not multiple and not required:
        kwargs["help"] += " (default: the store's only run)"
    return click.option("--run", "runs_" if multiple else "run_name", required=required, multiple=multiple,
                        **kwargs)


def only_run(given: str | None, stored: Sequence[str]) -> str:
    """The run a command reads: `given`, or else the only stored run; with none or several, say what to do.

    >>> only_run(None, ["starter"])
    'starter'
    """
    if given is not None:
        return given
    if len(stored) == 1:
        return stored[0]
    if not stored:
        raise StoreError("the store has no runs: run `gatekit replay --db ... --policy ...` first")
    shown = ", ".join(f"`{name}`" for name in stored)
    raise InputError(f"the store holds {len(stored)} runs ({shown}): pick one with `--run NAME`")


def state_option(required: bool = True) -> Callable[[F], F]:
    """`--state DIR`: the approvals service's state directory."""
    return click.option("--state", required=required, type=click.Path(file_okay=False, path_type=Path),
                        help="the approvals service's state directory (its store, signing key and checkpoints)")


def store_url_option(help: str) -> Callable[[F], F]:
    """`--store URL` (env GATEKIT_STORE): the approvals service's PostgreSQL store."""
    return click.option("--store", "store", metavar="URL", envvar="GATEKIT_STORE", help=help)


def sweep_option(f: F) -> F:
    return click.option("--sweep", nargs=2, metavar="RULE FIELD",
                        help="threshold curve of RULE's numeric test on FIELD")(f)


def server_option(f: F) -> F:
    return click.option("--server", envvar="GATEKIT_SERVER", show_envvar=True,
                        help="the approvals service (gatekit serve); your credential comes from GATEKIT_TOKEN")(f)


def _memory_limit(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from gatekit.errors import InputError
    from gatekit.logs.store import check_memory_limit  # only when given: the CLI starts without DuckDB

    try:
        return check_memory_limit(value)
    except InputError as e:
        raise click.BadParameter(str(e).removeprefix(f"bad memory limit `{value}`: ")) from None


def memory_limit_option(f: F) -> F:
    """`--memory-limit SIZE` (`4GB`): DuckDB's memory limit for the command's queries; what does not fit
    spills to disk (the store's `<file>.tmp`, or beside `--out`)."""
    return click.option("--memory-limit", callback=_memory_limit, metavar="SIZE",
                        help="hold DuckDB under this much memory (4GB, 512MiB); the rest spills to disk")(f)


def output_options(f: F) -> F:
    """`--json` and `--quiet`, given to the command as `as_json` and `quiet` and kept for `progress`/`note`."""
    def remember(key: str) -> Callable[[click.Context, click.Parameter, bool], bool]:
        def callback(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
            ctx.meta.setdefault(_OUTPUT, {})[key] = value
            return value
        return callback

    f = click.option("--quiet", "-q", is_flag=True, callback=remember("quiet"),
                     help="no progress or hints on stderr (errors still show)")(f)
    return click.option("--json", "as_json", is_flag=True, callback=remember("json"),
                        help="print the result as JSON")(f)


def deprecated_alias(old: str, dest: str) -> Callable[[F], F]:
    """A hidden option `old` that sets `dest` as the option renamed to it did, with a note on stderr."""
    hidden = f"_alias_{dest}"

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden, None)
            if value is not None:
                if kwargs.get(dest) is not None and kwargs[dest] != value:
                    raise click.UsageError(f"`{old}` is the old name of `--{dest}`: give one of them")
                kwargs[dest] = value
                note(f"warning: `{old}` is deprecated here: use `--{dest}`")
            return f(*args, **kwargs)
        return click.option(old, hidden, hidden=True, type=_file())(command)
    return decorate


class Duration(click.ParamType):
    """A duration option (30s, 10m, 4h, 1d), checked when parsed; the command gets the text back."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from gatekit.policy.values import parse_duration

        try:
            parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


DURATION = Duration()


# ---- output ----------------------------------------------------------------------------------------------
def _flags() -> dict[str, bool]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_OUTPUT, {}) if ctx is not None else {}


def emit(data: Any) -> None:
    """The command's JSON result on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def note(message: str) -> None:
    """A hint for a person on stderr (`wrote FILE`, `next: ...`), left out by --quiet."""
    if not _flags().get("quiet"):
        click.echo(message, err=True)


def write_text(path: Path, text: str) -> None:
    """Write an output file the user named; a path that cannot be written is their mistake, not a crash."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write `{path}`: {exc.strerror or exc}") from None


@contextmanager
def progress(label: str, *, in_bytes: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress display on stderr: yields `update(done, total)` (counts, or bytes) or `update(phase)`.

    Nothing is drawn with --quiet or --json, or when stderr is not a terminal; `update` is then a no-op.
    """
    flags = _flags()
    if flags.get("quiet") or flags.get("json") or not sys.stderr.isatty():
        yield lambda *_: None
        return
    from rich.console import Console
    from rich.filesize import decimal
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TimeElapsedColumn
    from rich.text import Text

    class Done(ProgressColumn):
        """`done/total` once a total is known; nothing for a job reported by phase."""

        def render(self, task: Task) -> Text:
            if not task.total:
                return Text("")
            shown = decimal if in_bytes else (lambda n: f"{int(n):,}")
            return Text(f"{shown(int(task.completed))}/{shown(int(task.total))}", style="progress.download")

    with Progress(SpinnerColumn(), "[progress.description]{task.description}", BarColumn(), Done(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int | str, total: int | None = None) -> None:
            if isinstance(done, str):
                bar.update(task, description=f"{label}: {done}")
            else:
                bar.update(task, completed=done, total=total)
        yield update
