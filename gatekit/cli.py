"""The command line. Thin: parses options, calls the library, prints; the one place errors become exit codes."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gatekit.enforce.receipts import ChainError
from gatekit.errors import (ApprovalError, GatekitError, InputError, LogFormatError, PolicyError, Problem,
                            StoreError)
from gatekit.numbers import count, percent
from gatekit.options import (db_option, emit, memory_limit_option, note, only_run, output_options, policy_option,
                             progress, run_option, sweep_option, write_text)

# exit codes, one per error branch (README: 1 a check failed: a tampered audit chain, a failing policy test, a
# CI gate that does not hold; 2 usage, 3 policy, 4 store, 5 log file, 6 approval, 7 anything else: a missing
# extra, an upstream that cannot start)
EXIT_TAMPERED, EXIT_USAGE, EXIT_POLICY, EXIT_STORE, EXIT_LOGS, EXIT_APPROVAL, EXIT_OTHER = 1, 2, 3, 4, 5, 6, 7
EXIT_FAILED = EXIT_TAMPERED  # `gatekit test` and `gatekit check`: what was checked failed (1, as pytest and opa)
EXIT_ABORTED = 130
# `gatekit decide --exit-code`: the decision as the exit code, for scripts (above every error's code)
DECISION_CODES = {"allow": 0, "escalate": 10, "deny": 11}
_CODES = {PolicyError: EXIT_POLICY, StoreError: EXIT_STORE, LogFormatError: EXIT_LOGS, ApprovalError: EXIT_APPROVAL,
          InputError: EXIT_USAGE, ChainError: EXIT_TAMPERED}

_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


@dataclass(frozen=True)
class Validation:
    """What `gatekit validate` found: every problem of every file (none: all valid), and with `--catalog` the
    warnings (rules that read what the logs never hold), which do not fail validation."""

    files: int
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        def rows(found: tuple[Problem, ...]) -> list[dict[str, Any]]:
            return [{"file": p.file, "line": p.line, "code": p.code, "message": p.msg} for p in found]
        return {"valid": self.ok, "problems": rows(self.problems), "warnings": rows(self.warnings)}


@dataclass(frozen=True)
class Decided:
    """What `gatekit decide` decided; with `--exit-code` main() exits with the decision's code."""

    decision: str
    exit_code: bool


@dataclass(frozen=True)
class Tested:
    """What `gatekit test` ran (a `TestReport`); main() exits 1 when a case failed."""

    report: Any


@dataclass(frozen=True)
class Checked:
    """What `gatekit check` found (a `CheckResult`); main() exits 1 when a gate does not hold."""

    result: Any


