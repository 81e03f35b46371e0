"""Each kind of change docs/architecture.md describes touches the places it names; these tests fail when one
is missed (a metric, a condition test, a CLI command, an approvals-service route), and the page itself names
only tests that exist. Adapters and dashboard pages have theirs beside them (tests/adapters/test_formats.py,
tests/dashboard/test_navigation.py), as do the dispatch tables of the two evaluators (tests/policy)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path
from types import ModuleType

import click
import pytest

import gatekit.metrics
from gatekit import cli
from gatekit.policy import conditions
from gatekit.run import Run

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


# ---- metrics: a summary of a loaded Run, part of `gatekit report`, documented -----------------------------
def _metric_modules() -> dict[str, ModuleType]:
    return {info.name: importlib.import_module(f"gatekit.metrics.{info.name}")
            for info in pkgutil.iter_modules(gatekit.metrics.__path__) if not info.name.startswith("_")}


def _summaries(module: ModuleType) -> dict[type, object]:
    """The module's summary classes (dataclasses it defines that one of its public functions returns), each
    with that function."""
    out = {}
    for name, fn in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
            continue
        returned = typing.get_type_hints(fn).get("return")
        if dataclasses.is_dataclass(returned) and returned.__module__ == module.__name__:
            out[returned] = fn
    return out


def _types_in(hint: object) -> set[type]:
    """The classes a field's annotation names (`X | None` -> {X})."""
    args = typing.get_args(hint)
    return set().union(*map(_types_in, args)) if args else ({hint} if isinstance(hint, type) else set())


def _top_level(module: ModuleType) -> dict[type, object]:
    """Summaries not nested in another summary of the same module (`Sweep` is a field of `Evaluation`)."""
    found = _summaries(module)
    nested = {t for cls in found for hint in typing.get_type_hints(cls).values() for t in _types_in(hint)}
    return {cls: fn for cls, fn in found.items() if cls not in nested}


METRICS = _metric_modules()


def test_the_metric_modules_are_found() -> None:
    assert {"rates", "drift", "fatigue", "controls", "evaluate", "diff"} <= set(METRICS)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_each_metric_has_one_summary_of_a_loaded_run(name: str) -> None:
    top = _top_level(METRICS[name])
    assert len(top) == 1, f"gatekit.metrics.{name} must have one summary (a dataclass a function returns): {top}"
    for fn in _summaries(METRICS[name]).values():
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
        assert params and hints.get(params[0].name) is Run, \
            f"`{fn.__name__}` must take a loaded `Run` (gatekit.run) first: metrics read nothing from a store"


