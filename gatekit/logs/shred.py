"""Shredding: the argument and context paths a policy reads, stored as typed columns beside the JSON.

Replay's cost is reading JSON: every replay parses each stored document again. A shredded path is parsed
once: its typed readings (type tag, number, string, boolean, list or object, numeric-string value:
`compile.SHRED_COLUMNS`, computed by the compiler's own expressions, `compile.shred_sql`) go into the side
table `action_shreds`, one row per action keyed by `seq`, and the compiled policy reads those columns
instead of the JSON (`compile.Shredded`). The JSON in `actions` stays the truth; the side table can be
dropped at any time and is rebuilt on demand.

- `shred_paths` records which paths are shredded (root, JSON pointer, their column prefix) and the
  recipe (a hash of the SQL that computed them: a gatekit whose readings differ reshreds);
- the rows covered are the rows of `action_shreds`: shredding covers every stored action, and rows
  ingested since are shredded by the next `shred` (an anti-join on `seq`, all recorded paths in one pass);
- a path not yet shredded is added by `shred`: the side table is rebuilt with every path, old and new,
  in one pass over the JSON (one parse per document whatever the number of paths).

`shredded` only reads (a store opened read-only): the paths shredded for every stored row, or `None`, in
which case the compiler reads the JSON as before. `shred` writes; replay calls it on a writable store, and
ingest may call `shred_new_rows` after inserting.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import duckdb

from gatekit.logs.store import Store
from gatekit.policy.compile import (
    SHRED_COLUMNS,
    Shredded,
    fields_read,
    json_pointer,
    shred_sql,
)
from gatekit.policy.model import Policy

__all__ = ["PATHS_TABLE", "TABLE", "policy_paths", "shred", "shred_new_rows", "shredded"]

TABLE = "action_shreds"
PATHS_TABLE = "shred_paths"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PATHS_TABLE} (
  prefix VARCHAR PRIMARY KEY, root VARCHAR NOT NULL, pointer VARCHAR NOT NULL, recipe VARCHAR NOT NULL
)
"""
# the SQL that computes a path's columns, as a fingerprint: shreds made by other readings are not used
RECIPE = hashlib.sha256(shred_sql([("args", "/p", "c0")], "SELECT * FROM actions").encode()).hexdigest()[:16]

Path = tuple[str, str]  # (root, JSON pointer)


def policy_paths(policy: Policy) -> list[Path]:
    """The (root, JSON pointer) of every `args`/`context` field the compiled policy reads."""
    out: list[Path] = []
    for f in fields_read(policy):
        p = (f.root, json_pointer(f.path))
        if p not in out:
            out.append(p)
    return out


def _con(store: Store | duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    return store.con if isinstance(store, Store) else store


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    names = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema()").fetchall()}
    return {TABLE, PATHS_TABLE} <= names


def _recorded(con: duckdb.DuckDBPyConnection) -> dict[Path, str]:
    """The paths shredded with this gatekit's recipe: (root, pointer) -> prefix."""
    rows = con.execute(f"SELECT root, pointer, prefix, recipe FROM {PATHS_TABLE} ORDER BY prefix").fetchall()
    return {(root, pointer): prefix for root, pointer, prefix, recipe in rows if recipe == RECIPE}


def _covered(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the side table holds exactly the stored actions (rows are only ever added, with new seqs)."""
    a, s = con.execute(f"SELECT (SELECT count(*) FROM actions), (SELECT count(*) FROM {TABLE})").fetchall()[0]
    if a != s:
        return False
    # same count; the same rows unless a seq was stored twice or one removed (never by gatekit): check seqs
    a_max, s_max = con.execute(f"SELECT (SELECT max(seq) FROM actions), (SELECT max(seq) FROM {TABLE})").fetchall()[0]
    return bool(a_max == s_max)


def shredded(store: Store | duckdb.DuckDBPyConnection, paths: Iterable[Path] | None = None) -> Shredded | None:
    """The shredded paths among `paths` (all recorded ones when None) if the side table covers every stored
    action, else None. Reads only: works on a store opened read-only."""
    con = _con(store)
    if not _has_tables(con):
        return None
    recorded = _recorded(con)
    wanted = recorded if paths is None else {p: recorded[p] for p in paths if p in recorded}
    if not wanted or not _covered(con):
        return None
    return Shredded(TABLE, wanted)


def shred(store: Store | duckdb.DuckDBPyConnection, paths: Iterable[Path] = ()) -> Shredded:
    """Shred `paths` (and keep every path shredded before) for every stored action; returns them all.

    Paths not yet shredded rebuild the side table (all paths, one pass over the JSON); otherwise only the
    actions ingested since the last shred are added. Needs a writable store.
    """
    con = _con(store)
    con.execute(_SCHEMA)
    con.execute("BEGIN TRANSACTION")
    try:
        out = _shred(con, list(paths))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return out


def shred_new_rows(store: Store | duckdb.DuckDBPyConnection) -> int:
    """Shred the actions stored since the last shred, for every recorded path (for ingest to call after
    inserting); returns how many rows it added. Nothing to do when no path is shredded yet."""
    con = _con(store)
    if not _has_tables(con):
        return 0
    before = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    shred(con)
    return int(con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0] - before)


def _shred(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> Shredded:
    recorded = _recorded(con)
    stale = con.execute(f"SELECT count(*) FROM {PATHS_TABLE} WHERE recipe <> ?", [RECIPE]).fetchall()[0][0]
    have = {TABLE} <= {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    missing = [p for p in paths if p not in recorded]
    if missing or stale or not have:
        everything = list(recorded) + [p for p in missing if p not in recorded]
        if not everything:
            return Shredded(TABLE, {})
        layout = [(root, pointer, f"c{k}") for k, (root, pointer) in enumerate(everything)]
        con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS "
                    f"{shred_sql(layout, 'SELECT seq, args, context FROM actions')}")
        con.execute(f"DELETE FROM {PATHS_TABLE}")
        con.executemany(f"INSERT INTO {PATHS_TABLE} VALUES (?, ?, ?, ?)",
                        [[c, root, pointer, RECIPE] for root, pointer, c in layout])
        return Shredded(TABLE, {(root, pointer): c for root, pointer, c in layout})
    if recorded and not _covered(con):
        layout = [(root, pointer, c) for (root, pointer), c in recorded.items()]
        cols = ", ".join(["seq"] + [f"{c}_{x}" for _, _, c in layout for x in SHRED_COLUMNS])
        new = f"SELECT seq, args, context FROM actions a WHERE NOT EXISTS (SELECT 1 FROM {TABLE} s WHERE s.seq = a.seq)"
        con.execute(f"INSERT INTO {TABLE} ({cols}) {shred_sql(layout, new)}")
        if not _covered(con):  # rows gone from `actions` (never by gatekit): start again from the JSON
            con.execute(f"DELETE FROM {TABLE} WHERE seq NOT IN (SELECT seq FROM actions)")
    return Shredded(TABLE, recorded)