def main() -> None:
    """`gatekit`: run the command; every error and failed result becomes its exit code here, and only here."""
    try:
        result = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ABORTED)
    except _NO_ARGS as exc:  # `gatekit` or `gatekit approvals` alone: the help, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(_sentence(exc.format_message()))
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(f"see `{exc.ctx.command_path} --help`", err=True)
        sys.exit(exc.exit_code)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _fail(f"{exc.what} was refused ({_count(len(exc.problems), 'problem')})")
        sys.exit(EXIT_POLICY)
    except GatekitError as exc:
        _fail(str(exc))
        sys.exit(next((c for t, c in _CODES.items() if isinstance(exc, t)), EXIT_OTHER))
    except ModuleNotFoundError as exc:  # a command of an extra this install lacks: say which to install
        from gatekit._install import missing_extra

        needed = missing_extra(exc)
        if needed is None:
            raise
        _fail(needed)
        sys.exit(EXIT_OTHER)
    if isinstance(result, Validation) and not result.ok:
        _fail(f"{_count(len(result.problems), 'problem')} in {_count(result.files, 'policy file')}")
        sys.exit(EXIT_POLICY)
    if isinstance(result, Tested) and not result.report.ok:
        _fail(f"{count(result.report.failed)} of {_count(len(result.report.results), 'policy test')} failed")
        sys.exit(EXIT_FAILED)
    if isinstance(result, Checked) and not result.result.ok:
        names = ", ".join(g.name for g in result.result.failed)
        _fail(f"{_count(len(result.result.failed), 'gate')} of {len(result.result.gates)} failed: {names}")
        sys.exit(EXIT_FAILED)
    if isinstance(result, Decided) and result.exit_code and DECISION_CODES[result.decision]:
        sys.exit(DECISION_CODES[result.decision])
    if isinstance(result, int) and result:  # click returns the code of --help, --version and ctx.exit
        sys.exit(result)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _sentence(message: str) -> str:
    """click's messages in gatekit's style: lowercase first letter, no final period."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:] if message[1:2].islower() or len(message) == 1 else message


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{count(n)} {noun if n == 1 else plural}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatekit")
def cli() -> None:
    """gatekit: decide which agent actions need a human, from evidence, then enforce the same policy."""



def _catalog(path: Path | None) -> Any:
    """The `--catalog` file loaded (None without one); a missing file says how to write it."""
    if path is None:
        return None
    from gatekit.authoring import load_catalog

    if not path.exists():
        raise InputError(f"no catalog at `{path}`: write one with `gatekit catalog --db STORE --out {path}`")
    return load_catalog(path)

def _existing(db: Path) -> Path:
    """A store a command reads or adds a run to: it must exist (a typo must not leave an empty store behind)."""
    if not db.exists():
        raise StoreError(f"no store at `{db}`: run `gatekit ingest FILES --db {db}` first")
    return db


# ---- policy ------------------------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, path_type=Path),
              help="also warn about rules that read what the logs of this catalog never hold (gatekit catalog)")
@output_options
def validate(files: tuple[Path, ...], catalog_path: Path | None, as_json: bool, quiet: bool) -> Validation:
    """Check policy files; print every problem as FILE:LINE: message (warnings do not fail validation)."""
    from gatekit.policy import load_policy

    catalog = _catalog(catalog_path)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for f in files:
        try:
            policy = load_policy(f)
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        if catalog is not None:
            from gatekit.authoring import catalog_warnings

            warnings.extend(catalog_warnings(policy, catalog))
    result = Validation(files=len(files), problems=tuple(problems), warnings=tuple(warnings))
    if as_json:
        emit(result.to_dict())
    else:
        for p in result.problems:
            click.echo(str(p))
        for w in result.warnings:
            click.echo(f"{w.file}:{w.line}: warning: {w.msg}")
        if result.ok:
            shown = f", {_count(len(warnings), 'warning')}" if warnings else ""
            note(f"ok: {_count(result.files, 'policy')} valid{shown}")
    return result


@cli.command()
@db_option()
@policy_option(required=False, help="mark what this policy reads, and its decisions replayed in memory")
@run_option(help="mark what this run's policy reads, with the run's decisions per tool")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="write the catalog YAML here, keeping the tags and notes of a catalog already there")
@output_options
def catalog(db: Path, policy_path: Path | None, run_name: str | None, out: Path | None, as_json: bool,
            quiet: bool) -> None:
    """The action catalog of the logs: per tool its calls, agents, argument paths, types and values."""
    from gatekit.authoring import build_catalog, dump_catalog, load_catalog
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.run import load_run

    if policy_path is not None and run_name is not None:
        raise click.UsageError("give `--policy` or `--run`, not both")
    policy = load_policy(policy_path) if policy_path is not None else None
    old = load_catalog(out) if out is not None and out.exists() else None
    with Store(_existing(db), read_only=True) as store, progress("cataloguing"):
        run = load_run(store, run_name) if run_name is not None else None
        built = build_catalog(store, policy=policy, run=run).merge_tags(old)
    if out is not None:
        write_text(out, dump_catalog(built))
        note(f"wrote {out} ({_count(len(built.tools), 'tool')}"
             + (f", {count(len(built.retired))} retired" if built.retired else "") + ")")
    if as_json:
        emit(built.to_dict())
    elif out is None:
        click.echo(dump_catalog(built), nl=False)


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write to this file")
@output_options
def schema(out: Path | None, as_json: bool, quiet: bool) -> None:
    """Print the JSON Schema of policy files, for editor autocompletion."""
    from gatekit.policy.schema import json_schema

    text = json.dumps(json_schema(), indent=2)
    if not out:
        click.echo(text)  # the schema is JSON already: --json prints the same
        return
    write_text(out, text + "\n")
    if as_json:
        emit({"out": str(out)})
    else:
        note(f"wrote {out}")


@cli.command("decide")
@policy_option()
@click.argument("action", default="-")
@click.option("--exit-code", is_flag=True,
              help="exit with the decision: 0 allow, 10 escalate, 11 deny (errors keep their codes)")
@output_options
def decide_cmd(policy_path: Path, action: str, exit_code: bool, as_json: bool, quiet: bool) -> Decided:
    """Decide one action (JSON text, or - for standard input) and print the decision as JSON."""
    from gatekit.policy import decide, load_policy

    policy = load_policy(policy_path)
    text = sys.stdin.read() if action == "-" else action
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LogFormatError(f"action is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("tool"), str):
        raise LogFormatError("action must be a JSON object with a string `tool`")
    decision = decide(policy, record)
    emit(decision.to_dict())  # the decision is JSON whether or not --json is given
    return Decided(decision.decision, exit_code)


@cli.command("test")
@click.argument("policy_path", metavar="POLICY", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("case_files", metavar="[CASES.yaml]...", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--junit", "junit_out", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the results as JUnit XML (for CI)")
@output_options
def test_cmd(policy_path: Path, case_files: tuple[Path, ...], junit_out: Path | None, as_json: bool,
             quiet: bool) -> Tested:
    """Run policy tests: each case's call must get its expected decision (and rules, tier, errors if given).
    With no case file, the policy's own `examples:`. Exit 1 when a case fails."""
    from gatekit.authoring import collect_cases, junit_xml
    from gatekit.policy import load_policy

    report = collect_cases(load_policy(policy_path), case_files)
    if junit_out:
        write_text(junit_out, junit_xml(report))
        note(f"wrote {junit_out}")
    if as_json:
        emit(report.to_dict())
    else:
        for r in report.results:
            if not r.ok:
                click.echo(r.message)
        if report.ok:
            note(f"ok: {_count(report.passed, 'case')} passed")
    return Tested(report)


