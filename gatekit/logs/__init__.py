"""Action logs: the DuckDB store that holds them and the ingest that fills it."""

from __future__ import annotations

from gatekit.logs.ingest import IngestReport, ingest
from gatekit.logs.store import Store

__all__ = ["IngestReport", "Store", "ingest"]
