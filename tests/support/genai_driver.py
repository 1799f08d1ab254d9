"""An agent on the real ``openai`` client, traced by a real GenAI instrumentation, run as a process.

    python -m tests.support.genai_driver --instrumentation NAME --openai URL --otlp URL
        [--conversations 20] [--failing 5] [--first spans|logs] [--token TOKEN]

``NAME`` is ``openai-v2`` (opentelemetry-instrumentation-openai-v2 on opentelemetry-util-genai),
``openai-v2-legacy`` (the same package's semantic conventions 1.30 path: the per-message
``gen_ai.user.message``/``gen_ai.choice`` events it sends with util-genai 0.x; wrapped here by
hand, since util-genai 1.x always selects the newer path) or ``openinference``
(openinference-instrumentation-openai). What content they capture comes from their own
environment variables, read when they instrument: the caller sets those, as a user would.
One process per mode, because instrumentation patches ``openai`` for the whole process.

Each conversation is one trace: an agent span around the loop; the model (the fake server of
``tests/support/fake_openai.py``, told to call ``lookup_order`` and ``check_stock``) asks for
both tools, the loop runs each under an ``execute_tool`` span (util-genai's own, or an
OpenInference TOOL span) and sends the results back; the model answers. In the first
``--failing`` conversations ``check_stock`` fails: its span ends with status ERROR and the
message ``STATUS_MESSAGE``, while the model is told ``MODEL_SEES``.

Spans and log records go to ``URL/v1/traces`` and ``URL/v1/logs`` through the SDK's
``OTLPSpanExporter`` and ``OTLPLogExporter`` (protobuf over HTTP). Both batch processors hold
everything until the end, then flush in the ``--first`` order, so a test chooses which signal
reaches the daemon first. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

MODEL = "gpt-4.1-mini"
AGENT = "support-bot"
SYSTEM = "You are the support agent of an online shop."
#: What a failing tool's span status says, and what the model is told instead.
STATUS_MESSAGE = "the stock service answered 503"
MODEL_SEES = "check_stock failed: the stock service is down, try again in a minute"
#: The fake model's answer once the tool results are in.
ANSWER = "Your order ships tomorrow; the blue mug is back in stock next week."
#: What the fake model asks for, in fake_openai's ``tool_calls`` behaviour.
TOOL_CALLS = [
    {"name": "lookup_order", "arguments": {"order_id": "A-1"}},
    {"name": "check_stock", "arguments": {"sku": "MUG-BLUE"}},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": call["name"],
            "parameters": {"type": "object", "properties": {}},
        },
    }
    for call in TOOL_CALLS
]
INSTRUMENTATIONS = ("openai-v2", "openai-v2-legacy", "openinference")
#: Hold every span and log record until shutdown (milliseconds): the flush order is the test's.
_HOLD = "600000"


class StockServiceError(Exception):
    """The failure a failing ``check_stock`` raises."""


def user_question(index: int) -> str:
    return f"Where is my order A-{index}, and is the blue mug in stock?"


def run_tool(name: str, *, fail: bool) -> str:
    """Return what the tool answers; raise ``StockServiceError`` when it fails."""
    if name == "check_stock" and fail:
        raise StockServiceError(STATUS_MESSAGE)
    return json.dumps({"status": "shipped"} if name == "lookup_order" else {"in_stock": False})


def _message(message: Any) -> dict[str, Any]:
    """Return the model's message as the next request sends it back."""
    sent: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        sent["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    return sent


ToolRunner = Callable[[Any, bool], str]


def converse(client: Any, index: int, *, fail: bool, run_tool_span: ToolRunner) -> str:
    """Play one conversation; return the final answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_question(index)},
    ]
    while True:
        response = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        message = response.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        messages.append(_message(message))
        for call in message.tool_calls:
            result = run_tool_span(call, fail)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


def _genai_tools(handler: Any) -> ToolRunner:
    """Run tools under util-genai's own ``execute_tool`` spans."""

    def run(call: Any, fail: bool) -> str:
        try:
            with handler.tool(call.function.name) as invocation:
                invocation.tool_call_id = call.id
                if invocation.should_capture_content_on_span:
                    invocation.arguments = json.loads(call.function.arguments)
                result = run_tool(call.function.name, fail=fail)
                if invocation.should_capture_content_on_span:
                    invocation.tool_result = result
                return result
        except StockServiceError:
            return MODEL_SEES

    return run


def _openinference_tools(tracer: Any) -> ToolRunner:
    """Run tools under OpenInference TOOL spans."""
    from opentelemetry.trace import Status, StatusCode

    def run(call: Any, fail: bool) -> str:
        with tracer.start_as_current_span(
            call.function.name, openinference_span_kind="tool", set_status_on_exception=False
        ) as span:
            span.set_tool(name=call.function.name, parameters={"type": "object"})
            span.set_attribute("tool.id", call.id)
            span.set_input(call.function.arguments, mime_type="application/json")
            try:
                result = run_tool(call.function.name, fail=fail)
            except StockServiceError as error:
                span.set_status(Status(StatusCode.ERROR, str(error)))
                result = MODEL_SEES
            else:
                span.set_status(Status(StatusCode.OK))
            span.set_output(result)
            return result

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrumentation", choices=INSTRUMENTATIONS, required=True)
    parser.add_argument("--openai", required=True, help="the fake server's base URL (.../v1)")
    parser.add_argument("--otlp", required=True, help="the daemon's URL")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--failing", type=int, default=5)
    parser.add_argument("--first", choices=("spans", "logs"), default="spans")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = os.environ["OTEL_BLRP_SCHEDULE_DELAY"] = _HOLD
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = os.environ["OTEL_BLRP_MAX_QUEUE_SIZE"] = "100000"
    os.environ["OPENAI_API_KEY"] = "sk-fake"

    # Imported here, after the environment is set, as an instrumented app would at start-up.
    import openai
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    resource = Resource.create({"service.name": AGENT})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{args.otlp}/v1/traces", headers=headers))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{args.otlp}/v1/logs", headers=headers))
    )
    agent_span, run_tool_span = _instrument(args.instrumentation, tracer_provider, logger_provider)
    client = openai.OpenAI(base_url=args.openai, max_retries=0)
    answers = []
    for index in range(args.conversations):
        with agent_span(index):
            answers.append(
                converse(client, index, fail=index < args.failing, run_tool_span=run_tool_span)
            )
    providers: list[Any] = [tracer_provider, logger_provider]
    if args.first == "logs":
        providers.reverse()
    for provider in providers:
        provider.shutdown()  # exports what it holds, then stops
    summary = {"conversations": len(answers), "answered": sum(a == ANSWER for a in answers)}
    print(json.dumps(summary), flush=True)


