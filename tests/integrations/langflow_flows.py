"""Flow JSON for the Langflow server test, made by lfx itself (``Graph(...).dump()``).

Run with a side environment's Python (lfx is not in the main ``.venv``)::

    <side python> tests/integrations/langflow_flows.py

prints ``{"chat": <flow>, "boom": <flow>}``: ChatInput -> ChatOutput, and ChatInput ->
``Boom`` (a component that raises, :mod:`langflow_boom`) -> ChatOutput, as the bodies of
``POST /api/v1/flows/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from langflow_boom import Boom
from lfx.components.input_output import ChatInput, ChatOutput
from lfx.graph.graph.base import Graph


def chat_flow() -> dict[str, Any]:
    chat_in = ChatInput(_id="chat_input")
    chat_out = ChatOutput(_id="chat_output")
    chat_out.set(input_value=chat_in.message_response)
    return dict(Graph(chat_in, chat_out).dump(name="server-chat"))


def boom_flow() -> dict[str, Any]:
    chat_in = ChatInput(_id="chat_input")
    boom = Boom(_id="boom")
    chat_out = ChatOutput(_id="chat_output")
    boom.set(input_value=chat_in.message_response)
    chat_out.set(input_value=boom.explode)
    return dict(Graph(chat_in, chat_out).dump(name="server-boom"))


if __name__ == "__main__":
    sys.stdout.write(json.dumps({"chat": chat_flow(), "boom": boom_flow()}))
