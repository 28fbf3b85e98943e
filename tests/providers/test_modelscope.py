"""ModelScope adapter: its aiohttp client against the ModelScope emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
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
