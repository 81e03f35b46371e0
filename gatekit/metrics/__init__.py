"""Shadow analytics: a loaded run (`gatekit.run.Run`) in, tidy polars frames out; the building blocks take
the run's frames. They draw nothing (charts: gatekit.charts).

The package offers the typed summaries the report and `gatekit report --json` are built from, one per module
(`summarize_rates(run)`, `summarize_diff(...)`, ...); the frames behind each (`decision_rates`, `psi_band`,
...) are in the module's own `__all__`. Imported on first use, so `import gatekit.metrics.rates` loads one
module. `evaluate` is gatekit.metrics.evaluate.evaluate: the module has that name.

>>> from gatekit.metrics import summarize_rates
"""

from __future__ import annotations

import importlib
import typing

__all__ = ["ControlFailures", "DiffSummary", "DriftSummary", "Evaluation", "Fatigue", "RatesSummary",
           "control_failures", "reviewer_fatigue", "summarize_diff", "summarize_drift", "summarize_rates"]

_MODULES = {"ControlFailures": "controls", "control_failures": "controls", "DiffSummary": "diff",
            "summarize_diff": "diff", "DriftSummary": "drift", "summarize_drift": "drift", "Evaluation": "evaluate",
            "Fatigue": "fatigue", "reviewer_fatigue": "fatigue", "RatesSummary": "rates", "summarize_rates": "rates"}


def __getattr__(name: str) -> typing.Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"gatekit.metrics.{_MODULES[name]}"), name)
    raise AttributeError(f"module `gatekit.metrics` has no attribute `{name}`")
