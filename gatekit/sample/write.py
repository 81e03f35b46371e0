"""Writing a sample to disk: one JSONL file per week of logs, the manifest as PLANTED.json, and the SEED file
that regenerates the same bytes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gatekit.sample.build import build
from gatekit.sample.clock import START, WEEK, fmt, parse_ms, utc


def write_sample(out_dir: Path, n_actions: int = 20000, seed: int = 7, *, start: datetime = START,
                 days: int = 28) -> list[Path]:
    """Write one JSONL file per week of logs, `PLANTED.json` and `SEED` into `out_dir`; return the paths.

    >>> write_sample(Path("sample_logs"), n_actions=20000, seed=7)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, manifest = build(n_actions, seed, start, days)
    start = utc(start)
    weeks: dict[int, list[str]] = {}
    for rec in records:
        week = (parse_ms(rec["ts"], start)) // WEEK
        weeks.setdefault(week, []).append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    paths = []
    for week in sorted(weeks):
        path = out_dir / f"actions-{(start + timedelta(weeks=week)).date().isoformat()}.jsonl"
        path.write_text("\n".join(weeks[week]) + "\n", encoding="utf-8", newline="\n")
        paths.append(path)
    planted = out_dir / "PLANTED.json"
    planted.write_text(_dump(manifest) + "\n", encoding="utf-8", newline="\n")
    seed_file = out_dir / "SEED"
    seed_file.write_text(f"seed={seed}\nn_actions={n_actions}\nstart={fmt(start, 0)}\ndays={days}\n",
                         encoding="utf-8", newline="\n")
    return [*paths, planted, seed_file]


def _dump(value: Any, indent: str = "") -> str:
    """Indented JSON with lists of plain values kept on one line, so long id lists stay readable."""
    inner = indent + "  "
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or len(flat) <= 100 or (
            isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value)):
        return flat
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + _dump(v, inner) for v in value) + "\n" + indent + "]"
