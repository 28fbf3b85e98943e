"""Provider registry: built-ins register through the same path as any extra provider."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from .base import Provider, ProviderSpec

__all__ = ["BUILTIN_MODULES", "Provider", "ProviderSpec", "builtin_specs", "registry"]

BUILTIN_MODULES: Final = ("local", "hunyuan", "openai", "gemini", "doubao", "modelscope")
"""Modules under ``mcp_image_server.providers`` exposing ``SPEC``; importing them is cheap (SDKs load lazily)."""


def builtin_specs() -> tuple[ProviderSpec, ...]:
    # Import statements rather than importlib.import_module: -X importtime (benchmarks/startup.py
    # --breakdown) does not see the latter's imports, so their cost would go unreported.
    from . import doubao, gemini, hunyuan, local, modelscope, openai

    modules = {m.__name__.rpartition(".")[2]: m for m in (local, hunyuan, openai, gemini, doubao, modelscope)}
    return tuple(modules[name].SPEC for name in BUILTIN_MODULES)


def registry(extra: Iterable[ProviderSpec] = ()) -> Mapping[str, ProviderSpec]:
    """Name -> spec for the built-ins plus ``extra`` (an extra may replace a built-in, e.g. in tests)."""
    specs = {s.name: s for s in builtin_specs()}
    specs.update({s.name: s for s in extra})
    return specs
