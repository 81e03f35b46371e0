"""A stored run, loaded: the one seam metrics take, and the one module that reads the `decisions` table.

A `Run` is a run's metadata plus what metrics need from it, each read on first use and kept: the policy it
was replayed with (parsed once), its decisions frame (the decisions joined with the actions), and, through
its `Reader`, the frames every run of a store shares (approvals, argument values). Every SELECT over
`decisions` is written here; the write path (`replay`) only inserts and deletes.

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     run = load_run(store, "starter")
...     summarize_rates(run).decisions
{'allow': 17893, 'escalate': 1935, 'deny': 172}
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from gatekit.errors import StoreError
from gatekit.logs.store import Store
from gatekit.policy import Policy, parse_policy
from gatekit.policy.compile import json_number_sql, json_pointer, lit

__all__ = [
    "ACTION_COLUMNS", "Reader", "Run", "action_decisions", "actions_frame", "approvals_frame", "arg_frame",
    "action_errors", "assemble", "decision_counts", "decision_rows", "decisions_by_tool", "decisions_frame",
    "error_summary", "export_run", "has_error_details", "last_tuning", "list_runs", "load_run", "reviewed_args",
    "save_tuning", "top_rules"
]

T = TypeVar("T")
ACTION_COLUMNS = 'a.seq, a.action_id, a.ts, a.agent, a.session, a."user", a.tool, a.outcome, a.label, ' \
                 'a.evidence_hash, a.executed_hash'
_RUN_COLUMNS = ("name, policy_name, fingerprint, created_at, actions, allow, escalate, deny, errored, seconds, "
                "policy_source, policy_text")


# -- the loaded run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A stored replay: which policy, when, how many actions it would allow, escalate or deny, and (read on
    first use, then kept) the policy, the decisions frame and the frames of its store.

    >>> run = load_run(store, "starter")
    >>> run.policy.name, run.frame.height
    ('starter', 20000)
    """

    name: str
    policy_name: str
    fingerprint: str
    created_at: datetime
    actions: int
    allow: int
    escalate: int
    deny: int
    errored: int
    seconds: float
    policy_source: str = ""
    policy_text: str = field(default="", repr=False)
    reader: Reader | None = field(default=None, repr=False, compare=False)
    _kept: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def decisions(self) -> dict[str, int]:
        return {"allow": self.allow, "escalate": self.escalate, "deny": self.deny}

    def rate(self, decision: str) -> float:
        return self.decisions[decision] / self.actions if self.actions else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in (
            "name", "policy_name", "fingerprint", "created_at", "actions", "allow", "escalate", "deny", "errored",
            "seconds", "policy_source")}
        out["created_at"] = self.created_at.isoformat()
        out["decisions"] = self.decisions
        out["rates"] = {d: self.rate(d) for d in self.decisions}
        return out

    def _keep(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._kept:
            self._kept[key] = make()
        return self._kept[key]

    def _reader(self) -> Reader:
        if self.reader is None:
            raise StoreError(f"run `{self.name}` is not attached to a store: load it with `load_run`")
        return self.reader

    @property
    def policy(self) -> Policy:
        """The policy the run was replayed with, parsed (once) from the text kept with the run."""
        return self._keep("policy", lambda: parse_policy(self.policy_text or "", self.policy_source or "<policy>"))

    @property
    def frame(self) -> pl.DataFrame:
        """One row per action of the run: the action's columns plus decision, rules, errors and tier."""
        reader = self._reader()
        return self._keep("frame", lambda: assemble(reader.actions, reader.read(decision_rows, self.name,
                                                                                 big=True)))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The run's evaluation errors by rule and code (`error_summary`): actions, and one message."""
        return self._reader().read(error_summary, self.name)

    @property
    def approvals(self) -> pl.DataFrame:
        """`approvals_frame` of the run's store (one row per recorded approval)."""
        return self._reader().approvals

    @property
    def reviewed_args(self) -> pl.DataFrame:
        """`reviewed_args` of the run's store (the args and context of every approved action, long)."""
        return self._reader().read(reviewed_args, big=True)

    def arguments(self, paths: Sequence[str]) -> pl.DataFrame:
        """`arg_frame` of the run's store for these field paths (`args.amount`, ...)."""
        return self._reader().read(arg_frame, tuple(paths), big=True)

    def read(self, fn: Callable[..., T], *args: Hashable) -> T:
        """`fn(store, *args)` on the run's store: a metric's own query over the actions."""
        return self._reader().read(fn, *args)


class Reader:
    """Reads runs, and the frames all runs of one store share, from `store`; each read once and kept for
    the reader's life. The dashboard's reader overrides `read` to use short connections instead.

    >>> reader = Reader(store)
    >>> a, b = reader.run("starter"), reader.run("strict")  # the actions and approvals are read once
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._kept: dict[Hashable, Any] = {}

    def read(self, fn: Callable[..., T], *args: Hashable, big: bool = False) -> T:
        """`fn(store, *args)`, kept by `fn` and `args` (`big`: a frame of every action, for readers that
        keep fewer of those)."""
        key = (fn.__module__, fn.__qualname__, args)
        if key not in self._kept:
            if self.store is None:
                raise StoreError("this reader has no store")
            self._kept[key] = fn(self.store, *args)
        return self._kept[key]

    def runs(self) -> list[Run]:
        """Every stored run, oldest first."""
        return [Run(*row, reader=self) for row in self.read(run_rows)]

    def run(self, name: str) -> Run:
        """The run named `name`, loaded lazily (nothing but its metadata is read yet)."""
        row = self.read(run_row, name)
        if row is None:
            known = ", ".join(f"`{r.name}`" for r in self.runs()) or "none: run `gatekit replay` first"
            raise StoreError(f"no run `{name}` in the store (runs: {known})")
        return Run(*row, reader=self)

    @property
    def actions(self) -> pl.DataFrame:
        return self.read(actions_frame, big=True)

    @property
    def approvals(self) -> pl.DataFrame:
        return self.read(approvals_frame, big=True)


def load_run(store: Store, name: str) -> Run:
    """The run `name` of `store`, loaded lazily; raises `StoreError` naming the stored runs if there is none."""
    return Reader(store).run(name)


def list_runs(store: Store) -> list[Run]:
    """Every stored run of `store`, oldest first."""
    return Reader(store).runs()


# -- the runs table --------------------------------------------------------------------------------------
def _has_runs(store: Store) -> bool:
    return bool(store.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'").fetchall()[0][0])


def run_rows(store: Store) -> list[tuple[Any, ...]]:
    """The metadata of every run, oldest first, as `Run`'s fields."""
    if not _has_runs(store):
        return []
    return store.con.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_at, name").fetchall()


def run_row(store: Store, name: str) -> tuple[Any, ...] | None:
    if not _has_runs(store):
        return None
    rows = store.con.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE name = ?", [name]).fetchall()
    return rows[0] if rows else None


# -- the decisions table ---------------------------------------------------------------------------------
def decision_rows(store: Store, run: str) -> pl.DataFrame:
    """The stored rows of `run`: seq, decision, rules, errors, tier, in log order."""
    frame = store.con.sql("SELECT seq, decision, rules, errors, tier FROM decisions WHERE run = ?", params=[run]).pl()
    return frame if frame["seq"].is_sorted() else frame.sort("seq")


def decision_counts(store: Store, run: str) -> tuple[int, int, int, int, int]:
    """actions, allow, escalate, deny and errored (a rule could not be evaluated) of `run`."""
    return tuple(store.con.execute(  # type: ignore[return-value]
        "SELECT count(*), count(*) FILTER (decision = 'allow'), count(*) FILTER (decision = 'escalate'), "
        "count(*) FILTER (decision = 'deny'), count(*) FILTER (len(errors) > 0) FROM decisions WHERE run = ?",
        [run]).fetchall()[0])


def assemble(actions: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The decisions frame from its two reads: `actions` (`actions_frame`, shared by every run) and `rows`
    (`decision_rows`). A run usually covers every action in order, so the two sides line up and are put
    side by side; otherwise they are joined on `seq`."""
    if actions.height == rows.height and actions["seq"].equals(rows["seq"]):
        return pl.concat([actions, rows.drop("seq")], how="horizontal")
    if rows.height and actions.height >= rows.height and actions["seq"].head(rows.height).equals(rows["seq"]):
        return pl.concat([actions.head(rows.height), rows.drop("seq")], how="horizontal")  # actions added since
    return actions.join(rows, on="seq", how="inner").sort("seq")


def decisions_frame(store: Store, run: str) -> pl.DataFrame:
    """One row per action of `run`: the action's columns plus decision, rules, errors and tier (`Run.frame`)."""
    return load_run(store, run).frame


def top_rules(store: Store, run: str, limit: int = 8) -> list[tuple[str, int]]:
    """The rules that matched most often in `run`, with how often, most first."""
    return [tuple(r) for r in store.con.execute(  # type: ignore[misc]
        "SELECT rule, count(*) AS n FROM (SELECT unnest(rules) AS rule FROM decisions WHERE run = ?) "
        "GROUP BY rule ORDER BY n DESC, rule LIMIT ?", [run, limit]).fetchall()]


def decisions_by_tool(store: Store, run: str) -> list[tuple[str, str, int]]:
    """How `run` decided each tool's calls: (tool, decision, count) rows."""
    return [(t, d, int(n)) for t, d, n in store.con.execute(
        "SELECT a.tool, d.decision, count(*) FROM decisions d JOIN actions a USING (seq) WHERE d.run = ? "
        "GROUP BY ALL", [run]).fetchall()]


def action_decisions(store: Store, seq: int) -> pl.DataFrame:
    """How every stored run decided the action `seq`: run, decision, rules, errors, tier."""
    return store.con.sql("SELECT run, decision, rules, errors, tier FROM decisions WHERE seq = ? ORDER BY run",
                         params=[seq]).pl()


def has_error_details(store: Store) -> bool:
    """Whether the store's decisions carry error details (a store opened read-only may predate them)."""
    return bool(store.con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'decisions' "
        "AND column_name = 'error_details'").fetchall()[0][0])


def action_errors(store: Store, name: str, seq: int) -> list[dict[str, Any]]:
    """Why the rules that errored on action `seq` in run `name` errored: rule, field, test, code, message."""
    if not has_error_details(store):
        return []
    rows = store.con.execute("SELECT error_details FROM decisions WHERE run = ? AND seq = ?", [name, seq]).fetchall()
    return list(rows[0][0] or []) if rows else []


def error_summary(store: Store, name: str) -> list[dict[str, Any]]:
    """A run's evaluation errors by rule and code: how many actions, and one message as an example."""
    if not has_error_details(store):
        return []
    rows = store.con.execute(
        "SELECT e.rule, e.code, count(*) AS actions, min(e.message) AS example FROM "
        "(SELECT unnest(error_details) AS e FROM decisions WHERE run = ? AND len(errors) > 0) "
        "GROUP BY ALL ORDER BY actions DESC, e.rule, e.code", [name]).fetchall()
    return [{"rule": r, "code": c, "actions": n, "example": m} for r, c, n, m in rows]


def export_run(store: Store, name: str, out: Path | str) -> Path:
    """Write a run's rows (`action_id, decision, rules, errors, tier`, plus seq and `error_details`: rule,
    field, test, code and message per errored rule) as Parquet or JSON Lines."""
    load_run(store, name)
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        fmt = "(FORMAT parquet)"
    elif suffix in (".jsonl", ".ndjson", ".json"):
        fmt = "(FORMAT json)"
    else:
        raise StoreError(f"cannot write `{path}`: use a .parquet or .jsonl file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    store.con.execute(
        f"COPY (SELECT seq, action_id, decision, rules, errors, tier"
        f"{', error_details' if has_error_details(store) else ''} FROM decisions WHERE run = {lit(name)} "
        f"ORDER BY seq) TO {lit(str(path))} {fmt}")
    return path


# -- the actions, as metrics read them -------------------------------------------------------------------
def actions_frame(store: Store, where: str = "TRUE") -> pl.DataFrame:
    """One row per stored action (no args/context), in log order; `approvals` counts its approvals."""
    frame = store.con.sql(
        f"SELECT {ACTION_COLUMNS}, coalesce(json_array_length(a.approvals), 0) AS approvals "
        f"FROM actions a WHERE {where}").pl()
    return frame if frame["seq"].is_sorted() else frame.sort("seq")


def approvals_frame(store: Store) -> pl.DataFrame:
    """One row per recorded approval: who reviewed which action, how, and how long it took."""
    # unnest of a JSON[] cast is several times faster than a lateral json_each
    return store.con.sql(f"""
        WITH ap AS (
            SELECT {ACTION_COLUMNS}, unnest(CAST(a.approvals AS JSON[])) AS value,
                   generate_subscripts(CAST(a.approvals AS JSON[]), 1) - 1 AS approval_index
            FROM actions a WHERE a.approvals IS NOT NULL)
        SELECT * EXCLUDE (value),
               value ->> 'reviewer' AS reviewer, value ->> 'role' AS role,
               value ->> 'decision' AS review,
               TRY_CAST(value ->> 'requested_at' AS TIMESTAMPTZ) AS requested_at,
               TRY_CAST(value ->> 'decided_at' AS TIMESTAMPTZ) AS decided_at,
               coalesce(TRY_CAST(value -> 'break_glass' AS BOOLEAN), FALSE) AS break_glass,
               value ->> 'reason' AS reason,
               value AS approval
        FROM ap
        ORDER BY seq, approval_index""").pl().with_columns(
        latency_s=(pl.col("decided_at") - pl.col("requested_at")).dt.total_microseconds() / 1e6)


def arg_frame(store: Store, paths: Sequence[str], where: str = "TRUE") -> pl.DataFrame:
    """`action_id` plus one column per field path (`args.amount`, `context.env`), read as a number as the
    policy reads one (compile.json_number_sql: a finite JSON number or a numeric string), else as text (`<path>` and `<path>:text`); `where` filters
    the actions (alias `a`), e.g. to the tools a rule looks at."""
    cols = []
    for path in paths:
        root, _, rest = path.partition(".")
        if root not in ("args", "context") or not rest:
            raise ValueError(f"not an args or context path: `{path}`")
        j = f"json_extract(a.{root}, {lit(json_pointer(rest.split('.')))})"
        cols.append(f"{json_number_sql(j)} AS \"{path}\"")  # the number the policy reads, or null
        cols.append(f"{j} ->> '$' AS \"{path}:text\"")
    return store.con.sql(f"SELECT a.seq, a.action_id, {', '.join(cols)} FROM actions a WHERE {where} ORDER BY a.seq").pl()


def reviewed_args(store: Store) -> pl.DataFrame:
    """The top-level `args` and `context` values of every action with an approval, long: `seq, field,
    number` (a JSON number, or a string the policy reads as one), `text` (a JSON string). Keys a policy
    field cannot name (containing a dot, say) are left out."""
    parts = [f"""
        SELECT a.seq, '{root}.' || j.key AS field,
               {json_number_sql("j.value")} AS number,
               CASE WHEN j.type = 'VARCHAR' THEN j.value ->> '$' END AS text
        FROM actions a, json_each(a.{root}) j
        WHERE coalesce(json_array_length(a.approvals), 0) > 0 AND regexp_full_match(j.key, '[A-Za-z0-9_-]+')"""
             for root in ("args", "context")]
    return store.con.sql(" UNION ALL ".join(parts) + " ORDER BY seq, field").pl()


# -- the last tuning ---------------------------------------------------------------------------------------
TUNING_KEY = "last_tuning"  # the meta row holding what the latest `gatekit tune` on this store tried


def save_tuning(store: Store, record: dict[str, Any]) -> None:
    """Keep what a `gatekit tune` tried (its figures, changes and frontier: `Tuning.to_dict()` plus where it
    wrote the policy) in the store's `meta` table, replacing the one before, for the report and the dashboard."""
    import json

    store.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [TUNING_KEY, json.dumps(record, default=str)])


def last_tuning(store: Store) -> dict[str, Any] | None:
    """The record `save_tuning` kept, or None when no `gatekit tune` ran on this store."""
    import json

    rows = store.con.execute("SELECT value FROM meta WHERE key = ?", [TUNING_KEY]).fetchall()
    return json.loads(rows[0][0]) if rows else None
