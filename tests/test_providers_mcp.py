"""Every cloud provider through the full path: SDK client -> stdio server -> real vendor SDK -> emulator."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from .emulators import DoubaoEmulator, HunyuanEmulator, ModelScopeEmulator, OpenAIEmulator
from .emulators.gemini import GeminiEmulator

pytestmark = pytest.mark.timeout(120)

KEYS = {
    "TENCENT_SECRET_ID": "AKID-FAKE-hunyuan0000000001",
    "TENCENT_SECRET_KEY": "FAKE-tencent-secret-key-0001",
    "OPENAI_API_KEY": "sk-FAKE-openai-key-0001",
    "DOUBAO_API_KEY": "ark-FAKE-doubao-key-0001",
    "MODELSCOPE_API_KEY": "ms-FAKE-modelscope-key-0001",
    "GEMINI_API_KEY": "AIza-FAKE-gemini-key-0001",
}
FAST = {
    "MCP_HUNYUAN_POLL_INTERVAL": "0.02",
    "MCP_MODELSCOPE_POLL_INTERVAL": "0.02",
    "MCP_PROVIDER_MAX_ATTEMPTS": "2",
    "MCP_PROVIDER_RETRY_BUDGET": "2",
    "MCP_LOG_LEVEL": "DEBUG",
}
PROVIDERS = ("hunyuan", "openai", "doubao", "modelscope", "gemini")


class Emulators:
    def __init__(self, **overrides: Any) -> None:
        self.hunyuan = HunyuanEmulator(secret_id=KEYS["TENCENT_SECRET_ID"], secret_key=KEYS["TENCENT_SECRET_KEY"],
                                       **overrides.get("hunyuan", {}))
        self.openai = OpenAIEmulator(api_key=KEYS["OPENAI_API_KEY"], **overrides.get("openai", {}))
        self.doubao = DoubaoEmulator(api_key=KEYS["DOUBAO_API_KEY"], **overrides.get("doubao", {}))
        self.modelscope = ModelScopeEmulator(api_key=KEYS["MODELSCOPE_API_KEY"], **overrides.get("modelscope", {}))
        self.gemini = GeminiEmulator(api_key=KEYS["GEMINI_API_KEY"], **overrides.get("gemini", {}))

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def env(self) -> dict[str, str]:
        env = dict(FAST)
        for name in PROVIDERS:
            env.update(self[name].env())
        env.update(KEYS)
        return env


@asynccontextmanager
async def running(stdio_client: Any, tmp_path: Path, env: dict[str, str] | None = None, mode: str = "auto",
                  **overrides: Any) -> AsyncIterator[tuple[Any, Emulators, Path]]:
    emus = Emulators(**overrides)
    log = tmp_path / "server.log"
    async with AsyncExitStack() as stack:
        for name in PROVIDERS:
            await stack.enter_async_context(emus[name])
        errlog = stack.enter_context(log.open("w"))
        client = await stack.enter_async_context(stdio_client(env=emus.env() | (env or {}), errlog=errlog, mode=mode))
        try:
            yield client, emus, log
        finally:
            for name in PROVIDERS:
                emus[name].release()


def _sc(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def _assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for key in KEYS.values():
            assert key not in text


@pytest.mark.usefixtures("backends")
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_provider_generates_through_its_real_sdk(stdio_client: Any, tmp_path: Path, provider: str) -> None:
    async with running(stdio_client, tmp_path) as (client, emus, log):
        result = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "provider": provider, "inline": "none", "seed": 7}
        )
        sc = _sc(result)
        assert sc["ok"] and sc["status"] == "succeeded", sc
        image = sc["images"][0]
        assert image["provider"] == provider
        data = _sc(await client.call_tool("get_image_data", {"image_id": image["image_id"]}))
        assert len(base64.b64decode(data["base64"])) == image["size_bytes"] > 0  # from the folder or the bucket
        assert emus[provider].requests, "the emulator saw no request"
        providers = json.loads((await client.read_resource("providers://list")).contents[0].text)
    assert {p["name"]: p["configured"] for p in providers["providers"]} == dict.fromkeys(
        ("local", *PROVIDERS), True)
    _assert_no_secrets(json.dumps(sc), json.dumps(providers), log.read_text())


FAULTS: list[tuple[str, str, str]] = [
    # (provider, fault, expected error code); faults apply to every request (fail_always)
    ("hunyuan", "auth", "auth_failed"),
    ("hunyuan", "moderation", "content_rejected"),
    ("hunyuan", "rate_limit", "rate_limited"),
    ("hunyuan", "invalid_argument", "provider_invalid_argument"),
    ("hunyuan", "malformed", "provider_unavailable"),
    ("hunyuan", "not_image", "bad_image_data"),
    ("openai", "auth", "auth_failed"),
    ("openai", "moderation", "content_rejected"),
    ("openai", "rate_limit", "rate_limited"),
    ("openai", "server_error", "provider_unavailable"),
    ("openai", "unknown_model", "model_not_found"),
    ("openai", "malformed", "provider_unavailable"),
    ("openai", "corrupt", "bad_image_data"),
    ("doubao", "auth", "auth_failed"),
    ("doubao", "moderation", "content_rejected"),
    ("doubao", "unavailable", "provider_unavailable"),
    ("doubao", "unknown_model", "model_not_found"),
    ("doubao", "truncated", "bad_image_data"),
    ("modelscope", "auth", "auth_failed"),
    ("modelscope", "rate_limit", "rate_limited"),
    ("modelscope", "unknown_model", "model_not_found"),
    ("modelscope", "oversized", "bad_image_data"),
    ("gemini", "auth", "auth_failed"),
    ("gemini", "moderation", "content_rejected"),
    ("gemini", "image_safety", "content_rejected"),
    ("gemini", "rate_limit", "rate_limited"),
    ("gemini", "server_error", "provider_unavailable"),
    ("gemini", "unknown_model", "model_not_found"),
    ("gemini", "no_image", "bad_image_data"),
    ("gemini", "corrupt", "bad_image_data"),
]


@pytest.mark.parametrize(("provider", "fault", "code"), FAULTS)
async def test_vendor_faults_become_stable_error_codes(
    stdio_client: Any, tmp_path: Path, provider: str, fault: str, code: str
) -> None:
    env = {"MCP_DOWNLOAD_MAX_BYTES": "200000"}
    async with running(stdio_client, tmp_path, env) as (client, emus, log):
        emus[provider].fail_always(fault)
        result = await client.call_tool("generate_image", {"prompt": "x", "provider": provider, "inline": "none"})
        assert result.is_error, _sc(result)
        error = _sc(result)["error"]
        assert error["code"] == code, error
        assert error["details"].get("provider") == provider
    _assert_no_secrets(json.dumps(_sc(result)), result.content[0].text, log.read_text())


@pytest.mark.parametrize("provider", ["openai", "doubao", "modelscope", "gemini"])
async def test_a_hang_past_the_timeout_is_a_timeout(stdio_client: Any, tmp_path: Path, provider: str) -> None:
    env = {f"MCP_{provider.upper()}_TIMEOUT": "1", "MCP_PROVIDER_MAX_ATTEMPTS": "1"}
    async with running(stdio_client, tmp_path, env) as (client, emus, _):
        emus[provider].fail_always("hang")
        result = await client.call_tool("generate_image", {"prompt": "x", "provider": provider, "inline": "none"})
        assert _sc(result)["error"]["code"] == "provider_timeout"


async def test_a_transient_failure_is_retried_and_the_call_succeeds(stdio_client: Any, tmp_path: Path) -> None:
    async with running(stdio_client, tmp_path) as (client, emus, _):
        emus.openai.fail_next("server_error")
        result = await client.call_tool("generate_image", {"prompt": "x", "provider": "openai", "inline": "none"})
        assert _sc(result)["ok"]
        assert len(emus.openai.requests_to("generate")) == 2


async def test_a_failed_hunyuan_job_reports_its_job_error_code(stdio_client: Any, tmp_path: Path) -> None:
    async with running(stdio_client, tmp_path) as (client, emus, _):
        emus.hunyuan.fail_always("job_failed", code="OperationDenied.ImageIllegalDetected", message="no")
        result = await client.call_tool("generate_image", {"prompt": "x", "provider": "hunyuan", "inline": "none"})
        error = _sc(result)["error"]
        assert error["code"] == "content_rejected" and "OperationDenied.ImageIllegalDetected" in json.dumps(error)
        assert len(emus.hunyuan.requests_to("submit")) == 1  # a permanent job failure is not retried


async def test_a_transient_hunyuan_job_failure_gets_a_fresh_job(stdio_client: Any, tmp_path: Path) -> None:
    """The first job has ended (status 4), so submitting another cannot duplicate it."""
    async with running(stdio_client, tmp_path) as (client, emus, _):
        emus.hunyuan.fail_next("job_failed", code="FailedOperation.GenerateImageFailed", message="boom")
        result = await client.call_tool("generate_image", {"prompt": "x", "provider": "hunyuan", "inline": "none"})
        assert _sc(result)["ok"] and len(emus.hunyuan.requests_to("submit")) == 2


async def test_doubao_falls_back_to_its_fallback_model(stdio_client: Any, tmp_path: Path) -> None:
    env = {"DOUBAO_MODEL": "doubao-seedream-4-0-250828", "DOUBAO_FALLBACK_MODEL": "doubao-seedream-3-0-t2i-250415"}
    overrides = {"doubao": {"models": {"doubao-seedream-3-0-t2i-250415"}}}
    async with running(stdio_client, tmp_path, env, **overrides) as (client, emus, _):
        result = await client.call_tool(
            "generate_image", {"prompt": "x", "provider": "doubao", "resolution": "1024x1024", "inline": "none"}
        )
        sc = _sc(result)
        assert sc["ok"] and sc["images"][0]["model"] == "doubao-seedream-3-0-t2i-250415"
        assert any("doubao-seedream-3-0-t2i-250415" in w for w in sc["warnings"])
        sent = [r.json["model"] for r in emus.doubao.requests]
        assert sent == ["doubao-seedream-4-0-250828", "doubao-seedream-3-0-t2i-250415"]


async def test_unpinned_requests_fail_over_to_the_next_provider(stdio_client: Any, tmp_path: Path) -> None:
    env = {"MCP_FALLBACK_PROVIDERS": "openai,local"}
    async with running(stdio_client, tmp_path, env) as (client, emus, _):
        emus.hunyuan.fail_always("rate_limit")
        result = await client.call_tool(
            "generate_image", {"prompt": "x", "style": "riman", "resolution": "1280x720", "inline": "none"}
        )
        sc = _sc(result)
        assert sc["ok"] and sc["images"][0]["provider"] == "openai"
        assert any(w.startswith("hunyuan failed (rate_limited") and "served by openai" in w for w in sc["warnings"])
        assert emus.openai.requests_to("generate")[0].json["size"] == "1536x1024"
        pinned = await client.call_tool("generate_image", {"prompt": "x", "provider": "hunyuan", "inline": "none"})
        assert _sc(pinned)["error"]["code"] == "rate_limited"


async def test_hunyuan_runs_one_job_at_a_time_and_queues_the_rest(stdio_client: Any, tmp_path: Path) -> None:
    overrides = {"hunyuan": {"job_polls": 5}}
    async with running(stdio_client, tmp_path, {"MCP_HUNYUAN_MAX_CONCURRENCY": "1"}, **overrides) as (
        client, emus, _,
    ):
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        results = await asyncio.gather(*(
            client.call_tool("generate_image", {"prompt": f"p{i}", "provider": "hunyuan", "inline": "none"},
                             progress_callback=on_progress)
            for i in range(3)
        ))
        assert all(_sc(r)["ok"] for r in results)
        assert any(m.startswith("queued for hunyuan") for m in messages)
    # With one slot, each job's polls finish before the next job is submitted.
    order: list[str] = []
    for r in emus.hunyuan.requests:
        if r.route == "submit":
            order.append("submit")
        elif r.route == "query":
            order.append(r.json["JobId"])
    blocks = [x for i, x in enumerate(order) if i == 0 or x != order[i - 1]]
    assert blocks.count("submit") == 3 and len(blocks) == 6, order
