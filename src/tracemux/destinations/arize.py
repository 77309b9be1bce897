"""Arize AX: OTLP/HTTP to Arize's collector, with OpenInference attributes.

Langflow's tracer exports to Arize AX over gRPC (``{ARIZE_COLLECTOR_ENDPOINT}/v1``). The
same collector takes OTLP/HTTP protobuf at ``/v1/traces`` (``arize-otel``'s
``HTTPSpanExporter``, ``Transport.HTTP``), which is what tracemux sends: one encoding and
one HTTP client for every backend, no gRPC dependency. The headers are those
``arize-otel`` sends (``authorization``: the API key, ``api_key``, ``arize-space-id``,
``space_id``, ``arize-interface: otel``).

Attributes: the OpenInference mapping of :mod:`tracemux.destinations.phoenix` (span kind,
``input.value``/``output.value``, ``llm.model_name``, ``llm.token_count.*``, ``user.id``,
``session.id``, ``metadata``, errors); resource ``openinference.project.name`` and
``model_id`` (the same name, as Langflow sets both). The project is the destination's
``project`` when given; otherwise, as Langflow names it, the flow name of the run's name
(the part before `` - ``, spaces as ``-``), falling back to the run's ``project`` and then
``default``.
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
from tracemux.destinations.probe import Probe, otlp_probe
from tracemux.destinations.spanmap import Attrs
from tracemux.errors import ConfigError
from tracemux.model import RunInfo

DEFAULT_ENDPOINT = "https://otlp.arize.com"
DEFAULT_PROJECT = "default"


def langflow_project(run: RunInfo) -> str:
    """The Arize project Langflow's tracer would use for ``run``."""
    name = run.name.split(" - ", 1)[0] if " - " in run.name else run.name
    name = name.replace(" ", "-")
    if name and name != "None":
        return name
    return run.project or DEFAULT_PROJECT


class ArizeMapper(OpenInferenceMapper):
    """OpenInference, plus the ``model_id`` resource attribute Arize AX groups by."""

    def project(self, run: RunInfo) -> str | None:
        return self.default_project or langflow_project(run)

    def resource_attributes(self, project: str | None) -> Attrs:
        attrs = super().resource_attributes(project)
        if project:
            attrs.append(("model_id", project))
        return attrs


@dataclass(frozen=True, repr=False)
class Arize(RemoteDestination):
    """Send runs to Arize AX (the cloud product; for Phoenix use :class:`Phoenix`).

    ``api_key`` / ``space_id``: ``ARIZE_API_KEY`` / ``ARIZE_SPACE_ID``. ``endpoint``:
    ``ARIZE_COLLECTOR_ENDPOINT`` (``/v1/traces`` is appended; a trailing ``/v1`` as given
    to Langflow's gRPC exporter is accepted). ``project``: the Arize project for every run;
    None (the default) names it per run as Langflow does (see the module docstring).
    ``timeout``: seconds per request.
    """

    api_key: str = field(default="", repr=False)
    space_id: str = ""
    endpoint: str = DEFAULT_ENDPOINT
    project: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Arize"
        require_key("api_key", self.api_key, owner=owner)
        require_key("space_id", self.space_id, owner=owner)
        endpoint = check_url("endpoint", self.endpoint, owner=owner).removesuffix("/v1/traces")
        object.__setattr__(self, "endpoint", endpoint.removesuffix("/v1"))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))
        if self.project is not None and (
            not isinstance(self.project, str) or not self.project.strip()
        ):
            raise ConfigError("Arize: project must be a non-empty string")

    def traces_url(self) -> str:
        return traces_url(self.endpoint)

    def request_headers(self) -> dict[str, str]:
        return {
            "authorization": self.api_key,
            "api_key": self.api_key,
            "arize-space-id": self.space_id,
            "space_id": self.space_id,
            "arize-interface": "otel",
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def mapper(self) -> ArizeMapper:
        return ArizeMapper(self.project)

    def probe(self) -> Probe:
        """For ``tracemux doctor``: an empty OTLP request with the credentials."""
        return otlp_probe(self, "ARIZE_API_KEY and ARIZE_SPACE_ID", "ARIZE_COLLECTOR_ENDPOINT")

    def describe(self) -> str:
        return (
            f"arize:{safe_url(self.endpoint)} space={self.space_id} "
            f"project={self.project or '<per flow>'} "
            f"({mask_secret(self.api_key)} {self.identity_tag()})"
        )