def _instrument(name: str, tracer_provider: Any, logger_provider: Any) -> tuple[Any, ToolRunner]:
    """Instrument ``openai`` with ``name``; return the agent-span factory and the tool runner."""
    if name == "openinference":
        from openinference.instrumentation import OITracer, TraceConfig
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        OpenInference().instrument(tracer_provider=tracer_provider)
        tracer = OITracer(tracer_provider.get_tracer("support-bot"), config=TraceConfig())

        def oi_agent(index: int) -> Any:
            return tracer.start_as_current_span(AGENT, openinference_span_kind="agent")

        return oi_agent, _openinference_tools(tracer)
    from opentelemetry.util.genai.handler import TelemetryHandler

    handler = TelemetryHandler(tracer_provider=tracer_provider, logger_provider=logger_provider)
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider, logger_provider=logger_provider
        )
    else:
        _legacy(tracer_provider, logger_provider)

    def genai_agent(index: int) -> Any:
        return handler.invoke_local_agent(agent_name=AGENT, request_model=MODEL)

    return genai_agent, _genai_tools(handler)


def _legacy(tracer_provider: Any, logger_provider: Any) -> None:
    """Wrap ``openai`` with openai-v2's semantic conventions 1.30 path, as util-genai 0.x did.

    The same calls ``OpenAIInstrumentor._instrument`` makes when ``is_experimental_mode()`` is
    false; content capture is its ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
    """
    from opentelemetry._logs import get_logger
    from opentelemetry.instrumentation.openai_v2.instruments import Instruments
    from opentelemetry.instrumentation.openai_v2.patch import chat_completions_create_v_old
    from opentelemetry.instrumentation.openai_v2.utils import is_content_enabled
    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import get_tracer
    from wrapt import wrap_function_wrapper

    scope = "opentelemetry.instrumentation.openai_v2"
    tracer = get_tracer(scope, "", tracer_provider)
    logger = get_logger(scope, "", logger_provider=logger_provider)
    instruments = Instruments(get_meter(scope, ""))
    wrap_function_wrapper(
        "openai.resources.chat.completions",
        "Completions.create",
        chat_completions_create_v_old(tracer, logger, instruments, is_content_enabled()),
    )


if __name__ == "__main__":
    main()
