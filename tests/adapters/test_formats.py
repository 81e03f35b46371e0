"""Every registered format is documented, detected on an example of its own, read, and tested."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import gatekit.logs.adapters as adapters
from gatekit.logs import FORMATS, Store, detect, ingest

from .conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
EXAMPLES = DATA / "examples"


def _modules() -> dict[str, str]:
    """Format name -> the adapters module that defines it (its `FORMAT`)."""
    out = {}
    for info in pkgutil.iter_modules(adapters.__path__):
        module = importlib.import_module(f"{adapters.__name__}.{info.name}")
        fmt = getattr(module, "FORMAT", None)
        if fmt is not None:
            out[fmt.name] = info.name
    return out


def test_every_format_module_is_registered() -> None:
    modules = _modules()
    assert sorted(modules) == sorted(FORMATS)
    for name, module in modules.items():
        assert importlib.import_module(f"{adapters.__name__}.{module}").FORMAT is FORMATS[name]


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_format_is_documented_with_its_options(name: str) -> None:
    section = re.search(rf"^## `{re.escape(name)}`\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert section, f"docs/formats.md has no section `## `{name}``"
    row = re.search(rf"^\| `{re.escape(name)}` \|.*\|$", DOC, re.M)
    assert row, f"docs/formats.md's table has no row for `{name}`"
    options = FORMATS[name].options
    listed = row.group(0).split("|")[-2]  # the last column: the options
    assert set(re.findall(r"`(\w+)`", listed)) == set(options), f"the row of `{name}` lists other options"
    for option in options:
        assert f"- `{option}`" in section.group(1), f"docs/formats.md does not say what `{name}`'s `{option}` does"
    assert f"| `{name}` |" in (adapters.__doc__ or ""), f"gatekit/logs/adapters/__init__.py's table misses `{name}`"


def test_the_readme_points_at_the_formats() -> None:
    assert "docs/formats.md" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_format_detects_and_reads_its_example(name: str, tmp_path: Path) -> None:
    examples = [p for p in EXAMPLES.iterdir() if p.name.split(".")[0] == name]
    assert len(examples) == 1, f"tests/adapters/data/examples/ needs one `{name}.*` example"
    (example,) = examples
    assert example.name.lower().endswith(FORMATS[name].suffixes), "a directory would not take the example"
    assert detect(example) == name
    with Store(tmp_path / "s.duckdb") as store:
        report = ingest(store, [example])
    assert report.stored > 0 and report.quarantined == 0


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_format_has_a_test_file(name: str) -> None:
    module = _modules()[name]
    assert (Path(__file__).parent / f"test_{module}.py").is_file(), f"no tests/adapters/test_{module}.py"
