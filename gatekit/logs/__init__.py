"""Action logs: the DuckDB store that holds them, the formats they come in, and the ingest that fills it.

`Store` (DuckDB) is imported on first use, so the registry of formats (which the CLI reads for
`--format`) and `sources` load without DuckDB or pyarrow.
"""

from __future__ import annotations

import typing

from gatekit.logs.adapters import FORMATS, Format, detect, register
from gatekit.logs.contract import Rejected
from gatekit.logs.ingest import IngestReport, Interrupted, ingest, sources

if typing.TYPE_CHECKING:
    from gatekit.logs.store import Store

__all__ = ["FORMATS", "Format", "IngestReport", "Interrupted", "Rejected", "Store", "detect", "ingest", "register",
           "sources"]


def __getattr__(name: str) -> typing.Any:
    if name == "Store":
        from gatekit.logs.store import Store

        return Store
    raise AttributeError(f"module `gatekit.logs` has no attribute `{name}`")
