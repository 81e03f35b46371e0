"""Synthetic agent action logs with planted findings, for demos, tests and benchmarks.

Seeded and deterministic: the same arguments give the same records and the same bytes, so the bundled
`sample_logs/` can be checked against a fresh regeneration. Pure standard library on purpose, so generating a
sample costs no heavy import. What is planted (and where) is written to `PLANTED.json` next to the logs.

>>> records = list(generate(2000, seed=1))

The modules, from the bottom up: `cast` (who and what the calls name), `clock` (time), `steps` and
`scenarios` (the ordinary sessions), `review` (the recorded world's approvals), `recording` (one run's calls),
`planted` (the planted findings), `manifest` (PLANTED.json), `build` (a run, from sessions to records) and
`write` (the files).
"""

from __future__ import annotations

from gatekit.sample.build import generate
from gatekit.sample.clock import START
from gatekit.sample.write import write_sample

__all__ = ["START", "generate", "write_sample"]
