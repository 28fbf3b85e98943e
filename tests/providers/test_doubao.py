"""Doubao adapter: the real Volcengine Ark SDK (AsyncArk) against the Ark emulator."""

from __future__ import annotations

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
    UnsupportedOptionError,
)
from mcp_image_server.models import GenerationRequest
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.doubao import CATALOG, SPEC, size_problem
from tests.emulators import DoubaoEmulator

pytestmark = pytest.mark.asyncio

Make = Callable[..., Provider]
"""A fixture that builds the provider under test from Settings overrides."""

V3 = "doubao-seedream-3-0-t2i-250415"
V4 = "doubao-seedream-4-0-250828"


@pytest.fixture
def doubao(
    doubao_emu: DoubaoEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    def _make(**overrides: Any) -> Provider:
        return open_provider(SPEC, make_settings(doubao_endpoint=doubao_emu.base_url, **overrides))

    return _make


def _req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "多图", "width": 1024, "height": 1024, **kw})


async def test_n_images_are_n_calls_with_watermark_off_and_group_mode_off(
    doubao_emu: DoubaoEmulator, doubao: Make, progress: Any, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    result = await doubao().generate(_req(n=2, seed=5, output_format="jpeg"), progress)

    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/jpeg", 1024, 1024)] * 2
    assert result.model == V4 and result.warnings == (f"{V4} ignores seed and guidance_scale; they were not sent",)
    calls = doubao_emu.requests_to("generate")
    assert len(calls) == 2
    body = calls[0].json
    assert {k: v for k, v in body.items() if v is not None} == {
        "model": V4,
        "prompt": "多图",
        "size": "1024x1024",
        "response_format": "b64_json",
        "watermark": False,
        "sequential_image_generation": "disabled",
    }
    assert body["seed"] is None and "seed" in body  # the SDK sends unset fields as explicit nulls
    assert calls[0].headers["Authorization"] == "Bearer ark-FAKE-doubao-SECRET-9012"
    assert progress.messages == [f"requested 2 image(s) from {V4}"]
    assert_secret_free(None)  # the SDK's DEBUG logs of a whole exchange carry no key


async def test_seedream_3_gets_distinct_seeds_and_guidance_scale(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    result = await doubao(doubao_model=V3).generate(_req(n=2, seed=7, options={"guidance_scale": 3.5}))

    assert sorted(i.seed or 0 for i in result.images) == [7, 8] and result.warnings == ()
    bodies = [r.json for r in doubao_emu.requests_to("generate")]
    assert sorted(b["seed"] for b in bodies) == [7, 8]
    assert {b["guidance_scale"] for b in bodies} == {3.5}
    assert all(b["sequential_image_generation"] is None for b in bodies)


async def test_jpeg_answers_are_converted_to_the_requested_format(doubao: Make) -> None:
    image = (await doubao().generate(_req(output_format="png"))).images[0]
    assert (image.mime_type, image.data[:4]) == ("image/png", b"\x89PNG")


async def test_seedream_5_gets_output_format_natively_and_auto_size_is_2k(
    doubao_emu: DoubaoEmulator, doubao: Make
) -> None:
    result = await doubao(doubao_model="doubao-seedream-5-0-260128").generate(
        _req(width=None, height=None, output_format="png")
    )

    assert (result.images[0].width, result.images[0].height) == (2048, 2048)
    body = doubao_emu.requests_to("generate")[0].json
    assert (body["size"], body["output_format"]) == ("2K", "png")


@pytest.mark.parametrize(
    ("model", "size", "ok"),
    [
        (V4, "1024x1024", True),
        (V4, "4K", True),
        (V4, "800x800", False),
        ("doubao-seedream-4-5-251128", "1024x1024", False),
        ("doubao-seedream-4-5-251128", "2560x1440", True),
        (V3, "2048x2048", True),
        (V3, "2560x1440", False),
        ("ep-20260101-custom", "640x480", True),
    ],
)
async def test_sizes_are_checked_per_model_family(model: str, size: str, ok: bool) -> None:
    assert (size_problem(model, size) is None) is ok


async def test_a_size_the_model_rejects_fails_before_any_call(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    with pytest.raises(UnknownResolutionError) as info:
        await doubao(doubao_model="doubao-seedream-4-5-251128").generate(_req())
    assert info.value.details["model"] == "doubao-seedream-4-5-251128" and doubao_emu.requests == []


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", RateLimitedError, "RateLimitExceeded.EndpointRPMExceeded"),
        ("quota", ProviderError, "QuotaExceeded"),
        ("server_error", ProviderUnavailableError, "InternalServiceError"),
        ("unavailable", ProviderUnavailableError, "ServerOverloaded"),
        ("moderation", ContentRejectedError, "InputTextSensitiveContentDetected"),
        ("invalid_argument", ProviderInvalidArgumentError, "InvalidParameter"),
        ("auth", AuthFailedError, "AuthenticationError"),
        ("unknown_model", ModelNotFoundError, "InvalidEndpointOrModel.NotFound"),
        ("model_closed", ModelNotFoundError, "InvalidEndpoint.ClosedEndpoint"),
        ("malformed", ProviderUnavailableError, None),
    ],
)
async def test_faults_map_to_error_classes_without_sdk_retries(
    doubao_emu: DoubaoEmulator,
    doubao: Make,
    fault: str,
    error: type[ProviderError],
    code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    doubao_emu.fail_next(fault)
    with pytest.raises(error) as info:
        await doubao().generate(_req())
    assert type(info.value) is error and info.value.provider == "doubao"
    assert info.value.details.get("vendor_code") == code
    assert len(doubao_emu.requests) == 1 and info.value.__cause__ is not None
    assert_secret_free(info.value)


async def test_rate_limit_retry_after_and_the_next_call_succeeds(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    provider = doubao()
    doubao_emu.fail_next("rate_limit", retry_after=4)
    with pytest.raises(RateLimitedError) as info:
        await provider.generate(_req())
    assert info.value.retry_after == 4.0 and info.value.retryable
    assert len((await provider.generate(_req())).images) == 1


async def test_output_moderation_of_every_image_is_content_rejected(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.fail_next("output_moderation")
    with pytest.raises(ContentRejectedError) as info:
        await doubao().generate(_req())
    assert info.value.details["vendor_code"] == "OutputImageSensitiveContentDetected"


async def test_output_moderation_of_some_images_keeps_the_rest_with_a_warning(
    doubao_emu: DoubaoEmulator, doubao: Make
) -> None:
    doubao_emu.fail_next("output_moderation")
    result = await doubao().generate(_req(n=3))
    assert len(result.images) == 2 and "withheld 1 of 3" in result.warnings[-1]


async def test_fallback_model_is_used_when_the_primary_is_not_found(
    doubao_emu: DoubaoEmulator, doubao: Make, progress: Any
) -> None:
    doubao_emu.models = {V3}
    result = await doubao(doubao_fallback_model=V3).generate(_req(n=2), progress)

    assert result.model == V3 and len(result.images) == 2
    assert result.warnings[0].startswith(f"doubao model {V4} is unavailable (InvalidEndpointOrModel.NotFound)")
    models = [r.json["model"] for r in doubao_emu.requests_to("generate")]
    assert models.count(V3) == 2 and set(models) == {V4, V3}
    assert f"falling back to {V3}" in progress.messages


async def test_fallback_is_skipped_when_the_size_does_not_suit_it(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.models = {V3}
    with pytest.raises(ModelNotFoundError) as info:
        await doubao(doubao_fallback_model=V3).generate(_req(width=2560, height=1440))
    assert info.value.details["fallback_model"] == V3 and "fallback_skipped" in info.value.details
    assert {r.json["model"] for r in doubao_emu.requests} == {V4}


async def test_no_fallback_for_an_explicitly_requested_model(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.models = {V3}
    with pytest.raises(ModelNotFoundError):
        await doubao(doubao_fallback_model=V3).generate(
            _req(model="doubao-seedream-4-5-251128", width=2560, height=1440)
        )
    assert len(doubao_emu.requests) == 1


async def test_wrong_key_is_auth_failed_and_never_echoed(
    doubao: Make, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    with pytest.raises(AuthFailedError) as info:
        await doubao(doubao_api_key=Secret("ark-FAKE-wrong-SECRET-0000")).generate(_req())
    assert info.value.details["status"] == 401
    assert_secret_free(info.value)


@pytest.mark.parametrize("fault", ["not_image", "corrupt", "truncated"])
async def test_bad_b64_payloads_are_bad_image_data(doubao_emu: DoubaoEmulator, doubao: Make, fault: str) -> None:
    doubao_emu.fail_next(fault)
    with pytest.raises(BadImageDataError):
        await doubao().generate(_req())


async def test_oversized_payload_is_refused(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.fail_next("oversized", size=1 << 20)
    with pytest.raises(BadImageDataError) as info:
        await doubao(download_max_bytes=256 * 1024).generate(_req())
    assert info.value.details["limit_bytes"] == 256 * 1024


async def test_hung_request_hits_the_overall_timeout(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.fail_next("hang")
    with pytest.raises(ProviderTimeoutError) as info:
        await doubao(doubao_timeout=0.3).generate(_req())
    assert info.value.transient and doubao_emu.hangs == 1


async def test_unreachable_endpoint_is_unavailable(
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
    closed_port: int,
) -> None:
    provider = open_provider(SPEC, make_settings(doubao_endpoint=f"http://127.0.0.1:{closed_port}/api/v3"))
    with pytest.raises(ProviderUnavailableError):
        await provider.generate(_req())


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"options": {"quality": "high"}}, UnsupportedOptionError),
        ({"options": {"guidance_scale": 11}}, InvalidArgumentError),
        ({"n": 5}, InvalidArgumentError),
    ],
)
async def test_invalid_requests_fail_before_any_call(
    doubao_emu: DoubaoEmulator, doubao: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error):
        await doubao(doubao_model=V3).generate(_req(**request_kw))
    assert doubao_emu.requests == []


async def test_missing_key_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ProviderNotConfiguredError) as info:
        SPEC.factory(make_settings(doubao_api_key=None))
    assert "DOUBAO_API_KEY" in str(info.value)


async def test_catalog_and_lazy_sdk_import(imports_after: Callable[[str], set[str]]) -> None:
    assert len(CATALOG.styles) == 12 and all(s.prompt_modifier for s in CATALOG.styles)
    assert all(size_problem(CATALOG.models[0], r) is None for r in CATALOG.resolutions if r != "auto")
    loaded = imports_after("mcp_image_server.providers.doubao")
    assert not {"volcenginesdkarkruntime", "httpx", "aiohttp", "PIL"} & loaded