# ---- store -------------------------------------------------------------------------------------------
class _Formats(click.Choice):
    """`--format`: the registry's formats, read only when `ingest` parses or shows its options (the
    registry needs the shadow extra; starting the CLI imports no format)."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from gatekit.logs.adapters import FORMATS

        return tuple(FORMATS)

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice.__init__ sets it
        pass


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option()
@click.option("--format", "fmt", type=_Formats(), help="input format (default: detected per file)")
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
              help="a mapping file: which field of each line holds tool, args, ts, agent, ...")
@output_options
def ingest(files: tuple[Path, ...], db: Path, fmt: str | None, mapping: Path | None, as_json: bool,
           quiet: bool) -> None:
    """Read logs and agent traces into the store; what cannot be read goes to quarantine with its reason."""
    from gatekit.logs import Interrupted, sources
    from gatekit.logs import ingest as run_ingest
    from gatekit.logs.store import Store

    for f in (*files, *([mapping] if mapping else [])):
        if not f.exists():  # before the store is opened, so a typo leaves no empty store behind
            raise LogFormatError(f"cannot read `{f}`: no such file")
    found = sources(files, format=fmt, mapping=mapping)  # every file read and detected before the store is made
    try:
        with Store(db) as store, progress("ingesting", in_bytes=True) as update:
            report = run_ingest(store, found, progress=update)
    except KeyboardInterrupt as exc:  # Ctrl-C: say what the store holds now, then stop as aborted
        done = exc.report if isinstance(exc, Interrupted) else None
        if done is None:
            click.echo("interrupted: nothing was stored (the ingest was rolled back)", err=True)
        else:
            _print_ingest(done, db, as_json)
            click.echo("interrupted after the commit: all of the above was stored", err=True)
        raise
    _print_ingest(report, db, as_json)


def _print_ingest(report: Any, db: Path, as_json: bool) -> None:
    if as_json:
        emit(report.to_dict())
        return
    skipped = f", skipped {count(report.skipped)}" if report.skipped else ""
    click.echo(f"read {count(report.read)}, stored {count(report.stored)}, quarantined {count(report.quarantined)}, "
               f"duplicates {count(report.duplicates)}{skipped} ({_count(report.files, 'file')})")
    if report.quarantined:
        note(f"see why: gatekit quarantine --db {db}")


_QUARANTINE_SHOWN = 120  # characters of a raw line shown in text


def _printable(text: str) -> str:
    """A hostile line's control characters (terminal escapes) as `\\x1b`-style escapes, not as themselves."""
    return text if text.isprintable() else "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@cli.command()
@db_option()
@click.option("--source", help="only the lines of this file (its name as ingested, or how it ends)")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="lines to list (0: all)")
@output_options
def quarantine(db: Path, source: str | None, limit: int, as_json: bool, quiet: bool) -> None:
    """List the lines ingest quarantined: source, line, reason and the raw line."""
    from gatekit.logs.quarantine import quarantine_reasons, quarantined
    from gatekit.logs.store import Store

    with Store(db, read_only=True) as store:
        reasons = quarantine_reasons(store, source=source)
        lines = quarantined(store, source=source, limit=limit or None)
    total = sum(n for _, n in reasons)
    if as_json:
        emit({"total": total, "shown": len(lines), "reasons": [{"reason": r, "count": n} for r, n in reasons],
              "lines": [q.to_dict() for q in lines]})
        return
    if not total:
        click.echo(f"nothing quarantined in `{db}`" + (f" from `{source}`" if source else ""))
        return
    for q in lines:
        raw = _printable(q.raw if len(q.raw) <= _QUARANTINE_SHOWN else q.raw[:_QUARANTINE_SHOWN - 1] + "…")
        click.echo(f"{q.source}:{q.line}: {q.reason}")
        click.echo(f"    {raw}")
    if len(lines) < total:
        note(f"{count(len(lines))} of {_count(total, 'quarantined line')} shown (all of them: --limit 0; "
             f"{_count(len(reasons), 'reason')}: --json)")


_OUT_SUFFIXES = (".parquet", ".jsonl")


_ENGINES = ("duckdb", "spark")


@cli.command()
@db_option(required=False, help="the action store (DuckDB; --engine duckdb)")
@policy_option()
@click.option("--engine", type=click.Choice(_ENGINES), default="duckdb", show_default=True,
              help="duckdb: replay the store; spark: replay --input on Apache Spark into the --out directory")
@click.option("--input", "input_path", help="action records to decide without a store, into the --out directory "
              "(--engine duckdb: Parquet files; --engine spark: JSON Lines or Parquet, any path Spark reads)")
@click.option("--spark-master", help="--engine spark: the cluster's master URL (default local[*])")
@click.option("--spark-remote", help="--engine spark: a Spark Connect URL (sc://host:15002)")
@click.option("--name", help="run name (default: policy name and time)")
@click.option("--replace", is_flag=True, help="overwrite a run of the same name")
@click.option("--out", type=click.Path(path_type=Path),
              help="also write rows to .parquet/.jsonl (with --input: the output directory, Parquet)")
@memory_limit_option
@output_options
def replay(db: Path | None, policy_path: Path, engine: str, input_path: str | None, spark_master: str | None,
           spark_remote: str | None, name: str | None, replace: bool, out: Path | None, memory_limit: str | None,
           as_json: bool, quiet: bool) -> None:
    """Replay the stored actions through a policy (shadow mode) and store the run; with --input, decide the
    action records in those files (Parquet with DuckDB, out of core; or on Apache Spark) into --out."""
    if engine == "spark":
        if memory_limit is not None:
            raise InputError("`--memory-limit` is for `--engine duckdb` (Spark's memory is its own settings: "
                             "spark.driver.memory, spark.executor.memory)")
        _replay_spark(policy_path, input_path, out, spark_master, spark_remote, db, name, as_json)
        return
    for flag, value in (("--spark-master", spark_master), ("--spark-remote", spark_remote)):
        if value is not None:
            raise InputError(f"`{flag}` needs `--engine spark`")
    if input_path is not None:
        _replay_files(policy_path, input_path, out, memory_limit, db, name, replace, as_json)
        return
    if db is None:
        raise InputError("missing `--db` (the action store; or `--input PATH --out DIR`: Parquet files)")
    if out and out.is_dir():
        raise InputError(f"cannot write `{out}`: it is a directory (use a .parquet or .jsonl file name)")
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import replay as run_replay
    from gatekit.run import export_run

    if out and out.suffix not in _OUT_SUFFIXES:
        raise InputError(f"cannot write `{out}`: use a .parquet or .jsonl file name")
    policy = load_policy(policy_path)
    with Store(_existing(db), memory_limit=memory_limit) as store:
        actions = store.count_actions()
        if actions == 0:
            raise StoreError(f"the store `{db}` has no actions: run `gatekit ingest FILES --db {db}` first")
        with progress(f"replaying {actions:,} actions through `{policy.name}`") as update:
            run = run_replay(store, policy, name, replace=replace)
            if out:
                update(f"writing {out}")
                export_run(store, run.name, out)
    if as_json:
        emit(run.to_dict() | ({"out": str(out)} if out else {}))
        return
    _print_run(run)
    if out:
        note(f"wrote {out}")


