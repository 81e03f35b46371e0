"""Reading the quarantine: the lines ingest could not turn into actions, each with its source, line and reason.

`gatekit quarantine --db STORE` and the dashboard's Quarantine page read it through here.

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     for q in quarantined(store, limit=5):
...         print(f"{q.source}:{q.line}: {q.reason}")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatekit.logs.store import Store

__all__ = ["Quarantined", "quarantine_reasons", "quarantine_sources", "quarantined"]


@dataclass(frozen=True)
class Quarantined:
    """One quarantined line. `raw` is its text; a line that was not UTF-8 is shown with its bad bytes as
    `\\xNN` escapes and `undecodable` set."""

    source: str
    line: int
    reason: str
    raw: str
    undecodable: bool
    ingested_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw,
                "undecodable": self.undecodable,
                "ingested_at": self.ingested_at.isoformat() if self.ingested_at else None}


def _where(source: str | None) -> tuple[str, dict[str, Any]]:
    # A source is kept as ingest was given it (`logs/a.jsonl`): `a.jsonl` finds it too.
    if source is None:
        return "", {}
    return "WHERE source = $source OR ends_with(source, '/' || $source)", {"source": source}


def quarantined(store: Store, *, source: str | None = None, limit: int | None = None) -> list[Quarantined]:
    """The quarantined lines in source and line order: of one source (its name as ingested, or how that
    name ends after a `/`) if given, the first `limit` if given."""
    where, params = _where(source)
    sql = f"""SELECT source, source_line, reason, raw, raw_bytes, ingested_at FROM quarantine {where}
              ORDER BY source, source_line{' LIMIT $limit' if limit is not None else ''}"""
    rows = store.con.execute(sql, params | ({"limit": limit} if limit is not None else {})).fetchall()
    return [Quarantined(src or "", int(line or 0), reason or "",
                        raw if raw is not None else bytes(data or b"").decode("utf-8", "backslashreplace"),
                        raw is None, at) for src, line, reason, raw, data, at in rows]


def quarantine_reasons(store: Store, *, source: str | None = None) -> list[tuple[str, int]]:
    """Each reason and how many lines have it, most first (then by reason)."""
    where, params = _where(source)
    rows = store.con.execute(
        f"SELECT reason, count(*) AS n FROM quarantine {where} GROUP BY reason ORDER BY n DESC, reason",
        params).fetchall()
    return [(reason or "", int(n)) for reason, n in rows]


def quarantine_sources(store: Store) -> list[tuple[str, int]]:
    """Each source with quarantined lines and how many, by name."""
    rows = store.con.execute("SELECT source, count(*) FROM quarantine GROUP BY source ORDER BY source").fetchall()
    return [(src or "", int(n)) for src, n in rows]
