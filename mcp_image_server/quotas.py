"""Per-token limits, counted before any provider is called: requests a minute, images a day,
concurrent jobs and a monthly USD budget.

Each limit is a counter in a ledger (this process, or Redis with ``MCP_STATE_URL`` so the limits
hold across replicas). A generation reserves every counter it needs in one atomic step, all or
nothing, so a refused call changes no counter; the job carries what it reserved and gives back,
when it ends, whatever it did not use (failed and cancelled jobs cost nothing).
"""

from __future__ import annotations

import asyncio
import calendar
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from .errors import BudgetExceededError, ForbiddenError, ProviderNotAllowedError, QuotaExceededError
from .tenants import Caller

__all__ = ["Charge", "Ledger", "MemoryLedger", "Quotas", "require_admin"]

_EPS: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Charge:
    key: str
    amount: float
    limit: float
    ttl: int
    """Seconds the counter lives after its first charge (its window, plus slack)."""


class Ledger(Protocol):
    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, float] | None:
        """Add every charge, or none: ``(index, used)`` of the first that would pass its limit."""

    async def release(self, amounts: Sequence[tuple[str, float]]) -> None:
        """Give amounts back (a negative amount charges more); a counter never goes below 0."""


class MemoryLedger:
    """The ledger of a single process (``MCP_STATE_URL=memory://``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[float, float]] = {}
        """key -> (value, expires_at)."""

    def _value(self, key: str, now: float) -> float:
        value, expires = self._counts.get(key, (0.0, math.inf))
        if now >= expires:
            del self._counts[key]
            return 0.0
        return value

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, float] | None:
        now = self._clock()
        for index, c in enumerate(charges):
            used = self._value(c.key, now)
            if used + c.amount > c.limit + _EPS:
                return index, used
        for c in charges:
            value, expires = self._counts.get(c.key, (0.0, now + c.ttl))
            self._counts[c.key] = (value + c.amount, expires)
        if len(self._counts) > 10_000:
            for key in [k for k, (_, e) in self._counts.items() if now >= e]:
                del self._counts[key]
        return None

    async def release(self, amounts: Sequence[tuple[str, float]]) -> None:
        now = self._clock()
        for key, amount in amounts:
            if key in self._counts and self._value(key, now) >= 0:
                value, expires = self._counts[key]
                self._counts[key] = (max(0.0, value - amount), expires)


def require_admin(caller: Caller, what: str) -> None:
    """Raises: ForbiddenError for a ``user`` token."""
    if not caller.is_admin:
        why = "an access token without the admin scope (MCP_OAUTH_ADMIN_SCOPE)" if caller.oauth else (
            "role 'user' (MCP_TOKENS_FILE)")
        raise ForbiddenError(
            f"{what} needs an admin token; {caller.name!r} has {why}",
            details={"role": caller.role, "needed": "admin"},
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Quotas:
    """Turns a caller's limits into ledger charges and refusals with ``limit``, ``used``, ``resets_at``."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self._clock = clock

    def check_provider(self, caller: Caller, provider: str) -> None:
        """Raises: ProviderNotAllowedError."""
        allowed = caller.limits.providers
        if allowed is not None and provider not in allowed:
            raise ProviderNotAllowedError(
                f"token {caller.name!r} may not use provider {provider!r}; it may use: {', '.join(sorted(allowed))}",
                details={"provider": provider, "allowed": sorted(allowed)},
            )

    async def admit_request(self, caller: Caller) -> float | None:
        """Count one HTTP request against ``requests_per_minute``; seconds to wait when refused."""
        limit = caller.limits.requests_per_minute
        if limit is None:
            return None
        now = self._clock()
        minute = int(now // 60)
        refused = await self.ledger.reserve([Charge(f"rpm:{caller.owner}:{minute}", 1, limit, 120)])
        return None if refused is None else max(1.0, math.ceil((minute + 1) * 60 - now))

    async def reserve(self, caller: Caller, images: int, usd: float) -> tuple[tuple[str, float], ...]:
        """Reserve a job's slot, images and estimated cost; returns what to give back at the end.

        Raises:
            QuotaExceededError, BudgetExceededError, StateUnavailableError.
        """
        limits, now = caller.limits, self._clock()
        day = datetime.fromtimestamp(now, UTC)
        next_day = calendar.timegm(day.replace(hour=0, minute=0, second=0, microsecond=0).timetuple()) + 86400
        month_start = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = calendar.timegm(
            (month_start.replace(year=day.year + 1, month=1) if day.month == 12
             else month_start.replace(month=day.month + 1)).timetuple()
        )
        charges: list[tuple[Charge, str, float | None]] = []
        if limits.max_concurrent_jobs is not None:
            charges.append((Charge(f"active:{caller.owner}", 1, limits.max_concurrent_jobs, 86400),
                            "max_concurrent_jobs", None))
        if limits.images_per_day is not None:
            charges.append((Charge(f"images:{caller.owner}:{day:%Y%m%d}", images, limits.images_per_day, 2 * 86400),
                            "images_per_day", next_day))
        if limits.monthly_budget_usd is not None:
            charges.append((Charge(f"usd:{caller.owner}:{day:%Y%m}", usd, limits.monthly_budget_usd, 32 * 86400),
                            "monthly_budget_usd", next_month))
        if not charges:
            return ()
        refused = await self.ledger.reserve([c for c, _, _ in charges])
        if refused is not None:
            charge, name, resets = charges[refused[0]]
            used = round(refused[1], 6)
            details = {"limit_name": name, "limit": charge.limit, "used": used, "requested": round(charge.amount, 6),
                       "resets_at": _iso(resets) if resets is not None else None}
            if resets is not None:
                details["retry_after"] = max(1, int(resets - now))
            if name == "monthly_budget_usd":
                raise BudgetExceededError(
                    f"token {caller.name!r} has used USD {used:.4f} of its monthly budget of {charge.limit:.2f}; "
                    f"this call would cost about USD {charge.amount:.4f} (resets {details['resets_at']})",
                    details=details,
                )
            what = "concurrent generations" if resets is None else "images today"
            raise QuotaExceededError(
                f"token {caller.name!r} is at {used:g} of {charge.limit:g} {what} ({name}); "
                + ("wait for one to finish" if resets is None else f"resets {details['resets_at']}"),
                details=details,
            )
        return tuple((c.key, c.amount) for c, _, _ in charges)

    async def settle(self, reserved: Sequence[tuple[str, float]], images: int, usd: float) -> None:
        """Give back the slot and what a finished job did not use (``images``/``usd``: what it made)."""
        back = []
        for key, amount in reserved:
            kind = key.split(":", 1)[0]
            used = {"active": 0.0, "images": float(images), "usd": usd}.get(kind, amount)
            if abs(amount - used) > _EPS:
                back.append((key, amount - used))
        if back:
            await self.ledger.release(back)


async def settle_quietly(quotas: Quotas, reserved: Sequence[tuple[str, float]], images: int, usd: float,
                         log: Callable[[str], None]) -> None:
    """``settle`` that logs instead of raising (it runs when a job ends, nobody to tell)."""
    try:
        async with asyncio.timeout(10):
            await quotas.settle(reserved, images, usd)
    except Exception as exc:  # noqa: BLE001 - a lost refund must not break the job's end
        log(f"could not give back a job's reserved quota ({type(exc).__name__}); counters heal when they expire")