def _replay_files(policy_path: Path, input_path: str, out: Path | None, memory_limit: str | None,
                  db: Path | None, name: str | None, replace: bool, as_json: bool) -> None:
    from gatekit.policy import load_policy

    for flag, value in (("--db", db), ("--name", name), ("--replace", replace or None)):
        if value is not None:
            raise InputError(f"`{flag}` is for a replay of the store: `--input` reads files and writes `--out`")
    if out is None:
        raise InputError("`--input` needs `--out DIR` (the decisions are written there as Parquet)")
    policy = load_policy(policy_path)
    from gatekit.lake import replay_files

    with progress(f"replaying `{input_path}` through `{policy.name}`"):
        result = replay_files(policy, input_path, out, memory_limit=memory_limit)
    if as_json:
        emit(result.to_dict())
        return
    _print_files("replay", policy.name, result)


def _print_files(engine: str, policy_name: str, result: Any) -> None:
    click.echo(f"{engine}: policy `{policy_name}` over {result.actions:,} actions in {result.seconds:.2f}s")
    for d in ("allow", "escalate", "deny"):
        share = result.decisions[d] / result.actions if result.actions else 0.0
        click.echo(f"  {d:<9}{result.decisions[d]:>10,}  {percent(share):>6}")
    if result.errored:
        click.echo(f"  {result.errored:,} actions hit a rule that could not be evaluated (they get `on_error`)")
    if result.quarantined:
        click.echo(f"  {result.quarantined:,} records quarantined (in {result.out}/_quarantine):")
        for reason, n in result.reasons[:5]:
            click.echo(f"    {n:>8,}  {reason}")
    note(f"wrote {result.out}")


def _replay_spark(policy_path: Path, input_path: str | None, out: Path | None, master: str | None,
                  remote: str | None, db: Path | None, name: str | None, as_json: bool) -> None:
    from gatekit.policy import load_policy

    if db is not None or name is not None:
        raise InputError(f"`{'--db' if db is not None else '--name'}` is for `--engine duckdb`: "
                         "a Spark replay reads `--input` and writes `--out`")
    if input_path is None:
        raise InputError("`--engine spark` needs `--input PATH` (action records: JSON Lines or Parquet)")
    if out is None:
        raise InputError("`--engine spark` needs `--out DIR` (the decisions are written there as Parquet)")
    if master is not None and remote is not None:
        raise InputError("use `--spark-master` or `--spark-remote`, not both")
    if "://" not in input_path and not Path(input_path).exists():
        raise InputError(f"no input at `{input_path}`")
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write `{out}`: it is a file (`--out` names a directory)")
    policy = load_policy(policy_path)
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        raise InputError('`--engine spark` needs the spark extra: pip install "gatekit[spark]" '
                         "(`pyspark` is not installed)") from None
    from gatekit.spark.io import replay_spark, session

    with progress(f"starting Spark ({remote or master or 'local[*]'})") as update:
        spark = session(master, remote)
        update(f"replaying `{input_path}` through `{policy.name}` on Spark")
        result = replay_spark(spark, policy, input_path, str(out))
    if as_json:
        emit(result.to_dict())
        return
    _print_files("spark replay", policy.name, result)


def _print_run(run: Any) -> None:
    click.echo(f"run `{run.name}`: policy `{run.policy_name}` over {run.actions:,} actions "
               f"in {run.seconds:.2f}s")
    for d in ("allow", "escalate", "deny"):
        click.echo(f"  {d:<9}{run.decisions[d]:>10,}  {percent(run.rate(d)):>6}")
    if run.errored:
        click.echo(f"  {run.errored:,} actions hit a rule that could not be evaluated (they get `on_error`)")


@cli.group(invoke_without_command=True)
@db_option(required=False)
@output_options
@click.pass_context
def runs(ctx: click.Context, db: Path | None, as_json: bool, quiet: bool) -> None:
    """List the stored replay runs (`gatekit runs delete NAME --db PATH` removes one)."""
    from gatekit.logs.store import Store
    from gatekit.run import list_runs

    if ctx.invoked_subcommand is not None:
        return  # `runs delete`: its own options (a --db given here is its default)
    if db is None:
        raise click.UsageError("missing option `--db`", ctx=ctx)
    with Store(db, read_only=True) as store:
        found = list_runs(store)
    if as_json:
        emit({"runs": [r.to_dict() for r in found]})
        return
    if not found:
        click.echo("no runs yet: run `gatekit replay --db ... --policy ...`")
        return
    click.echo("run\tpolicy\tactions\tescalate\tdeny")
    for r in found:
        click.echo(f"{r.name}\t{r.policy_name}\t{r.actions:,}\t{percent(r.rate('escalate'))}"
                   f"\t{percent(r.rate('deny'))}")


