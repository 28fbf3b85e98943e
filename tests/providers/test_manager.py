"""Selection, provider:value parsing, retries and concurrency limits, with recording fake providers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from mcp_image_server.config import Settings, load_settings
from mcp_image_server.errors import (
    AuthFailedError,
    ProviderMismatchError,
    ProviderNotConfiguredError,
    ProviderUnavailableError,
    RateLimitedError,
    UnknownProviderError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from mcp_image_server.models import GeneratedImage, GenerationRequest, ProviderCatalog, ProviderResult, StyleInfo
from mcp_image_server.providers import Provider, ProviderSpec, registry
from mcp_image_server.providers.manager import ProviderManager, parse_size

HUNYUANISH = ProviderCatalog(
    name="hunyuan",
    display_name="H",
    description="",
    models=("m",),
    styles=(StyleInfo("riman", "anime"), StyleInfo("saibopengke", "cyberpunk")),
    resolutions=("768x768", "1024x768", "1024x1024"),
    default_resolution="1024x1024",
    formats=("png",),
    resolution_separator=":",
)


@dataclass
class FakeProvider(Provider):
    """Plays back queued outcomes and records every call (no mocking of the thing under test)."""

    catalog: ProviderCatalog = HUNYUANISH
    outcomes: list[BaseException | None] = field(default_factory=list)
    calls: list[GenerationRequest] = field(default_factory=list)
    gate: asyncio.Event | None = None
    running: int = 0
    peak: int = 0

    async def generate(self, request: GenerationRequest, progress: object = None) -> ProviderResult:
        self.calls.append(request)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if outcome is not None:
                raise outcome
            img = GeneratedImage(b"\x89PNG\r\n\x1a\n", "image/png", 1, 1)
            return ProviderResult(images=(img,), model="m")
        finally:
            self.running -= 1


def _manager(settings: Settings | None = None, configured: bool = True, fake: FakeProvider | None = None):
    fake = fake or FakeProvider()
    spec = ProviderSpec(catalog=fake.catalog, is_configured=lambda s: configured, factory=lambda s: fake, order=10)
    return ProviderManager(settings or load_settings({}), registry([spec])), fake


def test_parse_size_accepts_both_separators() -> None:
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size("1024:768") == (1024, 768)
    assert parse_size(" 64 X 64 ") == (64, 64)
    assert parse_size("auto") is None
    with pytest.raises(ValueError):
        parse_size("big")


def test_first_configured_cloud_provider_is_the_default_else_local() -> None:
    assert _manager()[0].default_name == "hunyuan"
    assert _manager(configured=False)[0].default_name == "local"


def test_default_provider_setting_wins_when_configured() -> None:
    m, _ = _manager(load_settings({"MCP_DEFAULT_PROVIDER": "local"}))
    assert m.default_name == "local"


@pytest.mark.parametrize(
    ("kwargs", "style", "size"),
    [
        ({"style": "hunyuan:saibopengke"}, "saibopengke", (1024, 768)),
        ({"provider": "hunyuan", "style": "riman"}, "riman", (1024, 768)),
        ({"style": "hunyuan:riman", "provider": "HUNYUAN"}, "riman", (1024, 768)),
    ],
)
def test_provider_prefixed_values_are_resolved(kwargs: dict[str, str], style: str, size: tuple[int, int]) -> None:
    m, _ = _manager()
    sel = m.select(**({"provider": None, "style": None, "resolution": "hunyuan:1024:768"} | kwargs))
    assert (sel.provider, sel.style, (sel.width, sel.height), sel.pinned) == ("hunyuan", style, size, True)


def test_plain_sizes_use_the_default_provider() -> None:
    m, _ = _manager()
    for text in ("1024x768", "1024:768"):
        sel = m.select(provider=None, style=None, resolution=text)
        assert (sel.provider, sel.width, sel.height, sel.pinned) == ("hunyuan", 1024, 768, False)


def test_local_accepts_any_size_in_range_and_refuses_outside() -> None:
    m, _ = _manager(configured=False)
    sel = m.select(provider="local", style="neon", resolution="333x2048")
    assert (sel.width, sel.height) == (333, 2048)
    with pytest.raises(UnknownResolutionError) as info:
        m.select(provider="local", style=None, resolution="4096x4096")
    assert "64..2048" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"provider": "nope"}, UnknownProviderError, "unknown_provider"),
        ({"style": "nope:riman"}, UnknownProviderError, "unknown_provider"),
        ({"provider": "local", "style": "hunyuan:riman"}, ProviderMismatchError, "provider_mismatch"),
        ({"style": "hunyuan:riman", "resolution": "local:64x64"}, ProviderMismatchError, "provider_mismatch"),
        ({"provider": "hunyuan", "style": "watercolour"}, UnknownStyleError, "unknown_style"),
        ({"provider": "hunyuan", "resolution": "1280x1280"}, UnknownResolutionError, "unknown_resolution"),
        ({"provider": "hunyuan", "resolution": "huge"}, UnknownResolutionError, "unknown_resolution"),
        ({"provider": "hunyuan", "options": {"quality": "high"}}, UnsupportedOptionError, "unsupported_option"),
        ({"provider": "hunyuan", "output_format": "webp"}, UnsupportedOptionError, "unsupported_option"),
        ({"provider": "hunyuan", "n": 5}, UnsupportedOptionError, "unsupported_option"),
    ],
)
def test_bad_choices_get_their_own_code_and_list_the_choices(kwargs: dict, error: type, code: str) -> None:
    m, _ = _manager()
    args = {"provider": None, "style": None, "resolution": None} | kwargs
    with pytest.raises(error) as info:
        m.select(**args)
    assert info.value.code == code
    assert info.value.details


def test_unconfigured_provider_is_its_own_error_listing_what_is_configured() -> None:
    m, _ = _manager(configured=False)
    with pytest.raises(ProviderNotConfiguredError) as info:
        m.select(provider="hunyuan", style=None, resolution=None)
    assert info.value.details["configured"] == ["local"]


def test_style_codes_match_case_insensitively() -> None:
    m, _ = _manager()
    assert m.select(provider="hunyuan", style="RIMAN", resolution=None).style == "riman"


def _req() -> GenerationRequest:
    return GenerationRequest(prompt="p", width=64, height=64)


async def test_transient_errors_are_retried_then_succeed() -> None:
    settings = load_settings({"MCP_PROVIDER_MAX_ATTEMPTS": "3"})
    m, fake = _manager(settings, fake=FakeProvider(outcomes=[ProviderUnavailableError("x"), RateLimitedError("y")]))
    result = await m.generate("hunyuan", _req())
    assert result.model == "m" and len(fake.calls) == 3


async def test_permanent_errors_are_not_retried() -> None:
    m, fake = _manager(fake=FakeProvider(outcomes=[AuthFailedError("no")]))
    with pytest.raises(AuthFailedError):
        await m.generate("hunyuan", _req())
    assert len(fake.calls) == 1


async def test_a_possibly_accepted_submission_is_not_retried() -> None:
    m, fake = _manager(fake=FakeProvider(outcomes=[ProviderUnavailableError("lost", retryable=False)]))
    with pytest.raises(ProviderUnavailableError):
        await m.generate("hunyuan", _req())
    assert len(fake.calls) == 1


async def test_attempts_are_bounded() -> None:
    settings = load_settings({"MCP_PROVIDER_MAX_ATTEMPTS": "2"})
    m, fake = _manager(settings, fake=FakeProvider(outcomes=[ProviderUnavailableError("x")] * 5))
    with pytest.raises(ProviderUnavailableError):
        await m.generate("hunyuan", _req())
    assert len(fake.calls) == 2


async def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    settings = load_settings({"MCP_PROVIDER_RETRY_BUDGET": "1"})
    m, fake = _manager(settings, fake=FakeProvider(outcomes=[RateLimitedError("slow down", retry_after=30)]))
    async with asyncio.timeout(5):
        with pytest.raises(RateLimitedError) as info:
            await m.generate("hunyuan", _req())
    assert info.value.retry_after == 30 and len(fake.calls) == 1


async def test_concurrency_limit_queues_instead_of_failing() -> None:
    settings = load_settings({"MCP_HUNYUAN_MAX_CONCURRENCY": "1"})
    fake = FakeProvider(gate=asyncio.Event())
    m, _ = _manager(settings, fake=fake)
    messages: list[str] = []

    async def progress(msg: str) -> None:
        messages.append(msg)

    tasks = [asyncio.create_task(m.generate("hunyuan", _req(), progress)) for _ in range(3)]
    async with asyncio.timeout(5):
        while len(fake.calls) < 1 or m.queue_depth("hunyuan") < 2:
            await asyncio.sleep(0)
    assert fake.running == 1 and any(msg.startswith("queued for hunyuan") for msg in messages)
    fake.gate.set()  # type: ignore[union-attr]
    async with asyncio.timeout(5):
        results = await asyncio.gather(*tasks)
    assert len(results) == 3 and fake.peak == 1


async def test_aclose_waits_for_in_flight_calls() -> None:
    fake = FakeProvider(gate=asyncio.Event())
    m, _ = _manager(fake=fake)
    call = asyncio.create_task(m.generate("hunyuan", _req()))
    async with asyncio.timeout(5):
        while not fake.calls:
            await asyncio.sleep(0)
    closing = asyncio.create_task(m.aclose())
    await asyncio.sleep(0)
    assert not closing.done()
    fake.gate.set()  # type: ignore[union-attr]
    async with asyncio.timeout(5):
        await call
        await closing
