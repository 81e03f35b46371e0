"""One error root with a few branches; the CLI maps them to exit codes in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in a policy file: where it is, a stable code and a message."""

    file: str
    line: int
    msg: str
    code: str = "invalid"
    loc: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.msg}"


class GatekitError(Exception):
    """Root of every error gatekit raises on purpose."""


class PolicyError(GatekitError):
    """A policy (or `what` else: a case file) was refused; `problems` lists every problem found, each at
    `file:line`."""

    def __init__(self, problems: list[Problem], what: str = "the policy") -> None:
        self.what = what
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.msg))
        super().__init__("\n".join(str(p) for p in self.problems))


class LogFormatError(GatekitError):
    """An input file cannot be read at all (lines that cannot be read are quarantined instead)."""


class StoreError(GatekitError):
    """The action store is missing, locked or not a gatekit store."""


class InputError(GatekitError, ValueError):
    """A value the caller passed names nothing or cannot be used: an unknown rule or field, a number out of
    range, a file that cannot be written. A `ValueError` too, for callers that catch that."""


class ApprovalError(GatekitError):
    """An approval request or vote was refused by the broker."""