@runs.command("delete")
@click.argument("name")
@db_option(required=False)
@output_options
@click.pass_context
def runs_delete(ctx: click.Context, name: str, db: Path | None, as_json: bool, quiet: bool) -> None:
    """Remove the stored run NAME and its decisions (the actions stay)."""
    from gatekit.logs.store import Store
    from gatekit.replay import delete_run

    db = db or (ctx.parent.params.get("db") if ctx.parent else None)
    if db is None:
        raise click.UsageError("missing option `--db`", ctx=ctx)
    with Store(_existing(db)) as store:
        run = delete_run(store, name)
    if as_json:
        emit({"deleted": run.to_dict()})
        return
    click.echo(f"deleted run `{run.name}` (policy `{run.policy_name}`, {run.actions:,} actions)")


# ---- analytics ---------------------------------------------------------------------------------------
@cli.command()
@db_option(required=False, help="the action store (DuckDB; --engine duckdb)")
@run_option(help="the run to report on")
@click.option("--against", help="also compare with this earlier run (A) as B = --run "
              "(--engine spark: a policy FILE, A, against --policy as B)")
@sweep_option
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="write standalone HTML")
@click.option("--engine", type=click.Choice(_ENGINES), default="duckdb", show_default=True,
              help="duckdb: report on a stored run; spark: compute the report's rates, labels and transitions "
              "in Spark over --input decided by --policy")
@click.option("--input", "input_path", help="--engine spark: action records (JSON Lines or Parquet, a file or a "
              "directory, any path Spark reads)")
@policy_option(required=False, help="--engine spark: the policy (B) to report on")
@click.option("--decisions", "decisions_path", help="--engine spark: the decisions `replay --engine spark` wrote "
              "for --policy (read instead of deciding again)")
@click.option("--spark-master", help="--engine spark: the cluster's master URL (default local[*])")
@click.option("--spark-remote", help="--engine spark: a Spark Connect URL (sc://host:15002)")
@memory_limit_option
@output_options
def report(db: Path | None, run_name: str | None, against: str | None, sweep: tuple[str, str] | None,
           html_out: Path | None, engine: str, input_path: str | None, policy_path: Path | None,
           decisions_path: str | None, spark_master: str | None, spark_remote: str | None,
           memory_limit: str | None, as_json: bool, quiet: bool) -> None:
    """Everything the run would have done: decisions, workload, drift, reviewers, controls, labels (with
    --engine spark: decisions, workload, labels and A against B, computed in Spark)."""
    from gatekit.report import render_html, render_text

    if engine == "spark":
        if memory_limit is not None:
            raise InputError("`--memory-limit` is for `--engine duckdb` (Spark's memory is its own settings: "
                             "spark.driver.memory, spark.executor.memory)")
        rep = _report_spark(db, run_name, sweep, input_path, policy_path, against, decisions_path, spark_master,
                            spark_remote)
    else:
        for flag, value in (("--input", input_path), ("--policy", policy_path), ("--decisions", decisions_path),
                            ("--spark-master", spark_master), ("--spark-remote", spark_remote)):
            if value is not None:
                raise InputError(f"`{flag}` needs `--engine spark`")
        if db is None:
            raise InputError("missing `--db` (the action store; or `--engine spark --input PATH --policy FILE`)")
        rep = _report_duckdb(db, run_name, against, sweep, memory_limit)
    data = rep.to_dict()
    if html_out:
        write_text(html_out, render_html(rep, data))
        note(f"wrote {html_out}")
    if as_json:
        emit(data)
    elif not html_out:
        click.echo(render_text(rep))


def _report_duckdb(db: Path, run_name: str | None, against: str | None, sweep: tuple[str, str] | None,
                   memory_limit: str | None = None) -> Any:
    from gatekit.logs.store import Store
    from gatekit.report import build_report
    from gatekit.run import list_runs

    with Store(db, read_only=True, memory_limit=memory_limit) as store:
        run_name = only_run(run_name, [r.name for r in list_runs(store)])
        with progress(f"reporting on `{run_name}`") as update:
            return build_report(store, run_name, against=against, sweep=tuple(sweep) if sweep else None,
                                progress=update)


def _report_spark(db: Path | None, run_name: str | None, sweep: Any, input_path: str | None,
                  policy_path: Path | None, against: str | None, decisions_path: str | None, master: str | None,
                  remote: str | None) -> Any:
    from gatekit.policy import load_policy

    for flag, value in (("--db", db), ("--run", run_name), ("--sweep", sweep)):
        if value:
            raise InputError(f"`{flag}` is for `--engine duckdb`: a Spark report reads `--input` and `--policy`")
    if input_path is None:
        raise InputError("`--engine spark` needs `--input PATH` (action records: JSON Lines or Parquet)")
    if policy_path is None:
        raise InputError("`--engine spark` needs `--policy FILE` (the policy to report on)")
    if master is not None and remote is not None:
        raise InputError("use `--spark-master` or `--spark-remote`, not both")
    for flag, path in (("--input", input_path), ("--decisions", decisions_path)):
        if path is not None and "://" not in path and not Path(path).exists():
            raise InputError(f"no {'input' if flag == '--input' else 'decisions'} at `{path}`")
    if against is not None and not Path(against).is_file():
        raise InputError(f"`--against` with `--engine spark` is a policy file: no file `{against}`")
    policy = load_policy(policy_path)
    policy_a = load_policy(against) if against is not None else None
    spark = _spark_session(master, remote)
    from gatekit.spark.io import read_actions
    from gatekit.spark.metrics import spark_report

    with progress(f"reporting on `{input_path}` with `{policy.name}` on Spark"):
        decisions = spark.read.parquet(decisions_path) if decisions_path else None
        return spark_report(spark, read_actions(spark, input_path), policy, against=policy_a, decisions=decisions,
                            source=input_path)


