"""Frozen value types shared by every layer (no behaviour beyond self-checks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "EXTENSIONS",
    "MIME_TYPES",
    "GenerateOutcome",
    "GenerateParams",
    "GeneratedImage",
    "GenerationRequest",
    "ImageFormat",
    "ImageRecord",
    "InputImage",
    "ProgressFn",
    "ProviderCatalog",
    "ProviderResult",
    "StyleInfo",
]

ImageFormat = Literal["png", "jpeg", "webp"]

MIME_TYPES: Final[Mapping[str, str]] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
"""Output format -> MIME type."""

EXTENSIONS: Final[Mapping[str, str]] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
"""MIME type -> file extension used by the store."""

ProgressFn = Callable[[str], Awaitable[None]]
"""Providers call this with a short human-readable status ("submitted job 123", "running 40 s")."""


@dataclass(frozen=True, slots=True)
class StyleInfo:
    """One style of a provider; ``prompt_modifier`` is set when the vendor has no style parameter."""

    code: str
    label: str
    prompt_modifier: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderCatalog:
    """What a provider accepts: static data, importable without the vendor SDK."""

    name: str
    display_name: str
    description: str
    models: tuple[str, ...]
    styles: tuple[StyleInfo, ...]
    resolutions: tuple[str, ...]
    """Preset sizes as canonical ``WxH`` (or ``auto``)."""
    default_resolution: str
    formats: tuple[ImageFormat, ...]
    max_n: int = 4
    max_prompt_chars: int = 4000
    size_range: tuple[int, int] | None = None
    """When set, any ``WxH`` with both sides in this range is accepted, not only the presets."""
    size_multiple: int = 1
    default_style: str | None = None
    supports_negative_prompt: bool = True
    supports_seed: bool = True
    options: tuple[str, ...] = ()
    """Provider-only options (e.g. OpenAI ``quality``) this provider accepts."""
    resolution_separator: str = "x"
    """How the vendor writes sizes (Hunyuan uses ``W:H``); for display only."""
    notes: str = ""
    max_input_images: int = 0
    """Most images ``edit_image`` may give this provider (0: it cannot edit)."""
    supports_mask: bool = False
    """Whether an edit may carry a mask (transparent pixels mark what to change)."""
    edit_notes: str = ""
    """How this provider edits (its endpoint or model), shown in the catalog."""
    edit_resolutions: tuple[str, ...] = ()
    """Sizes an edit may ask for when they differ from ``resolutions`` (Hunyuan's image input)."""
    quality_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Neutral quality (low, medium, high) -> vendor options; empty with a ``quality`` option: passed as is."""

    def __post_init__(self) -> None:
        if not self.styles and self.default_style is not None:
            raise ValueError(f"{self.name}: default_style set but no styles")
        if self.default_resolution not in self.resolutions:
            raise ValueError(f"{self.name}: default_resolution {self.default_resolution!r} not in presets")
        if self.max_n < 1:
            raise ValueError(f"{self.name}: max_n must be >= 1, got {self.max_n}")

    def style(self, code: str) -> StyleInfo | None:
        return next((s for s in self.styles if s.code == code), None)


@dataclass(frozen=True, slots=True)
class InputImage:
    """An image to edit or use as a reference: checked and decoded once (``inputs``), PNG, JPEG or WebP."""

    data: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated request for one provider: sizes resolved, style checked against its catalog."""

    prompt: str
    width: int | None
    """``None`` (with height) means the provider picks the size (``auto``)."""
    height: int | None
    style: str | None = None
    negative_prompt: str | None = None
    n: int = 1
    seed: int | None = None
    output_format: ImageFormat = "png"
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    resume: tuple[str, ...] = ()
    """Vendor job ids this request already submitted (a job taken over from a lost replica): the
    provider polls them and submits nothing. Only providers that report ``submitted job <id>`` get one."""
    images: tuple[InputImage, ...] = ()
    """An edit's inputs, the first being the one to change (empty: generate from the prompt)."""
    mask: InputImage | None = None
    """PNG with alpha, the size of ``images[0]``: its transparent pixels mark what to change."""

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("prompt must not be empty")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height must both be set or both be None")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.mask is not None and not self.images:
            raise ValueError("a mask needs an image to apply to")

    @property
    def resolution(self) -> str:
        return "auto" if self.width is None else f"{self.width}x{self.height}"

    @property
    def is_edit(self) -> bool:
        return bool(self.images)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """Encoded bytes from a provider, before they are stored."""

    data: bytes
    mime_type: str
    width: int
    height: int
    seed: int | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    images: tuple[GeneratedImage, ...]
    model: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A stored image; persisted as a JSON sidecar so it survives restarts."""

    image_id: str
    file_name: str
    provider: str
    model: str
    style: str | None
    resolution: str
    width: int
    height: int
    mime_type: str
    size_bytes: int
    prompt: str
    revised_prompt: str | None
    seed: int | None
    created_at: float
    """Wall-clock seconds (UNIX time)."""
    expires_at: float
    """Wall-clock seconds after which ``get_image_data`` reports ``image_expired``."""
    owner: str = ""
    """Who made it (tenants.py ``Caller.owner``); ``""`` in records written before owners: admins only."""
    cost_usd: float | None = None
    """The catalog's price of this image (prices.py), ``None`` when no row matched."""
    output_path: str | None = None
    """The copy written where the call asked (``output_dir``/``filename``, stdio), if any."""

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageRecord:
        optional = {"owner": "", "cost_usd": None, "output_path": None}
        return cls(**{f: data[f] if f not in optional else data.get(f, optional[f]) for f in cls.__slots__})


@dataclass(frozen=True, slots=True)
class GenerateParams:
    """``generate_image`` arguments as the caller gave them (before provider resolution)."""

    prompt: str
    provider: str | None = None
    style: str | None = None
    resolution: str | None = None
    negative_prompt: str | None = None
    n: int = 1
    seed: int | None = None
    output_format: ImageFormat = "png"
    file_prefix: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Provider-only options (OpenAI's quality, background...); ``None`` values mean unset."""
    aspect_ratio: str | None = None
    """Provider-neutral shape (``16:9``...), mapped to the nearest size the provider offers."""
    quality: str | None = None
    """Provider-neutral ``low`` | ``medium`` | ``high``, mapped per provider."""
    images: tuple[str, ...] = ()
    """An edit's inputs, as names in the image store's input area (``inputs.py``); empty: generate."""
    mask: str | None = None
    output: str | None = None
    """stdio: where a copy of each image goes, ``<folder>/<stem>`` checked by ``outputs.plan``."""
    overwrite: bool = False


@dataclass(frozen=True, slots=True)
class GenerateOutcome:
    records: tuple[ImageRecord, ...]
    provider: str
    model: str
    warnings: tuple[str, ...] = ()
