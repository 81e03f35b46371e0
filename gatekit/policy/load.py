"""Load a policy file: YAML with line numbers, every problem reported at `file:line`."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import re2
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gatekit.errors import PolicyError, Problem
from gatekit.policy.conditions import (
    ORDER_OPS, OPS, PER_KEYS, WEEKDAYS, All, Any_, Cond, Field, Not, Test, Window,
)
from gatekit.policy.model import VERDICTS, Example, Policy, Rule, Tier
from gatekit.policy.schema import CaseFile, PolicyFile
from gatekit.policy.timezones import zone_names
from gatekit.policy.values import MAX_DURATION_US, compile_re2, glob_to_re2, parse_duration, re2_message

__all__ = ["load_cases", "load_policy", "parse_cases", "parse_policy"]

Loc = tuple[Any, ...]


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file.

    >>> policy = load_policy("policies/starter.yaml")

    Raises `PolicyError` listing every problem, each at `file:line`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(str(path), 0, f"cannot read policy: {exc}", "unreadable")]) from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy text (YAML); `source` names it in problems."""
    return _Loader(text, source).load()


def load_cases(path: str | Path) -> tuple[Example, ...]:
    """Load a case file for `gatekit test`: a YAML list of cases (or a mapping with `cases:`), each an
    example as a policy's `examples:` holds them.

    >>> cases = load_cases("policies/starter-cases.yaml")

    Raises `PolicyError` listing every problem, each at `file:line`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(str(path), 0, f"cannot read case file: {exc}", "unreadable")],
                          what="the case file") from exc
    return parse_cases(text, source=str(path))


def parse_cases(text: str, source: str = "<cases>") -> tuple[Example, ...]:
    """Validate case-file text (YAML); `source` names it in problems."""
    return _Loader(text, source, what="the case file").load_cases()


class _Loader:
    def __init__(self, text: str, source: str, what: str = "the policy") -> None:
        self.what = what
        self.text = text
        self.source = source
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []

    # -- problems and positions -------------------------------------------------------------------------
    def problem(self, loc: Loc, msg: str, code: str = "invalid") -> None:
        self.problems.append(Problem(self.source, self.line_of(loc), msg, code, tuple(loc)))

    def line_of(self, loc: Loc) -> int:
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def _index(self, node: Any, loc: Loc) -> None:
        if isinstance(node, CommentedMap):
            for key in node:
                try:
                    self.lines[loc + (key,)] = node.lc.key(key)[0] + 1
                except (KeyError, TypeError):
                    pass
                self._index(node[key], loc + (key,))
        elif isinstance(node, CommentedSeq):
            for i, item in enumerate(node):
                try:
                    self.lines[loc + (i,)] = node.lc.item(i)[0] + 1
                except (KeyError, TypeError, IndexError):
                    pass
                self._index(item, loc + (i,))

    # -- the pass ---------------------------------------------------------------------------------------
    def _read(self) -> Any:
        yaml = YAML(typ="rt")
        yaml.Constructor = _Constructor
        try:
            return yaml.load(self.text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise self.refused([Problem(self.source, line, f"invalid YAML: {exc.problem or exc}", "yaml")]) from exc
        except YAMLError as exc:
            raise self.refused([Problem(self.source, 1, f"invalid YAML: {exc}", "yaml")]) from exc

    def refused(self, problems: list[Problem]) -> PolicyError:
        return PolicyError(_dedupe(problems), what=self.what)

    def load_cases(self) -> tuple[Example, ...]:
        doc = self._read()
        self.lines[()] = 1
        if isinstance(doc, list):  # a bare list of cases: as if under `cases:`
            self.lines[("cases",)] = 1
            self._index(doc, ("cases",))
            data = {"cases": _plain(doc)}
        elif isinstance(doc, dict):
            self._index(doc, ())
            data = _plain(doc)
        else:
            raise self.refused([Problem(self.source, 1, "a case file must be a YAML list of cases", "type")])
        data = _dates_as_text(data)
        self._surrogates(data, ())
        try:
            CaseFile.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                self._pydantic_problem(err)
        examples = self._examples(data.get("cases"), "cases", None, None)
        if not examples and not self.problems:
            self.problem((), "the case file has no cases", "empty")
        if self.problems:
            raise self.refused(self.problems)
        return examples

    def load(self) -> Policy:
        doc = self._read()
        if not isinstance(doc, dict):
            raise PolicyError([Problem(self.source, 1, "a policy must be a YAML mapping", "type")])
        self.lines[()] = 1
        self._index(doc, ())
        data = _dates_as_text(_plain(doc))
        self._surrogates(data, ())

        try:
            PolicyFile.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                self._pydantic_problem(err)

        tiers = self._tiers(data.get("tiers"))
        rules = self._rules(data.get("rules"), tiers)
        tz = data.get("timezone", "UTC")
        if isinstance(tz, str) and tz not in zone_names():  # the pinned tzdata's IANA names, on every engine
            self.problem(("timezone",), f"unknown time zone `{tz}` (use an IANA name such as `Europe/Paris`)",
                         "timezone")
        examples = self._examples(data.get("examples"), "examples", rules, tiers)
        if self.problems:
            raise PolicyError(_dedupe(self.problems))
        return Policy(
            name=data["name"],
            rules=tuple(rules),
            tiers=tiers,
            default=data.get("default", "allow"),
            on_error=data.get("on_error", "escalate"),
            timezone=tz,
            version=data["version"],
            text=self.text,
            source=self.source,
            fingerprint="sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest(),
            examples=examples,
        )

    def _pydantic_problem(self, err: dict[str, Any]) -> None:
        loc = tuple(err["loc"])
        # `when` is checked by this loader with better messages; skip pydantic's view of it
        if "when" in loc[:3] and len(loc) > 3:
            return
        kind = err["type"]
        field = ".".join(str(x) for x in loc) or "policy"
        if kind == "extra_forbidden":
            msg = f"unknown key `{loc[-1]}`"
        elif kind == "missing":
            msg = f"missing required key `{loc[-1]}`"
        elif kind == "literal_error":
            msg = f"`{field}`: {err['msg'].lower()}, got `{err.get('input')}`"
        else:
            msg = f"`{field}`: {err['msg'][0].lower() + err['msg'][1:]}"
            if isinstance(err.get("input"), (str, int, float)) and not isinstance(err.get("input"), bool):
                msg += f", got `{_show(err['input'])}`"
            # a union's branches each report; keep the message short and singular
            if len(loc) >= 1 and loc[-1] in ("str", "int", "list[str]"):
                loc = loc[:-1]
                msg = f"`{'.'.join(str(x) for x in loc)}`: wrong type, got `{err.get('input')!r}`"
        self.problem(loc, msg, kind)

    def _surrogates(self, node: Any, loc: Loc) -> None:
        """A lone surrogate (an unpaired `\\ud83d`) is no character: no engine can hold it."""
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            for text in (key, value):
                if isinstance(text, str) and any("\ud800" <= c <= "\udfff" for c in text):
                    self.problem(loc + (key,), f"a lone surrogate in `{text.encode('unicode_escape').decode()}` "
                                               "(escape a character outside the BMP as its UTF-16 pair)",
                                 "surrogate")
            self._surrogates(value, loc + (key,))

    # -- examples (a policy's `examples:`, a case file's cases) ------------------------------------------
    def _examples(self, raw: Any, key: str, rules: list[Rule] | None,
                  tiers: dict[str, Tier] | None) -> tuple[Example, ...]:
        """Each valid item as an `Example`; with the policy's rules and tiers, the ids they name are checked."""
        if not isinstance(raw, list):
            return ()
        rule_ids = {r.id for r in rules} if rules is not None else None
        out: list[Example] = []
        for i, spec in enumerate(raw):
            if not isinstance(spec, dict):
                continue
            loc = (key, i)
            name = spec.get("name") if isinstance(spec.get("name"), str) else f"case {i + 1}"
            inline = {k: spec[k] for k in _CALL_KEYS if k in spec}
            if "action" in spec and inline:
                self.problem(loc, f"case `{name}`: give the call as `action:` or as its keys at the top, not both "
                                  f"(found `action` and `{sorted(inline)[0]}`)", "case")
                continue
            action = spec.get("action") if "action" in spec else inline
            if not isinstance(action, dict) or not isinstance(action.get("tool"), str):
                self.problem(loc + (("action",) if "action" in spec else ()),
                             f"case `{name}`: the call needs a string `tool`", "case")
                continue
            history = spec.get("history") or []
            if not all(isinstance(h, dict) and isinstance(h.get("tool"), str) for h in history):
                self.problem(loc + ("history",), f"case `{name}`: each call of `history` needs a string `tool`",
                             "case")
                continue
            expected = spec.get("rules")
            match = "includes" if isinstance(expected, dict) else "exact"
            ids = expected.get("includes") if isinstance(expected, dict) else expected
            if rule_ids is not None and isinstance(ids, list):
                for rid in ids:
                    if rid not in rule_ids:
                        self.problem(loc + ("rules",), f"case `{name}`: no rule `{rid}` in the policy", "case")
            tier = spec.get("tier")
            if tiers is not None and isinstance(tier, str) and tier not in tiers:
                self.problem(loc + ("tier",), f"case `{name}`: no tier `{tier}` in the policy", "case")
            if spec.get("expect") not in VERDICTS or not (ids is None or isinstance(ids, list)):
                continue  # the schema's problem
            out.append(Example(
                name=name, action=dict(action), expect=spec["expect"],
                rules=tuple(ids) if ids is not None else None, rules_match=match,
                tier=tier if isinstance(tier, str) else None,
                errors=tuple(spec["errors"]) if isinstance(spec.get("errors"), list) else None,
                history=tuple(dict(h) for h in history), line=self.line_of(loc)))
        return tuple(out)

    # -- tiers and rules --------------------------------------------------------------------------------
    def _tiers(self, raw: Any) -> dict[str, Tier]:
        tiers: dict[str, Tier] = {}
        if not isinstance(raw, dict):
            return tiers
        for name, spec in raw.items():
            if not isinstance(spec, dict):
                continue
            durations = {}
            for key in ("timeout", "approval_ttl"):
                if spec.get(key) is not None:
                    try:
                        durations[key] = parse_duration(spec[key])
                    except ValueError as exc:
                        self.problem(("tiers", name, key), f"tier `{name}` {key}: {exc}", "duration")
            approvals = spec.get("approvals", 1)
            roles = spec.get("roles") or []
            if isinstance(approvals, int) and isinstance(roles, list) and len(set(map(str, roles))) > approvals:
                self.problem(("tiers", name, "roles"),
                             f"tier `{name}` requires {len(roles)} roles but only {approvals} approvals", "tier")
            tiers[str(name)] = Tier(
                name=str(name),
                approvals=approvals if isinstance(approvals, int) else 1,
                roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
                timeout_us=durations.get("timeout"),
                approval_ttl_us=durations.get("approval_ttl"),
            )
        return tiers

    def _rules(self, raw: Any, tiers: dict[str, Tier]) -> list[Rule]:
        if not isinstance(raw, list):
            return []
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(raw):
            if not isinstance(spec, dict):
                continue
            loc = ("rules", i)
            rid = spec.get("id")
            if isinstance(rid, str):
                if rid in seen:
                    self.problem(loc + ("id",), f"duplicate rule id `{rid}` (first at line {seen[rid]})", "duplicate")
                else:
                    seen[rid] = self.line_of(loc + ("id",))
            tools = spec.get("tool")
            tool_list = [tools] if isinstance(tools, str) else tools if isinstance(tools, list) else []
            if isinstance(tools, list) and not tools:
                self.problem(loc + ("tool",), "`tool` needs at least one name or glob", "tool")
            regexes = []
            for j, pattern in enumerate(tool_list):
                if not isinstance(pattern, str) or not pattern:
                    if isinstance(tools, list):
                        self.problem(loc + ("tool", j), f"tool must be a non-empty string, got `{pattern!r}`", "tool")
                    continue
                regex = glob_to_re2(pattern)
                try:
                    compile_re2(regex)
                except re2.error as exc:
                    self.problem(loc + ("tool", j) if isinstance(tools, list) else loc + ("tool",),
                                 f"invalid tool glob `{pattern}`: {re2_message(exc)}", "glob")
                    continue
                regexes.append(regex)
            action = spec.get("action")
            tier = spec.get("tier")
            if tier is not None and isinstance(tier, str):
                if tier not in tiers:
                    known = ", ".join(f"`{t}`" for t in tiers) or "none defined"
                    self.problem(loc + ("tier",), f"unknown tier `{tier}` (tiers: {known})", "tier")
                elif action != "escalate":
                    self.problem(loc + ("tier",), f"`tier` applies only to escalate rules, not `{action}`", "tier")
            when_raw = spec.get("when")
            when: Cond = All(())
            if when_raw is not None:
                when = self._when(when_raw, loc + ("when",))
            if isinstance(rid, str) and regexes and action in ("allow", "deny", "escalate"):
                rules.append(Rule(
                    id=rid,
                    tools=tuple(t for t in tool_list if isinstance(t, str)),
                    tool_regex="|".join(f"(?:{r})" for r in regexes),
                    action=action,
                    when=when,
                    tier=tier if isinstance(tier, str) else None,
                    reason=spec.get("reason") if isinstance(spec.get("reason"), str) else None,
                    mode=spec.get("mode", "enforce") if spec.get("mode") in ("enforce", "shadow") else "enforce",
                    line=self.line_of(loc),
                ))
        return rules

    # -- conditions -------------------------------------------------------------------------------------
    def _when(self, node: Any, loc: Loc) -> Cond:
        if not isinstance(node, dict):
            self.problem(loc, f"`when` must be a mapping of conditions, got `{_show(node)}`", "when")
            return All(())
        items: list[Cond] = []
        for key, value in node.items():
            at = loc + (key,)
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    self.problem(at, f"`{key}` needs a non-empty list of conditions", "when")
                    continue
                subs = tuple(self._when(v, at + (k,)) for k, v in enumerate(value))
                items.append(All(subs) if key == "all" else Any_(subs))
            elif key == "not":
                items.append(Not(self._when(value, at)))
            elif key in ("rate", "sum"):
                window = self._window(key, value, at)
                if window is not None:
                    items.append(window)
            else:
                items.extend(self._field_tests(str(key), value, at))
        return items[0] if len(items) == 1 else All(tuple(items))

    def _field_tests(self, name: str, value: Any, loc: Loc) -> list[Test]:
        try:
            field = Field.parse(name)
        except ValueError as exc:
            self.problem(loc, str(exc), "field")
            return []
        tests = value.items() if isinstance(value, dict) else [("eq", value)]
        if isinstance(value, dict) and not value:
            self.problem(loc, f"`{name}` has no test", "when")
        out = []
        for op, operand in tests:
            at = loc + (op,) if isinstance(value, dict) else loc
            if op not in OPS:
                self.problem(at, f"unknown test `{op}` (tests: {', '.join(OPS)})", "test")
                continue
            ok, norm = self._operand(field, op, operand, at)
            if ok:
                out.append(Test(field, op, norm, self.line_of(at)))
        return out

    def _operand(self, field: Field, op: str, operand: Any, loc: Loc) -> tuple[bool, Any]:
        where = f"`{field.name}` {op}"
        try:
            norm = _norm(operand)
        except ValueError as exc:
            self.problem(loc, f"{where}: {exc}", "operand")
            return False, None
        is_num = isinstance(norm, float)
        if op in ORDER_OPS:
            if field.name == "time.date":
                if not (isinstance(norm, str) and _is_date(norm)):
                    self.problem(loc, f"{where} needs a date (YYYY-MM-DD), got `{_show(operand)}`", "operand")
                    return False, None
            elif not is_num:
                self.problem(loc, f"{where} needs a number, got `{_show(operand)}`", "operand")
                return False, None
        elif op in ("in", "not_in"):
            if not isinstance(norm, tuple):
                self.problem(loc, f"{where} needs a list, got `{_show(operand)}`", "operand")
                return False, None
        elif op in ("matches", "startswith", "endswith"):
            if not isinstance(norm, str):
                self.problem(loc, f"{where} needs a string, got `{_show(operand)}`", "operand")
                return False, None
            if op == "matches":
                try:
                    compile_re2(norm)
                except re2.error as exc:
                    self.problem(loc, f"{where}: invalid RE2 pattern `{norm}`: {re2_message(exc)}", "regex")
                    return False, None
                unportable = _unportable(norm)
                if unportable:
                    self.problem(loc, f"{where}: `{norm}`: {unportable}", "regex")
                    return False, None
        elif op == "exists":
            if not isinstance(norm, bool):
                self.problem(loc, f"{where} needs true or false, got `{_show(operand)}`", "operand")
                return False, None
        if field.name == "time.weekday" and op in ("eq", "ne", "in", "not_in"):
            days = norm if isinstance(norm, tuple) else (norm,)
            bad = [d for d in days if d not in WEEKDAYS]
            if bad:
                self.problem(loc, f"{where}: `{_show(bad[0])}` is not a weekday ({', '.join(WEEKDAYS)})", "operand")
                return False, None
        if field.name == "time.hour" and op in ("eq", "ne", "in", "not_in"):
            hours = norm if isinstance(norm, tuple) else (norm,)
            if any(not (isinstance(h, float) and h.is_integer() and 0 <= h <= 23) for h in hours):
                self.problem(loc, f"{where}: hours are whole numbers 0-23", "operand")
                return False, None
        return True, norm

    def _window(self, kind: str, node: Any, loc: Loc) -> Window | None:
        if not isinstance(node, dict):
            self.problem(loc, f"`{kind}` needs a mapping with window and gt or gte", "window")
            return None
        allowed = {"per", "window", "gt", "gte"} | ({"field"} if kind == "sum" else set())
        ok = True
        for key in node:
            if key not in allowed:
                self.problem(loc + (key,), f"unknown key `{key}` in `{kind}` (keys: {', '.join(sorted(allowed))})",
                             "window")
                ok = False
        per = node.get("per")
        if per is not None and per not in PER_KEYS:
            self.problem(loc + ("per",), f"`{kind}` per must be one of {', '.join(PER_KEYS)}, got `{_show(per)}`",
                         "window")
            ok = False
        window_us = 0
        if "window" not in node:
            self.problem(loc, f"`{kind}` needs `window` (e.g. 10m)", "window")
            ok = False
        else:
            try:
                window_us = parse_duration(node["window"])
            except ValueError as exc:
                self.problem(loc + ("window",), f"`{kind}` window: {exc}", "duration")
                ok = False
            else:
                if window_us > MAX_DURATION_US:
                    self.problem(loc + ("window",), f"`{kind}` window: `{node['window']}` is longer than 36500d "
                                                    "(100 years), the longest window", "duration")
                    ok = False
        ops = [k for k in ("gt", "gte") if k in node]
        threshold = 0.0
        if len(ops) != 1:
            self.problem(loc, f"`{kind}` needs exactly one of gt or gte", "window")
            ok = False
        else:
            try:
                threshold = _norm(node[ops[0]])
            except ValueError:
                threshold = None
            if not isinstance(threshold, float):
                self.problem(loc + (ops[0],), f"`{kind}` {ops[0]} needs a number", "window")
                ok = False
        field = None
        if kind == "sum":
            raw = node.get("field")
            try:
                field = Field.parse(raw) if isinstance(raw, str) else None
            except ValueError as exc:
                self.problem(loc + ("field",), str(exc), "field")
                return None
            if field is None or field.root not in ("args", "context"):
                self.problem(loc + ("field",) if raw is not None else loc,
                             "`sum` needs `field`: an args.<path> or context.<path>", "window")
                ok = False
        if not ok:
            return None
        return Window(kind, window_us, ops[0], threshold, per, field, self.line_of(loc))


