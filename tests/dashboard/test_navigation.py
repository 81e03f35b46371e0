"""One list of pages: gatekit.dashboards.PAGES names every file in app_pages/ once
(app.py builds its navigation from it; tests/dashboard iterate it)."""

from __future__ import annotations

from gatekit.dashboards import PAGES

from .conftest import ROOT


def test_every_page_file_is_listed_once() -> None:
    names = [p.name for p in PAGES]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(p.stem for p in (ROOT / "dashboards" / "app_pages").glob("*.py"))
    assert PAGES[0].url_path == "" and all(p.url_path == p.name for p in PAGES[1:])

