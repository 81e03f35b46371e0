"""AgentDojo runs: one action per tool call, labelled from the benchmark's own ground truth.

A runs directory holds `<model>/<suite>/<user_task>/<attack>/<injection_task | none>.json`, one session a
file (the layout of AgentDojo's `runs/`). Each tool call in an assistant message becomes an action, in
order: `session` is the file's path below the runs directory, `agent` the model folder, `context` holds
`suite`, `attack` (`none` when the run had none), `injection_task` and `user_task`. Nothing records when a
call happened, so timestamps are made up: sessions one hour apart (in the name order of every run file of
the runs directory, from `start`), each session's `duration` spread evenly over its calls (call `i` of `n`
at `duration * i / n`). `outcome` is `executed`, `failed` (the tool returned an error) or none (no result).
`source_line` is the call's position among the session's calls; `action_id` is `agentdojo:<session>#<that>`.

Labels come from the injection tasks' ground truth: by default from the `agentdojo` package when it is
installed (`pip install gatekit[agentdojo]`), else from the ground-truth table shipped with gatekit
(`BUNDLED`, recorded once from the package: every injection task of every benchmark version it knows, so
the labels are the same), or from another table (the `labels` option names its file, JSON as
`GroundTruthTable.dump` writes it). Then:
- a session with attack `none`: every call `benign`;
- a session whose user task is an injection task, or whose injection task no benchmark version knows
  (tried in `VERSIONS` order): no labels;
- an attacked session: a call is `harmful` when it matches a ground-truth call of the session's injection
  task (`ground_truth(env)` with the suite's default environment): the same function, and every value
  the ground-truth call fixes (its `placeholder_args` when present, else its `args`; not strings starting
  with `$`, not empty values) *appears* in the call's arguments: `json.dumps(value, sort_keys=True)`,
  lowercased, without its surrounding `"`, is a substring of `json.dumps(call_args, sort_keys=True)`
  lowercased. A matching call of a read function (`READS`) gets no label; every other call is `benign`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gatekit.action import format_ts
from gatekit.errors import GatekitError, LogFormatError
from gatekit.logs.adapters._files import parse_document, read_bytes
from gatekit.logs.adapters.format import Format
from gatekit.logs.contract import Record, Rejected

__all__ = [
    "BUNDLED", "FORMAT", "READS", "START", "VERSIONS", "GroundTruth", "GroundTruthTable", "Reader", "appears", "claims",
    "label_call",
]

VERSIONS = ("v1", "v1.1", "v1.1.1", "v1.1.2", "v1.2", "v1.2.1", "v1.2.2")
READS = ("get_", "read_", "search_", "list_", "check_")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
_LAYOUT = "*/*/*/*/*.json"  # below a runs directory
_SESSION_GAP = timedelta(hours=1)

Fixed = tuple[str, tuple[str, ...]]  # a ground-truth call: its function and the texts its fixed values must show
Truth = tuple[str, list[tuple[str, dict[str, Any]]]]  # (version, each ground-truth call's function and fixed args)
Labeller = Callable[[str, dict[str, Any]], "str | None"]  # (function, args) -> label


def claims(value: Any) -> bool:
    """An AgentDojo run file: `suite_name`, `user_task_id` and a `messages` list."""
    return (isinstance(value, dict) and isinstance(value.get("messages"), list)
            and "suite_name" in value and "user_task_id" in value)


def appears(value: Any, call_args: dict[str, Any]) -> bool:
    """Whether a ground-truth value shows in a call's arguments (see the module's docstring)."""
    return _needle(value) in _haystack(call_args)


def _needle(value: Any) -> str:
    text = json.dumps(value, sort_keys=True).lower()
    return text[1:-1] if len(text) >= 2 and text[0] == '"' and text[-1] == '"' else text


def _haystack(call_args: dict[str, Any]) -> str:
    return json.dumps(call_args, sort_keys=True).lower()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict, tuple)) and len(value) == 0)


def fixed_values(args: dict[str, Any]) -> tuple[str, ...]:
    """The needles of a ground-truth call's arguments: every value but `$`-strings and empty ones."""
    return tuple(_needle(v) for v in args.values()
                 if not (isinstance(v, str) and v.startswith("$")) and not _empty(v))


def label_call(function: str, call_args: dict[str, Any], truth: list[Fixed]) -> str | None:
    """The label of one call of an attacked session whose injection task's ground truth is `truth`."""
    haystack = _haystack(call_args)
    for gt_function, needles in truth:
        if gt_function == function and all(n in haystack for n in needles):
            return None if function.startswith(READS) else "harmful"
    return "benign"


