"""Provider registry: built-ins register through the same path as any extra provider."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Final

from .base import Provider, ProviderSpec

__all__ = ["BUILTIN_MODULES", "Provider", "ProviderSpec", "builtin_specs", "registry"]

BUILTIN_MODULES: Final = ("local", "hunyuan", "openai", "gemini", "doubao", "modelscope")
"""Modules under ``mcp_image_server.providers`` exposing ``SPEC``; importing them is cheap (SDKs load lazily)."""


def builtin_specs() -> tuple[ProviderSpec, ...]:
    return tuple(importlib.import_module(f"{__name__}.{m}").SPEC for m in BUILTIN_MODULES)


def registry(extra: Iterable[ProviderSpec] = ()) -> Mapping[str, ProviderSpec]:
    """Name -> spec for the built-ins plus ``extra`` (an extra may replace a built-in, e.g. in tests)."""
    specs = {s.name: s for s in builtin_specs()}
    specs.update({s.name: s for s in extra})
    return specs
