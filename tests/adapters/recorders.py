"""Trace files recorded with the real SDKs, for the adapter tests.

    python -m tests.adapters.recorders      # rewrites tests/adapters/data/ (needs the SDKs below)
    GATEKIT_RERECORD=1 python -m pytest tests/adapters   # also checks fresh recordings read the same way

- `otel-file-exporter.jsonl`: OpenTelemetry Python SDK (`opentelemetry-sdk`) spans written by the OTLP JSON
  file exporter (`opentelemetry-exporter-otlp-json-file`, `FileSpanExporter`): hex ids, 64-bit ints as text.
- `otel-protobuf.jsonl`: the same kind of spans encoded by `opentelemetry-exporter-otlp-proto-common`
  (`encode_spans`, the OTLP exporters' protobuf) and written by protobuf's own JSON mapping
  (`MessageToJson`): base64 ids, enum names, camelCase fields.
- `openai-agents.jsonl`: an OpenAI Agents SDK (`openai-agents`) run of a real `Agent` with function tools,
  driven by the SDK's own `ScriptedModel` (no network), exported by a `TracingExporter` that writes
  `item.export()` one per line through the SDK's `BatchTraceProcessor`.

- `gatekit/logs/adapters/agentdojo-ground-truth.json` (shipped with gatekit): the ground truth of every
  injection task of every suite the `agentdojo` package knows (`GroundTruth().table()`, the first version in
  `VERSIONS` that knows a task), from which the AgentDojo adapter labels runs without the package.

The tests read the committed files, so they run without the SDKs; with GATEKIT_RERECORD=1 they also record
fresh files with the SDKs and check that they read the same way.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gatekit.logs.adapters.agentdojo import BUNDLED

DATA = Path(__file__).parent / "data"

# What the toy agents do: (agent, conversation, [(tool, arguments JSON text or None, failed)])
OTEL_RUNS: list[tuple[dict[str, Any], list[tuple[str, str | None, bool]]]] = [
    ({"gen_ai.agent.name": "billing-bot", "gen_ai.agent.id": "asst_billing", "gen_ai.conversation.id": "conv-7",
      "gen_ai.provider.name": "openai", "user.id": "u-ann"},
     [("get_balance", "{}", False),
      ("send_money", json.dumps({"recipient": "US133000000121212121212", "amount": 250.0}), False),
      ("send_money", json.dumps({"recipient": "GB29NWBK60161331926819", "amount": 1e6}), True)]),
    ({"gen_ai.agent.id": "asst_ops", "gen_ai.provider.name": "anthropic"},
     [("delete_file", json.dumps({"file_id": "13", "force": True}), False),
      ("search_files", None, False),
      ("send_email", "{not json", False)]),
]


def record_otel_spans(exporter: Any) -> None:
    """Run the toy agents under an OpenTelemetry tracer whose spans go to `exporter`."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "agents-demo"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("gatekit.tests")
    for agent, calls in OTEL_RUNS:
        name = agent.get("gen_ai.agent.name") or agent["gen_ai.agent.id"]
        with tracer.start_as_current_span(f"invoke_agent {name}",
                                          attributes={"gen_ai.operation.name": "invoke_agent", **agent}):
            with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}):
                pass
            for i, (tool, arguments, failed) in enumerate(calls):
                attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                              "gen_ai.tool.call.id": f"call_{i}", "gen_ai.tool.type": "function"}
                if arguments is not None:
                    attributes["gen_ai.tool.call.arguments"] = arguments
                with tracer.start_as_current_span(f"execute_tool {tool}", attributes=attributes) as span:
                    if failed:
                        span.set_status(Status(StatusCode.ERROR, "insufficient funds"))
    provider.shutdown()


def record_otel_file(path: Path) -> None:
    from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter

    path.unlink(missing_ok=True)
    record_otel_spans(FileSpanExporter(path))


def record_otel_protobuf(path: Path) -> None:
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    lines: list[str] = []

    class ProtobufJson(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            lines.append(MessageToJson(encode_spans(spans), indent=None))
            return SpanExportResult.SUCCESS

    record_otel_spans(ProtobufJson())
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


AGENT_CALLS = [
    [("get_balance", {})],
    [("send_money", {"recipient": "US133000000121212121212", "amount": 250.0}),
     ("send_money", {"recipient": "GB29NWBK60161331926819", "amount": 10})],
]


def record_openai_agents(path: Path) -> None:
    from agents import Agent, Runner, function_tool, set_trace_processors, trace
    from agents.testing import ScriptedModel, assistant_message, function_call
    from agents.tracing.processor_interface import TracingExporter
    from agents.tracing.processors import BatchTraceProcessor

    path.unlink(missing_ok=True)

    class JsonLines(TracingExporter):
        def export(self, items: list[Any]) -> None:
            with path.open("a", encoding="utf-8") as f:
                for item in items:
                    exported = item.export()
                    if exported:
                        f.write(json.dumps(exported) + "\n")

    @function_tool
    def get_balance() -> float:
        """The account balance."""
        return 1200.0

    @function_tool
    def send_money(recipient: str, amount: float) -> str:
        """Send money to an IBAN."""
        if amount > 100:
            raise ValueError("over the limit")
        return f"sent {amount} to {recipient}"

    processor = BatchTraceProcessor(JsonLines())
    set_trace_processors([processor])
    steps: list[Any] = [[function_call(tool, args, call_id=f"call_{i}_{j}") for j, (tool, args) in enumerate(turn)]
                        for i, turn in enumerate(AGENT_CALLS)]
    model = ScriptedModel([*steps, [assistant_message("done")]])
    agent = Agent(name="billing-bot", instructions="Pay the bills.", tools=[get_balance, send_money], model=model)

    async def run() -> None:
        with trace("pay-bills", group_id="conv-42", metadata={"env": "prod"}):
            await Runner.run(agent, "pay the December bill")

    asyncio.run(run())
    processor.force_flush()
    processor.shutdown()


def record_agentdojo_ground_truth(path: Path) -> None:
    from gatekit.logs.adapters.agentdojo import GroundTruth

    path.write_text(GroundTruth().table().dump(), encoding="utf-8")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    record_agentdojo_ground_truth(BUNDLED)
    record_otel_file(DATA / "otel-file-exporter.jsonl")
    record_otel_protobuf(DATA / "otel-protobuf.jsonl")
    record_openai_agents(DATA / "openai-agents.jsonl")


if __name__ == "__main__":
    main()
