"""tracemux.integrations.langchain.CallbackHandler against real langchain-core runnables."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from tests.integrations.support import tree
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredSpan
from tracemux.integrations.langchain import CallbackHandler


@pytest.fixture
def svc(make_service: Callable[..., TracingService], store: SQLiteStore) -> TracingService:
    """A service writing to the test's own store (shut down after the test)."""
    return make_service([store])


class FakeChat(GenericFakeChatModel):
    """A fake chat model with a model name, parameters and tool binding."""

    model_name: str = "fake-gpt-4o"
    temperature: float = 0.2

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


class LegacyUsageChat(FakeListChatModel):
    """Reports token usage the older way: in ``llm_output["token_usage"]``."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        text = self.responses[0]
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(text))],
            llm_output={
                "token_usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                "model_name": "legacy-model-1",
            },
        )


class Docs(BaseRetriever):
    """A retriever returning two fixed documents."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(page_content=f"{query} one", metadata={"source": "a.txt"}),
            Document(page_content=f"{query} two", metadata={"source": "b.txt"}),
        ]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def broken_tool(x: int) -> str:
    """Always fails."""
    raise RuntimeError(f"tool broke on {x}")


def usage(i: int, o: int) -> dict[str, Any]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


def prompt_chain(answer: str = "Owls are birds.") -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a {role}."), ("human", "Tell me about {topic}")]
    )
    model = FakeChat(messages=iter([AIMessage(answer, usage_metadata=usage(12, 5))]))
    return prompt | model | StrOutputParser()


def spans_of(store: SQLiteStore, run_id: str) -> dict[str, StoredSpan]:
    return {s.name: s for s in store.spans(run_id)}


