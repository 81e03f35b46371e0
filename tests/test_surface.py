"""The public surface: each package's `__all__` is exactly what it offers, and the layers use only that.

httpx's rule, as STYLE.md takes it: a package re-exports its public names in a curated `__all__`; a module
whose names are all internal has a leading underscore. The first test holds every package's namespace to its
`__all__`; the second reads the source of gatekit/ and dashboards/ and fails when one package imports from
another a name that is neither in that package's `__all__` nor in the (public) module's own `__all__`, or
imports from another package's `_private` module at all. Tests mirror the package, so they may import
internals: the source check covers the library only. (The top level's surface was checked alone in
tests/test_layering.py; it is the first of PACKAGES here.)
"""

from __future__ import annotations
import __future__

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import gatekit

PACKAGES = ("gatekit", "gatekit.policy", "gatekit.logs", "gatekit.logs.adapters", "gatekit.enforce",
            "gatekit.server", "gatekit.mcp", "gatekit.metrics", "gatekit.sample", "gatekit.dashboards",
            "gatekit.authoring", "gatekit.spark")
ROOT = Path(gatekit.__file__).parent.parent
# package -> its folder in the repository (dashboards/ installs as gatekit.dashboards)
FOLDERS = {p: ROOT / ("dashboards" if p == "gatekit.dashboards" else p.replace(".", "/")) for p in PACKAGES}

# (importing file, module, name) imports across packages that are allowed although not public. None remain;
# an entry here needs a comment saying why the name cannot be public or reached through a public API.
EXCEPTIONS: set[tuple[str, str, str]] = set()


def _public(module: ModuleType) -> set[str]:
    """The names a module offers: not underscored, not a submodule, not a `from __future__` feature."""
    return {n for n, v in vars(module).items()
            if not n.startswith("_") and not isinstance(v, (ModuleType, __future__._Feature))}


@pytest.mark.parametrize("name", PACKAGES)
def test_package_namespace_is_exactly_all(name: str) -> None:
    package = importlib.import_module(name)
    if not Path(package.__file__).is_relative_to(ROOT):  # an editable install of another checkout's dashboards/
        pytest.skip(f"`{name}` is installed from {Path(package.__file__).parent}, not this tree")
    assert sorted(package.__all__) == sorted(set(package.__all__)), f"`{name}.__all__` repeats a name"
    assert _public(package) | set(_lazy(package)) == set(package.__all__)
    for attr in package.__all__:
        assert getattr(package, attr) is not None, f"`{name}.{attr}` does not resolve"


def _lazy(package: ModuleType) -> list[str]:
    """The names a package's `__getattr__` provides (gatekit.logs: `Store`, which needs DuckDB)."""
    return [n for n in package.__all__ if n not in vars(package)]


@pytest.mark.parametrize(("package", "name", "heavy"), [("gatekit.logs", "Store", "duckdb"),
                                                      ("gatekit.metrics", "summarize_rates", "polars"),
                                                      ("gatekit.authoring", "tune", "polars")])
def test_lazy_names_load_their_module_only_when_asked(package: str, name: str, heavy: str) -> None:
    """gatekit.logs offers `Store`, gatekit.metrics its summaries, without importing DuckDB or polars until
    one is used; an unknown name is still an AttributeError."""
    code = (f"import sys, {package} as p; assert {heavy!r} not in sys.modules; "
            f"assert p.{name}.__module__.startswith({package!r} + '.'); assert {heavy!r} in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute `nope`"):
        importlib.import_module(package).nope  # noqa: B018


def _package_of(module: str) -> str | None:
    """The innermost listed package holding `module` (gatekit itself is not one: its modules are layers)."""
    parts = module.split(".")
    for i in range(len(parts), 1, -1):
        if ".".join(parts[:i]) in PACKAGES:
            return ".".join(parts[:i])
    return None


def _file_of(module: str) -> Path:
    package = _package_of(module)
    assert package is not None
    base = FOLDERS[package].joinpath(*module[len(package) + 1:].split(".")) if module != package else FOLDERS[package]
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _all_of(path: Path) -> set[str]:
    """A module's `__all__`, read from its source (so checking it imports no extra)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                return set(ast.literal_eval(node.value))
    return set()


def _library_files() -> list[Path]:
    return sorted(p for folder in (FOLDERS["gatekit"], FOLDERS["gatekit.dashboards"]) for p in folder.rglob("*.py"))


def _violations(path: Path) -> list[str]:
    inside = [p for p in PACKAGES if p != "gatekit" and path.is_relative_to(FOLDERS[p])]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imports = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports = [(node.module, a.name) for a in node.names]
        else:
            continue
        for module, name in imports:
            package = _package_of(module)
            if package is None or package in inside or any(module.startswith(p + ".") for p in inside):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if (str(path.relative_to(ROOT)), module, name) in EXCEPTIONS:
                continue
            rest = module[len(package) + 1:].split(".") if module != package else []
            if any(part.startswith("_") for part in rest):
                out.append(f"{where} imports the private module `{module}`")
            elif name is not None and name not in _all_of(_file_of(package)) | _all_of(_file_of(module)):
                out.append(f"{where} imports `{name}` from `{module}`, public in neither `{package}.__all__` "
                           f"nor `{module}.__all__`")
    return out


def test_layers_import_only_public_names() -> None:
    problems = [v for path in _library_files() for v in _violations(path)]
    assert not problems, "\n".join(problems)


def test_the_source_check_catches_a_private_import(tmp_path: Path) -> None:
    """The check itself: an internal name and a private module, imported from another package, are caught."""
    bad = FOLDERS["gatekit.metrics"] / "_surface_probe.py"
    bad.write_text("from gatekit.policy.compile import Val\nfrom gatekit.policy._view import View\n"
                   "from gatekit.policy import decide\n")
    try:
        found = _violations(bad)
    finally:
        bad.unlink()
    assert len(found) == 2
    assert "`Val`" in found[0] and "private module `gatekit.policy._view`" in found[1]


def test_every_listed_package_is_every_package() -> None:
    """A new package gets its `__all__` checked too: PACKAGES lists every folder with an `__init__.py`."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in FOLDERS["gatekit"].rglob("__init__.py")}
    found |= {"gatekit." + ".".join(p.parent.relative_to(ROOT).parts)
              for p in FOLDERS["gatekit.dashboards"].rglob("__init__.py")}
    assert found - {"gatekit.dashboards.app_pages"} == set(PACKAGES)  # app_pages: Streamlit scripts, no API
