"""Images given to ``edit_image``: each reference turned into checked bytes.

A reference is one of: an image id or ``images://{id}`` from our store (owner rules apply); a
``data:image/...;base64,`` URI or plain base64; a file path (stdio only, inside the allowed
folders, symlinks resolved first); an ``https://`` URL (only with MCP_ALLOW_URL_INPUTS=1, fetched
by ``fetch``). Every input is sniffed and decoded once here, so a provider only ever sees a
PNG, JPEG or WebP whose pixels were counted before they were decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import (
    ImageTooLargeError,
    InvalidImageError,
    MaskMismatchError,
    PathNotAllowedError,
    UrlNotAllowedError,
)
from .imaging import sniff
from .models import InputImage

__all__ = ["INPUT_PREFIX", "MAX_INPUT_PIXELS", "Sources", "check_mask", "decode", "input_kind", "input_name",
           "input_size"]

INPUT_PREFIX: Final = ".inputs/"
"""Where an edit's inputs wait in the image store for the job (on any replica) that runs it."""
_EXT: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_NAME_RE: Final = re.compile(r"^([0-9a-f]{32})-(\d+)x(\d+)\.(png|jpg|webp)$")

MAX_INPUT_PIXELS: Final = 50_000_000
"""Above every vendor's input limit; a decompression bomb stops here, before its pixels exist."""
_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_DATA_RE: Final = re.compile(r"^data:(image/[a-z0-9.+-]+)?(;[^,]*)?,", re.IGNORECASE)
_B64_RE: Final = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")


def input_name(image: InputImage) -> str:
    """A content address that also says the size and type: ``<sha256/128>-<W>x<H>.<ext>``."""
    import hashlib

    digest = hashlib.sha256(image.data).hexdigest()[:32]
    return f"{digest}-{image.width}x{image.height}.{_EXT[image.mime_type]}"


def input_size(name: str) -> tuple[int, int, str]:
    """``(width, height, mime)`` from an ``input_name``.

    Raises:
        ValueError: not such a name.
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(name)
    mime = next(k for k, v in _EXT.items() if v == m.group(4))
    return int(m.group(2)), int(m.group(3)), mime


def input_kind(ref: str) -> str:
    """``id``, ``data``, ``base64``, ``url`` or ``path``: how ``ref`` is read."""
    text = ref.strip()
    if text.startswith("images://") or _ID_RE.match(text):
        return "id"
    if text[:5].lower() == "data:":
        return "data"
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        return "url"
    if len(text) >= 64 and _B64_RE.match(text) and "/" not in text[:1]:
        return "base64"
    return "path"


def decode(data: bytes, field: str, max_bytes: int) -> InputImage:
    """Sniff, count pixels, then decode fully (a truncated file fails here, not at the vendor).
    Blocking: run off the event loop.

    Raises:
        InvalidImageError, ImageTooLargeError.
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"{field} is {len(data)} bytes, over the {max_bytes}-byte limit (MCP_MAX_INPUT_IMAGE_BYTES)",
            details={"field": field, "size_bytes": len(data), "max_bytes": max_bytes},
        )
    mime = sniff(data)
    if mime is None:
        raise InvalidImageError(
            f"{field} is not a PNG, JPEG or WebP image", details={"field": field, "accepted": ["png", "jpeg", "webp"]}
        )
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_INPUT_PIXELS:
                raise InvalidImageError(
                    f"{field} is {width}x{height} pixels, over the {MAX_INPUT_PIXELS}-pixel limit",
                    details={"field": field, "width": width, "height": height, "max_pixels": MAX_INPUT_PIXELS},
                )
            img.load()
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImageError(
            f"{field} could not be decoded as {mime.split('/')[1].upper()}: {str(exc)[:120]}",
            details={"field": field},
        ) from None
    return InputImage(data, mime, width, height)


