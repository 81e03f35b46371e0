"""The command line. Thin: parses options, calls the library, prints; the one place errors become exit codes."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from gatekit.errors import ApprovalError, GatekitError, LogFormatError, PolicyError, StoreError

# exit codes, one per error branch
EXIT_POLICY, EXIT_STORE, EXIT_LOGS, EXIT_APPROVAL, EXIT_OTHER = 3, 4, 5, 6, 1
_CODES = {PolicyError: EXIT_POLICY, StoreError: EXIT_STORE, LogFormatError: EXIT_LOGS, ApprovalError: EXIT_APPROVAL}

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_POLICY)
    except GatekitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(next((c for t, c in _CODES.items() if isinstance(exc, t)), EXIT_OTHER))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatekit")
def cli() -> None:
    """gatekit: decide which agent actions need a human, from evidence, then enforce the same policy."""


def _emit(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, or a no-op when quiet or not a terminal-worthy job."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield update


# ---- policy ------------------------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check policy files; print every problem as FILE:LINE: message."""
    from gatekit.policy import load_policy

    problems = []
    for f in files:
        try:
            load_policy(f)
        except PolicyError as exc:
            problems.extend(exc.problems)
    if as_json:
        _emit({"valid": not problems, "problems": [
            {"file": p.file, "line": p.line, "code": p.code, "message": p.msg} for p in problems]})
    else:
        for p in problems:
            click.echo(str(p))
        if not problems:
            click.echo(f"ok: {len(files)} polic{'y' if len(files) == 1 else 'ies'} valid", err=True)
    if problems:
        sys.exit(EXIT_POLICY)


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write to this file")
def schema(out: Path | None) -> None:
    """Print the JSON Schema of policy files, for editor autocompletion."""
    from gatekit.policy.schema import json_schema

    text = json.dumps(json_schema(), indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text)


@cli.command("decide")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("action", default="-")
def decide_cmd(policy_path: Path, action: str) -> None:
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
    _emit(decide(policy, record).to_dict())


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
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path), help="the action store")
@click.option("--format", "fmt", type=_Formats(), help="input format (default: detected per file)")
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
              help="a mapping file: which field of each line holds tool, args, ts, agent, ...")
@click.option("--json", "as_json", is_flag=True, help="print the counts as JSON")
@click.option("--quiet", is_flag=True, help="no progress bar")
def ingest(files: tuple[Path, ...], db: Path, fmt: str | None, mapping: Path | None, as_json: bool,
           quiet: bool) -> None:
    """Read logs and agent traces into the store; what cannot be read goes to quarantine with its reason."""
    from gatekit.logs import ingest as run_ingest
    from gatekit.logs.store import Store

    with Store(db) as store, _progress("ingesting", quiet or as_json) as progress:
        report = run_ingest(store, files, format=fmt, mapping=mapping, progress=progress)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(f"read {report.read}, stored {report.stored}, quarantined {report.quarantined}, "
                   f"duplicates {report.duplicates} ({report.files} file{'s' if report.files != 1 else ''})")
        if report.quarantined:
            click.echo(f"see why: duckdb {db} \"SELECT source, source_line, reason FROM quarantine\"", err=True)


@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="run name (default: policy name and time)")
@click.option("--replace", is_flag=True, help="overwrite a run of the same name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="also write rows to .parquet/.jsonl")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def replay(db: Path, policy_path: Path, name: str | None, replace: bool, out: Path | None, as_json: bool,
           quiet: bool) -> None:
    """Replay the stored actions through a policy (shadow mode) and store the run."""
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import export_run, replay as run_replay

    policy = load_policy(policy_path)
    with Store(db) as store:
        if store.count_actions() == 0:
            raise StoreError(f"the store `{db}` has no actions: run `gatekit ingest FILES --db {db}` first")
        run = run_replay(store, policy, name, replace=replace)
        if out:
            export_run(store, run.name, out)
    if as_json:
        _emit(run.to_dict() | ({"out": str(out)} if out else {}))
        return
    _print_run(run)
    if out and not quiet:
        click.echo(f"wrote {out}", err=True)


def _print_run(run: Any) -> None:
    click.echo(f"run `{run.name}`: policy `{run.policy_name}` over {run.actions:,} actions "
               f"in {run.seconds:.2f}s")
    for d in ("allow", "escalate", "deny"):
        click.echo(f"  {d:<9}{run.decisions[d]:>10,}  {100 * run.rate(d):6.2f}%")
    if run.errored:
        click.echo(f"  {run.errored:,} actions hit a rule that could not be evaluated (they get `on_error`)")