class GroundTruth:
    """The ground-truth calls of AgentDojo's injection tasks, from the `agentdojo` package (imported on
    first use), each computed once with the suite's default environment."""

    def __init__(self) -> None:
        from agentdojo.task_suite.load_suites import get_suites  # the optional dependency

        self._get_suites = get_suites
        self._suites: dict[str, dict[str, Any]] = {}
        self._envs: dict[tuple[str, str], Any] = {}
        self._calls: dict[tuple[str, str], list[Fixed] | None] = {}

    def calls(self, suite: str, injection_task: str) -> list[Fixed] | None:
        """`(function, needles)` of each ground-truth call, from the first version in `VERSIONS` that
        knows the task; None when none does."""
        key = (suite, injection_task)
        if key not in self._calls:
            self._calls[key] = self._compute(suite, injection_task)
        return self._calls[key]

    def _compute(self, suite_name: str, injection_task: str) -> list[Fixed] | None:
        found = self.ground_truth(suite_name, injection_task)
        return None if found is None else [(function, fixed_values(args)) for function, args in found[1]]

    def ground_truth(self, suite_name: str, injection_task: str) -> Truth | None:
        """(version, each ground-truth call's function and the arguments it fixes: `placeholder_args` when
        present, else `args`) from the first version in `VERSIONS` that knows the task; None when none does."""
        for version in VERSIONS:
            suite = self._suite(version, suite_name)
            if suite is None or injection_task not in suite.injection_tasks:
                continue
            env = self._envs.get((version, suite_name))
            if env is None:
                env = self._envs[(version, suite_name)] = suite.load_and_inject_default_environment({})
            try:
                truth = suite.injection_tasks[injection_task].ground_truth(env)
            except Exception as e:  # noqa: BLE001  a broken package is not a bad log: say so
                raise GatekitError(f"agentdojo {version} cannot give the ground truth of "
                                   f"`{suite_name}/{injection_task}`: {e}") from e
            return version, [(call.function, dict(call.placeholder_args if call.placeholder_args is not None
                                                  else call.args)) for call in truth]
        return None

    def table(self) -> GroundTruthTable:
        """Every injection task of every suite the package knows, for `GroundTruthTable.dump`."""
        tasks: dict[tuple[str, str], Truth] = {}
        for version in VERSIONS:
            for suite_name, suite in sorted(self._suites_of(version).items()):
                for task in sorted(suite.injection_tasks):
                    if (suite_name, task) not in tasks:
                        found = self.ground_truth(suite_name, task)
                        if found is not None:
                            tasks[(suite_name, task)] = found
        return GroundTruthTable(tasks)

    def _suite(self, version: str, name: str) -> Any:
        return self._suites_of(version).get(name)

    def _suites_of(self, version: str) -> dict[str, Any]:
        if version not in self._suites:
            try:
                self._suites[version] = self._get_suites(version)
            except (KeyError, ValueError):
                self._suites[version] = {}
        return self._suites[version]


