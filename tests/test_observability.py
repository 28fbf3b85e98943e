"""The audit log (MCP_AUDIT_LOG), GET /metrics and OpenTelemetry spans, through real clients.

A subprocess server with an admin token and a named user: /metrics is parsed with
``prometheus_client.parser`` before and after calls, and its counters must move by exactly what
was done; the audit log's lines are parsed and searched for every token, key and prompt. Spans
are checked twice: in process with the SDK's in-memory exporter, and from a subprocess server
exporting over OTLP/HTTP to a collector on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiohttp import web
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(120)

ADMIN = "admin-token-for-metrics-0123"
ALICE = "alice-token-for-metrics-0123"
OPENAI_KEY = "sk-test-secret-openai-key-0123456789"
SIGNING_KEY = "s" * 24 + "-signing-key-for-metrics"
PROMPT = "a lighthouse with the secret word zanzibar"
SMALL = {"provider": "local", "resolution": "64x64", "inline": "none"}


def _tokens(tmp_path: Path) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[[tokens]]\nname = "alice"\ntoken_sha256 = "{hashlib.sha256(ALICE.encode()).hexdigest()}"\nrole = "user"\n'
    )
    return str(path)


@asynccontextmanager
async def _client(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK client: ``auto`` speaks 2026-07-28 (no session); ``legacy`` opens a handshake-era session."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def _call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result
    return result.structured_content


@asynccontextmanager
async def _refusing_vendor() -> AsyncIterator[str]:
    """An OpenAI-shaped endpoint that refuses every key (401): a provider error on demand."""

    async def refuse(_request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                       "code": "invalid_api_key"}}, status=401,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


class Scrape:
    """One parsed /metrics exposition: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


async def _scrape(http: httpx2.AsyncClient, base: str, token: str | None = ADMIN) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.get(f"{base}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def test_metrics_move_with_calls_and_the_audit_log_names_callers_never_secrets(
    http_server: Any, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    async with _refusing_vendor() as vendor:
        env = {
            "MCP_TOKENS_FILE": _tokens(tmp_path), "MCP_AUDIT_LOG": str(audit),
            "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": vendor, "MCP_DEFAULT_PROVIDER": "local",
            "MCP_IMAGE_URL_MODE": "signed", "MCP_URL_SIGNING_KEY": SIGNING_KEY,
        }
        async with http_server(env=env, token=ADMIN) as url, httpx2.AsyncClient(timeout=30) as http:
            base = url.removesuffix("/mcp")
            assert (await http.get(f"{base}/metrics")).status_code == 401
            refused = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ALICE}"})
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
            before = await _scrape(http, base)

            async with _client(url, ALICE, "legacy") as alice, _client(url, ADMIN) as admin:
                made = [await _call(alice, "generate_image", prompt=PROMPT, **SMALL) for _ in range(2)]
                assert all(m["ok"] for m in made), made
                missing = await _call(alice, "get_image_data", image_id="0" * 32)
                assert missing["error"]["code"] == "image_not_found"
                failed = await _call(admin, "generate_image", prompt=PROMPT, provider="openai", inline="none")
                assert not failed["ok"]
                vendor_code = failed["error"]["code"]
                during = await _scrape(http, base)
                assert during.get("mcp_image_sessions_live") == 1  # alice's; the 2026-07-28 era has none

            after = await _scrape(http, base)

        def moved(name: str, **labels: str) -> float:
            return after.total(name, **labels) - before.total(name, **labels)

        assert moved("mcp_image_tool_calls_total", tool="generate_image", outcome="ok") == 2
        assert moved("mcp_image_tool_calls_total", tool="get_image_data", outcome="image_not_found") == 1
        assert moved("mcp_image_tool_calls_total", tool="generate_image", outcome=vendor_code) == 1
        assert moved("mcp_image_tool_call_duration_seconds_count", tool="generate_image") == 3
        assert moved("mcp_image_job_duration_seconds_count", provider="local", state="succeeded") == 2
        assert moved("mcp_image_job_duration_seconds_count", provider="openai", state="failed") == 1
        assert moved("mcp_image_provider_errors_total", provider="openai", code=vendor_code) >= 1
        assert moved("mcp_image_http_requests_total", route="/mcp", method="POST", status="200") >= 4
        assert moved("mcp_image_http_requests_total", route="/metrics", method="GET", status="200") >= 2
        assert after.get("mcp_image_http_requests_total", route="/metrics", method="GET", status="401") == 1
        assert after.get("mcp_image_http_requests_total", route="/metrics", method="GET", status="403") == 1
        assert after.get("mcp_image_queue_depth") == 0
        stored = after.get("mcp_image_store_bytes")
        assert not math.isnan(stored) and stored > 0
        assert after.get("mcp_image_store_images") >= 2

    # The server has stopped: every line is written.
    text = audit.read_text()
    for secret in (ADMIN, ALICE, OPENAI_KEY, SIGNING_KEY, hashlib.sha256(ALICE.encode()).hexdigest(), "zanzibar"):
        assert secret not in text, f"the audit log holds {secret[:6]}..."
    lines = [json.loads(line) for line in text.splitlines()]
    calls = [e for e in lines if e["event"] == "tool_call"]
    ok = [e for e in calls if e["caller"] == "alice" and e["tool"] == "generate_image"]
    assert len(ok) == 2
    for entry in ok:
        assert entry["outcome"] == "ok" and entry["status"] == "succeeded"
        assert entry["provider"] == "local" and entry["model"] and entry["n"] == 1 and entry["size"] == "64x64"
        assert entry["cost_estimate_usd"] == 0.0 and entry["duration_s"] > 0
        assert entry["client"] == "127.0.0.1" and entry["session"]
        assert entry["time"].endswith("Z")
    assert {e["outcome"] for e in calls if e["tool"] == "get_image_data"} == {"image_not_found"}
    admin_calls = [e for e in calls if e["caller"].startswith("token-")]
    assert [(e["outcome"], e["session"]) for e in admin_calls] == [(vendor_code, None)]
    for job in [m["job_id"] for m in made]:
        states = [e["state"] for e in lines if e["event"] == "job" and e["job_id"] == job]
        assert states == ["queued", "running", "saving", "succeeded"], states
    ended = [e for e in lines if e["event"] == "job" and e["done"]]
    assert {(e["caller"], e["provider"], e["state"], e["outcome"]) for e in ended} == {
        ("alice", "local", "succeeded", None),
        (admin_calls[0]["caller"], "openai", "failed", vendor_code),
    }
    assert [e["code"] for e in lines if e["event"] == "provider_error"] == [vendor_code]