_CALL_KEYS = ("tool", "args", "context", "agent", "session", "user", "ts")


class _Stamp(str):
    """An unquoted YAML timestamp: its text as written; `.value` is YAML's reading (for examples' `ts`)."""

    value: dt.datetime | dt.date


class _Constructor(RoundTripConstructor):
    """The round-trip constructor, with YAML timestamps kept as their text (`_Stamp`): an operand
    `2026-01-15T10:00:00Z` compares as that text, not as Python's rewrite `2026-01-15T10:00:00+00:00`."""

    def construct_stamp(self, node: Any) -> _Stamp:
        out = _Stamp(node.value)
        out.value = self.construct_yaml_timestamp(node)
        return out


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_stamp)


def _unportable(pattern: str) -> str | None:
    """Why an RE2 pattern means different things on the engines' RE2 builds, or None.

    `\\p{..}`, `\\pL` and `\\P..` depend on the Unicode version each build knows (622 code points differ
    between google-re2 and DuckDB's), and DuckDB's RE2 refuses `(?<name>...)`. The scan follows RE2's syntax:
    escapes, `\\Q...\\E` and character classes (with `[:alpha:]`).
    """
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "pP":
                return ("Unicode class escapes (`\\p{..}`, `\\pL`, `\\P..`) differ between the engines' "
                        "Unicode versions: list the characters or ranges instead (e.g. `[a-zA-Z\\x{e0}-\\x{ff}]`)")
            if nxt == "Q" and not in_class:
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                i = n if end < 0 else end + 2
                continue
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            i += 1
            if pattern.startswith("^", i):
                i += 1
            if pattern.startswith("]", i):  # a leading `]` is a literal
                i += 1
            continue
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            return "DuckDB's RE2 refuses `(?<name>...)`: write the named group as `(?P<name>...)`"
        i += 1
    return None


