"""The action catalog: what the logs say each tool is called with, and which of it the policy reads.

Built from the store's `actions` table: per tool its calls, top agents, first and last call, the decision mix
of a run (or of a policy replayed in memory), and every argument and context path with its types, how often
it is present, its number range and its most common values. A type is the kind a policy test sees: a string
of a JSON number's form is a `numeric string`, read as a number by ordering tests, as the compiled policy does
(`NUMERIC_STRING`, trimmed of `JSON_SPACE`).

Risk tags (`impact`, `data_sensitivity`, `reversibility`) and `notes` are written by a person in the YAML and
survive regeneration: `merge_tags` carries them over for tools still logged, and keeps the entry of a tool no
longer logged under `retired:` with its tags, so an edit is never lost.

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     catalog = build_catalog(store, policy=load_policy("policies/starter.yaml"))
>>> dump_catalog(catalog.merge_tags(load_catalog("catalog.yaml")), "catalog.yaml")
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekit.errors import InputError, Problem
from gatekit.policy.conditions import Field, Test, Window, leaves
from gatekit.policy.model import Policy
from gatekit.policy.values import JSON_SPACE, NUMERIC_STRING, compile_re2, glob_to_re2

if TYPE_CHECKING:
    from gatekit.logs.store import Store
    from gatekit.run import Run

__all__ = ["TAGS", "TYPES", "Catalog", "PathStats", "ToolEntry", "build_catalog", "catalog_warnings", "dump_catalog",
           "load_catalog", "parse_catalog"]

# The kinds a path's values have, as a policy test reads them.
NUMBER, NUMERIC_STR, STRING, BOOL, LIST, OBJECT, NULL = (
    "number", "numeric string", "string", "bool", "list", "object", "null")
TYPES = (NUMBER, NUMERIC_STR, STRING, BOOL, LIST, OBJECT, NULL)
# The tags a person sets per tool, and the values each takes (unset: null).
TAGS: dict[str, tuple[str, ...]] = {
    "impact": ("low", "medium", "high"),
    "data_sensitivity": ("public", "internal", "confidential", "restricted"),
    "reversibility": ("reversible", "hard", "irreversible"),
}
TOP_AGENTS = 5
TOP_VALUES = 5
SHOWN_CHARS = 40  # a common string value is shown cut to this many characters
FORMAT = 1
_NUMERIC = re.compile(NUMERIC_STRING)


@dataclass
class PathStats:
    """One argument or context path of a tool (`args.amount`): its types, presence, range and common values."""

    name: str
    present: int = 0
    types: dict[str, int] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    top: list[tuple[Any, int]] = field(default_factory=list)
    read_by: list[str] | None = None  # ids of the rules that read it; None: no policy given

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"present": self.present, "types": dict(self.types)}
        if self.min is not None:
            out["min"], out["max"] = _plain_number(self.min), _plain_number(self.max)
        out["top"] = [{"value": v, "count": c} for v, c in self.top]
        if self.read_by is not None:
            out["read_by"] = list(self.read_by)
        return out


@dataclass
class ToolEntry:
    """One tool of the catalog."""

    tool: str
    calls: int = 0
    agents: list[tuple[str, int]] = field(default_factory=list)
    agent_count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    paths: dict[str, PathStats] = field(default_factory=dict)
    decisions: dict[str, int] | None = None
    rules: list[str] | None = None  # ids of the rules whose `tool:` matches it; None: no policy given
    tags: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(TAGS))
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tags": dict(self.tags), "notes": self.notes, "calls": self.calls,
                               "agents": {"distinct": self.agent_count, "top": {a: c for a, c in self.agents}},
                               "first_seen": self.first_seen, "last_seen": self.last_seen}
        if self.decisions is not None:
            out["decisions"] = dict(self.decisions)
        if self.rules is not None:
            out["rules"] = list(self.rules)
        out["paths"] = {name: p.to_dict() for name, p in self.paths.items()}
        return out


@dataclass
class Catalog:
    """The catalog of one store. `tools` in name order; `retired` the tagged tools no longer logged."""

    actions: int
    tools: dict[str, ToolEntry]
    policy: str | None = None
    run: str | None = None
    retired: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"catalog": FORMAT, "actions": self.actions}
        if self.policy is not None:
            out["policy"] = self.policy
        if self.run is not None:
            out["run"] = self.run
        out["tools"] = {name: t.to_dict() for name, t in self.tools.items()}
        out["retired"] = {name: dict(entry) for name, entry in self.retired.items()}
        return out

    def merge_tags(self, old: Catalog | None) -> Catalog:
        """This catalog with the tags and notes of `old` (an earlier catalog, possibly hand-edited): kept for
        every tool still logged; a tool of `old` no longer logged moves to `retired` with its tags, notes
        and last call (unless it had neither tags nor notes: nothing a person wrote is then lost), and a
        retired tool logged again gets its tags back."""
        if old is None:
            return self
        tools: dict[str, ToolEntry] = {}
        for name, t in self.tools.items():
            if name in old.tools:
                t = replace(t, tags=dict(old.tools[name].tags), notes=old.tools[name].notes)
            elif name in old.retired:  # logged again: its tags come back from `retired`
                t = replace(t, tags={**dict.fromkeys(TAGS), **old.retired[name].get("tags", {})},
                            notes=old.retired[name].get("notes"))
            tools[name] = t
        retired = {name: dict(entry) for name, entry in old.retired.items() if name not in self.tools}
        for name, t in old.tools.items():
            if name not in self.tools and (any(v is not None for v in t.tags.values()) or t.notes):
                retired[name] = {"tags": dict(t.tags), "notes": t.notes, "last_seen": t.last_seen}
        return replace(self, tools=tools, retired=dict(sorted(retired.items())))

    def path_types(self, tool: str, path: str) -> dict[str, int] | None:
        """The types `path` has in the calls of `tool`, or None when no call has it."""
        entry = self.tools.get(tool)
        stats = entry.paths.get(path) if entry else None
        return stats.types if stats else None


# ---- building --------------------------------------------------------------------------------------------
def build_catalog(store: Store, policy: Policy | None = None, run: Run | None = None) -> Catalog:
    """The catalog of every action in `store`. With `run`, its decisions per tool and its policy's reads;
    with `policy` only, that policy replayed in memory (nothing stored) gives the decisions."""
    from gatekit.policy.compile import compile_sql

    con = store.con
    if run is not None:
        policy = run.policy
    tools: dict[str, ToolEntry] = {}
    for tool, calls, agents, first, last in con.execute(
            "SELECT tool, count(*), count(DISTINCT agent), min(ts), max(ts) FROM actions GROUP BY tool ORDER BY tool"
    ).fetchall():
        tools[tool] = ToolEntry(tool, int(calls), agent_count=int(agents), first_seen=_iso(first), last_seen=_iso(last))
    for tool, agent, n in con.execute(
            "SELECT tool, agent, n FROM (SELECT tool, agent, count(*) AS n, row_number() OVER "
            "(PARTITION BY tool ORDER BY count(*) DESC, agent) AS k FROM actions WHERE agent IS NOT NULL "
            f"GROUP BY tool, agent) WHERE k <= {TOP_AGENTS} ORDER BY tool, k").fetchall():
        tools[tool].agents.append((agent, int(n)))
    _paths(store, tools)
    if run is not None:
        from gatekit.run import decisions_by_tool

        mix = decisions_by_tool(store, run.name)
    elif policy is not None:
        mix = con.execute(f"SELECT a.tool, q.decision, count(*) FROM ({compile_sql(policy)}) q "
                          "JOIN actions a USING (seq) GROUP BY ALL").fetchall()
    else:
        mix = None
    if mix is not None:
        for t in tools.values():
            t.decisions = {"allow": 0, "escalate": 0, "deny": 0}
        for tool, decision, n in mix:
            tools[tool].decisions[decision] = int(n)  # type: ignore[index]
    if policy is not None:
        _mark_reads(policy, tools)
    return Catalog(actions=sum(t.calls for t in tools.values()), tools=tools,
                   policy=policy.name if policy is not None else None, run=run.name if run is not None else None)


def _paths(store: Store, tools: dict[str, ToolEntry]) -> None:
    """Every path of `args` and `context` per tool, read in Python from the stored JSON text."""
    values: dict[tuple[str, str], Counter[Any]] = {}
    for tool, args, context in store.con.execute("SELECT tool, args, context FROM actions ORDER BY seq").fetchall():
        entry = tools[tool]
        for root, text in (("args", args), ("context", context)):
            doc = json.loads(text) if text else {}
            if isinstance(doc, dict):
                for name, value in _walk(root, doc):
                    stats = entry.paths.get(name)
                    if stats is None:
                        stats = entry.paths[name] = PathStats(name)
                    _add(stats, value, values.setdefault((tool, name), Counter()))
    for (tool, name), counter in values.items():
        stats = tools[tool].paths[name]
        stats.top = [(v, c) for v, c in sorted(counter.items(), key=lambda it: (-it[1], str(it[0])))[:TOP_VALUES]]
    for t in tools.values():
        t.paths = dict(sorted(t.paths.items()))


def _walk(prefix: str, doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each path under an object as a policy field names it (`args.a.b`); lists are leaves (a field names
    no list item by position)."""
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}.{key}"
        out.append((name, value))
        if isinstance(value, dict):
            out.extend(_walk(name, value))
    return out


