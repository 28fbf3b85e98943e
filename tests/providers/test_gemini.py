"""Gemini adapter: the real ``google-genai`` SDK against the Gemini emulator on loopback."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from mcp_image_server.config import Secret, Settings, load_settings
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
from mcp_image_server.prices import price_of
from mcp_image_server.providers import registry
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.gemini import ASPECT_RATIOS, CATALOG, SPEC
from mcp_image_server.providers.manager import ProviderManager
from tests.emulators.common import render_image
from tests.emulators.gemini import ASPECT_SIZES, GeminiEmulator

pytestmark = pytest.mark.asyncio

GEMINI_KEY = "AIza-FAKE-gemini-SECRET-7890"
WRONG_KEY = "AIza-FAKE-wrong-SECRET-0000"  # contains FAKE-wrong-SECRET, which assert_secret_free looks for
_SDK_ENV = (
    # Read by google-genai itself; the adapter passes everything explicitly, but none may leak in.
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_GENAI_HTTP_CLIENT",
    "GOOGLE_APPLICATION_CREDENTIALS",
)

Make = Callable[..., Provider]
"""Builds the provider under test from Settings overrides."""


@pytest.fixture(autouse=True)
def _no_google_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def assert_secret_free(
    assert_secret_free: Callable[[BaseException | None], None], caplog: pytest.LogCaptureFixture
) -> Callable[[BaseException | None], None]:
    """The suite's check (its fake keys, the wrong key), plus the Gemini key, which it does not know."""

    def _check(exc: BaseException | None) -> None:
        assert_secret_free(exc)
        texts = [caplog.text, *(record.getMessage() for record in caplog.records)]
        seen = exc
        while seen is not None:
            texts += [str(seen), repr(seen), *map(str, seen.args), str(getattr(seen, "details", ""))]
            seen = seen.__cause__ or seen.__context__
        assert not [t for t in texts if GEMINI_KEY in t]

    return _check


@pytest_asyncio.fixture
async def gemini_emu(sdk_sandbox: None) -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(api_key=GEMINI_KEY) as emu:
        yield emu


@pytest.fixture
def gemini_provider(
    gemini_emu: GeminiEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    def _make(**overrides: Any) -> Provider:
        values: dict[str, Any] = {
            "gemini_api_key": Secret(GEMINI_KEY),
            "gemini_base_url": gemini_emu.base_url,
            "gemini_timeout": 10.0,
            **overrides,
        }
        return open_provider(SPEC, make_settings(**values))

    return _make


def _req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "一只猫在屋顶上", "width": 1344, "height": 768, **kw})


