"""Hunyuan adapter: the real tencentcloud async SDK against the Hunyuan emulator."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image as PILImage

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    InvalidArgumentError,
    MaskMismatchError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    TooManyImagesError,
    UnknownResolutionError,
    UnknownStyleError,
)
from mcp_image_server.models import GenerationRequest, InputImage
from mcp_image_server.providers.base import Provider, ProviderSpec
from mcp_image_server.providers.hunyuan import CATALOG, SPEC
from tests.emulators import HunyuanEmulator

pytestmark = pytest.mark.asyncio

Make = Callable[..., Provider]
"""A fixture that builds the provider under test from Settings overrides."""


@pytest.fixture
def hunyuan(
    hunyuan_emu: HunyuanEmulator,
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
) -> Make:
    """A provider pointed at the emulator; call it with Settings overrides."""

    def _make(**overrides: Any) -> Provider:
        return open_provider(SPEC, make_settings(tencent_endpoint=hunyuan_emu.origin, **overrides))

    return _make


def _req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "雨中竹林", "width": 1024, "height": 1024, **kw})


async def test_generate_submits_signed_job_polls_and_downloads(
    hunyuan_emu: HunyuanEmulator,
    hunyuan: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    request = _req(width=768, height=1024, n=2, seed=42, style="shuimo", negative_prompt="人物")

    result = await hunyuan().generate(request, progress)

    assert [(i.mime_type, i.width, i.height, i.seed) for i in result.images] == [("image/png", 768, 1024, 42)] * 2
    assert result.images[0].revised_prompt == "雨中竹林" and result.model == "hunyuan-image"
    submit = hunyuan_emu.requests_to("submit")[0]
    assert submit.json == {
        "Prompt": "雨中竹林",
        "Resolution": "768:1024",
        "Num": 2,
        "LogoAdd": 0,
        "Style": "shuimo",
        "NegativePrompt": "人物",
        "Seed": 42,
        "Revise": 0,
    }
    assert submit.headers["Content-Type"] == "application/json"
    assert submit.headers["X-TC-Region"] == "ap-guangzhou" and submit.headers["X-TC-Version"] == "2023-09-01"
    assert submit.headers["Authorization"].startswith("TC3-HMAC-SHA256 Credential=AKID-FAKE-")
    assert len(hunyuan_emu.requests_to("query")) == hunyuan_emu.job_polls + 1
    assert len(hunyuan_emu.requests_to("files")) == 2
    assert progress.messages[0].startswith("submitted job 1300000000-")
    assert progress.messages[1:] == ["queued", progress.messages[2], "downloading"]
    assert progress.messages[2].startswith("running ")
    assert_secret_free(None)  # the SDK's DEBUG logs of a whole exchange carry no key


async def test_auto_size_uses_default_and_no_seed_leaves_revise_on(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    result = await hunyuan().generate(_req(width=None, height=None))

    assert (result.images[0].width, result.images[0].height) == (1024, 1024)
    assert hunyuan_emu.requests_to("submit")[0].json == {
        "Prompt": "雨中竹林",
        "Resolution": "1024:1024",
        "Num": 1,
        "LogoAdd": 0,
    }


async def test_time_based_job_latency_keeps_polling_until_done(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.job_polls, hunyuan_emu.job_seconds = 0, 0.15
    assert len((await hunyuan(hunyuan_poll_interval=0.02).generate(_req())).images) == 1
    assert len(hunyuan_emu.requests_to("query")) >= 3


async def test_integer_job_status_codes_are_understood(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.status_as_int = True
    assert len((await hunyuan().generate(_req())).images) == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"tencent_secret_key": Secret("FAKE-wrong-SECRET-key")}, "AuthFailure.SignatureFailure"),
        ({"tencent_secret_id": Secret("AKIDFAKE-wrong-SECRET-id")}, "AuthFailure.SecretIdNotFound"),
    ],
)
async def test_bad_credentials_fail_auth_without_leaking_them(
    hunyuan: Make, change: dict[str, Any], code: str | None, assert_secret_free: Callable[[BaseException | None], None]
) -> None:
    with pytest.raises(AuthFailedError) as info:
        await hunyuan(**change).generate(_req())
    assert info.value.details["vendor_code"] == code and info.value.provider == "hunyuan"
    assert not info.value.transient
    assert_secret_free(info.value)


async def test_clock_skew_is_signature_expired(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.clock_offset = 3600
    with pytest.raises(AuthFailedError) as info:
        await hunyuan().generate(_req())
    assert info.value.details["vendor_code"] == "AuthFailure.SignatureExpire"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", RateLimitedError, "RequestLimitExceeded"),
        ("engine_busy", RateLimitedError, "FailedOperation.EngineServerLimitExceeded"),
        ("internal_error", ProviderUnavailableError, "InternalError"),
        ("server_error", ProviderUnavailableError, "ServerNetworkError"),
        ("malformed", ProviderUnavailableError, None),
        ("missing_request_id", ProviderUnavailableError, None),
        ("moderation", ContentRejectedError, "OperationDenied.TextIllegalDetected"),
        ("invalid_argument", ProviderInvalidArgumentError, "InvalidParameterValue"),
        ("unsupported_region", ProviderInvalidArgumentError, "UnsupportedRegion"),
        ("auth", AuthFailedError, "AuthFailure.SignatureFailure"),
    ],
)
async def test_submit_faults_map_to_error_classes_without_retrying(
    hunyuan_emu: HunyuanEmulator,
    hunyuan: Make,
    fault: str,
    error: type[ProviderError],
    code: str | None,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    hunyuan_emu.fail_next(fault)
    with pytest.raises(error) as info:
        await hunyuan().generate(_req())
    assert type(info.value) is error and info.value.provider == "hunyuan"
    assert info.value.details.get("vendor_code") == code
    assert len(hunyuan_emu.requests_to("submit")) == 1 and not hunyuan_emu.requests_to("query")
    assert isinstance(info.value.__cause__, Exception)
    assert_secret_free(info.value)


async def test_a_fault_for_the_next_request_only_lets_the_next_call_succeed(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make
) -> None:
    provider = hunyuan()
    hunyuan_emu.fail_next("rate_limit")
    with pytest.raises(RateLimitedError) as info:
        await provider.generate(_req())
    assert info.value.transient and info.value.retryable
    assert len((await provider.generate(_req())).images) == 1


@pytest.mark.parametrize(
    ("job_code", "error"),
    [
        ("FailedOperation.GenerateImageFailed", ProviderUnavailableError),
        ("OperationDenied.ImageIllegalDetected", ContentRejectedError),
        ("ResourceInsufficient.ChargeResourceExhaust", ProviderError),
    ],
)
async def test_failed_job_status_4_reports_job_error_code(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, job_code: str, error: type[ProviderError]
) -> None:
    hunyuan_emu.fail_next("job_failed", code=job_code, message="生成失败")
    with pytest.raises(error) as info:
        await hunyuan().generate(_req())
    assert type(info.value) is error and info.value.retryable == info.value.transient  # the job is over
    assert info.value.details["job_error_code"] == job_code
    assert info.value.details["job_id"].startswith("1300000000-")


async def test_transient_query_failures_keep_polling_the_same_job(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.fail_next("rate_limit", times=2, on="query")
    assert len((await hunyuan().generate(_req())).images) == 1
    assert len(hunyuan_emu.requests_to("submit")) == 1


async def test_persistent_query_failures_end_the_generation_without_resubmitting(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make
) -> None:
    hunyuan_emu.fail_always("internal_error", on="query")
    with pytest.raises(ProviderUnavailableError) as info:
        await hunyuan().generate(_req())
    assert not info.value.retryable and info.value.details["job_id"]
    assert len(hunyuan_emu.requests_to("submit")) == 1 and len(hunyuan_emu.requests_to("query")) == 4


@pytest.mark.parametrize("fault", ["not_image", "corrupt", "truncated"])
async def test_bad_result_bytes_are_bad_image_data(hunyuan_emu: HunyuanEmulator, hunyuan: Make, fault: str) -> None:
    hunyuan_emu.fail_next(fault)
    with pytest.raises(BadImageDataError) as info:
        await hunyuan().generate(_req())
    assert "?" not in info.value.details.get("url", "")  # presigned query never echoed


@pytest.mark.parametrize("declare_length", [True, False])
async def test_oversized_result_is_refused_while_streaming(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, declare_length: bool
) -> None:
    hunyuan_emu.fail_next("oversized", size=1 << 20, declare_length=declare_length)
    with pytest.raises(BadImageDataError) as info:
        await hunyuan(download_max_bytes=256 * 1024).generate(_req())
    assert info.value.details["limit_bytes"] == 256 * 1024


async def test_result_server_error_is_unavailable(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.fail_next("server_error", on="files")
    with pytest.raises(ProviderUnavailableError) as info:
        await hunyuan().generate(_req())
    assert info.value.details["status"] == 500


@pytest.mark.parametrize("route", ["submit", "query"])
async def test_hung_api_call_times_out_and_is_not_retryable_as_the_job_may_run(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, route: str
) -> None:
    hunyuan_emu.fail_next("hang", on=route)
    with pytest.raises(ProviderTimeoutError) as info:
        await hunyuan(hunyuan_timeout=0.3).generate(_req())
    assert info.value.transient and not info.value.retryable and hunyuan_emu.hangs == 1


async def test_job_that_never_finishes_times_out(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.job_polls = 10**6
    with pytest.raises(ProviderTimeoutError):
        await hunyuan(hunyuan_timeout=0.2).generate(_req())


async def test_hung_download_hits_the_download_timeout(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    hunyuan_emu.fail_next("hang", on="files")
    with pytest.raises(ProviderTimeoutError) as info:
        await hunyuan(download_timeout=0.2).generate(_req())
    assert "url" in info.value.details and info.value.retryable  # the job is finished: no duplicate


async def test_unreachable_endpoint_is_unavailable(
    make_settings: Callable[..., Settings],
    open_provider: Callable[[ProviderSpec, Settings], Provider],
    closed_port: int,
) -> None:
    provider = open_provider(SPEC, make_settings(tencent_endpoint=f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.generate(_req())
    assert info.value.retryable  # nothing was sent


async def test_results_are_converted_to_the_requested_format(hunyuan: Make) -> None:
    image = (await hunyuan().generate(_req(output_format="jpeg"))).images[0]
    assert (image.mime_type, image.data[:3]) == ("image/jpeg", b"\xff\xd8\xff")


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"style": "vivid"}, UnknownStyleError),
        ({"width": 512, "height": 512}, UnknownResolutionError),
        ({"n": 5}, InvalidArgumentError),
        ({"seed": 0}, InvalidArgumentError),
    ],
)
async def test_invalid_requests_fail_before_any_call(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, request_kw: dict[str, Any], error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error):
        await hunyuan().generate(_req(**request_kw))
    assert hunyuan_emu.requests == []


async def test_success_logs_carry_no_secrets(hunyuan: Make, caplog: pytest.LogCaptureFixture) -> None:
    await hunyuan().generate(_req())
    assert "Credential=***" in caplog.text  # the SDK's DEBUG dump ran, redacted
    for secret in ("AKID-FAKE-hunyuanID0001", "FAKE-tencent-SECRET-KEY-5678"):
        assert secret not in caplog.text


async def test_emulator_answers_errors_with_the_exact_content_type(hunyuan_emu: HunyuanEmulator) -> None:
    async with aiohttp.ClientSession() as http, http.post(hunyuan_emu.origin + "/", json={}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"  # no charset (§1.8)
        assert (await resp.json())["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


async def test_missing_credentials_name_the_variables(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ProviderNotConfiguredError) as info:
        SPEC.factory(make_settings(tencent_secret_key=None))
    assert "TENCENT_SECRET_KEY" in str(info.value)
    assert not SPEC.is_configured(make_settings(tencent_secret_id=None))


async def test_catalog_and_lazy_sdk_import(imports_after: Callable[[str], set[str]]) -> None:
    assert len(CATALOG.styles) == 18 and len(CATALOG.resolutions) == 8
    assert CATALOG.resolution_separator == ":"
    loaded = imports_after("mcp_image_server.providers.hunyuan")
    assert not {"tencentcloud", "httpx", "aiohttp", "PIL"} & loaded


# ---- edits (image-to-image through ContentImage) -------------------------------------------


def _image(width: int = 400, height: int = 300, fmt: str = "PNG") -> InputImage:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), (30, 90, 200)).save(buf, fmt)
    return InputImage(buf.getvalue(), f"image/{fmt.lower()}", width, height)


def _edit(*images: InputImage, **kw: Any) -> GenerationRequest:
    return _req(**{"prompt": "改成水墨风格", "width": None, "height": None, "images": images or (_image(),), **kw})


async def test_edit_sends_one_content_image_as_base64_and_keeps_the_aspect(
    hunyuan_emu: HunyuanEmulator,
    hunyuan: Make,
    progress: Any,
    assert_secret_free: Callable[[BaseException | None], None],
) -> None:
    source = _image(400, 300)

    result = await hunyuan().generate(_edit(source), progress)

    assert [(i.width, i.height, i.seed) for i in result.images] == [(1024, 768, None)] and not result.warnings
    submit = hunyuan_emu.requests_to("submit")[0]  # signed and checked like any other call
    assert submit.json == {
        "Prompt": "改成水墨风格",
        "Num": 1,
        "LogoAdd": 0,
        "ContentImage": {"ImageBase64": base64.b64encode(source.data).decode()},
    }
    job = next(iter(hunyuan_emu.jobs.values()))
    assert job.content is not None and (job.content.mime_type, job.content.width, job.content.height) == (
        "image/png",
        400,
        300,
    )
    assert progress.messages[0].startswith("submitted job ") and progress.messages[-1] == "downloading"
    assert_secret_free(None)


async def test_edit_converts_webp_and_huge_inputs_and_takes_an_edit_size(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make
) -> None:
    result = await hunyuan().generate(_edit(_image(6000, 100, "WEBP"), width=768, height=1024, style="shuimo", n=2))

    assert [(i.width, i.height) for i in result.images] == [(768, 1024)] * 2
    body = hunyuan_emu.requests_to("submit")[0].json
    assert (body["Resolution"], body["Style"], body["Num"]) == ("768:1024", "shuimo", 2)
    content = next(iter(hunyuan_emu.jobs.values())).content
    assert content is not None and (content.mime_type, content.width) == ("image/jpeg", 4096)


async def test_edit_with_a_seed_warns_that_it_is_not_honoured(hunyuan_emu: HunyuanEmulator, hunyuan: Make) -> None:
    result = await hunyuan().generate(_edit(seed=7))
    assert result.warnings and "seed" in result.warnings[0] and result.images[0].seed is None
    body = hunyuan_emu.requests_to("submit")[0].json
    assert "Seed" not in body and "Revise" not in body


@pytest.mark.parametrize(
    ("request_kw", "error"),
    [
        ({"images": (_image(), _image())}, TooManyImagesError),
        ({"mask": _image()}, MaskMismatchError),
        ({"width": 1280, "height": 720}, UnknownResolutionError),  # fine for generation, not with an input
    ],
)
async def test_invalid_edits_fail_before_any_call(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, request_kw: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await hunyuan().generate(_edit(**request_kw))
    assert hunyuan_emu.requests == []


async def test_emulator_refusal_of_a_content_image_is_a_provider_invalid_argument(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make
) -> None:
    hunyuan_emu.content_max_side = 100
    with pytest.raises(ProviderInvalidArgumentError) as info:
        await hunyuan().generate(_edit())
    assert info.value.details["vendor_code"] == "InvalidParameterValue" and hunyuan_emu.jobs == {}


@pytest_asyncio.fixture
async def sdk_client(hunyuan_emu: HunyuanEmulator) -> AsyncIterator[Any]:
    """The SDK's async client on the emulator, for requests the provider would never build."""
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.hunyuan.v20230901 import hunyuan_client_async

    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=f"127.0.0.1:{hunyuan_emu.port}"))
    cred = credential.Credential(hunyuan_emu.secret_id, hunyuan_emu.secret_key)
    async with hunyuan_client_async.HunyuanClient(cred, "ap-guangzhou", profile) as client:
        yield client


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ({"ImageBase64": "!!not base64!!"}, "InvalidParameterValue"),
        ({"ImageBase64": "data:image/png;base64," + _b64(_image().data)}, "InvalidParameterValue"),
        ({"ImageBase64": _b64(b"<html>403</html>")}, "InvalidParameterValue"),
        ({"ImageBase64": _b64(_image().data[:80])}, "InvalidParameterValue"),  # truncated
        ({"ImageBase64": _b64(_image(fmt="WEBP").data)}, "InvalidParameterValue"),  # jpg/jpeg/png only
        ({"ImageBase64": _b64(_image(5000, 8).data)}, "InvalidParameterValue"),  # a side of 5000
        ({"ImageUrl": "ftp://example.invalid/a.png"}, "InvalidParameterValue"),
        ({"ImageUrl": "https://example.invalid/a.png", "ImageBase64": _b64(_image().data)}, "InvalidParameterValue"),
        ({}, "MissingParameter"),
    ],
)
async def test_emulator_refuses_malformed_content_images_from_the_real_sdk(
    hunyuan_emu: HunyuanEmulator, sdk_client: Any, content: dict[str, str], code: str
) -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.hunyuan.v20230901 import models

    req = models.SubmitHunyuanImageJobRequest()
    req.from_json_string(json.dumps({"Prompt": "x", "ContentImage": content}))
    with pytest.raises(TencentCloudSDKException) as info:
        await sdk_client.SubmitHunyuanImageJob(req)
    assert info.value.get_code() == code and hunyuan_emu.jobs == {}


