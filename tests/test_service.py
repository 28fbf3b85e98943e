"""ImageService end to end with recording fake providers: failover, style/size equivalence, prompt modifiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_image_server.config import load_settings
from mcp_image_server.errors import AuthFailedError, ProviderTimeoutError, ProviderUnavailableError
from mcp_image_server.models import GenerateParams, ProviderCatalog, StyleInfo
from mcp_image_server.providers import ProviderSpec
from mcp_image_server.service import ImageService

from .providers.test_manager import FakeProvider

ALPHA = ProviderCatalog(
    name="alpha", display_name="A", description="", models=("a1",),
    styles=(StyleInfo("riman", "Japanese anime"), StyleInfo("shuimo", "ink wash")), default_style="shuimo",
    resolutions=("768x768", "1024x768", "1280x720"), default_resolution="768x768", formats=("png",),
)
BETA = ProviderCatalog(
    name="beta", display_name="B", description="", models=("b1",),
    styles=(StyleInfo("natural", "Natural", "natural look"), StyleInfo("anime", "Anime", "anime style, cel shading")),
    default_style="natural", resolutions=("1024x1024", "1536x1024", "1024x1536"), default_resolution="1024x1024",
    formats=("png", "jpeg"), options=("quality",),
)


def _service(tmp_path: Path, alpha: FakeProvider, beta: FakeProvider, **env: str) -> ImageService:
    specs = [
        ProviderSpec(catalog=ALPHA, is_configured=lambda s: True, factory=lambda s: alpha, order=1),
        ProviderSpec(catalog=BETA, is_configured=lambda s: True, factory=lambda s: beta, order=2),
    ]
    settings = load_settings({"MCP_IMAGE_SAVE_DIR": str(tmp_path / "img"), "MCP_PROVIDER_MAX_ATTEMPTS": "1", **env})
    service = ImageService(settings, extra_providers=specs)
    service.store.open()
    return service


async def test_unpinned_request_fails_over_with_the_nearest_style_and_size(tmp_path: Path) -> None:
    alpha = FakeProvider(catalog=ALPHA, outcomes=[ProviderUnavailableError("down", provider="alpha")])
    beta = FakeProvider(catalog=BETA)
    service = _service(tmp_path, alpha, beta, MCP_FALLBACK_PROVIDERS="beta")
    outcome = await service.generate(GenerateParams(prompt="a fox", style="riman", resolution="1280x720"))
    assert outcome.provider == "beta" and outcome.records[0].provider == "beta"
    sent = beta.calls[0]
    assert (sent.style, sent.width, sent.height) == ("anime", 1536, 1024)
    assert sent.prompt == "a fox, anime style, cel shading"
    assert any("alpha failed (provider_unavailable" in w and "served by beta" in w for w in outcome.warnings)


async def test_pinned_requests_never_fail_over(tmp_path: Path) -> None:
    alpha = FakeProvider(catalog=ALPHA, outcomes=[ProviderTimeoutError("slow", provider="alpha")])
    beta = FakeProvider(catalog=BETA)
    service = _service(tmp_path, alpha, beta, MCP_FALLBACK_PROVIDERS="beta")
    with pytest.raises(ProviderTimeoutError):
        await service.generate(GenerateParams(prompt="x", provider="alpha"))
    with pytest.raises(ProviderTimeoutError):
        alpha.outcomes.append(ProviderTimeoutError("slow", provider="alpha"))
        await service.generate(GenerateParams(prompt="x", style="alpha:riman"))
    assert beta.calls == []


async def test_only_availability_failures_fail_over(tmp_path: Path) -> None:
    alpha = FakeProvider(catalog=ALPHA, outcomes=[AuthFailedError("bad key", provider="alpha")])
    beta = FakeProvider(catalog=BETA)
    service = _service(tmp_path, alpha, beta, MCP_FALLBACK_PROVIDERS="beta")
    with pytest.raises(AuthFailedError):
        await service.generate(GenerateParams(prompt="x"))
    assert beta.calls == []


async def test_without_fallbacks_the_original_error_stands(tmp_path: Path) -> None:
    alpha = FakeProvider(catalog=ALPHA, outcomes=[ProviderUnavailableError("down", provider="alpha")])
    service = _service(tmp_path, alpha, FakeProvider(catalog=BETA))
    with pytest.raises(ProviderUnavailableError):
        await service.generate(GenerateParams(prompt="x"))


async def test_provider_only_options_and_modifiers_reach_the_vendor(tmp_path: Path) -> None:
    beta = FakeProvider(catalog=BETA)
    service = _service(tmp_path, FakeProvider(catalog=ALPHA), beta)
    await service.generate(
        GenerateParams(prompt="p", provider="beta", style="anime", output_format="jpeg", options={"quality": "high"})
    )
    sent = beta.calls[0]
    assert sent.options == {"quality": "high"} and sent.output_format == "jpeg" and sent.prompt.endswith("cel shading")
