"""Extras: the core install is light and its CLI imports nothing heavy; a command of a missing extra says which
extra to install; the extras named in pyproject.toml and in gatekit._install agree; the dev extra pulls no
model SDK. (tests/test_wheel.py runs the same commands in a core-only virtual environment.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit import _install
from gatekit._install import EXTRAS, bundled, missing_extra, require
from gatekit.errors import GatekitError

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = PROJECT["optional-dependencies"]
HEAVY = {"duckdb", "polars", "pyarrow", "pandas", "streamlit", "altair", "rich", "vl_convert", "orjson",
         "starlette", "uvicorn", "jinja2", "mcp", "psycopg", "pyspark"}
MODEL_SDKS = {"openai", "anthropic", "cohere", "google-genai", "langchain", "openai-agents", "agentdojo",
              "mistralai", "litellm"}
DISTRIBUTIONS = {"vl_convert": "vl-convert-python", "psycopg_pool": "psycopg"}  # import name -> distribution


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _expanded(extra: str) -> set[str]:
    """Every distribution an extra brings, through the gatekit[...] extras it includes."""
    out: set[str] = set()
    for r in OPTIONAL[extra]:
        if r.startswith("gatekit["):
            for inner in r[len("gatekit["):r.index("]")].split(","):
                out |= _expanded(inner)
        else:
            out |= _names([r])
    return out


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_the_core_dependencies_are_the_light_ones() -> None:
    assert _names(PROJECT["dependencies"]) == {"pydantic", "ruamel.yaml", "google-re2", "tzdata", "cryptography",
                                              "click"}


def test_the_cli_and_every_command_group_import_nothing_heavy() -> None:
    """What `gatekit --help`, validate, decide and schema load: cli.py and everything its _register() imports."""
    loaded = _loaded("import gatekit.cli")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    loaded = _loaded("from gatekit.cli import cli; from click.testing import CliRunner; "
                     "r = CliRunner().invoke(cli, ['schema']); assert r.exit_code == 0, r.output")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_policy_tests_run_with_the_core_install() -> None:
    """`gatekit test` decides each case in Python: no store, nothing heavy (the core install runs it)."""
    policy, cases = ROOT / "policies" / "starter.yaml", ROOT / "policies" / "cases" / "starter.yaml"
    loaded = _loaded("from gatekit.cli import cli; from click.testing import CliRunner; "
                     f"r = CliRunner().invoke(cli, ['test', {str(policy)!r}, {str(cases)!r}, '--json']); "
                     "assert r.exit_code == 0, r.output; assert '\"failed\": 0' in r.output, r.output")
    assert "gatekit" in loaded and not loaded & HEAVY, sorted(loaded & HEAVY)


def test_each_extra_lists_the_modules_gatekit_names_for_it() -> None:
    for extra, modules in EXTRAS.items():
        brought = _expanded(extra)
        for module in modules:
            assert DISTRIBUTIONS.get(module, module).replace("_", "-") in {b.replace("_", "-") for b in brought}, \
                f"`{module}` is not in the {extra} extra"
    assert _expanded("dashboard") >= _expanded("shadow") | {"streamlit", "altair"}
    assert _names(OPTIONAL["spark"]) == {"pyspark", "pyarrow", "pandas"}


def test_all_has_everything_a_user_runs_and_dev_has_all() -> None:
    user = set(EXTRAS)
    assert _expanded("all") >= set().union(*(_expanded(e) for e in user))
    assert _expanded("dev") >= _expanded("all")


def test_the_dev_extra_pulls_no_model_sdk() -> None:
    assert not _expanded("dev") & MODEL_SDKS
    assert "agentdojo" not in str(OPTIONAL["dev"]) and "traces" not in str(OPTIONAL["dev"])


def test_a_missing_module_of_an_extra_names_the_extra() -> None:
    error = missing_extra(ModuleNotFoundError("No module named 'duckdb'", name="duckdb"))
    assert isinstance(error, GatekitError)
    assert str(error) == 'this command needs the shadow extra: pip install "gatekit[shadow]" (`duckdb` is not installed)'
    assert "dashboard extra" in str(missing_extra(ModuleNotFoundError(name="streamlit.web")))
    assert missing_extra(ModuleNotFoundError(name="nope")) is None


def test_require_names_the_first_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _install.importlib.util.find_spec
    monkeypatch.setattr(_install.importlib.util, "find_spec", lambda name, *a: None if name == "polars" else real(name))
    with pytest.raises(GatekitError, match=r'gatekit demo needs the shadow extra: pip install "gatekit\[shadow\]" '
                                           r'\(`polars` is not installed\)'):
        require("shadow", "gatekit demo")
    with pytest.raises(GatekitError, match=r"needs the dashboard extra.*`polars`"):  # dashboard includes shadow
        require("dashboard")


def test_main_turns_a_missing_extra_into_an_error_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from gatekit import cli

    def missing(**_: object) -> None:
        raise ModuleNotFoundError("No module named 'duckdb'", name="duckdb")

    monkeypatch.setattr(cli.cli, "main", missing)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == cli.EXIT_OTHER
    assert capsys.readouterr().err == ('error: this command needs the shadow extra: pip install "gatekit[shadow]" '
                                       "(`duckdb` is not installed)\n")


def test_the_bundled_folders_are_found_wherever_the_command_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (bundled("policies") / "starter.yaml").is_file()
    assert len(list(bundled("sample_logs").glob("*.jsonl"))) == 4
    assert (bundled("dashboards") / "app.py").is_file()
    with pytest.raises(ValueError):
        bundled("tests")


def test_demo_runs_outside_the_checkout(tmp_path: Path, monkeypatch) -> None:
    from gatekit.cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--db", str(tmp_path / "demo.duckdb")])
    assert result.exit_code == 0, result.output
    assert "stored 20,000" in result.output and "--name strict" in result.output