async def test_metrics_public_needs_no_token_and_a_bad_audit_path_stops_the_start(
    http_server: Any, tmp_path: Path
) -> None:
    async with (
        http_server(env={"MCP_METRICS_PUBLIC": "1"}, token=ADMIN) as url,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        scrape = await _scrape(http, url.removesuffix("/mcp"), token=None)
        assert scrape.get("mcp_image_sessions_live") == 0
    with pytest.raises(AssertionError, match="exited before listening"):
        async with http_server(env={"MCP_AUDIT_LOG": str(tmp_path / "missing" / "audit.jsonl")}, token=ADMIN):
            pass
    log = (tmp_path / "http-server.log").read_text()
    assert "MCP_AUDIT_LOG: cannot append to" in log and "Traceback" not in log


# --- OpenTelemetry --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Any:
    """The SDK's in-memory exporter behind the process-wide tracer provider (settable once)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider is installed in this process")
    yield exporter
    exporter.clear()
    provider.shutdown()  # later tests' spans go nowhere


async def test_spans_nest_tool_call_job_provider_call(spans: Any, tmp_path: Path) -> None:
    from mcp_image_server.config import load_settings
    from mcp_image_server.server import build_mcp_server
    from mcp_image_server.service import ImageService
    from mcp_image_server.transports.http import create_http_app

    settings = load_settings(
        {"MCP_TRANSPORT": "http", "MCP_PORT": "0", "MCP_IMAGE_SAVE_DIR": str(tmp_path / "images")}, env_file=None
    )
    service = ImageService(settings, environ={})
    await service.start()
    runner = web.AppRunner(create_http_app(service, build_mcp_server(service), settings), shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with Client(f"http://127.0.0.1:{runner.addresses[0][1]}/mcp") as client, asyncio.timeout(30):
            result = await client.call_tool("generate_image", {"prompt": PROMPT, **SMALL})
            assert not result.is_error, result
    finally:
        await runner.cleanup()
        await service.aclose()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    tool, job, call = by_name["tools/call generate_image"], by_name["image.job"], by_name["image.provider"]
    assert job.parent is not None and job.parent.span_id == tool.context.span_id
    assert call.parent is not None and call.parent.span_id == job.context.span_id
    assert tool.context.trace_id == job.context.trace_id == call.context.trace_id
    assert call.attributes["mcp_image.provider"] == "local"
    assert job.attributes["mcp_image.job_id"] == result.structured_content["job_id"]  # type: ignore[index]
    assert "zanzibar" not in json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()])


@asynccontextmanager
async def _collector() -> AsyncIterator[tuple[str, list[Any], asyncio.Event]]:
    """An OTLP/HTTP trace collector on loopback: decoded spans, and an event once a provider span came."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    received: list[Any] = []
    arrived = asyncio.Event()

    async def export(request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                received.extend((resource, s) for s in scope.spans)
        if any(s.name == "image.provider" for _, s in received):
            arrived.set()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received, arrived
    finally:
        await runner.cleanup()


async def test_a_server_exports_its_spans_over_otlp(http_server: Any) -> None:
    async with _collector() as (endpoint, received, arrived):
        env: Mapping[str, str] = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        async with http_server(env=env, token=ADMIN) as url, _client(url, ADMIN) as client:
            out = await _call(client, "generate_image", prompt=PROMPT, **SMALL)
            assert out["ok"], out
            async with asyncio.timeout(20):
                await arrived.wait()
    spans = {s.name: (resource, s) for resource, s in received}
    resource, call = spans["image.provider"]
    _, job = spans["image.job"]
    _, tool = spans["tools/call generate_image"]
    assert call.parent_span_id == job.span_id and job.parent_span_id == tool.span_id
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "mcp-image-server"


_MIDDLEWARE = """
import sys, tempfile
from mcp_image_server.config import load_settings
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService
env = {"MCP_IMAGE_SAVE_DIR": tempfile.mkdtemp(), **dict(a.split("=", 1) for a in sys.argv[1:])}
print(",".join(type(m).__name__ for m in build_mcp_server(ImageService(load_settings(env))).lowlevel.middleware))
"""


@pytest.mark.parametrize(("args", "spans_kept"), [((), False), (("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9",), True)])
def test_the_sdks_per_message_span_runs_only_when_traces_can_go_somewhere(
    args: tuple[str, ...], spans_kept: bool
) -> None:
    import subprocess
    import sys

    names = subprocess.run(
        [sys.executable, "-c", _MIDDLEWARE, *args], capture_output=True, text=True, timeout=60, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip().split(",")
    assert ("OpenTelemetryMiddleware" in names) is spans_kept
    assert "ToolListCache" in names