def _spark_session(master: str | None, remote: str | None) -> Any:
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        raise InputError('`--engine spark` needs the spark extra: pip install "gatekit[spark]" '
                         "(`pyspark` is not installed)") from None
    from gatekit.spark.io import session

    with progress(f"starting Spark ({remote or master or 'local[*]'})"):
        return session(master, remote)


@cli.command()
@db_option()
@policy_option(required=False, multiple=True, help="two policy files, A then B (replayed now)")
@run_option(required=False, multiple=True, help="or two stored runs, A then B")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="example actions per cell")
@click.option("--keep", is_flag=True, help="with --policy: store the two runs (as NAME@FINGERPRINT)")
@output_options
def diff(db: Path, policies: tuple[Path, ...], runs_: tuple[str, ...], examples: int, keep: bool, as_json: bool,
         quiet: bool) -> None:
    """Policy A against B on the same actions: the decision transition matrix and what changed."""
    from gatekit.logs.store import Store
    from gatekit.metrics.diff import diff_policies, summarize_diff
    from gatekit.policy import load_policy
    from gatekit.run import Reader

    if (len(policies), len(runs_)) not in ((2, 0), (0, 2)):
        raise click.UsageError("give exactly two --policy files or two --run names")
    if keep and not policies:
        raise click.UsageError("`--keep` stores the runs of two --policy files: --run names are stored already")
    with progress("comparing") as update:
        if policies:
            pa, pb = (load_policy(p) for p in policies)
            update(f"replaying `{pa.name}` and `{pb.name}`")
            with Store(_existing(db)) as store:
                summary = diff_policies(store, pa, pb, examples=examples, keep=keep)
        else:
            update(f"`{runs_[0]}` against `{runs_[1]}`")
            with Store(db, read_only=True) as store:
                reader = Reader(store)
                summary = summarize_diff(reader.run(runs_[0]), reader.run(runs_[1]), examples=examples)
    if as_json:
        emit(summary.to_dict())
        return
    for line in diff_lines(summary):
        click.echo(line)
    if policies and not keep:
        note("the two runs were not stored: `--keep` keeps them for `gatekit report` and the dashboard")


_DECISIONS = ("allow", "escalate", "deny")


def diff_lines(summary: Any) -> list[str]:
    """A `DiffSummary` for a terminal: the headline, the matrix, each changed cell with the rules behind it
    and examples, and each change of the policy files with its before and after."""
    rate = summary.changed / summary.actions if summary.actions else None
    out = [f"A = `{summary.run_a}` (policy `{summary.policy_a}`), B = `{summary.run_b}` (policy "
           f"`{summary.policy_b}`): {summary.changed:,} of {summary.actions:,} actions change decision "
           f"({percent(rate)})"]
    if summary.only_a or summary.only_b:
        out.append(f"  not in both runs: {summary.only_a:,} only in A, {summary.only_b:,} only in B")
    cells = {(c["from"], c["to"]): c for c in summary.matrix.iter_rows(named=True)}
    out.append("A \\ B".ljust(10) + "".join(f"{d:>10}" for d in _DECISIONS))
    for a in _DECISIONS:
        out.append(f"{a:<10}" + "".join(f"{cells[(a, b)]['count'] if (a, b) in cells else 0:>10,}"
                                        for b in _DECISIONS))
    moved = [c for c in cells.values() if c["changed"] and c["count"]]
    if moved:
        out.append("changed cells:")
    for c in sorted(moved, key=lambda c: -c["count"]):
        why = "; ".join(part for part in (
            f"B adds {', '.join(f'`{r}`' for r in c['rules_added'])}" if c["rules_added"] else "",
            f"B drops {', '.join(f'`{r}`' for r in c['rules_removed'])}" if c["rules_removed"] else "") if part)
        out.append(f"  {c['from']} -> {c['to']}: {c['count']:,}" + (f" ({why})" if why else "")
                   + (f"; e.g. {', '.join(c['examples'])}" if c["examples"] else ""))
    changes = list(summary.policy_diff.iter_rows(named=True))
    if changes:
        out.append("policy changes (A -> B):")
    else:
        out.append("the two policy files mean the same")
    for ch in changes:
        what = "policy" if ch["section"] == "policy" else f"{ch['section']} `{ch['id']}`"
        if ch["change"] == "changed":
            out.append(f"  changed: {what} `{ch['key']}`: {ch['before']} -> {ch['after']}")
        elif ch["change"] == "added":
            out.append(f"  added: {what}: {ch['after']}")
        else:
            out.append(f"  removed: {what}: {ch['before']}")
    return out


@cli.command()
@db_option()
@run_option()
@sweep_option
@output_options
def evaluate(db: Path, run_name: str | None, sweep: tuple[str, str] | None, as_json: bool, quiet: bool) -> None:
    """Score a run against labels: harm caught versus humans bothered."""
    from gatekit.logs.store import Store
    from gatekit.metrics.evaluate import evaluate as run_evaluate
    from gatekit.run import list_runs, load_run

    with Store(db, read_only=True) as store:
        run_name = only_run(run_name, [r.name for r in list_runs(store)])
        with progress(f"scoring `{run_name}`"):
            result = run_evaluate(load_run(store, run_name), sweep=tuple(sweep) if sweep else None)
    if as_json:
        emit(result.to_dict())
        return
    for line in evaluation_lines(result):
        click.echo(line)


