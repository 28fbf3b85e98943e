"""Fixtures for adapter tests: recognisable fake secrets, a clean environment, fast settings.

Adapters run the real vendor SDKs against the emulators in ``tests/emulators`` over loopback.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import ImageServerError
from mcp_image_server.providers.base import Provider, ProviderSpec
from tests.emulators import DoubaoEmulator, HunyuanEmulator, ModelScopeEmulator, OpenAIEmulator

TENCENT_ID = "AKID-FAKE-hunyuanID0001"
TENCENT_KEY = "FAKE-tencent-SECRET-KEY-5678"
OPENAI_KEY = "sk-FAKE-openai-SECRET-1234"
DOUBAO_KEY = "ark-FAKE-doubao-SECRET-9012"
MODELSCOPE_KEY = "ms-FAKE-modelscope-SECRET-3456"
ALL_SECRETS = (TENCENT_ID, TENCENT_KEY, OPENAI_KEY, DOUBAO_KEY, MODELSCOPE_KEY, "FAKE-wrong-SECRET")
"""Everything a test may hand out as a credential; ``FAKE-wrong-SECRET...`` is the wrong-key value."""

_SDK_ENV = (
    # Read by the SDKs themselves, not by Settings (tests/conftest.py clears settings and proxies).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ARK_API_KEY",
    "VOLC_ACCESSKEY",
    "VOLC_SECRETKEY",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "MODELSCOPE_API_KEY",
    "MODELSCOPE_SDK_TOKEN",
)


@pytest.fixture
def sdk_sandbox(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No proxy or vendor credential reaches the SDKs (§1.2), and every log record is captured so
    tests can prove no secret is logged. Pulled in by ``open_provider`` and the emulator fixtures."""
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings() -> SettingsFactory:
    """Settings with the fake keys and short timeouts; tests override what they exercise."""

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "tencent_secret_id": Secret(TENCENT_ID),
            "tencent_secret_key": Secret(TENCENT_KEY),
            "openai_api_key": Secret(OPENAI_KEY),
            "doubao_api_key": Secret(DOUBAO_KEY),
            "modelscope_api_key": Secret(MODELSCOPE_KEY),
            "hunyuan_poll_interval": 0.01,
            "modelscope_poll_interval": 0.01,
            "hunyuan_timeout": 10.0,
            "openai_timeout": 10.0,
            "doubao_timeout": 10.0,
            "modelscope_timeout": 10.0,
            "download_timeout": 10.0,
        }
        values.update(overrides)
        return Settings(**values)

    return _make


OpenProvider = Callable[[ProviderSpec, Settings], Provider]


@pytest_asyncio.fixture
async def open_provider(sdk_sandbox: None) -> AsyncIterator[OpenProvider]:
    """Build providers through ``SPEC.factory`` and close them after the test."""
    opened: list[Provider] = []

    def _open(spec: ProviderSpec, settings: Settings) -> Provider:
        provider = spec.factory(settings)
        opened.append(provider)
        return provider

    yield _open
    for provider in opened:
        await provider.aclose()


# ---- emulators, preloaded with the fake keys -----------------------------------------------


@pytest_asyncio.fixture
async def hunyuan_emu(sdk_sandbox: None) -> AsyncIterator[HunyuanEmulator]:
    async with HunyuanEmulator(secret_id=TENCENT_ID, secret_key=TENCENT_KEY) as emu:
        yield emu


@pytest_asyncio.fixture
async def openai_emu(sdk_sandbox: None) -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(api_key=OPENAI_KEY) as emu:
        yield emu


@pytest_asyncio.fixture
async def doubao_emu(sdk_sandbox: None) -> AsyncIterator[DoubaoEmulator]:
    async with DoubaoEmulator(api_key=DOUBAO_KEY) as emu:
        yield emu


@pytest_asyncio.fixture
async def modelscope_emu(sdk_sandbox: None) -> AsyncIterator[ModelScopeEmulator]:
    async with ModelScopeEmulator(api_key=MODELSCOPE_KEY) as emu:
        yield emu


@pytest_asyncio.fixture
async def closed_port() -> int:
    """A loopback port nothing listens on (an emulator that was started and stopped)."""
    async with OpenAIEmulator() as emu:
        port = emu.port
    return port


class Progress:
    """A ``ProgressFn`` that remembers what it was told."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def progress() -> Progress:
    return Progress()


SecretCheck = Callable[[BaseException | None], None]


@pytest.fixture
def assert_secret_free(sdk_sandbox: None, caplog: pytest.LogCaptureFixture) -> SecretCheck:
    """No fake key may appear in the error (if any), its cause chain, its details or any log record."""

    def _check(exc: BaseException | None) -> None:
        texts = [caplog.text, *(record.getMessage() for record in caplog.records)]
        seen: BaseException | None = exc
        while seen is not None:  # the whole chain: logger.exception() would print every link
            texts += [str(seen), repr(seen), *map(str, seen.args)]
            if isinstance(seen, ImageServerError):
                texts.append(json.dumps(seen.to_dict(), default=str))
            seen = seen.__cause__ or seen.__context__
        for secret in ALL_SECRETS:
            for text in texts:
                assert secret not in text

    return _check


@pytest.fixture
def imports_after() -> Callable[[str], set[str]]:
    """Top-level packages a fresh interpreter holds after ``import module``."""

    def _run(module: str) -> set[str]:
        code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            timeout=30,
        )
        return set(out.stdout.split())

    return _run
