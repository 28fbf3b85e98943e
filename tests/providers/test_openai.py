"""OpenAI adapter: the real ``openai`` SDK (AsyncOpenAI) against the OpenAI emulator."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from typing import Any

import openai
import pytest
from PIL import Image

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    ImageTooLargeError,
    InvalidArgumentError,
    MaskMismatchError,
    ModelNotFoundError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    TooManyImagesError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from mcp_image_server.models import GenerationRequest, InputImage
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.openai import CATALOG, SPEC
from tests.emulators import OpenAIEmulator
from tests.emulators.openai import MAX_EDIT_IMAGES

pytestmark = pytest.mark.asyncio

Make = Callable[..., Provider]
"""A fixture that builds the provider under test from Settings overrides."""


@pytest.fixture(params=["stdio", "http"])
def openai_provider(
    request: pytest.FixtureRequest,
    openai_emu: OpenAIEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    """Both HTTP clients: the SDK's default (stdio servers) and its aiohttp transport (HTTP servers)."""

    def _make(**overrides: Any) -> Provider:
        overrides.setdefault("transport", request.param)
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
    assert set(CATALOG.options) == {"quality", "background", "output_compression", "moderation", "input_fidelity"}
    assert (CATALOG.max_input_images, CATALOG.supports_mask) == (MAX_EDIT_IMAGES, True) and CATALOG.edit_notes
    loaded = imports_after("mcp_image_server.providers.openai")
    assert not {"openai", "httpx2", "aiohttp", "PIL"} & loaded


# ---- edits (images.edit, multipart) --------------------------------------------------------

_PIL = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _image(width: int, height: int, mime: str = "image/png", *, noise: bool = False, mode: str = "RGB") -> InputImage:
    """An encoded input; ``noise`` fills it with random bytes (every byte value, CR and LF included,
    so a multipart round trip that mangles binary shows)."""
    if noise:
        img = Image.frombytes(mode, (width, height), os.urandom(width * height * len(mode)))
    else:
        img = Image.new(mode, (width, height), (200, 40, 40, 255)[: len(mode)])
    out = io.BytesIO()
    img.save(out, _PIL[mime])
    return InputImage(out.getvalue(), mime, width, height)


