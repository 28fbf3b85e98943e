"""OpenAI adapter: the real ``openai`` SDK (AsyncOpenAI) against the OpenAI emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    InvalidArgumentError,
    ModelNotFoundError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from mcp_image_server.models import GenerationRequest
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.openai import CATALOG, SPEC
from tests.emulators import OpenAIEmulator

pytestmark = pytest.mark.asyncio

Make = Callable[..., Provider]
"""A fixture that builds the provider under test from Settings overrides."""


@pytest.fixture
def openai_provider(
    openai_emu: OpenAIEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    def _make(**overrides: Any) -> Provider:
        return open_provider(SPEC, make_settings(openai_base_url=openai_emu.base_url, **overrides))

    return _make


def _req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "一只猫", "width": 1536, "height": 1024, **kw})


async def test_generate_sends_options_and_decodes_b64_images(
    openai_emu: OpenAIEmulator,
    openai_provider: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    request = _req(
        n=2,
        style="watercolor",
        output_format="jpeg",
        options={"quality": "low", "moderation": "low", "output_compression": 70, "background": "opaque"},
    )

    result = await openai_provider().generate(request, progress)

    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/jpeg", 1536, 1024)] * 2
    assert result.model == "gpt-image-2" and result.warnings == ()
    sent = openai_emu.requests_to("generate")[0]
    assert sent.json == {
        "model": "gpt-image-2",
        "prompt": "一只猫",
        "n": 2,
        "size": "1536x1024",
        "output_format": "jpeg",
        "quality": "low",
        "moderation": "low",
        "output_compression": 70,
        "background": "opaque",
    }
    assert sent.headers["Authorization"] == "Bearer sk-FAKE-openai-SECRET-1234"
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert progress.messages == ["requested 2 image(s) from gpt-image-2", "decoding"]
    assert_secret_free(None)  # the SDK's DEBUG logs of a whole exchange carry no key


async def test_auto_size_webp_and_a_pinned_model(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    result = await openai_provider().generate(
        _req(width=None, height=None, output_format="webp", model="gpt-image-1.5")
    )
    image = result.images[0]
    assert (image.mime_type, image.width, image.height) == ("image/webp", 1024, 1024)
    assert result.model == "gpt-image-1.5" and result.warnings == ()
    assert openai_emu.requests_to("generate")[0].json["size"] == "auto"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", RateLimitedError, "rate_limit_exceeded"),
        ("quota", ProviderError, "insufficient_quota"),
        ("server_error", ProviderUnavailableError, "server_error"),
        ("unavailable", ProviderUnavailableError, "engine_overloaded"),
        ("moderation", ContentRejectedError, "moderation_blocked"),
        ("invalid_argument", ProviderInvalidArgumentError, "invalid_value"),
        ("auth", AuthFailedError, "invalid_api_key"),
        ("unknown_model", ModelNotFoundError, "model_not_found"),
        ("malformed", ProviderUnavailableError, None),
    ],
)
async def test_faults_map_to_error_classes_without_sdk_retries(
    openai_emu: OpenAIEmulator,
    openai_provider: Make,
    fault: str,
    error: type[ProviderError],
    code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    openai_emu.fail_next(fault)
    with pytest.raises(error) as info:
        await openai_provider().generate(_req())
    assert type(info.value) is error and info.value.provider == "openai"
    assert info.value.details.get("vendor_code") == code
    assert len(openai_emu.requests) == 1
    assert info.value.__cause__ is not None
    assert_secret_free(info.value)


async def test_rate_limit_carries_retry_after_and_next_call_succeeds(
    openai_emu: OpenAIEmulator, openai_provider: Make
) -> None:
    provider = openai_provider()
    openai_emu.fail_next("rate_limit", retry_after=12)
    with pytest.raises(RateLimitedError) as info:
        await provider.generate(_req())
    assert info.value.retry_after == 12.0 and info.value.details["retry_after"] == 12.0
    assert info.value.transient
    assert len((await provider.generate(_req())).images) == 1


async def test_unknown_model_from_the_service(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.models = {"gpt-image-2"}
    with pytest.raises(ModelNotFoundError) as info:
        await openai_provider(openai_model="gpt-image-9").generate(_req())
    assert info.value.details["status"] == 404


async def test_wrong_key_is_auth_failed_and_never_echoed(
    openai_emu: OpenAIEmulator, openai_provider: Make, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    with pytest.raises(AuthFailedError) as info:
        await openai_provider(openai_api_key=Secret("sk-FAKE-wrong-SECRET-0000")).generate(_req())
    assert "Incorrect API key" in info.value.message  # the vendor's masked echo is kept, the key is not
    assert_secret_free(info.value)


@pytest.mark.parametrize("fault", ["not_image", "corrupt", "truncated"])
async def test_bad_b64_payloads_are_bad_image_data(
    openai_emu: OpenAIEmulator, openai_provider: Make, fault: str
) -> None:
    openai_emu.fail_next(fault)
    with pytest.raises(BadImageDataError):
        await openai_provider().generate(_req())


async def test_oversized_b64_payload_is_refused(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.fail_next("oversized", size=1 << 20)
    with pytest.raises(BadImageDataError) as info:
        await openai_provider(download_max_bytes=256 * 1024).generate(_req())
    assert info.value.details["limit_bytes"] == 256 * 1024


async def test_hung_request_hits_the_overall_timeout(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.fail_next("hang")
    with pytest.raises(ProviderTimeoutError) as info:
        await openai_provider(openai_timeout=0.3).generate(_req())
    assert info.value.transient and openai_emu.hangs == 1


async def test_a_released_hang_completes_normally(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.fail_next("hang")
    task = asyncio.create_task(openai_provider().generate(_req()))
    async with asyncio.timeout(5):
        await openai_emu.hanging.wait()
        openai_emu.release()
        result = await task
    assert len(result.images) == 1 and openai_emu.hangs == 1


async def test_slow_but_healthy_service_succeeds_within_the_timeout(
    openai_emu: OpenAIEmulator, openai_provider: Make
) -> None:
    openai_emu.latency = 0.05
    assert len((await openai_provider(openai_timeout=5).generate(_req())).images) == 1


async def test_unreachable_base_url_is_unavailable(
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
    closed_port: int,
) -> None:
    provider = open_provider(SPEC, make_settings(openai_base_url=f"http://127.0.0.1:{closed_port}/v1"))
    with pytest.raises(ProviderUnavailableError):
        await provider.generate(_req())


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"style": "riman"}, UnknownStyleError),
        ({"width": 512, "height": 512}, UnknownResolutionError),
        ({"options": {"steps": 30}}, UnsupportedOptionError),
        ({"options": {"quality": "ultra"}}, InvalidArgumentError),
        ({"options": {"output_compression": 101}}, InvalidArgumentError),
        ({"options": {"background": "transparent"}, "output_format": "jpeg"}, InvalidArgumentError),
        ({"n": 5}, InvalidArgumentError),
    ],
)
async def test_invalid_requests_fail_before_any_call(
    openai_emu: OpenAIEmulator, openai_provider: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error):
        await openai_provider().generate(_req(**request_kw))
    assert openai_emu.requests == []


async def test_missing_key_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ProviderNotConfiguredError) as info:
        SPEC.factory(make_settings(openai_api_key=None))
    assert "OPENAI_API_KEY" in str(info.value)


async def test_catalog_and_lazy_sdk_import(imports_after: Callable[[str], set[str]]) -> None:
    assert len(CATALOG.styles) == 12 and all(s.prompt_modifier for s in CATALOG.styles)
    assert "prompt modifiers" in CATALOG.notes
    assert set(CATALOG.options) == {"quality", "background", "output_compression", "moderation"}
    loaded = imports_after("mcp_image_server.providers.openai")
    assert not {"openai", "httpx2", "aiohttp", "PIL"} & loaded