@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def runs(db: Path, as_json: bool) -> None:
    """List the stored replay runs."""
    from gatekit.logs.store import Store
    from gatekit.replay import list_runs

    with Store(db, read_only=True) as store:
        found = list_runs(store)
    if as_json:
        _emit({"runs": [r.to_dict() for r in found]})
        return
    if not found:
        click.echo("no runs yet: run `gatekit replay --db ... --policy ...`")
    for r in found:
        click.echo(f"{r.name}\t{r.policy_name}\t{r.actions:,} actions\tescalate {100 * r.rate('escalate'):.1f}%"
                   f"\tdeny {100 * r.rate('deny'):.1f}%")


# ---- analytics ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run", "run_name", required=True, help="the run to report on")
@click.option("--against", help="also compare with this earlier run (A) as B = --run")
@click.option("--sweep", nargs=2, metavar="RULE FIELD", help="threshold curve of RULE's numeric test on FIELD")
@click.option("--json", "as_json", is_flag=True, help="print the whole report as JSON")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="write standalone HTML")
def report(db: Path, run_name: str, against: str | None, sweep: tuple[str, str] | None, as_json: bool,
           html_out: Path | None) -> None:
    """Everything the run would have done: decisions, workload, drift, reviewers, controls, labels."""
    from gatekit.logs.store import Store
    from gatekit.report import build_report, render_html, render_text

    with Store(db, read_only=True) as store:
        rep = build_report(store, run_name, against=against, sweep=tuple(sweep) if sweep else None)
    data = rep.to_dict()
    if html_out:
        html_out.write_text(render_html(rep, data), encoding="utf-8")
        click.echo(f"wrote {html_out}", err=True)
    if as_json:
        _emit(data)
    elif not html_out:
        click.echo(render_text(rep))


@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policies", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="two policy files, A then B (replayed now)")
@click.option("--run", "runs_", multiple=True, help="or two stored runs, A then B")
@click.option("--examples", default=5, show_default=True, help="example actions per cell")
@click.option("--json", "as_json", is_flag=True)
def diff(db: Path, policies: tuple[Path, ...], runs_: tuple[str, ...], examples: int, as_json: bool) -> None:
    """Policy A against B on the same actions: the decision transition matrix and what changed."""
    from gatekit.logs.store import Store
    from gatekit.metrics.diff import replay_policies, summarize_diff
    from gatekit.policy import load_policy

    if (len(policies), len(runs_)) not in ((2, 0), (0, 2)):
        raise click.UsageError("give exactly two --policy files or two --run names")
    if policies:
        pa, pb = (load_policy(p) for p in policies)
        with Store(db) as store:
            run_a, run_b = replay_policies(store, pa, pb)
    else:
        run_a, run_b = runs_
    with Store(db, read_only=True) as store:
        summary = summarize_diff(store, run_a, run_b, examples=examples)
    data = summary.to_dict()
    if as_json:
        _emit(data)
        return
    click.echo(f"A = `{run_a}`, B = `{run_b}`: {data['changed']:,} of {data['actions']:,} actions change "
               f"decision ({100 * (data['changed_rate'] or 0):.2f}%)")
    click.echo("A \\ B".ljust(10) + "".join(f"{d:>10}" for d in ("allow", "escalate", "deny")))
    cells = {(c["from"], c["to"]): c["count"] for c in data["matrix"]}
    for a in ("allow", "escalate", "deny"):
        click.echo(f"{a:<10}" + "".join(f"{cells.get((a, b), 0):>10,}" for b in ("allow", "escalate", "deny")))
    for change in data["policy_diff"]:
        click.echo(f"  {change.get('change')}: {change.get('kind', 'rule')} `{change.get('id') or change.get('name')}`"
                   + (f" ({change['keys']})" if change.get("keys") else ""))


