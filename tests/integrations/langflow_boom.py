"""A Langflow component whose build raises (its source is sent to the server as the
component's code, so this module holds nothing else)."""

from lfx.custom.custom_component.component import Component
from lfx.io import MessageTextInput, Output
from lfx.schema.message import Message


class Boom(Component):
    display_name = "Boom"
    inputs = [MessageTextInput(name="input_value", display_name="Input")]  # noqa: RUF012
    outputs = [Output(display_name="Text", name="text", method="explode")]  # noqa: RUF012

    def explode(self) -> Message:
        raise RuntimeError("boom from the component")
