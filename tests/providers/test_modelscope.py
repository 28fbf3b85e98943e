"""ModelScope adapter: its aiohttp client against the ModelScope emulator."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from PIL import Image as PILImage

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
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
    UnsupportedOptionError,
)
from mcp_image_server.models import GenerationRequest, InputImage
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.modelscope import CATALOG, SPEC
from tests.emulators import ModelScopeEmulator

pytestmark = pytest.mark.asyncio

Make = Callable[..., Provider]
"""A fixture that builds the provider under test from Settings overrides."""


@pytest.fixture
def modelscope(
    modelscope_emu: ModelScopeEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    def _make(**overrides: Any) -> Provider:
        return open_provider(SPEC, make_settings(modelscope_base_url=modelscope_emu.origin, **overrides))

    return _make


def _req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red fox in snow", "width": 1024, "height": 768, **kw})


async def test_submit_polls_with_the_headers_and_downloads(
    modelscope_emu: ModelScopeEmulator,
    modelscope: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    request = _req(seed=11, negative_prompt="blurry", options={"steps": 30, "guidance": 4.5})

    result = await modelscope().generate(request, progress)

    image = result.images[0]
    assert (image.mime_type, image.width, image.height, image.seed) == ("image/png", 1024, 768, 11)
    assert result.model == "Qwen/Qwen-Image"
    submit = modelscope_emu.requests_to("submit")[0]
    assert submit.json == {
        "model": "Qwen/Qwen-Image",
        "prompt": "a red fox in snow",
        "size": "1024x768",
        "steps": 30,
        "guidance": 4.5,
        "negative_prompt": "blurry",
        "seed": 11,
    }
    assert submit.headers["X-ModelScope-Async-Mode"] == "true"
    assert submit.headers["Authorization"] == "Bearer ms-FAKE-modelscope-SECRET-3456"
    polls = modelscope_emu.requests_to("task")
    assert len(polls) == modelscope_emu.job_polls + 1
    assert all(p.headers["X-ModelScope-Task-Type"] == "image_generation" for p in polls)
    assert "X-ModelScope-Task-Type" not in submit.headers
    assert progress.messages[0].startswith("submitted job ")
    assert progress.messages[1:3] == ["queued", progress.messages[2]] and progress.messages[-1] == "downloading"
    assert_secret_free(None)  # the SDK's DEBUG logs of a whole exchange carry no key


async def test_n_images_are_n_tasks_with_consecutive_seeds(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    result = await modelscope().generate(_req(n=3, seed=5, output_format="webp"))
    assert sorted(i.seed or 0 for i in result.images) == [5, 6, 7]
    assert {i.mime_type for i in result.images} == {"image/webp"}
    assert sorted(r.json["seed"] for r in modelscope_emu.requests_to("submit")) == [5, 6, 7]


async def test_auto_size_and_a_pinned_model(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    result = await modelscope().generate(_req(width=None, height=None, model="Tongyi-MAI/Z-Image-Turbo"))
    assert result.model == "Tongyi-MAI/Z-Image-Turbo"
    assert modelscope_emu.requests_to("submit")[0].json["size"] == "1328x1328"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", RateLimitedError, "limit_burst_rate"),
        ("quota", ProviderError, "limit_requests"),
        ("server_error", ProviderUnavailableError, "InternalError"),
        ("unavailable", ProviderUnavailableError, "ServiceUnavailable"),
        ("moderation", ContentRejectedError, "DataInspectionFailed"),
        ("invalid_argument", ProviderInvalidArgumentError, "InvalidParameter"),
        ("auth", AuthFailedError, "InvalidApiKey"),
        ("unknown_model", ModelNotFoundError, "ModelNotFound"),
        ("malformed", ProviderUnavailableError, None),
    ],
)
async def test_submit_faults_map_to_error_classes(
    modelscope_emu: ModelScopeEmulator,
    modelscope: Make,
    fault: str,
    error: type[ProviderError],
    code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    modelscope_emu.fail_next(fault)
    with pytest.raises(error) as info:
        await modelscope().generate(_req())
    assert type(info.value) is error and info.value.provider == "modelscope"
    assert info.value.details.get("vendor_code") == code
    assert len(modelscope_emu.requests) == 1 and info.value.__cause__ is not None
    assert_secret_free(info.value)


async def test_rate_limit_retry_after_and_the_next_call_succeeds(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    provider = modelscope()
    modelscope_emu.fail_next("rate_limit", retry_after=9)
    with pytest.raises(RateLimitedError) as info:
        await provider.generate(_req())
    assert info.value.retry_after == 9.0 and info.value.retryable
    assert len((await provider.generate(_req())).images) == 1


async def test_unknown_model_from_the_service(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    modelscope_emu.models = {"Qwen/Qwen-Image"}
    with pytest.raises(ModelNotFoundError):
        await modelscope(modelscope_model="nobody/nothing").generate(_req())


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        ("InternalError", "The worker crashed.", ProviderUnavailableError),
        ("DataInspectionFailed", "Output data may contain inappropriate content.", ContentRejectedError),
    ],
)
async def test_failed_task_is_reported_with_its_code(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, code: str | None, message: str, error: type[ProviderError]
) -> None:
    modelscope_emu.fail_next("job_failed", code=code, message=message)
    with pytest.raises(error) as info:
        await modelscope().generate(_req())
    assert info.value.details["vendor_code"] == code and info.value.details["task_id"]


async def test_transient_poll_failures_keep_polling_the_same_task(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    modelscope_emu.fail_next("unavailable", times=2, on="task")
    assert len((await modelscope().generate(_req())).images) == 1
    assert len(modelscope_emu.requests_to("submit")) == 1


async def test_persistent_poll_failures_are_not_retryable(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    modelscope_emu.fail_always("server_error", on="task")
    with pytest.raises(ProviderUnavailableError) as info:
        await modelscope().generate(_req())
    assert not info.value.retryable and len(modelscope_emu.requests_to("task")) == 4


async def test_wrong_token_is_auth_failed_and_never_echoed(
    modelscope: Make, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    with pytest.raises(AuthFailedError) as info:
        await modelscope(modelscope_api_key=Secret("ms-FAKE-wrong-SECRET-0000")).generate(_req())
    assert info.value.details["status"] == 401
    assert_secret_free(info.value)


@pytest.mark.parametrize("fault", ["not_image", "corrupt", "truncated"])
async def test_bad_result_bytes_are_bad_image_data(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, fault: str
) -> None:
    modelscope_emu.fail_next(fault)
    with pytest.raises(BadImageDataError):
        await modelscope().generate(_req())


async def test_oversized_result_is_refused(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    modelscope_emu.fail_next("oversized", size=1 << 20)
    with pytest.raises(BadImageDataError) as info:
        await modelscope(download_max_bytes=128 * 1024).generate(_req())
    assert info.value.details["limit_bytes"] == 128 * 1024


@pytest.mark.parametrize("route", ["submit", "task"])
async def test_hung_call_times_out_and_is_not_retryable_while_a_task_may_run(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, route: str
) -> None:
    modelscope_emu.fail_next("hang", on=route)
    with pytest.raises(ProviderTimeoutError) as info:
        await modelscope(modelscope_timeout=0.3).generate(_req())
    assert not info.value.retryable and modelscope_emu.hangs == 1


async def test_hung_download_hits_the_download_timeout(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    modelscope_emu.fail_next("hang", on="files")
    with pytest.raises(ProviderTimeoutError) as info:
        await modelscope(download_timeout=0.2).generate(_req())
    assert info.value.retryable


async def test_unreachable_base_url_is_unavailable_and_retryable(
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
    closed_port: int,
) -> None:
    provider = open_provider(SPEC, make_settings(modelscope_base_url=f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.generate(_req())
    assert info.value.retryable


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"width": 2048, "height": 2048}, UnknownResolutionError),
        ({"options": {"quality": "high"}}, UnsupportedOptionError),
        ({"options": {"steps": 0}}, InvalidArgumentError),
        ({"style": "anime"}, InvalidArgumentError),
        ({"seed": -1}, InvalidArgumentError),
    ],
)
async def test_invalid_requests_fail_before_any_call(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error):
        await modelscope().generate(_req(**request_kw))
    assert modelscope_emu.requests == []


async def test_emulator_insists_on_the_async_and_task_type_headers(modelscope_emu: ModelScopeEmulator) -> None:
    auth = {"Authorization": "Bearer ms-FAKE-modelscope-SECRET-3456"}
    body = {"model": "Qwen/Qwen-Image", "prompt": "x"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(modelscope_emu.origin + "/v1/images/generations", json=body) as resp:
            assert resp.status == 400
        async with http.post(
            modelscope_emu.origin + "/v1/images/generations", json=body, headers={"X-ModelScope-Async-Mode": "true"}
        ) as resp:
            task_id = (await resp.json())["task_id"]
        async with http.get(f"{modelscope_emu.origin}/v1/tasks/{task_id}") as resp:
            assert resp.status == 400


async def test_missing_token_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ProviderNotConfiguredError) as info:
        SPEC.factory(make_settings(modelscope_api_key=None))
    assert "MODELSCOPE_API_KEY" in str(info.value)


async def test_catalog_and_lazy_imports(imports_after: Callable[[str], set[str]]) -> None:
    assert CATALOG.size_range == (64, 1664)
    assert not {"aiohttp", "PIL"} & imports_after("mcp_image_server.providers.modelscope")


# ---- edits (Qwen-Image-Edit through image_url) ---------------------------------------------


def _image(
    width: int = 320, height: int = 200, fmt: str = "PNG", colour: tuple[int, int, int] = (200, 40, 40)
) -> InputImage:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), colour).save(buf, fmt)
    return InputImage(buf.getvalue(), f"image/{fmt.lower()}", width, height)


def _edit(*images: InputImage, **kw: Any) -> GenerationRequest:
    return _req(
        **{"prompt": "make the sky darker", "width": None, "height": None, "images": images or (_image(),), **kw}
    )


def _decoded(uri: str) -> tuple[str, bytes]:
    head, _, b64 = uri.partition(",")
    return head, base64.b64decode(b64, validate=True)


async def test_edit_sends_the_image_inline_on_the_edit_model_and_keeps_its_shape(
    modelscope_emu: ModelScopeEmulator,
    modelscope: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    source = _image(320, 200)

    result = await modelscope().generate(_edit(source, seed=3), progress)

    image = result.images[0]
    assert (image.width, image.height, image.seed) == (320, 200, 3) and result.model == "Qwen/Qwen-Image-Edit-2511"
    body = modelscope_emu.requests_to("submit")[0].json
    assert set(body) == {"model", "prompt", "image_url", "seed"}  # no size: the output follows the input
    assert isinstance(body["image_url"], str)
    assert _decoded(body["image_url"]) == ("data:image/png;base64", source.data)  # already fits: sent as is
    task = next(iter(modelscope_emu.tasks.values()))
    assert task.model == "Qwen/Qwen-Image-Edit-2511" and [(i.mime_type, i.width, i.height) for i in task.inputs] == [
        ("image/png", 320, 200)
    ]
    assert len(modelscope_emu.requests_to("task")) == modelscope_emu.job_polls + 1
    assert progress.messages[0].startswith("submitted job ") and progress.messages[-1] == "downloading"
    assert_secret_free(None)


async def test_edit_with_references_sends_a_list_converted_to_what_modelscope_takes(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    big = _image(3000, 1500, "PNG")
    webp = _image(200, 200, "WEBP", (10, 200, 10))
    jpeg = _image(150, 100, "JPEG")

    result = await modelscope().generate(_edit(big, webp, jpeg, width=1024, height=1024, n=2))

    assert [(i.width, i.height) for i in result.images] == [(1024, 1024)] * 2
    submits = modelscope_emu.requests_to("submit")
    assert len(submits) == 2 and all(s.json["size"] == "1024x1024" for s in submits)
    uris = submits[0].json["image_url"]
    assert isinstance(uris, list) and len(uris) == 3 and uris == submits[1].json["image_url"]
    assert [_decoded(u)[0] for u in uris] == [
        "data:image/png;base64",
        "data:image/png;base64",
        "data:image/jpeg;base64",
    ]
    assert _decoded(uris[2])[1] == jpeg.data
    seen = next(iter(modelscope_emu.tasks.values())).inputs
    assert [(i.width, i.height) for i in seen] == [(2048, 1024), (200, 200), (150, 100)]


async def test_a_pinned_edit_model_is_used_and_a_text_to_image_model_is_refused_before_any_call(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    result = await modelscope().generate(_edit(model="Qwen/Qwen-Image-Edit-2509"))
    assert result.model == "Qwen/Qwen-Image-Edit-2509"
    modelscope_emu.requests.clear()
    with pytest.raises(InvalidArgumentError) as info:
        await modelscope().generate(_edit(model="Qwen/Qwen-Image"))
    assert info.value.details["model"] == "Qwen/Qwen-Image" and modelscope_emu.requests == []


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"images": (_image(),) * 4}, TooManyImagesError),
        ({"mask": _image()}, MaskMismatchError),
        ({"width": 2048, "height": 2048}, UnknownResolutionError),
    ],
)
async def test_invalid_edits_fail_before_any_call(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, request_kw: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await modelscope().generate(_edit(**request_kw))
    assert modelscope_emu.requests == []


async def test_generation_sends_no_image_url(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    await modelscope().generate(_req())
    assert "image_url" not in modelscope_emu.requests_to("submit")[0].json


async def test_emulator_refusal_of_an_edit_is_a_provider_invalid_argument(
    modelscope_emu: ModelScopeEmulator, modelscope: Make
) -> None:
    modelscope_emu.max_input_images = 1
    with pytest.raises(ProviderInvalidArgumentError) as info:
        await modelscope().generate(_edit(_image(), _image()))
    assert info.value.details["status"] == 400 and modelscope_emu.tasks == {}


def _uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    ("model", "image_url"),
    [
        ("Qwen/Qwen-Image-Edit-2511", "data:image/png;base64,!!not-base64!!"),
        ("Qwen/Qwen-Image-Edit-2511", _uri(b"<html>not an image</html>")),
        ("Qwen/Qwen-Image-Edit-2511", _uri(_image().data[:60])),  # truncated
        ("Qwen/Qwen-Image-Edit-2511", _uri(_image(fmt="JPEG").data, "image/png")),  # says PNG, holds JPEG
        ("Qwen/Qwen-Image-Edit-2511", _uri(_image(fmt="GIF").data, "image/gif")),
        ("Qwen/Qwen-Image-Edit-2511", "/home/me/cat.png"),
        ("Qwen/Qwen-Image-Edit-2511", [_uri(_image().data)] * 4),
        ("Qwen/Qwen-Image-Edit-2511", []),
        ("Qwen/Qwen-Image-Edit-2511", {"url": _uri(_image().data)}),
        ("Qwen/Qwen-Image-Edit-2511", None),  # an edit model needs an image
        ("Qwen/Qwen-Image", _uri(_image().data)),  # a text-to-image model takes none
    ],
)
async def test_emulator_refuses_malformed_image_url(
    modelscope_emu: ModelScopeEmulator, model: str, image_url: object
) -> None:
    headers = {"Authorization": f"Bearer {modelscope_emu.api_key}", "X-ModelScope-Async-Mode": "true"}
    body: dict[str, Any] = {"model": model, "prompt": "x"}
    if image_url is not None:
        body["image_url"] = image_url
    url = modelscope_emu.origin + "/v1/images/generations"
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"]["code"] == "InvalidParameter"
    assert modelscope_emu.tasks == {}


async def test_emulator_records_url_inputs_without_fetching_them(modelscope_emu: ModelScopeEmulator) -> None:
    headers = {"Authorization": f"Bearer {modelscope_emu.api_key}", "X-ModelScope-Async-Mode": "true"}
    body = {"model": "Qwen/Qwen-Image-Edit-2511", "prompt": "x", "image_url": ["https://example.invalid/a.png"]}
    url = modelscope_emu.origin + "/v1/images/generations"
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200
    assert [i.url for i in next(iter(modelscope_emu.tasks.values())).inputs] == ["https://example.invalid/a.png"]


async def test_failed_edit_task_is_reported_with_its_code(modelscope_emu: ModelScopeEmulator, modelscope: Make) -> None:
    modelscope_emu.fail_next("job_failed", code="DataInspectionFailed", message="Input image may be inappropriate.")
    with pytest.raises(ContentRejectedError) as info:
        await modelscope().generate(_edit())
    assert info.value.details["vendor_code"] == "DataInspectionFailed" and info.value.details["task_id"]
    assert len(modelscope_emu.requests_to("submit")) == 1


@pytest.mark.parametrize(("route", "retryable"), [("submit", True), ("task", False)])
async def test_edit_server_errors_are_unavailable_and_retryable_only_before_a_task_exists(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, route: str, retryable: bool
) -> None:
    modelscope_emu.fail_always("server_error", on=route)
    with pytest.raises(ProviderUnavailableError) as info:
        await modelscope().generate(_edit())
    assert info.value.retryable is retryable and info.value.details["status"] == 500


async def test_hung_edit_task_times_out_and_resumes_without_resubmitting(
    modelscope_emu: ModelScopeEmulator, modelscope: Make, progress: Any
) -> None:
    source = _image(300, 180)
    modelscope_emu.fail_always("hang", on="task")
    with pytest.raises(ProviderTimeoutError) as info:
        await modelscope(modelscope_timeout=0.3).generate(_edit(source), progress)
    assert not info.value.retryable
    task_id = progress.messages[0].removeprefix("submitted job ")
    assert task_id in modelscope_emu.tasks
    modelscope_emu.clear_faults()
    modelscope_emu.release()

    result = await modelscope().generate(_edit(source, resume=(task_id,)))

    assert [(i.width, i.height) for i in result.images] == [(300, 180)]
    assert result.model == "Qwen/Qwen-Image-Edit-2511"
    assert len(modelscope_emu.requests_to("submit")) == 1


async def test_catalog_declares_edits() -> None:
    assert (CATALOG.max_input_images, CATALOG.supports_mask) == (3, False)
    assert "Qwen/Qwen-Image-Edit-2511" in CATALOG.edit_notes and CATALOG.models[0] == "Qwen/Qwen-Image"
