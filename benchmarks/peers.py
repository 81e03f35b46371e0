"""The peers: the 20-rule policy (without windows) in Cedar (cedarpy) and in Rego (regopy), one decision a call.

Both engines answer per request, so each gets the call as its own input: a Cedar request (context holding
tool, args, context, local hour and weekday, amounts as Cedar decimals) or a Rego input document. Building
that input from the action is part of each engine's cost, as `Gate.check` reads the action itself.
The encodings are in benchmarks/policies/twenty.cedar and twenty.rego; their headers say what is
approximated (Cedar has no regex) and what is excluded (window rules: both engines are stateless).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from gatekit.policy.values import numeric_string

HERE = Path(__file__).parent
CEDAR = HERE / "policies" / "twenty.cedar"
REGO = HERE / "policies" / "twenty.rego"
TZ = ZoneInfo("Europe/Berlin")  # the policy's timezone
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# decision precedence of the 20-rule policy: what a matched rule id means (shadow rules do not decide)
DENY = frozenset({"pay-blocked", "prod-delete", "iam-admin", "secrets-read"})
SHADOW = frozenset({"deploy-weekend", "unknown-prod-tool"})


def verdict(rules: set[str] | frozenset[str]) -> str:
    if rules & DENY:
        return "deny"
    return "escalate" if rules - DENY - SHADOW else "allow"


def _local(ts: datetime) -> tuple[int, str]:
    local = ts.astimezone(TZ)
    return local.hour, _DAYS[local.weekday()]


def _decimal(x: Any) -> Any:
    """A number (or numeric string) as a Cedar decimal; anything else unchanged."""
    if isinstance(x, str):
        parsed = numeric_string(x)
        if not isinstance(parsed, float):
            return x
        x = parsed
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return x
    return {"__extn": {"fn": "decimal", "arg": f"{float(x):.4f}"}}


class Cedar:
    """cedarpy with the policy set and (empty) entities parsed once, as a long-lived service would."""

    def __init__(self) -> None:
        import cedarpy

        self._cedarpy = cedarpy
        text = CEDAR.read_text()
        self.policies = cedarpy.PolicySet.from_str(text)
        self.entities = cedarpy.Entities.from_json_str("[]")
        # Cedar names policies policy0, policy1, ... in file order: map them back to the @id annotations
        ids = [line.split('"')[1] for line in text.splitlines() if line.startswith("@id(")]
        self.ids = {f"policy{i}": rid for i, rid in enumerate(ids)}

    def request(self, action: Mapping[str, Any]) -> dict[str, Any]:
        args = dict(action.get("args") or {})
        if "amount" in args:
            args["amount"] = _decimal(args["amount"])
        hour, weekday = _local(action["ts"])
        return {"principal": f'Agent::"{action.get("agent") or ""}"', "action": 'Action::"call"',
                "resource": f'Tool::"{action["tool"]}"',
                "context": {"tool": action["tool"], "args": args, "ctx": dict(action.get("context") or {}),
                            "hour": hour, "weekday": weekday}}

    def authorize(self, request: dict[str, Any]) -> Any:
        return self._cedarpy.is_authorized(request, self.policies, self.entities)

    def rules(self, result: Any) -> frozenset[str]:
        return frozenset(self.ids[p] for p in result.diagnostics.reasons)

    def decide(self, action: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
        result = self.authorize(self.request(action))
        if result.diagnostics.errors:
            return "escalate", self.rules(result)  # on_error: escalate
        rules = self.rules(result)
        return verdict(rules), rules


class Rego:
    """regopy (rego-cpp) with the module compiled once into a bundle, queried per input."""

    def __init__(self) -> None:
        import regopy

        self.interpreter = regopy.Interpreter()
        self.interpreter.add_module("gatekit", REGO.read_text())
        self.bundle = self.interpreter.build("data.gatekit.result")

    def request(self, action: Mapping[str, Any]) -> str:
        hour, weekday = _local(action["ts"])
        return json.dumps({"tool": action["tool"], "args": action.get("args") or {},
                           "context": action.get("context") or {}, "hour": hour, "weekday": weekday})

    def authorize(self, request: str) -> Any:
        self.interpreter.set_input_term(request)
        return self.interpreter.query_bundle(self.bundle)

    def decide(self, action: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
        out = self.authorize(self.request(action))
        if not out.results:
            raise RuntimeError(f"regopy gave no result: {out}")
        value = out.results[0].expressions[0]
        return value["decision"], frozenset(value["rules"])
