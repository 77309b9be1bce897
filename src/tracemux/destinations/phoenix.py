"""Phoenix (Arize): OTLP with OpenInference semantic conventions.

The mapping lives in :mod:`tracemux.destinations.openinference` (the generic
:class:`~tracemux.destinations.otlp.OTLP` destination sends it too).

Phoenix's collector takes OTLP/HTTP at ``{endpoint}/v1/traces``; an API key is sent as
``Authorization: Bearer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    require_key,
    safe_url,
)
from tracemux.destinations.openinference import OpenInferenceMapper
from tracemux.destinations.otlp import RemoteDestination, traces_url
from tracemux.errors import ConfigError

DEFAULT_ENDPOINT = "http://127.0.0.1:6006"
#: Phoenix Cloud: where ``PHOENIX_API_KEY`` alone sends runs (Langflow's default too)
PHOENIX_CLOUD = "https://app.phoenix.arize.com"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True, repr=False)
class Phoenix(RemoteDestination):
    """Send runs to Arize Phoenix (self-hosted or Phoenix Cloud).

    ``endpoint``: Phoenix's base URL (its collector, ``/v1/traces``, is appended unless
    given). ``project``: the Phoenix project (a run's own ``project`` takes precedence).
    ``api_key``: sent when set, as a bearer token and as the ``api_key`` header older Phoenix
    Cloud spaces read (both, as Langflow's Phoenix tracer does). ``timeout``: seconds per
    request.
    """

    endpoint: str = DEFAULT_ENDPOINT
    project: str = DEFAULT_PROJECT
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Phoenix"
        object.__setattr__(self, "endpoint", check_url("endpoint", self.endpoint, owner=owner))
        if self.api_key is not None:
            require_key("api_key", self.api_key, owner=owner)
        if not isinstance(self.project, str) or not self.project.strip():
            raise ConfigError("Phoenix: project must be a non-empty string")
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))

    @property
    def base_url(self) -> str:
        """Phoenix's base URL (the endpoint without ``/v1/traces``)."""
        return self.endpoint.removesuffix("/v1/traces")

    def traces_url(self) -> str:
        return traces_url(self.endpoint)

    def request_headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        return {"Authorization": f"Bearer {self.api_key}", "api_key": self.api_key}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def mapper(self) -> OpenInferenceMapper:
        return OpenInferenceMapper(self.project)

    def describe(self) -> str:
        key = f"{mask_secret(self.api_key)} " if self.api_key else ""
        tag = f"({key}{self.identity_tag()})"
        return f"phoenix:{safe_url(self.base_url)} project={self.project} {tag}"
