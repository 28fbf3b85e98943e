"""GET /metrics: Prometheus text exposition of one replica's requests, tool calls, jobs and store.

Only the HTTP transport loads ``prometheus_client`` (about 50 ms of imports a stdio start skips).
Labels take values from closed sets (route patterns, tool names, error codes, provider names),
so a caller cannot grow the series without bound.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..observe import JobChange, ToolCall
from .middleware import CALLER_KEY

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..service import ImageService
    from .middleware import Handler

__all__ = ["METRICS_KEY", "Metrics", "metrics_handler"]

_JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """A listener (observe.py) and an aiohttp middleware feeding one registry of this replica."""

    def __init__(self, service: ImageService, sessions: Callable[[], int]) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        """Labelled children of ``requests``: ``labels()`` costs a few microseconds on every request."""
        self.requests = Counter(
            "mcp_image_http_requests", "HTTP requests by route pattern, method and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.tool_calls = Counter(
            "mcp_image_tool_calls", "Tool calls by tool and outcome (ok or the error code).",
            ["tool", "outcome"], registry=registry,
        )
        self.tool_seconds = Histogram(
            "mcp_image_tool_call_duration_seconds", "Time to answer a tool call, by tool.",
            ["tool"], buckets=_TOOL_BUCKETS, registry=registry,
        )
        self.job_seconds = Histogram(
            "mcp_image_job_duration_seconds", "Generation jobs from creation to their end, by provider and end state.",
            ["provider", "state"], buckets=_JOB_BUCKETS, registry=registry,
        )
        self.provider_errors = Counter(
            "mcp_image_provider_errors", "Failed provider calls by provider and error code (before any failover).",
            ["provider", "code"], registry=registry,
        )
        Gauge("mcp_image_queue_depth", "Jobs this replica took that wait for a slot (MCP_MAX_JOBS).",
              registry=registry).set_function(lambda: service.jobs.waiting)
        Gauge("mcp_image_jobs_in_flight", "Jobs this replica runs or keeps waiting.",
              registry=registry).set_function(lambda: service.jobs.in_flight)
        Gauge("mcp_image_sessions_live", "Open MCP sessions on this replica.",
              registry=registry).set_function(sessions)
        Gauge("mcp_image_store_bytes", "Bytes of images held, as of the last sweep plus saves since (NaN before it).",
              registry=registry).set_function(lambda: _usage(service, "bytes"))
        Gauge("mcp_image_store_images", "Images held, as of the last sweep plus saves since (NaN before it).",
              registry=registry).set_function(lambda: _usage(service, "images"))

    # --- listener ---------------------------------------------------------------------------

    def tool_called(self, call: ToolCall) -> None:
        self.tool_calls.labels(call.tool, call.outcome).inc()
        self.tool_seconds.labels(call.tool).observe(call.duration_s)

    def job_changed(self, change: JobChange) -> None:
        if change.done:
            self.job_seconds.labels(change.provider or "auto", change.state).observe(change.duration_s)

    def provider_failed(self, provider: str, code: str) -> None:
        self.provider_errors.labels(provider, code).inc()

    # --- http -------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts every request by its route pattern (``unmatched`` for unknown paths)."""
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            key = (route, request.method, status)
            if (counter := self._request_counters.get(key)) is None:
                counter = self._request_counters[key] = self.requests.labels(route, request.method, str(status))
            counter.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _usage(service: ImageService, what: str) -> float:
    usage = service.store.usage()
    return math.nan if usage is None else float(getattr(usage, what))


METRICS_KEY = web.AppKey("mcp_metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """The exposition; admins only, unless MCP_METRICS_PUBLIC (then the access layer admits anyone)."""
    caller = request.get(CALLER_KEY)
    if caller is not None and not caller.is_admin:
        body = b'{"error": "forbidden", "error_description": "GET /metrics needs an admin token"}'
        return web.Response(status=403, body=body, content_type="application/json")
    return web.Response(body=request.app[METRICS_KEY].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
