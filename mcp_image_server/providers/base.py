"""The small provider interface and the registry entry that describes a provider.

A provider module exposes ``SPEC: ProviderSpec``. Importing the module must be
cheap: the catalog is plain data and the vendor SDK is imported inside
``SPEC.factory`` (or later), never at module import.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from ..models import GenerationRequest, ProgressFn, ProviderCatalog, ProviderResult

__all__ = ["Provider", "ProviderSpec"]


class Provider(abc.ABC):
    """One image backend. Instances live until ``aclose``; ``generate`` may run concurrently."""

    catalog: ProviderCatalog

    @property
    def name(self) -> str:
        return self.catalog.name

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        """Produce ``request.n`` encoded images.

        Raises:
            ProviderError: a subclass naming what went wrong (auth, rate limit, timeout...).
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release clients and connections."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How the manager learns about a provider without importing its SDK."""

    catalog: ProviderCatalog
    is_configured: Callable[[Settings], bool]
    factory: Callable[[Settings], Provider]
    order: int = 100
    """Rank when picking a default among configured cloud providers (lower first)."""
    credentials_hint: str = ""
    """Which variables enable it, shown when it is requested but not configured."""

    @property
    def name(self) -> str:
        return self.catalog.name