@cli.command()
@db_option()
@policy_option(help="the policy to check (replayed now; the run is not stored)")
@click.option("--max-escalation-rate", type=float, metavar="F", help="fail when more than F of the actions escalate")
@click.option("--min-catch", type=float, metavar="F", help="fail when less than F of the harmful actions are caught")
@click.option("--max-bother", type=float, metavar="F",
              help="fail when more than F of the benign actions bother a human")
@click.option("--against", metavar="RUN", help="a stored run to compare with (with --max-changed)")
@click.option("--max-changed", type=float, metavar="F",
              help="fail when more than F of the actions change decision against --against")
@output_options
def check(db: Path, policy_path: Path, max_escalation_rate: float | None, min_catch: float | None,
          max_bother: float | None, against: str | None, max_changed: float | None, as_json: bool,
          quiet: bool) -> Checked:
    """CI gates: replay the policy over the store and exit 1 when a threshold breaks (catch and bother
    need labels)."""
    from gatekit.authoring import check_policy
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy

    policy = load_policy(policy_path)
    with Store(_existing(db)) as store, progress(f"checking `{policy.name}`"):
        result = check_policy(store, policy, max_escalation_rate=max_escalation_rate, min_catch=min_catch,
                              max_bother=max_bother, against=against, max_changed=max_changed)
    if as_json:
        emit(result.to_dict())
    else:
        for line in check_lines(result):
            click.echo(line)
    return Checked(result)


def check_lines(result: Any) -> list[str]:
    """A `CheckResult` for a terminal: a headline, then each gate on one line: name, threshold, value, PASS/FAIL."""
    out = [f"policy `{result.policy}` over {count(result.actions)} actions:"]
    width = max(len(g.name) for g in result.gates)
    for g in result.gates:
        sign = "<=" if g.bound == "max" else ">="
        out.append(f"  {g.name:<{width}}  {sign} {percent(g.threshold):>6}  {percent(g.value):>6}  "
                   f"{'PASS' if g.passed else 'FAIL'}  ({g.detail})")
    return out


_SHOWN_RULES = 15


def evaluation_lines(result: Any) -> list[str]:
    """An `Evaluation` for a terminal: the headline, the rules that caught or bothered most, the sweep."""
    if not (result.harmful or result.benign):
        return ["no labelled actions in the store: add `label: harmful|benign` to score a policy"]
    out = [f"run `{result.run}`: caught {result.caught:,} of {result.harmful:,} harmful "
           f"({percent(result.catch_rate)}), missed {result.harmful - result.caught:,}; bothered "
           f"{result.bothered:,} of {result.benign:,} benign ({percent(result.bother_rate)})"]
    rules = list(result.by_rule.iter_rows(named=True))
    for row in rules[:_SHOWN_RULES]:
        out.append(f"  {row['rule']:<32} caught {row.get('caught') or 0:>6,}  missed {row.get('missed') or 0:>6,}"
                   f"  bothered {row.get('bothered') or 0:>6,}")
    if len(rules) > _SHOWN_RULES:
        out.append(f"  ... {len(rules) - _SHOWN_RULES} more rules (all of them: --json)")
    if result.sweep is not None:
        sw = result.sweep
        out.append(f"threshold sweep of `{sw.rule}` {sw.field} {sw.op} (now {sw.current:,g}):")
        for point in sw.curve.iter_rows(named=True):
            out.append(f"  {point['threshold']:>14,.2f}  caught {point['caught']:>6,}  "
                       f"bothered {point['bothered']:>6,}")
    return out


# ---- sample data and the demo ------------------------------------------------------------------------
@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n_actions", default=20000, show_default=True, type=click.IntRange(min=1),
              help="number of actions")
@click.option("--seed", default=7, show_default=True)
@output_options
def sample(out: Path, n_actions: int, seed: int, as_json: bool, quiet: bool) -> None:
    """Generate realistic synthetic agent logs (seeded, deterministic)."""
    from gatekit.sample import write_sample

    with progress(f"generating {n_actions:,} actions"):
        try:
            written = write_sample(out, n_actions=n_actions, seed=seed)
        except OSError as exc:
            raise InputError(f"cannot write to `{out}`: {exc.strerror or exc}") from None
    logs = [p for p in written if p.suffix == ".jsonl"]
    if as_json:
        emit({"out": str(out), "actions": n_actions, "seed": seed, "files": [str(p) for p in written]})
        return
    click.echo(f"wrote {n_actions:,} actions to {len(logs)} log file(s) in {out} (and PLANTED.json, SEED)")


@cli.command()
@db_option(required=False, default="gatekit-demo.duckdb", show_default=True)
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path),
              help="default: the sample logs bundled with gatekit")
