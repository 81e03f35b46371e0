"""Writing the policy from evidence: the action catalog, policy tests, CI checks and the tuner.

Above metrics in the layers (it replays and scores); below the CLI.
"""

from __future__ import annotations

from gatekit.authoring.catalog import Catalog, build_catalog, check_policy, dump_catalog, load_catalog
from gatekit.authoring.tune import Change, Counts, Tuning, tune

__all__ = ["Catalog", "Change", "Counts", "Tuning", "build_catalog", "check_policy", "dump_catalog", "load_catalog",
           "tune"]
