"""Integrations with flow engines and LLM frameworks.

Each lives in its own module and imports its framework only when that module is imported:
:mod:`tracemux.integrations.langflow` (a Langflow-shaped tracing service) and
:mod:`tracemux.integrations.langchain` (LangChain callbacks, needs ``langchain-core``).
"""
