"""The gatekit dashboard: a Streamlit app over the action store (`gatekit dashboard --db PATH`).

The repository keeps it in dashboards/; it installs as `gatekit.dashboards` (pyproject.toml maps the folder), and
the app and its pages import it by that name, so a page opened first by its own URL finds it too.

PAGES is the one list of pages: app.py builds the navigation from it and the tests iterate it. A new page is a
file `app_pages/<name>.py` and one entry here. Streamlit-free, so tests and tools can read it. (Not `pages/`:
Streamlit treats a `pages/` folder beside the entry script as a legacy app of its own until st.navigation first
runs, so a page opened first by its URL ran alone, with the files' names as navigation.)
"""

from __future__ import annotations

import dataclasses

__all__ = ["PAGES", "Page", "page"]


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of the app: the script `app_pages/<name>.py`, served at `/<name>` (the first page at `/`)."""

    name: str
    title: str
    icon: str

    @property
    def script(self) -> str:
        return f"app_pages/{self.name}.py"

    @property
    def url_path(self) -> str:
        return "" if self is PAGES[0] else self.name


PAGES: tuple[Page, ...] = (
    Page("overview", "Overview", ":material/dashboard:"),  # the default page
    Page("simulate", "Simulate", ":material/tune:"),
    Page("compare", "Compare", ":material/compare_arrows:"),
    Page("drift", "Drift", ":material/trending_up:"),
    Page("reviewers", "Reviewers", ":material/groups:"),
    Page("evaluate", "Evaluate", ":material/target:"),
    Page("explorer", "Explorer", ":material/search:"),
    Page("catalog", "Catalog", ":material/inventory_2:"),
    Page("approvals", "Approvals", ":material/approval:"),
    Page("quarantine", "Quarantine", ":material/report:"),
)


def page(name: str) -> Page:
    """The listed page called `name`, e.g. for `st.page_link(page("explorer").script)`."""
    for p in PAGES:
        if p.name == name:
            return p
    raise KeyError(f"no dashboard page `{name}`")
