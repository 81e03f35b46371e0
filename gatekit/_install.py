"""What this installation of gatekit carries: the bundled folders, and which extras are installed.

The wheel carries the dashboard app, the sample logs and the starter policies inside the package
(`gatekit.dashboards`, `gatekit.sample_logs`, `gatekit.policies`; pyproject.toml maps the repository's top-level
folders to those names, for an editable install too). The core install is light; a command that needs an
extra says which one:

    load_policy(bundled("policies") / "starter.yaml")
    require("shadow")  # or GatekitError: this command needs the shadow extra: pip install "gatekit[shadow]" ...
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gatekit.errors import GatekitError

__all__ = ["BUNDLED", "EXTRAS", "bundled", "missing_extra", "require"]

BUNDLED = ("dashboards", "sample_logs", "policies")
# The modules each extra brings, by import name; the first extra naming a module is the one to install.
EXTRAS: dict[str, tuple[str, ...]] = {
    "shadow": ("duckdb", "polars", "pyarrow", "orjson", "pytz", "rich", "altair", "vl_convert"),
    "dashboard": ("streamlit",),  # and everything in shadow
    "server": ("starlette", "uvicorn", "jinja2"),
    "postgresql": ("psycopg", "psycopg_pool"),
    "mcp": ("mcp",),
    "spark": ("pyspark",),
}
_NEEDS = {"dashboard": ("shadow",)}
_CHECKOUT = Path(__file__).resolve().parent.parent  # a source checkout that was not installed


def bundled(name: str) -> Path:
    """The folder of `gatekit.<name>` (one of BUNDLED), wherever this install keeps it."""
    if name not in BUNDLED:
        raise ValueError(f"not a bundled folder: `{name}`")
    spec = importlib.util.find_spec(f"gatekit.{name}")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)
    if (_CHECKOUT / name).is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / name
    raise GatekitError(f"this install of gatekit has no `{name}` folder: reinstall it (pip install gatekit)")


def _install_hint(extra: str) -> str:
    return f'needs the {extra} extra: pip install "gatekit[{extra}]"'


def require(extra: str, what: str = "this command") -> None:
    """Raise a `GatekitError` naming the extra to install when a module it brings is missing."""
    for name in (*_NEEDS.get(extra, ()), extra):
        missing = [m for m in EXTRAS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise GatekitError(f"{what} {_install_hint(extra)} (`{missing[0]}` is not installed)")


def missing_extra(exc: ModuleNotFoundError, what: str = "this command") -> GatekitError | None:
    """The error to show for an import of a module an extra brings, or None for any other missing module."""
    root = (exc.name or "").split(".")[0]
    for extra, modules in EXTRAS.items():
        if root in modules:
            return GatekitError(f"{what} {_install_hint(extra)} (`{root}` is not installed)")
    return None
