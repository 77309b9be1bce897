"""The errors tracemux raises to its callers. A leaf: imports nothing of tracemux."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable.

    ``problems``: every problem found, one message each (the configuration is checked
    whole, so one error lists them all).
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    @classmethod
    def of(cls, problems: Sequence[str]) -> ConfigError:
        """One error for several problems."""
        if len(problems) == 1:
            return cls(problems[0])
        listed = "; ".join(problems)
        return cls(f"{len(problems)} configuration problems: {listed}", problems)