def kind_of(value: Any) -> str:
    """The type of a value as the catalog shows it (and a policy test reads it)."""
    if value is None:
        return NULL
    if value is True or value is False:
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return NUMERIC_STR if _as_number(value) is not None else STRING
    return LIST if isinstance(value, list) else OBJECT


def _as_number(value: Any) -> float | None:
    """The number an ordering test reads from `value`: a finite JSON number, or a numeric string's number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str) and _NUMERIC.fullmatch(value):
        out = float(value.strip(JSON_SPACE))
    else:
        return None
    return out if math.isfinite(out) else None


def _add(stats: PathStats, value: Any, counter: Counter[Any]) -> None:
    kind = kind_of(value)
    stats.present += 1
    stats.types[kind] = stats.types.get(kind, 0) + 1
    n = _as_number(value)
    if n is not None:
        stats.min = n if stats.min is None else min(stats.min, n)
        stats.max = n if stats.max is None else max(stats.max, n)
    if kind in (LIST, OBJECT):
        return
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        value = value[:SHOWN_CHARS - 1] + "…"
    counter[value] += 1


def _mark_reads(policy: Policy, tools: dict[str, ToolEntry]) -> None:
    for t in tools.values():
        t.rules = []
        for stats in t.paths.values():
            stats.read_by = []
    for rule in policy.rules:
        matched = [t for t in tools.values() if tool_matches(rule.tool_regex, t.tool)]
        fields = {f.name for f in rule_fields(rule.when)}
        for t in matched:
            t.rules.append(rule.id)  # type: ignore[union-attr]
            for name in fields:
                if name in t.paths:
                    t.paths[name].read_by.append(rule.id)  # type: ignore[union-attr]


def rule_fields(cond: Any) -> list[Field]:
    """The argument and context fields a condition reads (tests and `sum` windows), in document order."""
    out: list[Field] = []
    for leaf in leaves(cond):
        f = leaf.field if isinstance(leaf, (Test, Window)) else None
        if f is not None and f.root in ("args", "context"):
            out.append(f)
    return out


def tool_matches(pattern: str, tool: str) -> bool:
    return compile_re2(pattern).fullmatch(tool) is not None


def glob_matches(glob: str, tool: str) -> bool:
    return compile_re2(glob_to_re2(glob)).fullmatch(tool) is not None


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _plain_number(x: float | None) -> int | float | None:
    return int(x) if x is not None and x.is_integer() and abs(x) < 2**53 else x


# ---- the YAML file ---------------------------------------------------------------------------------------
HEADER = """\
gatekit action catalog: what the logs say each tool is called with (`gatekit catalog --db STORE --out FILE`).
Edit `tags` (impact: low|medium|high, data_sensitivity: public|internal|confidential|restricted,
reversibility: reversible|hard|irreversible) and `notes`: regenerating with the same --out keeps them;
a tool no longer in the logs moves to `retired:` with its tags. Everything else is rewritten each time.
"""


def dump_catalog(catalog: Catalog, path: str | Path | None = None) -> str:
    """The catalog as YAML with a header comment; written to `path` when given."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    data = CommentedMap(catalog.to_dict())
    data.yaml_set_start_comment(HEADER)
    buf = io.StringIO()
    yaml.dump(_flow_leaves(data), buf)
    text = buf.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _flow_leaves(data: Any) -> Any:
    """Tags, types and a top value on one line each, so a path reads as a few lines."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(data, dict):
        out = CommentedMap()
        if hasattr(data, "ca"):
            out._yaml_comment = data.ca  # type: ignore[attr-defined]
        for k, v in data.items():
            out[k] = _flow_leaves(v)
        small = all(not isinstance(v, (dict, list)) for v in data.values()) and 0 < len(data) <= 4
        if small:
            out.fa.set_flow_style()
        return out
    if isinstance(data, list):
        seq = CommentedSeq(_flow_leaves(v) for v in data)
        if all(not isinstance(v, (dict, list)) for v in data):
            seq.fa.set_flow_style()
        return seq
    return data


def load_catalog(path: str | Path) -> Catalog:
    """Read a catalog file (as `dump_catalog` writes it, possibly hand-edited). Raises `InputError` listing
    every problem at `file:line`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read catalog `{path}`: {exc}") from exc
    return parse_catalog(text, str(path))


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """A catalog from YAML text; see `load_catalog`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise _refused([Problem(source, line, f"invalid YAML: {exc.problem or exc}", "yaml")]) from exc
    except YAMLError as exc:
        raise _refused([Problem(source, 1, f"invalid YAML: {exc}", "yaml")]) from exc
    problems: list[Problem] = []

    def line(node: Any, key: Any = None) -> int:
        try:
            return (node.lc.key(key)[0] if key is not None else node.lc.line) + 1
        except (AttributeError, KeyError, TypeError):
            return 1

    if not isinstance(doc, dict) or not isinstance(doc.get("tools", {}), dict):
        raise _refused([Problem(source, 1, "a catalog is a mapping with a `tools:` mapping of tool names")])
    if doc.get("catalog") != FORMAT:
        where = line(doc, "catalog") if "catalog" in doc else 1
        raise _refused([Problem(source, where, f"not a gatekit catalog of format {FORMAT} (no `catalog: {FORMAT}`): "
                                "write one with `gatekit catalog --out FILE`")])
    tools: dict[str, ToolEntry] = {}
    for name, body in (doc.get("tools") or {}).items():
        if not isinstance(body, dict):
            problems.append(Problem(source, line(doc["tools"], name), f"tool `{name}` must be a mapping"))
            continue
        entry = ToolEntry(str(name), calls=_int(body.get("calls")), first_seen=_str(body.get("first_seen")),
                          last_seen=_str(body.get("last_seen")), tags=_tags(body, source, line, problems),
                          notes=_notes(body, name, source, line, problems))
        for pname, pbody in (body.get("paths") or {}).items():
            types = pbody.get("types") if isinstance(pbody, dict) else None
            if not isinstance(types, dict):
                problems.append(Problem(source, line(body["paths"], pname), f"path `{pname}` needs `types:`"))
                continue
            unknown = [t for t in types if t not in TYPES]
            if unknown:
                problems.append(Problem(source, line(pbody, "types"), f"unknown type `{unknown[0]}` (use "
                                        + ", ".join(TYPES) + ")"))
            entry.paths[str(pname)] = PathStats(str(pname), present=_int(pbody.get("present")),
                                                types={str(k): _int(v) for k, v in types.items()})
        tools[entry.tool] = entry
    retired: dict[str, dict[str, Any]] = {}
    for name, body in (doc.get("retired") or {}).items():
        if isinstance(body, dict):
            retired[str(name)] = {"tags": _tags(body, source, line, problems),
                                  "notes": _notes(body, name, source, line, problems),
                                  "last_seen": _str(body.get("last_seen"))}
    if problems:
        raise _refused(problems)
    return Catalog(actions=_int(doc.get("actions")), tools=tools, policy=_str(doc.get("policy")),
                   run=_str(doc.get("run")), retired=retired)


def _tags(body: Any, source: str, line: Any, problems: list[Problem]) -> dict[str, str | None]:
    tags = body.get("tags")
    out: dict[str, str | None] = dict.fromkeys(TAGS)
    if tags is None:
        return out
    if not isinstance(tags, dict):
        problems.append(Problem(source, line(body, "tags"), "`tags` must be a mapping"))
        return out
    for key, value in tags.items():
        if key not in TAGS:
            problems.append(Problem(source, line(tags, key), f"unknown tag `{key}` (use " + ", ".join(TAGS) + ")"))
        elif value is not None and value not in TAGS[key]:
            problems.append(Problem(source, line(tags, key),
                                    f"tag `{key}` cannot be `{value}` (use " + ", ".join(TAGS[key]) + ")"))
        else:
            out[key] = value
    return out


def _notes(body: Any, name: Any, source: str, line: Any, problems: list[Problem]) -> str | None:
    notes = body.get("notes")
    if notes is not None and not isinstance(notes, str):
        problems.append(Problem(source, line(body, "notes"), f"`notes` of `{name}` must be text"))
        return None
    return str(notes) if notes is not None else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def _refused(problems: list[Problem]) -> InputError:
    shown = sorted(problems, key=lambda p: (p.line, p.msg))
    return InputError("the catalog was refused:\n" + "\n".join(str(p) for p in shown))


# ---- checking a policy against the catalog ---------------------------------------------------------------
# The types each test can be true on (None: any); a path that never has one of them makes the test dead.
_NUMBERS = {NUMBER, NUMERIC_STR}
_TEXTS = {STRING, NUMERIC_STR}


def _operand_types(op: str, operand: Any) -> set[str] | None:
    if op in ("gt", "gte", "lt", "lte"):
        return _NUMBERS if isinstance(operand, (int, float)) and not isinstance(operand, bool) else None
    if op in ("matches", "startswith", "endswith"):
        return _TEXTS
    if op in ("eq", "ne", "in", "not_in"):
        items = operand if op in ("in", "not_in") and isinstance(operand, (list, tuple)) else [operand]
        out: set[str] = set()
        for item in items:
            if item is None:
                out.add(NULL)
            elif isinstance(item, bool):
                out.add(BOOL)
            elif isinstance(item, (int, float)):
                out |= _NUMBERS
            elif isinstance(item, str):
                out |= _TEXTS
            else:
                return None
        return out
    return None


def catalog_warnings(policy: Policy, catalog: Catalog) -> list[Problem]:
    """Warnings (code `catalog`), each at `file:line` of its rule or test: a rule whose `tool:` names no
    logged tool, a field no logged call of the rule's tools has, a test of a type its path never has.

    >>> [str(w) for w in catalog_warnings(load_policy("p.yaml"), load_catalog("catalog.yaml"))]
    ['p.yaml:12: rule `pay` reads `args.amout`, which no logged call of `payment.send` has']
    """
    out: list[Problem] = []
    for rule in policy.rules:
        for glob in rule.tools:
            if not any(glob_matches(glob, t) for t in catalog.tools):
                out.append(Problem(policy.source, rule.line, f"rule `{rule.id}` names tool `{glob}`, which never "
                                   "appears in the catalog", "catalog"))
        matched = sorted(t for t in catalog.tools if tool_matches(rule.tool_regex, t))
        if not matched:
            continue
        shown = ", ".join(f"`{t}`" for t in matched[:3]) + (" ..." if len(matched) > 3 else "")
        for leaf in leaves(rule.when):
            f = leaf.field
            if f is None or f.root not in ("args", "context"):
                continue
            line = leaf.line or rule.line
            seen: dict[str, int] = {}
            for t in matched:
                for kind, n in (catalog.path_types(t, f.name) or {}).items():
                    seen[kind] = seen.get(kind, 0) + n
            if not seen:
                out.append(Problem(policy.source, line, f"rule `{rule.id}` reads `{f.name}`, which no logged call "
                                   f"of {shown} has", "catalog"))
                continue
            wanted = _NUMBERS if isinstance(leaf, Window) else _operand_types(leaf.op, leaf.operand)
            if wanted is not None and not wanted & set(seen):
                test = "sum" if isinstance(leaf, Window) else leaf.op
                has = ", ".join(sorted(seen))
                out.append(Problem(policy.source, line, f"rule `{rule.id}` tests `{f.name}` with `{test}` on "
                                   f"{_kinds(wanted)}, but logged calls of {shown} have it only as {has}",
                                   "catalog"))
    return sorted(out, key=lambda p: (p.file, p.line, p.msg))


def _kinds(kinds: set[str]) -> str:
    if kinds == _NUMBERS:
        return "a number"
    if kinds == _TEXTS:
        return "a string"
    return " or ".join(sorted(kinds))