def _dates_as_text(data: Any) -> Any:
    """YAML timestamps in examples and cases (an unquoted `ts: 2026-11-02T10:00:00Z`) as ISO 8601 text, as the
    action contract writes them; dates too. Operands elsewhere keep their own handling."""
    if not isinstance(data, dict):
        return data
    return {k: (_iso(v) if k in ("examples", "cases") else v) for k, v in data.items()}


def _iso(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _iso(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_iso(v) for v in node]
    if isinstance(node, _Stamp):
        node = node.value
    if isinstance(node, dt.datetime):
        ts = node if node.tzinfo is not None else node.replace(tzinfo=dt.timezone.utc)
        return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(node, dt.date):
        return node.isoformat()
    return node


def _norm(value: Any) -> Any:
    """A YAML operand as both evaluators compare it: numbers as floats, dates as ISO text, lists as tuples."""
    if value is None:
        raise ValueError("`null` cannot be compared (use `exists: false`)")
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:
            raise ValueError(f"number `{value}` is out of range") from None
        if not math.isfinite(out):
            raise ValueError(f"`{value}` is not a finite number")
        return out
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings cannot contain NUL")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    raise ValueError(f"cannot compare with `{_show(value)}` (use a string, number, boolean or list)")


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {(_pairs(str(k)) if not isinstance(k, (int, float, bool)) else k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    name = type(node).__name__
    if name == "ScalarFloat":
        return float(node)
    if name == "ScalarBoolean" or isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, _Stamp):
        return node
    if isinstance(node, str):
        return _pairs(str(node))
    return node


def _pairs(text: str) -> str:
    """JSON's escaped UTF-16 pairs (`\\ud83d\\ude80`, what json.dumps writes) as the character they encode;
    YAML reads each half as a lone surrogate. A lone one stays (and is refused)."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return re.sub("[\ud800-\udbff][\udc00-\udfff]",
                  lambda m: m.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le"), text)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.line, p.msg) not in seen:
            seen.add((p.line, p.msg))
            out.append(p)
    return out