def check_mask(mask: InputImage, first: InputImage) -> None:
    """A mask is a PNG with an alpha channel, the size of the image it applies to. Blocking.

    Raises:
        MaskMismatchError.
    """
    if mask.mime_type != "image/png":
        raise MaskMismatchError("mask must be a PNG with an alpha channel", details={"field": "mask"})
    if (mask.width, mask.height) != (first.width, first.height):
        raise MaskMismatchError(
            f"mask is {mask.width}x{mask.height} but images[0] is {first.width}x{first.height}; they must match",
            details={"field": "mask", "mask": f"{mask.width}x{mask.height}", "image": f"{first.width}x{first.height}"},
        )
    from PIL import Image

    with Image.open(io.BytesIO(mask.data)) as img:
        if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
            raise MaskMismatchError(
                "mask has no alpha channel: make the area to change transparent (RGBA PNG)", details={"field": "mask"}
            )


def _data_uri(ref: str, field: str) -> bytes:
    m = _DATA_RE.match(ref)
    if m is None or not (m.group(2) or "").lower().endswith(";base64"):
        raise InvalidImageError(
            f"{field} is a data URI but not data:image/...;base64,...", details={"field": field}
        )
    return _b64(ref[m.end():], field)


def _b64(text: str, field: str) -> bytes:
    compact = re.sub(r"\s+", "", text)
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"{field} is not valid base64", details={"field": field}) from None


@dataclass(frozen=True, slots=True)
class Sources:
    """Where one call may read its inputs from, and how."""

    stored: Callable[[str], Awaitable[bytes]]
    """An image id -> its bytes (the caller's own image; owner rules applied). Raises ImageNotFoundError."""
    folders: Sequence[Path] | None
    """Folders a file path must resolve inside (the client's roots, or the save folder); ``None``:
    file paths are refused (HTTP)."""
    fetch: Callable[[str, str], Awaitable[bytes]] | None
    """Fetches an https URL safely for a field (``fetch.fetch_image``); ``None``: URL inputs are off."""
    max_bytes: int

    async def read(self, ref: str, field: str) -> bytes:
        """The raw bytes ``ref`` names (decoded by ``decode`` afterwards).

        Raises:
            InvalidImageError, ImageNotFoundError, ImageTooLargeError, PathNotAllowedError,
            UrlNotAllowedError, InputFetchFailedError.
        """
        text = ref.strip()
        kind = input_kind(text)
        if kind == "id":
            return await self.stored(text.removeprefix("images://"))
        if kind == "data":
            return _data_uri(text, field)
        if kind == "base64":
            return _b64(text, field)
        if kind == "url":
            if self.fetch is None:
                raise UrlNotAllowedError(
                    f"{field} is a URL, and URL inputs are off (set MCP_ALLOW_URL_INPUTS=1 to allow https URLs)",
                    details={"field": field, "reason": "url_inputs_disabled"},
                )
            return await self.fetch(text, field)
        return await self._read_path(text, field)

    async def _read_path(self, text: str, field: str) -> bytes:
        import asyncio

        if self.folders is None:
            raise PathNotAllowedError(
                f"{field} looks like a file path; over HTTP give an image id, a data: URI or base64 instead",
                details={"field": field, "reason": "http"},
            )
        return await asyncio.to_thread(_read_inside, text, field, tuple(self.folders), self.max_bytes)


def _read_inside(text: str, field: str, folders: tuple[Path, ...], max_bytes: int) -> bytes:
    """The file's bytes when its real path (symlinks resolved) is inside one of ``folders``."""
    where = ", ".join(str(f) for f in folders) or "(none)"
    try:
        given = Path(text).expanduser()
        real = (given if given.is_absolute() or not folders else folders[0] / given).resolve(strict=True)
    except (OSError, RuntimeError):
        raise PathNotAllowedError(
            f"{field}: no such file, or not inside the allowed folders ({where})",
            details={"field": field, "reason": "not_found_or_outside", "allowed": [str(f) for f in folders]},
        ) from None
    if not any(real.is_relative_to(folder) for folder in folders):
        # Same words as a missing file: no existence oracle outside the allowed folders.
        raise PathNotAllowedError(
            f"{field}: no such file, or not inside the allowed folders ({where})",
            details={"field": field, "reason": "not_found_or_outside", "allowed": [str(f) for f in folders]},
        )
    if not real.is_file():
        raise PathNotAllowedError(f"{field}: {real} is not a regular file", details={"field": field})
    with real.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"{field} is over the {max_bytes}-byte limit (MCP_MAX_INPUT_IMAGE_BYTES)",
            details={"field": field, "max_bytes": max_bytes},
        )
    return data
