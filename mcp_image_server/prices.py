"""USD price per image by provider, model, size and quality: what budgets reserve and results report.

The built-in table says where each figure came from and when. Vendors change prices and
contracts differ, so ``MCP_PRICES_FILE`` (TOML, ``[[prices]]`` tables with the same keys)
overrides any row; a lookup takes the most specific row (exact model, size, quality beat ``*``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "load_prices_file", "price_of"]


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    model: str
    """A model id or ``*``."""
    size: str
    """``WxH`` or ``*``."""
    quality: str
    """OpenAI's ``low`` / ``medium`` / ``high``, or ``*``."""
    usd: float
    source: str
    date: str

    def specificity(self) -> int:
        return (self.model != "*") * 4 + (self.size != "*") * 2 + (self.quality != "*")

    def matches(self, provider: str, model: str, size: str, quality: str) -> bool:
        return (self.provider == provider and self.model in ("*", model) and self.size in ("*", size)
                and self.quality in ("*", quality))


_OPENAI: Final = "OpenAI API pricing, per-image table of gpt-image-1 (platform.openai.com/docs/pricing)"
_OPENAI_NEXT: Final = ("no published per-image figure for this model recorded here: priced as gpt-image-1; "
                       "set yours in MCP_PRICES_FILE")


def _openai_rows() -> list[Price]:
    table = {"low": (0.011, 0.016), "medium": (0.042, 0.063), "high": (0.167, 0.25)}
    rows = []
    for model, source in (("gpt-image-1", _OPENAI), ("*", _OPENAI_NEXT)):
        for quality, (square, oblong) in table.items():
            rows.append(Price("openai", model, "*", quality, oblong, source, "2025-05-20"))
            rows.append(Price("openai", model, "1024x1024", quality, square, source, "2025-05-20"))
        # quality auto (or unset): the vendor picks; reserve as high so a budget is never overrun.
        rows.append(Price("openai", model, "*", "*", 0.25, source + "; quality auto reserved as high", "2025-05-20"))
    return rows


DEFAULT_PRICES: Final[tuple[Price, ...]] = (
    *_openai_rows(),
    Price("doubao", "*", "*", "*", 0.03,
          "BytePlus ModelArk / Volcengine Ark price of Seedream 4.0 (USD 0.03 per image; CNY 0.2 on Volcengine)",
          "2025-09-10"),
    Price("hunyuan", "*", "*", "*", 0.014,
          "Tencent Cloud Hunyuan image generation, CNY 0.1 per image at about 7.1 CNY/USD: unverified, "
          "set your contract price in MCP_PRICES_FILE", "2025-06-01"),
    Price("modelscope", "*", "*", "*", 0.0,
          "ModelScope API-Inference: free within its daily call quota", "2025-08-20"),
    Price("gemini", "gemini-2.5-flash-image", "*", "*", 0.039,
          "Gemini API pricing (ai.google.dev/gemini-api/docs/pricing): 1290 output tokens per image up to "
          "1024x1024 at USD 30 per 1M tokens", "2025-08-26"),
    Price("gemini", "gemini-3.1-flash-image-preview", "*", "*", 0.067,
          "Gemini API pricing: 1120 output tokens per 1K image (as quoted by third-party mirrors, not checked "
          "against Google here)", "2026-02-26"),
    Price("gemini", "gemini-3-pro-image-preview", "*", "*", 0.134,
          "Gemini API pricing: USD 0.134 per 1K/2K image, 0.24 per 4K (as quoted by third-party mirrors, not "
          "checked against Google here)", "2025-11-20"),
    Price("gemini", "*", "*", "*", 0.134,
          "no per-image figure recorded for this Gemini model: reserved as Gemini 3 Pro Image, the dearest "
          "listed; set yours in MCP_PRICES_FILE", "2026-12-07"),
    Price("local", "*", "*", "*", 0.0, "offline renderer on this machine: no vendor charge", "2026-12-07"),
)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """A parsed ``MCP_PRICES_FILE``: rows that win over the built-in ones."""

    path: Path
    rows: tuple[Price, ...]


def price_of(
    provider: str, model: str, size: str | None, quality: str | None, overrides: PriceTable | None = None
) -> Price | None:
    """The most specific row for one image (an override beats a built-in row just as specific)."""
    size, quality = size or "*", quality or "*"
    best: tuple[int, int, Price] | None = None
    for rank, rows in ((1, overrides.rows if overrides else ()), (0, DEFAULT_PRICES)):
        for row in rows:
            if row.matches(provider, model, size, quality):
                key = (row.specificity(), rank)
                if best is None or key > best[:2]:
                    best = (*key, row)
    return best[2] if best else None


_SIZE_RE: Final = re.compile(r"^(\*|\d{2,5}x\d{2,5})\Z")
_KEYS: Final = frozenset({"provider", "model", "size", "quality", "usd", "source", "date"})


def _row(raw: Any) -> Price:
    from .tomlfile import table_of

    raw = table_of(raw, "prices", _KEYS)
    provider = raw.get("provider")
    if not isinstance(provider, str) or not provider.strip():
        raise ValueError("key 'provider' must name a provider")
    text: dict[str, str] = {}
    for key in ("model", "size", "quality"):
        value = raw.get(key, "*")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"key {key!r} must be a string (or '*')")
        text[key] = value.strip()
    if not _SIZE_RE.match(text["size"]):
        raise ValueError(f"key 'size' must be WxH or '*', got {text['size']!r}")
    usd = raw.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd) or usd < 0:
        raise ValueError(f"key 'usd' must be a number >= 0, got {usd!r}")
    source, date = raw.get("source", "MCP_PRICES_FILE"), raw.get("date", "")
    if not isinstance(source, str) or not isinstance(date, str):
        raise ValueError("keys 'source' and 'date' must be strings")  # noqa: TRY004
    return Price(provider.strip().lower(), text["model"], text["size"], text["quality"].lower(), float(usd),
                 source, date)


def load_prices_file(value: str) -> PriceTable | None:
    """The ``MCP_PRICES_FILE`` cast (``ValueError`` names the file, line and key)."""
    if not value.strip():
        return None  # the usual case, at every start: no TOML parser to import
    from .tomlfile import read_tables

    file = read_tables(value, "prices")
    if file is None:
        return None
    return PriceTable(file.path, tuple(row for _, row in file.parse(_row)))