async def test_generate_sends_an_image_request_and_decodes_the_inline_png(
    gemini_emu: GeminiEmulator,
    gemini_provider: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    result = await gemini_provider().generate(_req(seed=41), progress)

    [image] = result.images
    assert (image.mime_type, image.width, image.height, image.seed) == ("image/png", 1344, 768, 41)
    assert image.data.startswith(b"\x89PNG")
    assert result.model == "gemini-2.5-flash-image" and result.warnings == ()
    [sent] = gemini_emu.requests_to("generate")
    assert sent.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert sent.json == {
        "contents": [{"parts": [{"text": "一只猫在屋顶上"}], "role": "user"}],
        "generationConfig": {"seed": 41, "responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}},
    }
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.headers["X-Server-Timeout"] == "10"  # the SDK tells Google our deadline
    assert progress.messages == ["requested 1 image(s) from gemini-2.5-flash-image"]
    assert_secret_free(None)  # no SDK debug log carries the key


@pytest.mark.parametrize(("resolution", "aspect"), sorted(ASPECT_RATIOS.items()))
async def test_every_preset_maps_to_its_aspect_ratio_and_pixel_size(
    gemini_emu: GeminiEmulator, gemini_provider: Make, resolution: str, aspect: str
) -> None:
    width, height = map(int, resolution.split("x"))
    result = await gemini_provider().generate(_req(width=width, height=height))
    assert gemini_emu.requests[0].json["generationConfig"]["imageConfig"] == {"aspectRatio": aspect}
    assert (result.images[0].width, result.images[0].height) == (width, height)
    assert ASPECT_SIZES["2.5"][aspect] == (width, height)  # catalog and emulator agree with the docs table


async def test_auto_sends_no_image_config_and_a_gemini_3_model_answers_its_own_size(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    result = await gemini_provider().generate(_req(width=None, height=None))
    assert "imageConfig" not in gemini_emu.requests[0].json["generationConfig"]
    assert (result.images[0].width, result.images[0].height) == (1024, 1024)

    pro = await gemini_provider().generate(_req(model="gemini-3-pro-image-preview"))
    assert pro.model == "gemini-3-pro-image-preview"
    assert (pro.images[0].width, pro.images[0].height) == (1376, 768)
    assert gemini_emu.requests[1].path == "/v1beta/models/gemini-3-pro-image-preview:generateContent"


async def test_n_images_are_n_concurrent_calls_with_distinct_seeds_and_converted_format(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    gemini_emu.fail_next("hang", times=3)
    task = asyncio.create_task(gemini_provider().generate(_req(n=3, seed=7, output_format="jpeg")))
    async with asyncio.timeout(5):
        while gemini_emu.hangs < 3:  # all three are in flight at once before any is answered
            gemini_emu.hanging.clear()  # no await between the check and the clear: no hang is missed
            await gemini_emu.hanging.wait()
        gemini_emu.release()
        result = await task
    assert [i.mime_type for i in result.images] == ["image/jpeg"] * 3
    assert sorted(r.json["generationConfig"]["seed"] for r in gemini_emu.requests) == [7, 8, 9]
    assert sorted(i.seed for i in result.images if i.seed is not None) == [7, 8, 9]


async def test_no_seed_sends_no_seed(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    await gemini_provider().generate(_req(output_format="webp"))
    assert "seed" not in gemini_emu.requests[0].json["generationConfig"]


@pytest.mark.parametrize(
    ("fault", "error", "vendor_code"),
    [
        ("rate_limit", RateLimitedError, "RESOURCE_EXHAUSTED"),
        ("quota", RateLimitedError, "RESOURCE_EXHAUSTED"),
        ("server_error", ProviderUnavailableError, "INTERNAL"),
        ("unavailable", ProviderUnavailableError, "UNAVAILABLE"),
        ("invalid_argument", ProviderInvalidArgumentError, "INVALID_ARGUMENT"),
        ("location", ProviderError, "FAILED_PRECONDITION"),
        ("auth", AuthFailedError, "UNAUTHENTICATED"),
        ("permission", AuthFailedError, "PERMISSION_DENIED"),
        ("unknown_model", ModelNotFoundError, "NOT_FOUND"),
        ("malformed", ProviderUnavailableError, None),
    ],
)
async def test_faults_map_to_error_classes_without_sdk_retries(
    gemini_emu: GeminiEmulator,
    gemini_provider: Make,
    fault: str,
    error: type[ProviderError],
    vendor_code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    gemini_emu.fail_next(fault)
    with pytest.raises(error) as info:
        await gemini_provider().generate(_req())
    assert type(info.value) is error and info.value.provider == "gemini"
    assert info.value.details.get("vendor_code") == vendor_code
    assert info.value.retryable == error.transient
    assert len(gemini_emu.requests) == 1  # the SDK itself never retried
    assert info.value.__cause__ is not None
    assert_secret_free(info.value)


async def test_rate_limit_carries_retry_info_and_the_next_call_succeeds(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    provider = gemini_provider()
    gemini_emu.fail_next("rate_limit", retry_after=12)
    with pytest.raises(RateLimitedError) as info:
        await provider.generate(_req())
    assert info.value.retry_after == 12.0 and info.value.details["retry_after"] == 12.0
    assert info.value.transient
    assert len((await provider.generate(_req())).images) == 1


async def test_the_manager_retries_a_429_and_a_500_then_succeeds(
    gemini_emu: GeminiEmulator, make_settings: Callable[..., Settings], sdk_sandbox: None
) -> None:
    settings = make_settings(
        gemini_api_key=Secret(GEMINI_KEY), gemini_base_url=gemini_emu.base_url, gemini_timeout=10.0,
        provider_max_attempts=3, provider_retry_budget=5.0,
    )
    manager = ProviderManager(settings, registry())
    gemini_emu.fail_next("rate_limit", retry_after=0).fail_next("server_error")
    try:
        async with asyncio.timeout(20):
            result = await manager.generate("gemini", _req())
    finally:
        await manager.aclose(grace=1)
    assert len(result.images) == 1
    assert [r.fault for r in gemini_emu.requests] == ["rate_limit", "server_error", None]


async def test_wrong_key_is_auth_failed_and_the_echoed_key_is_scrubbed(
    gemini_emu: GeminiEmulator, gemini_provider: Make, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    with pytest.raises(AuthFailedError) as info:
        await gemini_provider(gemini_api_key=Secret(WRONG_KEY)).generate(_req())
    assert info.value.details == {
        "provider": "gemini", "status": 400, "vendor_code": "INVALID_ARGUMENT", "reason": "API_KEY_INVALID",
    }
    assert "API key not valid" in info.value.message
    assert WRONG_KEY not in str(info.value.__cause__)  # Google's DebugInfo echoes it; the cause is redacted
    assert_secret_free(info.value)


async def test_a_blocked_prompt_is_content_rejected(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("moderation", block_reason="PROHIBITED_CONTENT")
    with pytest.raises(ContentRejectedError) as info:
        await gemini_provider().generate(_req())
    assert info.value.details["vendor_code"] == "PROHIBITED_CONTENT"
    assert info.value.details["stage"] == "prompt" and not info.value.retryable


async def test_an_image_safety_finish_is_content_rejected(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("image_safety")
    with pytest.raises(ContentRejectedError) as info:
        await gemini_provider().generate(_req())
    assert info.value.details["vendor_code"] == "IMAGE_SAFETY" and info.value.details["stage"] == "output"


async def test_a_text_only_answer_is_bad_image_data_naming_what_the_model_said(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    gemini_emu.fail_next("no_image", text="I cannot draw that.", finish_reason="NO_IMAGE")
    with pytest.raises(BadImageDataError) as info:
        await gemini_provider().generate(_req())
    assert "NO_IMAGE" in info.value.message and "I cannot draw that." in info.value.message
    assert info.value.details["model_text"] == "I cannot draw that."


async def test_one_refused_image_of_several_is_a_warning(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("image_safety")
    result = await gemini_provider().generate(_req(n=3))
    assert len(result.images) == 2
    assert result.warnings == ("gemini withheld 1 of 3 images: Gemini refused to make this image (IMAGE_SAFETY)",)


@pytest.mark.parametrize("fault", ["not_image", "corrupt", "truncated"])
async def test_bad_inline_payloads_are_bad_image_data(
    gemini_emu: GeminiEmulator, gemini_provider: Make, fault: str
) -> None:
    gemini_emu.fail_next(fault)
    with pytest.raises(BadImageDataError):
        await gemini_provider().generate(_req())


async def test_oversized_inline_payload_is_refused(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("oversized", size=1 << 20)
    with pytest.raises(BadImageDataError) as info:
        await gemini_provider(download_max_bytes=256 * 1024).generate(_req())
    assert info.value.details["limit_bytes"] == 256 * 1024


async def test_hung_request_hits_the_overall_timeout(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("hang")
    with pytest.raises(ProviderTimeoutError) as info:
        await gemini_provider(gemini_timeout=1.0).generate(_req())
    assert info.value.transient and gemini_emu.hangs == 1


async def test_a_stalled_body_hits_the_timeout(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("stall")
    with pytest.raises(ProviderTimeoutError):
        await gemini_provider(gemini_timeout=1.0).generate(_req())


async def test_a_released_hang_completes_normally(gemini_emu: GeminiEmulator, gemini_provider: Make) -> None:
    gemini_emu.fail_next("hang")
    task = asyncio.create_task(gemini_provider().generate(_req()))
    async with asyncio.timeout(5):
        await gemini_emu.hanging.wait()
        gemini_emu.release()
        result = await task
    assert len(result.images) == 1 and gemini_emu.hangs == 1


async def test_slow_but_healthy_service_succeeds_within_the_timeout(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    gemini_emu.latency = 0.05
    assert len((await gemini_provider(gemini_timeout=5).generate(_req())).images) == 1


async def test_unreachable_base_url_is_unavailable_at_once(
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
    closed_port: int,
) -> None:
    settings = make_settings(gemini_api_key=Secret(GEMINI_KEY), gemini_base_url=f"http://127.0.0.1:{closed_port}")
    provider = open_provider(SPEC, settings)
    async with asyncio.timeout(3):  # the SDK's own aiohttp path would sleep 1-10 s and reconnect
        with pytest.raises(ProviderUnavailableError):
            await provider.generate(_req())


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"style": "riman"}, UnknownStyleError),
        ({"width": 1536, "height": 1024}, UnknownResolutionError),
        ({"options": {"quality": "high"}}, UnsupportedOptionError),
        ({"n": 5}, InvalidArgumentError),
        ({"seed": 2**31}, InvalidArgumentError),
    ],
)
async def test_invalid_requests_fail_before_any_call(
    gemini_emu: GeminiEmulator, gemini_provider: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error):
        await gemini_provider().generate(_req(**request_kw))
    assert gemini_emu.requests == []


async def test_the_emulator_refuses_output_mime_type_and_a_bad_aspect_ratio(gemini_emu: GeminiEmulator) -> None:
    """Guards the adapter's wire contract: these are what the real API answers 400 to."""
    import aiohttp

    url = f"{gemini_emu.base_url}/v1beta/models/gemini-2.5-flash-image:generateContent"
    base = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModalities": ["IMAGE"]}}
    cases = [
        {**base, "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"outputMimeType": "image/png"}}},
        {**base, "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "7:5"}}},
        {**base, "generationConfig": {"responseModalities": ["TEXT"]}},
        {"contents": [], "generationConfig": base["generationConfig"]},
    ]
    async with aiohttp.ClientSession() as session:
        for body in cases:
            async with session.post(url, json=body, headers={"x-goog-api-key": GEMINI_KEY}) as resp:
                assert resp.status == 400, body
                assert (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"
        async with session.post(url, json=base) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["status"] == "PERMISSION_DENIED"


async def test_the_emulator_records_inline_image_parts_for_edits(gemini_emu: GeminiEmulator) -> None:
    """Edits send input images as inlineData parts: the emulator keeps them and follows their size."""
    import aiohttp

    png = render_image(640, 480)
    body = {
        "contents": [{"role": "user", "parts": [
            {"text": "make it night"},
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}},
        ]}],
        "generationConfig": {"responseModalities": ["IMAGE"]},
    }
    url = f"{gemini_emu.base_url}/v1beta/models/gemini-2.5-flash-image:generateContent"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers={"x-goog-api-key": GEMINI_KEY}) as resp:
            assert resp.status == 200
            reply = await resp.json()
        bad = {**body, "contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "!!"}}]}]}
        async with session.post(url, json=bad, headers={"x-goog-api-key": GEMINI_KEY}) as resp:
            assert resp.status == 400
    [seen] = gemini_emu.inline_images
    assert (seen.mime_type, seen.data, seen.width, seen.height) == ("image/png", png, 640, 480)
    part = reply["candidates"][0]["content"]["parts"][0]["inlineData"]
    assert part["mimeType"] == "image/png" and base64.b64decode(part["data"]).startswith(b"\x89PNG")


async def test_missing_key_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ProviderNotConfiguredError) as info:
        SPEC.factory(make_settings(gemini_api_key=None))
    assert "GEMINI_API_KEY" in str(info.value)


async def test_settings_defaults_and_registration() -> None:
    settings = load_settings({})
    assert settings.gemini_model == "gemini-2.5-flash-image" and settings.gemini_api_key is None
    assert (settings.gemini_timeout, settings.gemini_max_concurrency) == (180.0, 4)
    assert not SPEC.is_configured(settings)
    configured = load_settings({"GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": "http://127.0.0.1:9/"})
    assert SPEC.is_configured(configured) and configured.gemini_base_url == "http://127.0.0.1:9"
    assert configured.public_dict()["GEMINI_API_KEY"] == "set"
    assert registry()["gemini"] is SPEC


async def test_prices_cover_every_catalog_model() -> None:
    for model in CATALOG.models:
        price = price_of("gemini", model, "1024x1024", None)
        assert price is not None and price.usd > 0 and price.source and price.date
    unknown = price_of("gemini", "gemini-9-image", "1024x1024", None)
    assert unknown is not None and unknown.usd >= max(
        p.usd for m in CATALOG.models if (p := price_of("gemini", m, "*", None)) is not None
    )


async def test_catalog_and_lazy_sdk_import(imports_after: Callable[[str], set[str]]) -> None:
    assert len(CATALOG.styles) == 12 and all(s.prompt_modifier for s in CATALOG.styles)
    assert set(CATALOG.resolutions) == {*ASPECT_RATIOS, "auto"} and CATALOG.max_n == 4
    assert set(ASPECT_RATIOS.values()) == set(ASPECT_SIZES["2.5"])
    loaded = imports_after("mcp_image_server.providers.gemini")
    assert not {"google", "httpx2", "aiohttp", "PIL", "pydantic"} & loaded


async def test_an_edit_sends_the_instruction_and_its_images_as_inline_parts(
    gemini_emu: GeminiEmulator, gemini_provider: Make
) -> None:
    from mcp_image_server.models import InputImage

    first = render_image(320, 200, "png")
    second = render_image(64, 64, "jpeg")
    request = _req(
        prompt="make the sky darker",
        images=(InputImage(first, "image/png", 320, 200), InputImage(second, "image/jpeg", 64, 64)),
    )
    result = await gemini_provider().generate(request)
    [image] = result.images
    assert (image.width, image.height) == (1344, 768)
    [sent] = gemini_emu.requests_to("generate")
    parts = sent.json["contents"][0]["parts"]
    assert parts[0] == {"text": "make the sky darker"}
    assert [p["inlineData"]["mime_type"] for p in parts[1:]] == ["image/png", "image/jpeg"]  # as the SDK sends it
    assert [(i.mime_type, i.width, i.height) for i in gemini_emu.inline_images] == [
        ("image/png", 320, 200), ("image/jpeg", 64, 64),
    ]
    assert base64.urlsafe_b64decode(parts[1]["inlineData"]["data"]) == first
    assert CATALOG.max_input_images == 3 and not CATALOG.supports_mask