async def test_emulator_takes_a_url_content_image_without_fetching_it(
    hunyuan_emu: HunyuanEmulator, sdk_client: Any
) -> None:
    from tencentcloud.hunyuan.v20230901 import models

    req = models.SubmitHunyuanImageJobRequest()
    req.from_json_string(json.dumps({"Prompt": "x", "ContentImage": {"ImageUrl": "https://example.invalid/a.png"}}))
    job_id = (await sdk_client.SubmitHunyuanImageJob(req)).JobId
    content = hunyuan_emu.jobs[job_id].content
    assert content is not None and content.url == "https://example.invalid/a.png"
    assert not hunyuan_emu.requests_to("files")


@pytest.mark.parametrize(
    ("job_code", "error"),
    [
        ("OperationDenied.ImageIllegalDetected", ContentRejectedError),
        ("FailedOperation.ImageDownloadError", ProviderError),
        ("FailedOperation.GenerateImageFailed", ProviderUnavailableError),
    ],
)
async def test_failed_edit_job_reports_its_code(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, job_code: str, error: type[ProviderError]
) -> None:
    hunyuan_emu.fail_next("job_failed", code=job_code, message="参考图不合规")
    with pytest.raises(error) as info:
        await hunyuan().generate(_edit())
    assert type(info.value) is error and info.value.details["job_error_code"] == job_code
    assert len(hunyuan_emu.requests_to("submit")) == 1


