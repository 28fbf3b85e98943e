"""What the server reports about itself: tool calls, job transitions and provider failures, fanned
out to whoever listens (the audit log, Prometheus metrics), plus OpenTelemetry spans.

Listeners get plain facts (names, codes, numbers), never a token, a key or a prompt. A listener
that raises is logged and skipped: reporting must never fail the call it reports on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace  # already loaded by the mcp SDK, which spans every message itself

__all__ = ["JobChange", "Listener", "Observers", "ToolCall", "configure_tracing", "span"]

logger = logging.getLogger(__name__)

_tracer = trace.get_tracer("mcp_image_server")


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool: str
    caller: str
    """A named token's name; ``token-<fingerprint>`` for an MCP_AUTH_TOKEN token; ``stdio``; ``anonymous``."""
    session: str | None
    client: str | None
    """The peer address (HTTP), or None on stdio."""
    outcome: str
    """``ok``, or the error code of the result."""
    duration_s: float
    provider: str | None = None
    model: str | None = None
    n: int | None = None
    size: str | None = None
    cost_estimate_usd: float | None = None
    job_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class JobChange:
    job_id: str
    caller: str
    state: str
    provider: str | None
    model: str | None
    n: int
    size: str | None
    cost_estimate_usd: float | None
    """Set when the job succeeded: what its images cost by the catalog."""
    outcome: str | None
    """The error code of a failed or cancelled job."""
    duration_s: float
    """Since the job was created (its whole life so far)."""
    run_s: float | None
    """Since it started running (None while queued)."""
    done: bool


class Listener(Protocol):
    def tool_called(self, call: ToolCall) -> None: ...

    def job_changed(self, change: JobChange) -> None: ...

    def provider_failed(self, provider: str, code: str) -> None: ...


class Observers:
    """Fans every report out to the listeners, isolating their failures."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _each(self, method: str, *args: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, method)(*args)
            except Exception:  # a reporting bug must not fail the reported call
                logger.exception("%s.%s failed", type(listener).__name__, method)

    def tool_called(self, call: ToolCall) -> None:
        self._each("tool_called", call)

    def job_changed(self, change: JobChange) -> None:
        self._each("job_changed", change)

    def provider_failed(self, provider: str, code: str) -> None:
        self._each("provider_failed", provider, code)


@contextmanager
def span(name: str, **attributes: str | float | None) -> Iterator[trace.Span]:
    """A span under the current one (the SDK's ``tools/call`` span, or a job's), its attributes
    named ``mcp_image.<key>``; costs next to nothing while no OpenTelemetry SDK is installed."""
    with _tracer.start_as_current_span(
        name, attributes={f"mcp_image.{k}": v for k, v in attributes.items() if v is not None}
    ) as current:
        yield current


def configure_tracing(endpoint: str | None, service_version: str) -> str | None:
    """Export spans over OTLP/HTTP to ``endpoint`` when the OpenTelemetry SDK and exporter are
    installed. Returns what was done, for one start-up log line (None: tracing stays off)."""
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return ("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed; no traces are "
                "exported (pip install 'opentelemetry-sdk' 'opentelemetry-exporter-otlp-proto-http')")
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return "OpenTelemetry: a tracer provider was already installed; spans go to it"
    provider = TracerProvider(resource=Resource.create({
        "service.name": "mcp-image-server", "service.version": service_version,
    }))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)))
    trace.set_tracer_provider(provider)
    return f"OpenTelemetry: exporting traces to {endpoint}/v1/traces"