def test_prompt_model_parser_chain_nested_under_a_tracemux_span(
    svc: TracingService, store: SQLiteStore
) -> None:
    handler = CallbackHandler(svc)
    with svc.trace_run("flow", user_id="u1") as run, run.span("component", kind="chain"):
        out = prompt_chain().invoke(
            {"role": "zoologist", "topic": "owls"}, config={"callbacks": [handler]}
        )
    assert out == "Owls are birds."
    assert handler.open_runs == 0
    assert svc.flush(10)
    assert tree(store, run.run_id) == [
        (0, "chain", "flow"),
        (1, "chain", "component"),
        (2, "chain", "RunnableSequence"),
        (3, "prompt", "ChatPromptTemplate"),
        (3, "llm", "FakeChat"),
        (3, "parser", "StrOutputParser"),
    ]
    spans = spans_of(store, run.run_id)
    seq = spans["RunnableSequence"]
    assert seq.inputs == {"role": "zoologist", "topic": "owls"}
    assert seq.outputs == "Owls are birds."
    assert spans["ChatPromptTemplate"].outputs == [
        {"role": "system", "content": "You are a zoologist."},
        {"role": "user", "content": "Tell me about owls"},
    ]
    llm = spans["FakeChat"]
    assert llm.model == "fake-gpt-4o"
    assert llm.inputs == [
        {"role": "system", "content": "You are a zoologist."},
        {"role": "user", "content": "Tell me about owls"},
    ]
    assert llm.outputs == {"role": "assistant", "content": "Owls are birds."}
    assert llm.usage == {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    assert llm.metadata["invocation_params"]["temperature"] == 0.2
    assert llm.metadata["ls_model_name"] == "fake-gpt-4o"
    assert spans["StrOutputParser"].outputs == "Owls are birds."
    (stored,) = store.runs()
    assert stored.input_tokens == 12 and stored.output_tokens == 5


def test_agent_like_tool_call_loop(svc: TracingService, store: SQLiteStore) -> None:
    model = FakeChat(
        messages=iter(
            [
                AIMessage(
                    "",
                    tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
                    usage_metadata=usage(20, 8),
                ),
                AIMessage("It is sunny in Paris.", usage_metadata=usage(35, 6)),
            ]
        )
    )
    bound = model.bind_tools([get_weather])

    def agent(question: str, config: RunnableConfig) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        reply = bound.invoke(messages, config)
        messages.append(reply)
        for call in reply.tool_calls:
            messages.append(get_weather.invoke({**call, "type": "tool_call"}, config))
        return str(bound.invoke(messages, config).content)

    handler = CallbackHandler(svc, user_id="u7", session_id="s7")
    result = RunnableLambda(agent, name="agent").invoke(
        "Weather in Paris?", config={"callbacks": [handler]}
    )
    assert result == "It is sunny in Paris."
    assert svc.flush(10)
    (run,) = store.runs()
    assert run.name == "agent" and run.user_id == "u7" and run.session_id == "s7"
    assert tree(store, run.run_id) == [
        (0, "chain", "agent"),
        (1, "llm", "FakeChat"),
        (1, "tool", "get_weather"),
        (1, "llm", "FakeChat"),
    ]
    spans = store.spans(run.run_id)
    first, tool_span, second = spans[1], spans[2], spans[3]
    assert first.outputs["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}
    ]
    assert first.usage == {"input_tokens": 20, "output_tokens": 8, "total_tokens": 28}
    assert first.metadata["invocation_params"]["tools"][0]["function"]["name"] == "get_weather"
    assert tool_span.inputs == {"city": "Paris"}
    assert tool_span.outputs == {
        "role": "tool",
        "content": "sunny in Paris",
        "name": "get_weather",
        "tool_call_id": "call_1",
    }
    # langchain-core >= 1 also passes the call id to on_tool_start (recorded as metadata)
    assert (tool_span.metadata or {}).get("tool_call_id", "call_1") == "call_1"
    assert second.inputs[-1] == {
        "role": "tool",
        "content": "sunny in Paris",
        "name": "get_weather",
        "tool_call_id": "call_1",
    }
    assert second.usage == {"input_tokens": 35, "output_tokens": 6, "total_tokens": 41}
    assert run.input_tokens == 55 and run.output_tokens == 14


def test_standalone_run_uses_langchain_run_id(svc: TracingService, store: SQLiteStore) -> None:
    run_id = uuid.uuid4()
    prompt_chain().invoke(
        {"role": "poet", "topic": "rain"},
        config={"callbacks": [CallbackHandler(svc)], "run_id": run_id},
    )
    assert svc.flush(10)
    (run,) = store.runs()
    assert run.run_id == str(run_id) and run.name == "RunnableSequence"
    assert [kind for _, kind, _ in tree(store, run.run_id)] == ["chain", "prompt", "llm", "parser"]


def test_llm_output_token_usage_text_llm_and_retriever(
    svc: TracingService, store: SQLiteStore
) -> None:
    handler = CallbackHandler(svc)
    cfg: RunnableConfig = {"callbacks": [handler]}
    with svc.trace_run("misc") as run:
        LegacyUsageChat(responses=["ok"]).invoke("hello", cfg)
        FakeListLLM(responses=["completion"]).invoke("Complete this", cfg)
        docs = Docs().invoke("owls", cfg)
    assert len(docs) == 2
    assert svc.flush(10)
    spans = spans_of(store, run.run_id)
    legacy = spans["LegacyUsageChat"]
    assert legacy.kind == "llm" and legacy.model == "legacy-model-1"
    assert legacy.usage == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert legacy.inputs == [{"role": "user", "content": "hello"}]
    text = spans["FakeListLLM"]
    assert text.kind == "llm" and text.inputs == "Complete this" and text.outputs == "completion"
    retriever = spans["Docs"]
    assert retriever.kind == "retriever" and retriever.inputs == {"query": "owls"}
    assert retriever.outputs == [
        {"page_content": "owls one", "metadata": {"source": "a.txt"}},
        {"page_content": "owls two", "metadata": {"source": "b.txt"}},
    ]
    root_id = spans["misc"].span_id
    assert all(s.parent_id == root_id for n, s in spans.items() if n != "misc")


def test_errors_recorded_on_the_failing_runs(svc: TracingService, store: SQLiteStore) -> None:
    def agent(x: int, config: RunnableConfig) -> str:
        return str(broken_tool.invoke({"x": x}, config))

    handler = CallbackHandler(svc)
    with pytest.raises(RuntimeError, match="tool broke on 3"):
        RunnableLambda(agent, name="agent").invoke(3, config={"callbacks": [handler]})
    assert handler.open_runs == 0
    assert svc.flush(10)
    (run,) = store.runs()
    assert run.status == "error"
    spans = spans_of(store, run.run_id)
    assert spans["broken_tool"].status == "error"
    assert spans["broken_tool"].error["type"] == "RuntimeError"
    assert spans["broken_tool"].parent_id == spans["agent"].span_id
    assert spans["agent"].status == "error"


def test_callbacks_never_raise(svc: TracingService, store: SQLiteStore) -> None:
    handler = CallbackHandler(svc)
    rid = uuid.uuid4()
    handler.on_chain_end({"x": 1}, run_id=uuid.uuid4())  # an end never started
    handler.on_llm_end(object(), run_id=uuid.uuid4())
    handler.on_chain_start(None, {"a": object()}, run_id=rid)  # type: ignore[arg-type]
    handler.on_llm_end("not an LLMResult", run_id=rid)  # wrong type: logged, not raised
    handler.on_chat_model_start(None, "not messages", run_id=uuid.uuid4())  # type: ignore[arg-type]
    handler.on_chain_end({"done": True}, run_id=rid)
    assert svc.flush(10)
    assert len(store.runs()) == 1


def test_one_handler_from_many_threads(svc: TracingService, store: SQLiteStore) -> None:
    handler = CallbackHandler(svc)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with svc.trace_run(f"thread-{i}"):
                for j in range(5):
                    prompt_chain(f"answer {i}.{j}").invoke(
                        {"role": "r", "topic": f"t{i}"}, config={"callbacks": [handler]}
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and handler.open_runs == 0
    assert svc.flush(10)
    runs = store.runs(limit=100)
    assert len(runs) == 8
    for run in runs:
        i = run.name.split("-")[1]
        t = tree(store, run.run_id)
        assert len(t) == 1 + 5 * 4
        spans = store.spans(run.run_id)
        answers = {s.outputs for s in spans if s.kind == "parser"}
        assert answers == {f"answer {i}.{j}" for j in range(5)}


async def test_one_handler_from_many_tasks_with_batch(
    svc: TracingService, store: SQLiteStore
) -> None:
    handler = CallbackHandler(svc)

    async def flow(i: int) -> None:
        async with svc.trace_run(f"task-{i}"):
            await prompt_chain(f"answer {i}").ainvoke(
                {"role": "r", "topic": "t"}, config={"callbacks": [handler]}
            )

    await asyncio.gather(*(flow(i) for i in range(30)))
    # batch(): LangChain runs the inputs on its own thread pool (context copied)
    with svc.trace_run("batched") as batched:
        prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
        model = FakeListChatModel(responses=["a", "b", "c", "d"])
        (prompt | model).batch(
            [{"q": str(i)} for i in range(4)],
            config={"callbacks": [handler], "max_concurrency": 4},
        )
    assert handler.open_runs == 0
    assert await svc.aflush(10)
    runs = store.runs(limit=100)
    assert len(runs) == 31
    for run in runs:
        if run.run_id == batched.run_id:
            t = tree(store, run.run_id)
            assert t[0] == (0, "chain", "batched") and len(t) == 1 + 4 * 3
            assert [d for d, _, _ in t].count(1) == 4
            continue
        spans = store.spans(run.run_id)
        assert len(spans) == 5
        i = run.name.split("-")[1]
        assert {s.outputs for s in spans if s.kind == "parser"} == {f"answer {i}"}


def test_fixed_parent_and_disabled_service(
    make_service: Callable[..., TracingService], svc: TracingService, store: SQLiteStore
) -> None:
    with svc.trace_run("flow") as run:
        component = run.span("component")
    # the handler nests under its parent even where that span is not current
    handler = CallbackHandler(svc, parent=component)
    FakeListChatModel(responses=["x"]).invoke("q", config={"callbacks": [handler]})
    component.end()
    off = make_service([store], disabled=True)
    FakeListChatModel(responses=["y"]).invoke("q", config={"callbacks": [CallbackHandler(off)]})
    assert svc.flush(10)
    assert len(store.runs()) == 1
    assert tree(store, run.run_id) == [
        (0, "chain", "flow"),
        (1, "chain", "component"),
        (2, "llm", "FakeListChatModel"),
    ]