@pytest.mark.parametrize(("route", "retryable"), [("submit", True), ("query", False)])
async def test_edit_5xx_is_unavailable_and_retryable_only_before_a_job_exists(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, route: str, retryable: bool
) -> None:
    hunyuan_emu.fail_always("server_error", on=route)
    with pytest.raises(ProviderUnavailableError) as info:
        await hunyuan().generate(_edit())
    assert info.value.retryable is retryable and info.value.details["vendor_code"] == "ServerNetworkError"


async def test_hung_edit_job_times_out_and_resumes_without_resubmitting(
    hunyuan_emu: HunyuanEmulator, hunyuan: Make, progress: Any
) -> None:
    hunyuan_emu.fail_always("hang", on="query")
    with pytest.raises(ProviderTimeoutError) as info:
        await hunyuan(hunyuan_timeout=0.3).generate(_edit(_image(300, 600)), progress)
    assert not info.value.retryable and info.value.details["job_id"]
    job_id = progress.messages[0].removeprefix("submitted job ")
    hunyuan_emu.clear_faults()
    hunyuan_emu.release()

    result = await hunyuan().generate(_edit(_image(300, 600), resume=(job_id,)))

    assert [(i.width, i.height) for i in result.images] == [(512, 1024)]
    assert len(hunyuan_emu.requests_to("submit")) == 1


async def test_catalog_declares_a_single_image_edit() -> None:
    assert (CATALOG.max_input_images, CATALOG.supports_mask) == (1, False)
    assert "ContentImage" in CATALOG.edit_notes