class GroundTruthTable:
    """The ground truth recorded from the `agentdojo` package (`GroundTruth().table()`): the same `calls`,
    read from a file, with no package needed.

    >>> GroundTruthTable.load("agentdojo-ground-truth.json").calls("banking", "injection_task_8")[-1]
    ('send_money', ('us133000000121212121212',))
    """

    def __init__(self, tasks: dict[tuple[str, str], Truth]) -> None:
        self.tasks = tasks

    def calls(self, suite: str, injection_task: str) -> list[Fixed] | None:
        found = self.tasks.get((suite, injection_task))
        return None if found is None else [(function, fixed_values(args)) for function, args in found[1]]

    def dump(self) -> str:
        """The table as JSON text: `{suite: {injection_task: {"version", "calls": [{"function", "args"}]}}}`."""
        out: dict[str, dict[str, Any]] = {}
        for (suite, task), (version, calls) in sorted(self.tasks.items()):
            out.setdefault(suite, {})[task] = {
                "version": version, "calls": [{"function": f, "args": args} for f, args in calls]}
        # not sort_keys: each call's args stay in the package's order, the order of `calls`' needles
        return json.dumps({"ground_truth": out}, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, path: Path | str) -> GroundTruthTable:
        """Read a table `dump` wrote; `LogFormatError` when the file cannot be read or is not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tasks = {(suite, task): (entry["version"], [(c["function"], c["args"]) for c in entry["calls"]])
                     for suite, entries in data["ground_truth"].items() for task, entry in entries.items()}
        except OSError as e:
            raise LogFormatError(f"cannot read ground truth `{path}`: {e.strerror or e}") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LogFormatError(f"cannot read ground truth `{path}`: not a ground-truth table ({e})") from e
        return cls(tasks)


# The table recorded from agentdojo 0.1.35 (tests/adapters/recorders.py re-records it), shipped as package data.
BUNDLED = Path(__file__).with_name("agentdojo-ground-truth.json")


def _ground_truth(labels: bool | Path | str | None) -> GroundTruth | GroundTruthTable | None:
    if labels is False:
        return None
    if labels is not None and labels is not True:
        return GroundTruthTable.load(labels)
    try:
        return GroundTruth()
    except ImportError:
        return GroundTruthTable.load(BUNDLED)


class Reader:
    """Reads AgentDojo run files; one per ingest, so sessions' places and ground truths are found once.

    `labels`: True or None (the `agentdojo` package when installed, else the bundled table), False (none),
    or the path of a ground-truth table (`GroundTruthTable`).

    >>> read = Reader(labels="agentdojo-ground-truth.json")
    >>> [r for _, r, _ in read(Path("runs/gpt-4o/banking/user_task_0/none/none.json"))]
    """

    def __init__(self, labels: bool | Path | str | None = None, start: datetime = START) -> None:
        self.truth = _ground_truth(labels)
        self.start = start
        self._places: dict[Path, dict[str, int]] = {}

    @property
    def labels(self) -> bool:
        return self.truth is not None

    def __call__(self, path: Path) -> Iterator[Record]:
        data = read_bytes(path)
        run = parse_document(data)
        if isinstance(run, Rejected) or not claims(run):
            reason = run if isinstance(run, Rejected) else Rejected(
                "not an agentdojo run: expected an object with `suite_name`, `user_task_id` and a `messages` list")
            yield 1, reason, data
            return
        root, session, agent = self._place(path, run)
        place = self._places_of(root).get(session, 0)
        calls = list(_calls(run["messages"]))
        duration = run.get("duration")
        duration = float(duration) if isinstance(duration, (int, float)) and duration >= 0 else 0.0
        begin = self.start + place * _SESSION_GAP
        attack = run.get("attack_type") or "none"
        context = {"suite": run.get("suite_name"), "attack": attack,
                   "injection_task": run.get("injection_task_id"), "user_task": run.get("user_task_id")}
        label = self._labeller(run, attack)
        for i, (call, outcome) in enumerate(calls):
            number = i + 1
            function, args = _get(call, "function"), _get(call, "args")
            if args is None:
                args = {}
            if not isinstance(function, str) or not function:
                yield number, Rejected("tool call without a `function` name"), _text(call)
                continue
            if not isinstance(args, dict):
                yield number, Rejected(f"`args` of `{function}` is not an object"), _text(call)
                continue
            record: dict[str, Any] = {
                "action_id": f"agentdojo:{session}#{number}",
                "ts": format_ts(begin + timedelta(seconds=duration * i / len(calls))),
                "agent": agent, "session": session, "tool": function, "args": args, "context": context,
                "outcome": outcome, "label": label(function, args),
                "utility": run.get("utility"), "security": run.get("security"),
            }
            if _get(call, "id") is not None:
                record["tool_call_id"] = call["id"]
            yield number, record, _text(call)

    def _labeller(self, run: dict[str, Any], attack: str) -> Labeller:
        if self.truth is None or str(run.get("user_task_id", "")).startswith("injection_task"):
            return _none
        if attack == "none":
            return _benign
        task = run.get("injection_task_id")
        truth = self.truth.calls(str(run.get("suite_name")), task) if isinstance(task, str) else None
        if truth is None:
            return _none
        return lambda function, args: label_call(function, args, truth)

    def _place(self, path: Path, run: dict[str, Any]) -> tuple[Path, str, str]:
        """(runs directory, session, agent): by the layout when the path follows it, else the file alone."""
        parts = path.resolve().parts
        layout = len(parts) >= 6 and parts[-4] == run.get("suite_name") and parts[-3] == run.get("user_task_id") \
            and parts[-2] in (run.get("attack_type") or "none", "none")
        if layout:
            root = path.resolve().parents[4]
            return root, "/".join(parts[-5:]), parts[-5]
        return path.resolve().parent, path.name, str(run.get("pipeline_name") or "")

    def _places_of(self, root: Path) -> dict[str, int]:
        places = self._places.get(root)
        if places is None:
            files = root.glob(_LAYOUT) if any(root.glob(_LAYOUT)) else root.glob("*.json")
            names = sorted(p.relative_to(root).as_posix() for p in files)
            places = self._places[root] = {n: i for i, n in enumerate(names)}
        return places


def _none(function: str, args: dict[str, Any]) -> None:
    return None


def _benign(function: str, args: dict[str, Any]) -> str:
    return "benign"


def _calls(messages: list[Any]) -> Iterator[tuple[Any, str | None]]:
    """Each tool call of the assistant messages, in order, with its outcome from the tool message that
    answers it (by call id; a call without one takes the next unanswered result of its function)."""
    calls: list[Any] = []
    outcomes: dict[int, str] = {}
    waiting: list[int] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                waiting.append(len(calls))
                calls.append(call)
        elif message.get("role") == "tool" and waiting:
            answered = message.get("tool_call") if isinstance(message.get("tool_call"), dict) else {}
            call_id = message.get("tool_call_id")
            match = next((i for i in waiting if call_id is not None and _get(calls[i], "id") == call_id), None)
            if match is None:
                match = next((i for i in waiting if _get(calls[i], "function") == answered.get("function")),
                             waiting[0])
            waiting.remove(match)
            outcomes[match] = "failed" if message.get("error") else "executed"
    for i, call in enumerate(calls):
        yield call, outcomes.get(i)


def _get(call: Any, key: str) -> Any:
    return call.get(key) if isinstance(call, dict) else None


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


FORMAT = Format(
    "agentdojo", "AgentDojo run files (`<model>/<suite>/<user_task>/<attack>/<injection_task>.json`)",
    "tool call", (".json",), lambda head: claims(head.value), Reader,
    {"labels": "ground-truth labels: true or unset (the `agentdojo` package when it is installed, else the "
               "table shipped with gatekit), false (none), or the path of a ground-truth table"},
)
