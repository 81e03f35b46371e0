"""Shared pieces of the enforce tests: an injectable clock, a small policy with every tier shape, brokers on
real SQLite files in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from gatekit import Policy, parse_policy
from gatekit.enforce import Broker

POLICY = """
version: 1
name: enforce-tests
default: allow
on_error: escalate
tiers:
  standard: {approvals: 1, timeout: 4h}
  pair: {approvals: 2, timeout: 1h}
  critical: {approvals: 2, roles: [security, finance], timeout: 30m, approval_ttl: 15m}
rules:
  - {id: pay-100, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 100}}, reason: Payments over $100 need approval}
  - {id: pay-10k, tool: payment.send, action: escalate, tier: critical, when: {args.amount: {gte: 10000}}}
  - {id: pay-blocked, tool: payment.send, action: deny, when: {args.recipient: mallory}, reason: Blocked recipient}
  - {id: prod-delete, tool: "db.*", action: escalate, tier: pair, when: {context.env: prod}}
  - {id: email-burst, tool: email.send, action: deny, when: {rate: {per: agent, window: 10m, gt: 3}}}
  - {id: weekend-deploy, tool: "deploy.*", action: deny, mode: shadow, when: {args.force: true}}
"""


class Clock:
    """Seconds since the epoch that only move when told (or when a test's `sleep` is called)."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.001)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY, source="enforce-tests")


@pytest.fixture
def make_broker(tmp_path: Path, clock: Clock) -> Callable[..., Broker]:
    brokers: list[Broker] = []

    def make(name: str = "approvals.db", **kwargs: object) -> Broker:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("durable", False)
        broker = Broker(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        brokers.append(broker)
        return broker

    yield make  # type: ignore[misc]
    for b in brokers:
        b.close()
