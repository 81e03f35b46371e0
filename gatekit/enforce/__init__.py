"""Enforce mode: the policy inside agents. A gate per agent process, an approvals broker shared by all.

>>> from gatekit import Gate, load_policy
>>> from gatekit.enforce import Broker
>>> gate = Gate(load_policy("policy.yaml"), mode="enforce", approvals="http://127.0.0.1:8470",
...             credential=os.environ["GATEKIT_AGENT_TOKEN"], agent="billing-bot", user="u-alice")

The standard library, the policy core and `cryptography` (to verify approval tokens) only: importing
this loads no DuckDB, polars, pandas or web server. `Broker` is the local, single-user stand-in for the
approvals service: it trusts every process that can write its file.
"""

from gatekit.enforce.broker import Broker, Refused, Request, Vote
from gatekit.enforce.client import ApprovalsClient, ServiceError
from gatekit.enforce.gate import Denied, Gate, Pending, Waiting
from gatekit.enforce.mock import MockBroker
from gatekit.enforce.notify import Webhook
from gatekit.enforce.quorum import Tally, tally
from gatekit.enforce.receipts import ChainError, Receipt, Receipts, Verification
from gatekit.enforce.tokens import Approval, TokenRefused, action_digest, verify_approval

__all__ = [
    "Approval",
    "ApprovalsClient",
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
    "ServiceError",
    "Tally",
    "TokenRefused",
    "Verification",
    "Vote",
    "Waiting",
    "Webhook",
    "action_digest",
    "tally",
    "verify_approval",
]