def test_every_metric_is_part_of_the_report() -> None:
    from gatekit.report import SECTIONS, Report, build_report

    fields = {f.name: _types_in(typing.get_type_hints(Report)[f.name]) for f in dataclasses.fields(Report)}
    in_report = set().union(*fields.values())
    calls = {node.func.id for node in ast.walk(ast.parse(inspect.getsource(build_report)))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    for name, module in METRICS.items():
        ((cls, fn),) = _top_level(module).items()
        assert cls in in_report, f"`Report` has no field of `{cls.__name__}` (gatekit.metrics.{name})"
        assert fn.__name__ in calls, f"`build_report` does not call `{fn.__name__}`"
    # every field but the run has its section of the terminal text
    assert set(SECTIONS) == set(fields) - {"run"}, "gatekit/report.py's SECTIONS misses a field of `Report`"


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_documented(name: str) -> None:
    ((cls, fn),) = _top_level(METRICS[name]).items()
    for text in (f"`{name}`", f"`{fn.__name__}`", f"`{cls.__name__}`"):
        assert text in ARCHITECTURE, f"docs/architecture.md does not name {text} (gatekit.metrics.{name})"


# ---- condition tests: documented where a policy author reads them -------------------------------------------
def _table(text: str, header: str) -> list[list[str]]:
    """The rows (cells) of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_condition_test_is_in_the_semantics_table() -> None:
    doc = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    listed = [op for row in _table(doc, "| test |") for op in re.findall(r"`(\w+)`", row[0])]
    # generated from gatekit/policy/semantics.py: a row per test and kind of operand, and `sum`'s reading
    assert set(listed) == set(conditions.OPS) | {"sum"}, "docs/policy.md's table of tests lists other tests"


def test_every_condition_test_is_in_the_readme() -> None:
    found = re.search(r"tests:\s*`([^`]*)`", README)
    assert found, "README's policy section lost its list of tests"
    assert sorted(found.group(1).split()) == sorted(conditions.OPS)


# ---- CLI commands: each in README's Commands table --------------------------------------------------------
def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> typing.Iterator[str]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def _table_commands() -> set[str]:
    """`gatekit approvals list\\|show --server URL` in a first cell -> {"approvals list", "approvals show"}."""
    out = set()
    for row in _table(README, "| command |"):
        for head, sub in re.findall(r"gatekit ([a-z][a-z-]*)((?: [a-z][a-z-]*(?:\\\|[a-z][a-z-]*)*)?)", row[0]):
            names = sub.strip().split("\\|") if sub.strip() else [""]
            out |= {f"{head} {n}".strip() for n in names}
    return out


def test_every_command_is_in_the_readme_commands_table() -> None:
    leaves, groups = set(_leaves(cli.cli)), {n for n, c in cli.cli.commands.items() if isinstance(c, click.Group)}
    listed = _table_commands()
    assert leaves - listed == set(), "add these commands to README's Commands table"
    # a row names a command that exists (a subgroup's word after its name may be an argument: `add reviewer`)
    stale = {c for c in listed if c not in leaves and c.split()[0] not in groups and c not in groups}
    assert stale == set(), "README's Commands table names commands that are gone"


# ---- the approvals service: every route documented, every API route called by the client --------------------
def _routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the service's app (a stand-in service: building the app calls none of it)."""
    pytest.importorskip("starlette")
    from starlette.routing import Mount, Route

    from gatekit.server.app import create_app

    out = set()
    for route in create_app(object(), origin="http://127.0.0.1:8470").routes:  # type: ignore[arg-type]
        if isinstance(route, Route):
            out |= {(m, route.path) for m in route.methods - {"HEAD"}}
        elif isinstance(route, Mount):
            out.add(("GET", route.path + "/..."))
    return out


def _endpoint_table() -> set[tuple[str, str]]:
    rows = _table(ARCHITECTURE, "| method |")
    return {(m, p.strip("`")) for row in rows for m in row[0].split("/") for p in [row[1]]}


def test_every_route_of_the_service_is_in_the_endpoint_table() -> None:
    routes = _routes()
    assert len(routes) >= 15 and ("GET", "/healthz") in routes
    table = _endpoint_table()
    assert routes - table == set(), "add these routes to docs/architecture.md's endpoint table"
    assert table - routes == set(), "docs/architecture.md's endpoint table lists routes that are gone"


def test_every_api_route_is_called_by_the_client() -> None:
    """Each `/v1/` route has a method of gatekit/enforce/client.py that calls it (its HTTP method, and the
    path's parts around the request id)."""
    tree = ast.parse((ROOT / "gatekit" / "enforce" / "client.py").read_text(encoding="utf-8"))
    bodies = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    for method, path in _routes():
        if not path.startswith("/v1/"):  # the pages are the browser's; /healthz a load balancer's
            continue
        head, _, rest = path.partition("{")
        tail = rest.partition("}")[2]
        called = re.compile(rf"""['"]{method}['"]""").search
        assert any(called(body) and re.search(rf"""['"]{re.escape(head)}""", body) and tail in body
                   for body in bodies), \
            f"gatekit/enforce/client.py has no call of {method} {path}"


# ---- the page names only tests that exist ---------------------------------------------------------------
def test_the_tests_the_architecture_page_names_exist() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", ARCHITECTURE)
    assert len(named) >= 10
    for path, test in named:
        file = ROOT / path
        assert file.exists(), f"docs/architecture.md names `{path}`, which is gone"
        if test:
            assert re.search(rf"^def {test}\(", file.read_text(encoding="utf-8"), re.M), \
                f"docs/architecture.md names `{path}::{test}`, which is gone"
    # a test named alone (after its file was named once) is defined in some test file
    defined = {m for f in (ROOT / "tests").rglob("*.py")
               for m in re.findall(r"^def (test_\w+)\(", f.read_text(encoding="utf-8"), re.M)}
    alone = set(re.findall(r"`(test_\w+)`", ARCHITECTURE))
    assert alone and alone <= defined, f"docs/architecture.md names tests that are gone: {sorted(alone - defined)}"


def test_the_readme_and_the_docs_link_the_architecture_page() -> None:
    assert "(docs/architecture.md)" in README.split("## How it is built", 1)[1].split("\n## ", 1)[0]
