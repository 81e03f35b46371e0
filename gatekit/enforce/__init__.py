"""Enforce mode: the policy inside agents. A gate per agent process, an approvals broker shared by all.

>>> from gatekit import Gate, load_policy
>>> from gatekit.enforce import Broker
>>> gate = Gate(load_policy("policy.yaml"), mode="enforce", broker=Broker("approvals.db"), agent="billing-bot")

Standard library only beyond the policy core: importing this loads no DuckDB, polars or pandas.
"""

from gatekit.enforce.broker import Broker, Refused, Request, Vote
from gatekit.enforce.gate import Denied, Gate, Pending
from gatekit.enforce.mock import MockBroker
from gatekit.enforce.notify import Webhook
from gatekit.enforce.receipts import ChainError, Receipt, Receipts, Verification

__all__ = [
    "Broker",
    "ChainError",
    "Denied",
    "Gate",
    "MockBroker",
    "Pending",
    "Receipt",
    "Receipts",
    "Refused",
    "Request",
    "Verification",
    "Vote",
    "Webhook",
]