@policy_option(required=False, help="default: the bundled starter policy (policies/starter.yaml)")
@output_options
def demo(db: Path, logs: Path | None, policy_path: Path | None, as_json: bool, quiet: bool) -> None:
    """Build a store from the sample logs, replay the starter policy in shadow mode, and summarise."""
    from gatekit._install import bundled, require

    require("shadow", "gatekit demo")
    from gatekit.logs import ingest as run_ingest
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import replay as run_replay
    from gatekit.run import top_rules

    logs = logs or bundled("sample_logs")
    policy_path = policy_path or bundled("policies") / "starter.yaml"
    policy = load_policy(policy_path)
    if not logs.exists():  # before the store is opened, so a typo leaves no empty store behind
        raise LogFormatError(f"cannot read `{logs}`: no such file or directory")
    with Store(db) as store, progress("demo") as update:
        update(f"ingesting {logs}")
        report = run_ingest(store, [logs])
        update(f"replaying `{policy.name}`")
        run = run_replay(store, policy, "starter", replace=True)
        top = top_rules(store, run.name)
    if as_json:
        emit({"ingest": report.to_dict(), "run": run.to_dict(), "db": str(db)})
        return
    click.echo(f"ingested {logs}: read {report.read:,}, stored {report.stored:,}, "
               f"quarantined {report.quarantined:,}, duplicates {report.duplicates:,} -> {db}")
    _print_run(run)
    click.echo("  top rules:")
    for rule_id, count in top:
        rule = policy.rule(rule_id)
        action = rule.action + (" (shadow)" if not rule.enforced else "")
        click.echo(f"    {rule_id:<32}{action:<18}{count:>8,}")
    strict = _shown(bundled("policies") / "starter-strict.yaml")
    policy_path = _shown(policy_path)
    click.echo("\nnext:")
    click.echo(f"  gatekit runs --db {db}")
    click.echo(f"  gatekit report --db {db} --run starter")
    click.echo(f"  gatekit replay --db {db} --policy {strict} --name strict")
    click.echo(f"  gatekit diff --db {db} --run starter --run strict")
    dashboard = "" if importlib.util.find_spec("streamlit") else '   # after: pip install "gatekit[dashboard]"'
    click.echo(f"  gatekit dashboard --db {db}{dashboard}")
    click.echo(f"  gatekit validate {policy_path}")
    click.echo(f"  gatekit decide --policy {policy_path} '{{\"tool\": \"payment.send\", \"args\": {{\"amount\": 250}}}}'")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _register() -> None:
    """Command groups that live beside their library (enforce mode); imported lazily by click at run."""
    from gatekit.dashboard import dashboard_command
    from gatekit.enforce.commands import approvals, audit
    from gatekit.mcp.commands import mcp
    from gatekit.server.commands import principals, serve

    cli.add_command(approvals)
    cli.add_command(audit)
    cli.add_command(serve)
    cli.add_command(principals)
    cli.add_command(dashboard_command)
    cli.add_command(mcp)


_register()

if __name__ == "__main__":
    main()


@cli.command("tune")
@db_option()
@policy_option(help="the policy to start from")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the tuned policy (YAML, every change commented with its evidence)")
@click.option("--max-bother", type=click.FloatRange(0, 1), default=None,
              help="the largest bother rate (benign calls stopped / benign calls) allowed on train")
@click.option("--target", type=click.Choice(["labels", "reviews"]), default=None,
              help="learn from labels or from reviewers' decisions (default: labels when the store has any)")
@click.option("--split", type=click.Choice(["session", "time"]), default="session",
              help="validate on 30% by a hash of the session id, or the latest 30% by time")
@click.option("--holdout", default=None, metavar="FIELD=VALUE",
              help="leave out the actions whose agent, session, user or tool has this value and report their "
                   "figures (never used to choose; --split then divides the rest into train and validation)")
@click.option("--catalog", "catalog_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="a catalog (gatekit catalog) whose high-risk tools (impact: high, irreversible) start gated")
@output_options
def tune_cmd(db: Path, policy_path: Path, out: Path, max_bother: float | None, target: str | None, split: str,
             holdout: str | None, catalog_path: Path | None, as_json: bool, quiet: bool) -> None:
    """Propose a policy that catches more harm and bothers fewer people, evaluated on held-out actions."""
    from gatekit.authoring import tune
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy

    held = None
    if holdout is not None:
        key, sep, value = holdout.partition("=")
        if not sep or not value:
            raise InputError(f"`--holdout` is FIELD=VALUE (agent=MODEL), not `{holdout}`")
        held = (key, value)
    policy = load_policy(policy_path)
    catalog = _catalog(catalog_path)
    with Store(_existing(db)) as store:
        with progress("tuning"):
            result = tune(store, policy, max_bother=max_bother, target=target, split=split, holdout=held,
                          catalog=catalog)
        write_text(out, result.text)
        from gatekit.run import save_tuning

        save_tuning(store, {"policy": policy.name, "out": str(out), **result.to_dict()})
    if as_json:
        emit({"out": str(out), **result.to_dict()})
        return
    if not quiet:
        parts = [("train", result.train_before, result.train_after)]
        if held is not None and result.validation_before is not None and result.validation_after is not None:
            parts.append((f"validation ({result.validation})", result.validation_before, result.validation_after))
        parts.append((f"held-out ({result.split})" if held is not None else "held-out", result.heldout_before,
                      result.heldout_after))
        for part, before, after in parts:
            click.echo(f"{part}: caught {before.caught:,} -> {after.caught:,} of {after.harmful:,} "
                       f"({percent(before.catch_rate)} -> {percent(after.catch_rate)}), bothered "
                       f"{before.bothered:,} -> {after.bothered:,} of {after.benign:,} "
                       f"({percent(before.bother_rate)} -> {percent(after.bother_rate)}), escalation "
                       f"{percent(before.escalation_rate)} -> {percent(after.escalation_rate)}")
        kept = [c for c in result.changes if c.kept]
        click.echo(f"{len(kept)} of {len(result.changes)} changes chosen on train kept on "
                   f"{'validation; the held-out actions were only scored' if held is not None else 'held-out'} "
                   f"({result.tried:,} candidates tried)")
        for c in result.changes:
            click.echo(f"  {'kept   ' if c.kept else 'dropped'} {c.kind:<9} {c.rule}: {c.summary}")
    note(f"wrote {out}")
