"""Doubao adapter: the real Volcengine Ark SDK (AsyncArk) against the Ark emulator."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image
from volcenginesdkarkruntime import AsyncArk
from volcenginesdkarkruntime._exceptions import ArkBadRequestError

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    EditNotSupportedError,
    InvalidArgumentError,
    InvalidImageError,
    ModelNotFoundError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    TooManyImagesError,
    UnknownResolutionError,
    UnsupportedOptionError,
)
from mcp_image_server.models import GenerationRequest, InputImage
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.doubao import CATALOG, SPEC, size_problem
from tests.emulators import DoubaoEmulator
from tests.emulators.doubao import MAX_REFERENCES

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
    assert (CATALOG.max_input_images, CATALOG.supports_mask) == (MAX_REFERENCES, False) and CATALOG.edit_notes
    loaded = imports_after("mcp_image_server.providers.doubao")
    assert not {"volcenginesdkarkruntime", "httpx", "aiohttp", "PIL"} & loaded


# ---- edits: reference images in ``image``, group output ----------------------------------------

_PIL = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _image(width: int, height: int, mime: str = "image/png", *, mode: str = "RGB") -> InputImage:
    img = Image.new(mode, (width, height), (30, 120, 200, 128)[: len(mode)])
    out = io.BytesIO()
    img.save(out, _PIL[mime])
    return InputImage(out.getvalue(), mime, width, height)


def _edit(*images: InputImage, **kw: Any) -> GenerationRequest:
    return _req(**{"images": images or (_image(256, 192),), **kw})


def _data_uri(image: InputImage) -> str:
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"


async def test_an_edit_sends_one_data_uri_in_one_call(
    doubao_emu: DoubaoEmulator, doubao: Make, progress: Any, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    source = _image(256, 192)

    result = await doubao().generate(_edit(source), progress)

    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/png", 1024, 1024)]
    assert result.model == V4 and result.warnings == ()
    (call,) = doubao_emu.requests_to("generate")
    assert call.json["image"] == _data_uri(source)  # a PNG that fits goes as it is, as a string
    assert call.json["sequential_image_generation"] == "disabled"
    ((ref,),) = doubao_emu.references
    assert (ref.source, ref.mime_type, ref.width, ref.height, ref.data) == (
        "data_uri",
        "image/png",
        256,
        192,
        source.data,
    )
    assert progress.messages == [f"requested 1 edited image(s) from {V4} (1 input image(s))"]
    assert_secret_free(None)


async def test_several_references_go_as_a_list_and_webp_becomes_jpeg(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    inputs = (_image(300, 200), _image(120, 160, "image/jpeg"), _image(200, 200, "image/webp"))

    await doubao().generate(_edit(*inputs))

    image = doubao_emu.requests_to("generate")[0].json["image"]
    assert isinstance(image, list) and image[:2] == [_data_uri(inputs[0]), _data_uri(inputs[1])]
    (refs,) = doubao_emu.references
    assert [(r.mime_type, r.width, r.height) for r in refs] == [
        ("image/png", 300, 200),
        ("image/jpeg", 120, 160),
        ("image/jpeg", 200, 200),  # Ark reads JPEG and PNG: the WebP was converted
    ]


async def test_inputs_are_fitted_to_ark_limits(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    await doubao().generate(_edit(_image(5000, 400, "image/jpeg"), _image(12, 40)))

    (refs,) = doubao_emu.references
    assert (refs[0].width, refs[0].height) == (4096, 328)  # long side capped
    assert min(refs[1].width, refs[1].height) == 15  # Ark wants sides over 14 px


async def test_n_edited_images_come_as_one_group_call(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    result = await doubao().generate(_edit(_image(256, 192), _image(64, 64), n=3))

    assert len(result.images) == 3 and result.warnings == ()
    (call,) = doubao_emu.requests_to("generate")
    assert call.json["sequential_image_generation"] == "auto"
    assert call.json["sequential_image_generation_options"] == {"max_images": 3}


async def test_references_and_group_images_stay_within_15(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    result = await doubao().generate(_edit(*[_image(32, 32)] * 13, n=4))

    assert doubao_emu.requests_to("generate")[0].json["sequential_image_generation_options"] == {"max_images": 2}
    assert len(result.images) == 2
    assert result.warnings == ("Seedream makes at most 15 images with its references; asked for 2, not 4",)


async def test_a_smaller_group_than_asked_is_kept_with_a_warning(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.group_limit = 1  # the model judged the prompt to want one image

    result = await doubao().generate(_edit(n=3))

    assert len(result.images) == 1
    assert result.warnings == ("Seedream made 1 of the 3 images asked for; say how many in the prompt",)


async def test_a_per_item_error_in_a_group_keeps_the_other_images(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.fail_next("output_moderation", items=[1])

    result = await doubao().generate(_edit(n=3))

    assert len(result.images) == 2 and len(doubao_emu.requests_to("generate")) == 1
    assert result.warnings == (
        (
            "doubao withheld 1 of 3 images: Doubao error OutputImageSensitiveContentDetected: "
            "The generated image may contain sensitive content."
        ),
    )


async def test_every_item_of_a_group_refused_is_content_rejected(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.fail_next("output_moderation")
    with pytest.raises(ContentRejectedError) as info:
        await doubao().generate(_edit(n=2))
    assert info.value.details["vendor_code"] == "OutputImageSensitiveContentDetected"


async def test_seedream_3_cannot_edit_and_says_which_model_can(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    with pytest.raises(EditNotSupportedError) as info:
        await doubao(doubao_model=V3).generate(_edit())
    assert info.value.details == {"provider": "doubao", "model": V3} and V4 in info.value.message
    assert doubao_emu.requests == []


async def test_the_fallback_is_skipped_when_it_cannot_edit(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    doubao_emu.models = {V3}
    with pytest.raises(ModelNotFoundError) as info:
        await doubao(doubao_fallback_model=V3).generate(_edit())
    assert info.value.details["fallback_model"] == V3 and "cannot edit" in info.value.details["fallback_skipped"]
    assert len(doubao_emu.requests) == 1


async def test_the_fallback_gets_the_same_references(doubao_emu: DoubaoEmulator, doubao: Make) -> None:
    v45 = "doubao-seedream-4-5-251128"
    doubao_emu.models = {v45}
    result = await doubao(doubao_fallback_model=v45).generate(_edit(width=2560, height=1440))

    assert result.model == v45
    first, second = doubao_emu.requests_to("generate")
    assert first.json["image"] == second.json["image"] and len(doubao_emu.references) == 1


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"images": (_image(32, 32),) * (MAX_REFERENCES + 1)}, TooManyImagesError),
        ({"images": (_image(32, 32),), "mask": _image(32, 32, mode="RGBA")}, EditNotSupportedError),
        ({"images": (_image(1700, 100),)}, InvalidImageError),  # aspect ratio over 16:1
    ],
)
async def test_invalid_edits_fail_before_any_call(
    doubao_emu: DoubaoEmulator, doubao: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error) as info:
        await doubao().generate(_edit(**request_kw))
    assert type(info.value) is error and doubao_emu.requests == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("rate_limit", RateLimitedError),
        ("server_error", ProviderUnavailableError),
        ("unavailable", ProviderUnavailableError),
        ("moderation", ContentRejectedError),
        ("malformed", ProviderUnavailableError),
    ],
)
async def test_faults_on_an_edit_map_like_generation(
    doubao_emu: DoubaoEmulator,
    doubao: Make,
    fault: str,
    error: type[ProviderError],
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    doubao_emu.fail_next(fault, retry_after=2)
    with pytest.raises(error) as info:
        await doubao().generate(_edit(n=2))
    assert type(info.value) is error and len(doubao_emu.requests) == 1 and doubao_emu.references == []
    if fault == "rate_limit":
        assert isinstance(info.value, RateLimitedError) and info.value.retry_after == 2.0
    assert_secret_free(info.value)


# ---- the emulator's own checks of ``image`` (the real SDK, no provider in between) ---------------

_PNG_URI = _data_uri(_image(64, 64))


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"image": [_PNG_URI] * (MAX_REFERENCES + 1)}, "InvalidParameter"),
        ({"image": "data:image/png;base64,bm90IGFuIGltYWdl"}, "InvalidParameter.UnsupportedImageFormat"),
        ({"image": _data_uri(_image(64, 64, "image/webp"))}, "InvalidParameter.UnsupportedImageFormat"),
        ({"image": _PNG_URI.replace("image/png", "image/jpeg")}, "InvalidParameter.UnsupportedImageFormat"),
        ({"image": _PNG_URI.replace("image/png", "image/PNG")}, "InvalidParameter.UnsupportedImageFormat"),
        ({"image": _data_uri(_image(14, 64))}, "InvalidParameter.OversizedImage"),
        ({"image": _PNG_URI, "model": V3, "size": "1024x1024"}, "InvalidParameter.UnsupportedImage"),
        (
            {
                "image": [_PNG_URI] * 12,
                "sequential_image_generation": "auto",
                "sequential_image_generation_options": {"max_images": 4},
            },
            "InvalidParameter",
        ),
    ],
)
async def test_the_emulator_answers_bad_references_with_ark_400s(
    doubao_emu: DoubaoEmulator, sdk_sandbox: None, kwargs: dict[str, Any], code: str
) -> None:
    from volcenginesdkarkruntime.types.images import SequentialImageGenerationOptions

    kwargs = dict(kwargs)  # the parameter set is shared: never mutate it
    if "sequential_image_generation_options" in kwargs:
        kwargs["sequential_image_generation_options"] = SequentialImageGenerationOptions(
            **kwargs["sequential_image_generation_options"]
        )
    client = AsyncArk(base_url=doubao_emu.base_url, api_key=doubao_emu.api_key, max_retries=0)
    try:
        with pytest.raises(ArkBadRequestError) as info:
            await client.images.generate(**{"model": V4, "prompt": "改成红色", "size": "2K", **kwargs})
    finally:
        await client.close()
    assert (info.value.status_code, info.value.code) == (400, code)
    assert doubao_emu.references == []