def _mask(width: int, height: int) -> InputImage:
    """Opaque except a transparent top-left quarter: the part to change."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    out = io.BytesIO()
    img.save(out, "PNG")
    return InputImage(out.getvalue(), "image/png", width, height)


def _edit(*images: InputImage, **kw: Any) -> GenerationRequest:
    return _req(**{"images": images or (_image(96, 64),), **kw})


async def test_edit_sends_one_image_as_a_named_png_part_and_decodes_the_result(
    openai_emu: OpenAIEmulator,
    openai_provider: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    source = _image(96, 64, noise=True)

    result = await openai_provider().generate(
        _edit(source, n=2, output_format="webp", options={"quality": "high", "background": "opaque"}), progress
    )

    assert [(i.mime_type, i.width, i.height) for i in result.images] == [("image/webp", 1536, 1024)] * 2
    assert result.model == "gpt-image-2" and result.warnings == ()
    assert openai_emu.requests_to("generate") == [] and len(openai_emu.requests_to("edit")) == 1
    (edit,) = openai_emu.edits
    assert dict(edit.fields) == {
        "model": "gpt-image-2",
        "prompt": "一只猫",
        "n": "2",
        "size": "1536x1024",
        "output_format": "webp",
        "quality": "high",
        "background": "opaque",
    }
    assert not edit.as_array and edit.mask is None
    (sent,) = edit.images
    assert (sent.name, sent.filename, sent.content_type) == ("image", "image.png", "image/png")
    assert sent.data == source.data  # byte for byte through the multipart form
    assert openai_emu.requests_to("edit")[0].headers["Authorization"] == "Bearer sk-FAKE-openai-SECRET-1234"
    assert progress.messages == ["requested 2 edited image(s) from gpt-image-2 (1 input image(s))", "decoding"]
    assert_secret_free(None)


async def test_several_references_go_as_an_image_array_with_their_own_types(
    openai_emu: OpenAIEmulator, openai_provider: Make
) -> None:
    inputs = (
        _image(80, 60, noise=True),
        _image(64, 64, "image/jpeg", noise=True),
        _image(40, 90, "image/webp", noise=True),
    )

    result = await openai_provider().generate(_edit(*inputs, width=None, height=None))

    (edit,) = openai_emu.edits
    assert edit.as_array and [u.name for u in edit.images] == ["image[]"] * 3
    assert [(u.filename, u.content_type) for u in edit.images] == [
        ("image-1.png", "image/png"),
        ("image-2.jpg", "image/jpeg"),
        ("image-3.webp", "image/webp"),
    ]
    assert [u.data for u in edit.images] == [i.data for i in inputs]  # accepted as they are: no re-encoding
    assert edit.fields["size"] == "auto"
    assert (result.images[0].width, result.images[0].height) == (1536, 1024)  # auto follows the first image


async def test_a_mask_goes_with_the_first_image(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    mask = _mask(96, 64)

    result = await openai_provider().generate(_edit(_image(96, 64), _image(32, 32), mask=mask), None)

    (edit,) = openai_emu.edits
    assert edit.mask is not None and edit.mask.data == mask.data
    assert (edit.mask.filename, edit.mask.content_type, edit.mask.has_alpha) == ("mask.png", "image/png", True)
    assert (edit.mask.width, edit.mask.height) == (edit.images[0].width, edit.images[0].height)
    assert len(result.images) == 1


async def test_input_fidelity_is_sent_to_models_that_take_it(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    result = await openai_provider().generate(_edit(model="gpt-image-1.5", options={"input_fidelity": "high"}))
    assert openai_emu.edits[0].fields["input_fidelity"] == "high" and result.warnings == ()


async def test_input_fidelity_is_left_out_for_gpt_image_2_with_a_warning(
    openai_emu: OpenAIEmulator, openai_provider: Make
) -> None:
    result = await openai_provider().generate(_edit(options={"input_fidelity": "high"}))
    assert "input_fidelity" not in openai_emu.edits[0].fields
    assert result.warnings == ("gpt-image-2 sets input fidelity itself; input_fidelity was not sent",)


async def test_options_of_the_other_endpoint_are_not_sent(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    edited = await openai_provider().generate(_edit(options={"moderation": "low"}))
    generated = await openai_provider().generate(_req(options={"input_fidelity": "low"}))

    assert "moderation" not in openai_emu.edits[0].fields  # the edit endpoint has none: it would be a 400
    assert edited.warnings == ("openai option moderation applies to generation only; it was not sent",)
    assert "input_fidelity" not in openai_emu.requests_to("generate")[0].json
    assert generated.warnings == ("openai option input_fidelity applies to edits only; it was not sent",)


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"model": "gpt-image-1-mini", "options": {"input_fidelity": "high"}}, InvalidArgumentError),
        ({"options": {"input_fidelity": "max"}}, InvalidArgumentError),
        ({"images": (_image(16, 16),) * (MAX_EDIT_IMAGES + 1)}, TooManyImagesError),
        ({"images": (_image(96, 64),), "mask": _mask(64, 64)}, MaskMismatchError),
    ],
)
async def test_invalid_edits_fail_before_any_call(
    openai_emu: OpenAIEmulator, openai_provider: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error) as info:
        await openai_provider().generate(_edit(**request_kw))
    assert type(info.value) is error and openai_emu.requests == []


async def test_a_mask_over_4_mb_is_image_too_large_before_any_call(
    openai_emu: OpenAIEmulator, openai_provider: Make
) -> None:
    noisy = Image.frombytes("RGBA", (1100, 1000), os.urandom(1100 * 1000 * 4))  # PNG cannot squeeze noise
    out = io.BytesIO()
    noisy.save(out, "PNG")
    mask = InputImage(out.getvalue(), "image/png", 1100, 1000)
    assert len(mask.data) > 4 * 1024 * 1024

    with pytest.raises(ImageTooLargeError) as info:
        await openai_provider().generate(_edit(_image(1100, 1000), mask=mask))
    assert info.value.details["limit_bytes"] == 4 * 1024 * 1024 and openai_emu.requests == []


async def test_a_model_without_edits_gets_the_vendor_400(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    with pytest.raises(ProviderInvalidArgumentError) as info:
        await openai_provider().generate(_edit(model="dall-e-3"))
    assert info.value.details["status"] == 400 and info.value.details["vendor_code"] == "invalid_value"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", RateLimitedError, "rate_limit_exceeded"),
        ("server_error", ProviderUnavailableError, "server_error"),
        ("unavailable", ProviderUnavailableError, "engine_overloaded"),
        ("moderation", ContentRejectedError, "moderation_blocked"),
        ("malformed", ProviderUnavailableError, None),
    ],
)
async def test_faults_on_the_edit_route_map_like_generation(
    openai_emu: OpenAIEmulator,
    openai_provider: Make,
    fault: str,
    error: type[ProviderError],
    code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    openai_emu.fail_next(fault, on="edit", retry_after=3)
    with pytest.raises(error) as info:
        await openai_provider().generate(_edit(mask=_mask(96, 64)))
    assert type(info.value) is error and info.value.details.get("vendor_code") == code
    assert len(openai_emu.requests_to("edit")) == 1 and openai_emu.edits == []  # faulted before parsing
    if fault == "rate_limit":
        assert isinstance(info.value, RateLimitedError) and info.value.retry_after == 3.0
    assert_secret_free(info.value)


async def test_an_edit_succeeds_after_a_transient_fault(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    provider = openai_provider()
    openai_emu.fail_next("server_error", on="edit")
    with pytest.raises(ProviderUnavailableError):
        await provider.generate(_edit())
    assert len((await provider.generate(_edit())).images) == 1 and len(openai_emu.edits) == 1


async def test_a_spoiled_edit_result_is_bad_image_data(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.fail_next("corrupt")
    with pytest.raises(BadImageDataError):
        await openai_provider().generate(_edit())


async def test_a_hung_edit_hits_the_overall_timeout(openai_emu: OpenAIEmulator, openai_provider: Make) -> None:
    openai_emu.fail_next("hang", on="edit")
    with pytest.raises(ProviderTimeoutError):
        await openai_provider(openai_timeout=0.3).generate(_edit())
    assert openai_emu.hangs == 1


# ---- the emulator's own checks of the edit form (the real SDK, no provider in between) ----------

_PNG = ("a.png", _image(64, 48).data, "image/png")


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"mask": ("m.png", _mask(48, 48).data, "image/png")}, "mask", "invalid_image_dimensions"),
        ({"mask": ("m.png", _image(64, 48).data, "image/png")}, "mask", "invalid_image_file"),  # no alpha
        ({"mask": ("m.jpg", _image(64, 48, "image/jpeg").data, "image/jpeg")}, "mask", "unsupported_file_mimetype"),
        ({"image": _image(64, 48).data}, "image", "unsupported_file_mimetype"),  # raw bytes: octet-stream
        ({"image": ("a.png", b"not an image at all", "image/png")}, "image", "invalid_image_file"),
        ({"image": ("a.png", _image(8, 8, "image/jpeg").data, "image/png")}, "image", "invalid_image_file"),
        ({"image": [_PNG] * (MAX_EDIT_IMAGES + 1)}, "image", "too_many_images"),
        ({"model": "dall-e-2"}, "model", "invalid_value"),
        ({"model": "gpt-image-2", "input_fidelity": "high"}, "input_fidelity", "unsupported_parameter"),
        ({"moderation": "low"}, "moderation", "unknown_parameter"),
    ],
)
async def test_the_emulator_answers_bad_edit_forms_with_openai_400s(
    openai_emu: OpenAIEmulator, sdk_sandbox: None, kwargs: dict[str, Any], param: str, code: str
) -> None:
    client = openai.AsyncOpenAI(api_key=openai_emu.api_key, base_url=openai_emu.base_url, max_retries=0)
    kwargs = dict(kwargs)  # the parameter set is shared: never mutate it
    extra = {"extra_body": {"moderation": kwargs.pop("moderation")}} if "moderation" in kwargs else {}
    try:
        with pytest.raises(openai.BadRequestError) as info:
            edit: Any = client.images.edit  # kwargs built per case: the overloads cannot follow
            await edit(**{"image": _PNG, "prompt": "make it red", **kwargs}, **extra)
    finally:
        await client.close()
    assert (info.value.status_code, info.value.code, info.value.param) == (400, code, param)
    assert info.value.type == "invalid_request_error" and info.value.request_id


async def test_the_emulator_checks_auth_on_edits(openai_emu: OpenAIEmulator, sdk_sandbox: None) -> None:
    client = openai.AsyncOpenAI(api_key="sk-FAKE-wrong-SECRET-0000", base_url=openai_emu.base_url, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await client.images.edit(image=_PNG, prompt="make it red")
    finally:
        await client.close()
    assert openai_emu.edits == []