@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run", "run_name", required=True)
@click.option("--sweep", nargs=2, metavar="RULE FIELD", help="threshold curve of RULE's numeric test on FIELD")
@click.option("--json", "as_json", is_flag=True)
def evaluate(db: Path, run_name: str, sweep: tuple[str, str] | None, as_json: bool) -> None:
    """Score a run against labels: harm caught versus humans bothered."""
    from gatekit.logs.store import Store
    from gatekit.metrics.evaluate import evaluate as run_evaluate

    with Store(db, read_only=True) as store:
        result = run_evaluate(store, run_name, sweep=tuple(sweep) if sweep else None)
    data = result.to_dict()
    if as_json:
        _emit(data)
        return
    if not (data["harmful"] or data["benign"]):
        click.echo("no labelled actions in the store: add `label: harmful|benign` to score a policy")
        return
    click.echo(f"run `{run_name}`: caught {data['caught']:,} of {data['harmful']:,} harmful "
               f"({100 * (data['catch_rate'] or 0):.1f}%), bothered {data['bothered']:,} of {data['benign']:,} "
               f"benign ({100 * (data['bother_rate'] or 0):.1f}%)")
    for row in data["by_rule"][:15]:
        click.echo(f"  {row['rule']:<32} caught {row.get('caught', 0):>6,}  bothered {row.get('bothered', 0):>6,}")
    if data.get("sweep"):
        sw = data["sweep"]
        click.echo(f"threshold sweep of `{sw['rule']}` {sw['field']} {sw['op']} (now {sw['current']}):")
        for point in sw["curve"]:
            click.echo(f"  {point['threshold']:>14,.2f}  caught {point['caught']:>6,}  bothered {point['bothered']:>6,}")


# ---- sample data and the demo ------------------------------------------------------------------------
@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n_actions", default=20000, show_default=True, help="number of actions")
@click.option("--seed", default=7, show_default=True)
def sample(out: Path, n_actions: int, seed: int) -> None:
    """Generate realistic synthetic agent logs (seeded, deterministic)."""
    from gatekit.sample import write_sample

    logs = [p for p in write_sample(out, n_actions=n_actions, seed=seed) if p.suffix == ".jsonl"]
    click.echo(f"wrote {n_actions:,} actions to {len(logs)} log file(s) in {out} (and PLANTED.json, SEED)")


@cli.command()
@click.option("--db", default="gatekit-demo.duckdb", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), help="default: the bundled sample_logs/")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path),
              help="default: policies/starter.yaml")
@click.option("--json", "as_json", is_flag=True)
def demo(db: Path, logs: Path | None, policy_path: Path | None, as_json: bool) -> None:
    """Build a store from the sample logs, replay the starter policy in shadow mode, and summarise."""
    from gatekit.logs import ingest as run_ingest
    from gatekit.logs.store import Store
    from gatekit.policy import load_policy
    from gatekit.replay import replay as run_replay

    logs = logs or _bundled("sample_logs")
    policy_path = policy_path or _bundled("policies/starter.yaml")
    policy = load_policy(policy_path)
    with Store(db) as store:
        report = run_ingest(store, [logs])
        run = run_replay(store, policy, "starter", replace=True)
    if as_json:
        _emit({"ingest": report.to_dict(), "run": run.to_dict(), "db": str(db)})
        return
    click.echo(f"ingested {logs}: read {report.read:,}, stored {report.stored:,}, "
               f"quarantined {report.quarantined:,}, duplicates {report.duplicates:,} -> {db}")
    _print_run(run)
    click.echo("  top rules:")
    for rule_id, count in top_rules(store_path=db, run=run.name):
        rule = policy.rule(rule_id)
        action = rule.action + (" (shadow)" if not rule.enforced else "")
        click.echo(f"    {rule_id:<32}{action:<18}{count:>8,}")
    strict = _shown(_bundled("policies/starter-strict.yaml")) if (REPO / "policies").exists() else "STRICTER.yaml"
    policy_path = _shown(policy_path)
    click.echo("\nnext:")
    click.echo(f"  gatekit runs --db {db}")
    click.echo(f"  gatekit replay --db {db} --policy {strict} --name strict")
    click.echo(f"  gatekit validate {policy_path}")
    click.echo(f"  gatekit decide --policy {policy_path} '{{\"tool\": \"payment.send\", \"args\": {{\"amount\": 250}}}}'")


def top_rules(store_path: Path, run: str, limit: int = 8) -> list[tuple[str, int]]:
    """The rules that matched most often in a run."""
    from gatekit.logs.store import Store

    with Store(store_path, read_only=True) as store:
        return [tuple(r) for r in store.con.execute(
            "SELECT rule, count(*) AS n FROM (SELECT unnest(rules) AS rule FROM decisions WHERE run = ?) "
            "GROUP BY rule ORDER BY n DESC, rule LIMIT ?", [run, limit]).fetchall()]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _bundled(rel: str) -> Path:
    for base in (Path.cwd(), REPO):
        if (base / rel).exists():
            return base / rel
    raise GatekitError(f"cannot find `{rel}`: run from a gatekit checkout, or pass it explicitly")


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
