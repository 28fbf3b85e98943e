"""Fixtures of the OAuth suite: a real OpenID provider (oidc-provider on loopback) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .oidc import OIDCProvider


@pytest.fixture
def oidc(tmp_path: Path) -> Iterator[OIDCProvider]:
    """A started ``OIDCProvider`` of this test's own (log: ``tmp_path/oidc.log``), stopped afterwards."""
    provider = OIDCProvider(tmp_path)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
