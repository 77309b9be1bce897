"""A Langflow run through tracemux's Langflow service reaches LangWatch, Opik, Traceloop,
Arize and Openlayer, all configured from Langflow's own variables, with the complete tree:
the component span, and the LangChain LLM, tool and retriever spans (recorded by the
service's LangChain callbacks) nested under it, with user and session ids, model and token
usage. (Langflow's own tracers lose part of this; see each backend's parity test.)"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool

from tests.destinations.conftest import CaptureServer, FlatSpan
from tracemux import TracingService
from tracemux.integrations.langflow import TracingService as LangflowService

KEY = "key-0123456789abcdef0123"
RUN_ID = "5b609946-f47e-4230-90fd-22f49c6d70b8"
COMPONENT = "Agent (Agent-x1y2)"


class UsageChat(FakeListChatModel):
    """A chat model that reports its model and token usage, as providers do."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(self.responses[0]))],
            llm_output={
                "token_usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                "model_name": "gpt-4o-mini",
            },
        )


class Docs(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content="a"), Document(page_content="b")]


@tool
def lookup(id: int) -> str:
    """Look a record up."""
    return f"record {id}"


def langflow_env(url: str) -> dict[str, str]:
    return {
        "LANGWATCH_API_KEY": KEY,
        "LANGWATCH_ENDPOINT": f"{url}/lw",
        "OPIK_URL_OVERRIDE": f"{url}/opik/api",
        "TRACELOOP_API_KEY": KEY,
        "TRACELOOP_BASE_URL": f"{url}/tl",
        "ARIZE_API_KEY": KEY,
        "ARIZE_SPACE_ID": "space",
        "ARIZE_COLLECTOR_ENDPOINT": f"{url}/arize",
        "OPENLAYER_API_KEY": KEY,
        "OPENLAYER_PIPELINE_SUPPORT_BOT": "pipe-1",
        "OPENLAYER_BASE_URL": f"{url}/ol/v1",
    }


async def run_flow(tracing: LangflowService) -> None:
    await tracing.start_tracers(RUN_ID, "Support Bot - 1234", "user-1", "sess-1", "Langflow")
    async with tracing.trace_component(None, COMPONENT, {"input_value": "hi?"}):
        callbacks = tracing.get_langchain_callbacks()
        await UsageChat(responses=["hello"]).ainvoke("hi?", config={"callbacks": callbacks})
        await lookup.ainvoke({"id": 7}, config={"callbacks": callbacks})
        await Docs().ainvoke("hi", config={"callbacks": callbacks})
        tracing.set_outputs(COMPONENT, {"response": "hello"})
    await tracing.end_tracers({"message": "hello"})


def otlp_tree(spans: list[FlatSpan]) -> dict[str, str | None]:
    ids = {s.span_id: s.name for s in spans}
    return {s.name: ids.get(s.parent_span_id) for s in spans}


async def test_every_backend_gets_the_complete_tree(capture: CaptureServer) -> None:
    core = TracingService.from_env(langflow_env(capture.url))
    try:
        await run_flow(LangflowService(core))
        assert await core.aflush(10)
    finally:
        core.shutdown(10)
    spans = capture.spans()
    for prefix in ("/lw/", "/tl/", "/arize/"):
        mine = [s for s in spans if s.request.path.startswith(prefix)]
        tree = otlp_tree(mine)
        llm = next(n for n in tree if n not in (COMPONENT, "Support Bot - 1234", "lookup", "Docs"))
        assert tree[COMPONENT] == "Support Bot - 1234", prefix
        assert tree[llm] == tree["lookup"] == tree["Docs"] == COMPONENT, (prefix, tree)
        assert len({s.trace_id for s in mine}) == 1
    opik_spans = [
        s
        for r in capture.snapshot()
        if r.path == "/opik/api/v1/private/spans/batch"
        for s in r.json()["spans"]
    ]
    by_name = {s["name"]: s for s in opik_spans}
    comp_id = by_name[COMPONENT]["id"]
    children = [s for s in opik_spans if s.get("parent_span_id") == comp_id]
    assert {s["type"] for s in children} == {"llm", "tool", "general"}
    llm = next(s for s in children if s["type"] == "llm")
    assert llm["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert llm["model"] == "gpt-4o-mini"
    (trace,) = [
        t
        for r in capture.snapshot()
        if r.path == "/opik/api/v1/private/traces/batch"
        for t in r.json()["traces"]
    ]
    assert trace["thread_id"] == "sess-1" and trace["metadata"]["user_id"] == "user-1"
    assert trace["project_name"] == "Langflow"
    (stream,) = [r for r in capture.snapshot() if r.path.endswith("/data-stream")]
    assert stream.path == "/ol/v1/inference-pipelines/pipe-1/data-stream"
    (row,) = stream.json()["rows"]
    (component,) = row["steps"][0]["steps"]
    assert component["name"] == COMPONENT
    assert {s["type"] for s in component["steps"]} == {"chat_completion", "tool", "retriever"}
    assert row["tokens"] == 10 and row["model"] == "gpt-4o-mini"
    assert (row["user_id"], row["session_id"]) == ("user-1", "sess-1")
    # LangWatch: thread and user on the root; Arize/Traceloop: on every span
    lw_root = next(s for s in spans if s.request.path.startswith("/lw/") and not s.parent_span_id)
    assert '"thread_id":"sess-1"' in lw_root.attributes["metadata"]
    arize = [s for s in spans if s.request.path.startswith("/arize/")]
    assert {s.attributes["session.id"] for s in arize} == {"sess-1"}
    assert {s.resource["openinference.project.name"] for s in arize} == {"Support-Bot"}
    tl = [s for s in spans if s.request.path.startswith("/tl/")]
    assert {s.attributes["traceloop.association.properties.user_id"] for s in tl} == {"user-1"}
