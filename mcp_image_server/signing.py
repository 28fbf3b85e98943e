"""Signed image URLs (``MCP_IMAGE_URL_MODE=signed``): ``/images/<file>?exp=<unix s>&sig=<mac>``.

``mac`` is HMAC-SHA256 over ``"<file name>\\n<exp>"`` with ``MCP_URL_SIGNING_KEY``, in unpadded
base64url (43 characters). ``exp`` is an integer Unix time; a URL is good while the clock is
below it. Without a configured key each start makes a random one: URLs then die on restart, and
replicas can only check each other's URLs when they share a key. The key never leaves this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Final

from .config import Settings
from .errors import ForbiddenError

__all__ = ["UrlSigner"]

logger = logging.getLogger(__name__)

_MAX_EXP_DIGITS: Final = 12
"""``exp`` longer than this is not a Unix time we could have written (and not worth parsing)."""


class UrlSigner:
    """Signs image file names with an expiry and checks them in constant time."""

    __slots__ = ("_clock", "_key")

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError(f"key must be >= 16 bytes, got {len(key)}")
        self._key = key
        self._clock = clock

    def __repr__(self) -> str:
        return "UrlSigner(key=***)"

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> UrlSigner:
        """The signer ``MCP_URL_SIGNING_KEY`` names, or one with a random key (said in the log in signed mode)."""
        if settings.url_signing_key is not None:
            key = settings.url_signing_key.get().encode()
        else:
            key = secrets.token_bytes(32)
            if settings.image_url_mode == "signed":
                logger.warning(
                    "MCP_IMAGE_URL_MODE=signed without MCP_URL_SIGNING_KEY: image URLs are signed with a random key "
                    "made at this start, so they stop working when the server restarts, and replicas cannot check "
                    "each other's URLs; set the same MCP_URL_SIGNING_KEY on every replica"
                )
        return cls(key, clock=clock)

    def _mac(self, file_name: str, exp: str) -> bytes:
        digest = hmac.new(self._key, f"{file_name}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def query(self, file_name: str, ttl: float) -> str:
        """The query string (``exp=...&sig=...``) that makes ``/images/<file_name>`` good for ``ttl`` s."""
        exp = str(math.ceil(self._clock() + ttl))
        return f"exp={exp}&sig={self._mac(file_name, exp).decode()}"

    def verify(self, file_name: str, exp: str | None, sig: str | None) -> float:
        """Seconds the URL stays good.

        Raises:
            ForbiddenError: ``exp`` or ``sig`` missing or malformed, the signature wrong, or expired
                (``details.reason``: ``missing``, ``invalid`` or ``expired``; never the key).
        """
        if not exp or not sig:
            raise ForbiddenError(
                "this image URL needs a signature (exp and sig); ask the server for a fresh URL",
                details={"reason": "missing"},
            )
        expected = self._mac(file_name, exp)
        # Compare before looking at exp, bytes to bytes: compare_digest refuses non-ASCII str.
        good = hmac.compare_digest(expected, sig.encode("utf-8", "replace"))
        if not good or not (exp.isascii() and exp.isdigit() and len(exp) <= _MAX_EXP_DIGITS):
            raise ForbiddenError("the signature of this image URL does not match", details={"reason": "invalid"})
        left = int(exp) - self._clock()
        if left <= 0:
            raise ForbiddenError(
                "this image URL has expired (MCP_IMAGE_URL_TTL); ask the server for a fresh URL",
                details={"reason": "expired"},
            )
        return left
