"""OAuth 2.1 resource server: JWT access tokens from ``MCP_OAUTH_ISSUER``, checked against its keys.

The issuer's metadata (RFC 8414, else OpenID discovery) names its JWKS; keys are cached and
re-read every hour, and at once when a token names a key not in the cache, at most a few
times a minute, so a flood of made-up ``kid`` values costs the issuer little. A token is
accepted only after its signature, ``iss``, ``aud``, ``exp`` and ``nbf`` check out; while the
keys cannot be fetched, a token that needs them gets ``IssuerUnavailableError`` (503), never a
pass. PyJWT is imported when the first verifier is built: stdio servers never pay for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .config import Settings
from .errors import InvalidTokenError, IssuerUnavailableError

__all__ = ["ALGORITHMS", "OAuthConfig", "Verified", "Verifier", "grants", "looks_like_jwt"]

logger = logging.getLogger(__name__)

ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric only: ``none`` and HMAC (which would let the public key sign) are refused."""
LEEWAY: Final = 60.0
"""Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
KEYS_MAX_AGE: Final = 3600.0
FETCH_TIMEOUT: Final = 10.0
MAX_DOCUMENT_BYTES: Final = 1 << 20
MAX_TOKEN_CHARS: Final = 16384
UNKNOWN_KID_BURST: Final = 3
UNKNOWN_KID_EVERY: Final = 10.0
"""Refreshes for unknown keys: a burst of 3, then one per 10 s."""
CACHE_SIZE: Final = 4096
_RETRY_MAX: Final = 60.0
_KEY_TYPES: Final = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: the shape of a JWS compact token (a static token never has dots)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2]) and len(token) <= MAX_TOKEN_CHARS


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    issuer: str
    audiences: tuple[str, ...]
    """MCP_OAUTH_AUDIENCE; empty: this server's canonical resource URLs (RFC 8707), known once bound."""
    scope: str
    admin_scope: str
    name_claim: str

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthConfig | None:
        if settings.oauth_issuer is None:
            return None
        return cls(settings.oauth_issuer, settings.oauth_audience, settings.oauth_scope,
                   settings.oauth_admin_scope, settings.oauth_name_claim)


def grants(scopes: frozenset[str], wanted: str) -> bool:
    """``wanted`` is among ``scopes``, also in Entra's form: ``api://<app>/images`` is granted as ``images``."""
    return wanted in scopes or any(wanted.endswith("/" + scope) for scope in scopes)


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified access token says: who, with which scopes, until when."""

    name: str
    scopes: frozenset[str]
    expires: float
    kid: str


class _Bucket:
    def __init__(self, burst: int, every: float, clock: Callable[[], float]) -> None:
        self._burst, self._every, self._clock = burst, every, clock
        self._level, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._level = min(self._burst, self._level + (now - self._at) / self._every)
        self._at = now
        if self._level < 1:
            return False
        self._level -= 1
        return True


def _is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class Verifier:
    """Verifies access tokens for one issuer; ``start()`` it on the serving loop, ``aclose()`` after."""

    def __init__(self, config: OAuthConfig, default_audiences: Callable[[], frozenset[str]], *,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        import jwt  # noqa: F401  (fails here, at start-up, if PyJWT or cryptography is missing)

        self.config = config
        fixed = frozenset(config.audiences)
        self._audiences: Callable[[], frozenset[str]] = (lambda: fixed) if fixed else default_audiences
        self._clock = clock
        self._monotonic = monotonic
        self._keys: dict[str, dict[str, Any]] | None = None
        self._loaded_at = 0.0
        self._jwks_uri: str | None = None
        self._issuer_claim = config.issuer
        self._inflight: asyncio.Future[None] | None = None
        self._bucket = _Bucket(UNKNOWN_KID_BURST, UNKNOWN_KID_EVERY, monotonic)
        self._cache: OrderedDict[bytes, Verified] = OrderedDict()
        self._session: Any = None
        self._keeper: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Start the task that loads the keys and keeps them fresh (start-up never waits on the issuer)."""
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT), headers={"Accept": "application/json"}
        )
        self._keeper = asyncio.create_task(self._keep_fresh(), name="oauth-keys")

    @property
    def status(self) -> dict[str, Any]:
        """For /health: the issuer and whether its keys are loaded (nothing secret)."""
        return {"issuer": self.config.issuer, "keys": len(self._keys) if self._keys is not None else "unavailable"}

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _keep_fresh(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._refresh()
                delay = 1.0
                await asyncio.sleep(max(1.0, KEYS_MAX_AGE - (self._monotonic() - self._loaded_at)))
            except IssuerUnavailableError:
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)

    # --- keys ---

    async def _refresh(self) -> None:
        """Fetch metadata (once) and keys; concurrent callers share one fetch."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._load())
            # Read by whoever awaits it; this keeps one whose awaiters all left from being "never retrieved".
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.shield(self._inflight)

    async def _load(self) -> None:
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            keys = _signing_keys(await self._get_json(self._jwks_uri) or {})
        except IssuerUnavailableError as exc:
            level = logging.INFO if self._failing else logging.WARNING
            logger.log(level, "OAuth issuer %s: %s; requests with an access token get 503 until it answers",
                       self.config.issuer, exc.message)
            self._failing = True
            raise
        if self._failing:
            logger.warning("OAuth issuer %s answers again: %d signing key(s)", self.config.issuer, len(keys))
        elif self._keys is None:
            audiences = ", ".join(sorted(self._audiences())) or "this server's /mcp URL"
            logger.info("OAuth: accepting access tokens from %s (audience %s, scope %r, admin scope %r)",
                        self.config.issuer, audiences, self.config.scope, self.config.admin_scope)
        self._failing = False
        dropped = set(self._keys or ()) - set(keys)
        self._keys, self._loaded_at = keys, self._monotonic()
        if dropped:
            for digest in [d for d, v in self._cache.items() if v.kid in dropped]:
                del self._cache[digest]
            logger.info("OAuth: the issuer no longer publishes key(s) %s", ", ".join(sorted(dropped)))

    async def _discover(self) -> str:
        """The ``jwks_uri`` of the issuer's metadata; its ``issuer`` must be ours (RFC 8414 section 3.3)."""
        issuer = self.config.issuer
        parts = urlsplit(issuer)
        origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        candidates = [f"{origin}/.well-known/oauth-authorization-server{path}",
                      f"{origin}/.well-known/openid-configuration{path}"]
        if path:
            candidates.append(f"{origin}{path}/.well-known/openid-configuration")
        for url in candidates:
            meta = await self._get_json(url, missing_ok=True)
            if meta is None:
                continue
            named = meta.get("issuer")
            if not isinstance(named, str) or named.rstrip("/") != issuer.rstrip("/"):
                raise IssuerUnavailableError(f"the metadata at {url} names issuer {str(named)[:200]!r}, not {issuer}")
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("https", "http") or (
                urlsplit(jwks_uri).scheme == "http" and not _is_loopback_url(jwks_uri)
            ):
                raise IssuerUnavailableError(f"the metadata at {url} has no usable https jwks_uri")
            self._issuer_claim = named
            return jwks_uri
        raise IssuerUnavailableError("no authorization server metadata (RFC 8414) or OpenID configuration found")

    async def _get_json(self, url: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        import aiohttp

        try:
            async with self._session.get(url, allow_redirects=True, max_redirects=3) as response:
                if missing_ok and response.status in (404, 405, 410):
                    return None
                if response.status != 200:
                    raise IssuerUnavailableError(f"GET {url} answered HTTP {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise IssuerUnavailableError(f"GET {url} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise IssuerUnavailableError(f"GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise IssuerUnavailableError(f"GET {url}: not JSON") from None
        if not isinstance(document, dict):
            raise IssuerUnavailableError(f"GET {url}: not a JSON object")
        return document

    async def _key(self, kid: str | None) -> dict[str, Any]:
        if self._keys is None:
            await self._refresh()  # raises IssuerUnavailableError
        assert self._keys is not None
        if self._monotonic() - self._loaded_at > KEYS_MAX_AGE:
            await self._refresh()
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise InvalidTokenError("the access token names no key (kid) and the issuer publishes several")
        if kid not in self._keys and self._bucket.take():
            await self._refresh()  # a rotation at the issuer shows up as a new kid
        found = self._keys.get(kid)
        if found is None:
            raise InvalidTokenError(f"the access token is signed with a key the issuer does not publish "
                                    f"(kid {kid[:64]!r})")
        return found

    # --- tokens ---

    async def verify(self, token: str) -> Verified:
        """Raises: InvalidTokenError (401), IssuerUnavailableError (503)."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now < hit.expires + LEEWAY:
            self._cache.move_to_end(digest)
            return hit
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("the access token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            shown = str(alg)[:20]
            why = "an unsigned token" if str(alg).lower() == "none" else (
                "an HMAC algorithm" if str(alg).upper().startswith("HS") else "not an accepted algorithm")
            raise InvalidTokenError(f"alg {shown!r} is refused ({why}): access tokens must be signed with the "
                                    f"issuer's public keys ({', '.join(sorted(ALGORITHMS))})")
        if kid is not None and not isinstance(kid, str):
            raise InvalidTokenError("the access token's kid is not a string")
        jwk = await self._key(kid)
        key = _public_key(jwk, alg)
        claims = _decode(token, key, alg, sorted(self._audiences()), self._issuer_claim)
        name = claims.get(self.config.name_claim)
        if not isinstance(name, str) or not name.strip() or len(name) > 256 or not name.isprintable():
            raise InvalidTokenError(f"the access token has no usable {self.config.name_claim!r} claim "
                                    f"(MCP_OAUTH_NAME_CLAIM) to name its caller")
        verified = Verified(name.strip(), _scopes(claims), float(claims["exp"]), str(jwk.get("kid", "")))
        self._cache[digest] = verified
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return verified


def _signing_keys(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The JWKS's asymmetric signing keys by ``kid`` (a symmetric ``oct`` key is never used)."""
    raw = document.get("keys")
    if not isinstance(raw, list):
        raise IssuerUnavailableError("the JWKS has no 'keys' list")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in raw:
        if not isinstance(jwk, dict) or jwk.get("kty") not in _KEY_TYPES or jwk.get("use", "sig") != "sig":
            continue
        keys[str(jwk.get("kid", ""))] = jwk
    if not keys:
        raise IssuerUnavailableError("the JWKS has no RSA, EC or OKP signing key")
    return keys


def _public_key(jwk: Mapping[str, Any], alg: str) -> Any:
    import jwt

    if jwk.get("alg") not in (None, alg):
        raise InvalidTokenError(f"the access token's alg {alg!r} is not its key's ({str(jwk['alg'])!r})")
    if not alg.startswith(_KEY_TYPES[jwk["kty"]]):
        raise InvalidTokenError(f"the access token's alg {alg!r} does not fit its {jwk['kty']} key")
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        raise InvalidTokenError(f"the issuer's key {str(jwk.get('kid', ''))[:64]!r} cannot "
                                f"verify {alg}") from None


def _decode(token: str, key: Any, alg: str, audiences: list[str], issuer: str) -> dict[str, Any]:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[alg], audience=audiences, issuer=issuer, leeway=LEEWAY,
            options={"require": ["exp", "iss", "aud"], "verify_signature": True},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("the access token has expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidTokenError("the access token is not valid yet (nbf or iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise InvalidTokenError(f"the access token is for another audience; this server accepts "
                                f"{', '.join(audiences)}") from None
    except jwt.InvalidIssuerError:
        raise InvalidTokenError(f"the access token was issued by another issuer; this server accepts {issuer}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidTokenError(f"the access token has no {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise InvalidTokenError("the access token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"the access token does not verify ({type(exc).__name__})") from None
    if not isinstance(claims.get("exp"), int | float):
        raise InvalidTokenError("the access token's exp is not a number")
    return claims


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (RFC 9068: a space-separated string) or ``scp`` (Entra: a string; Okta: a list)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)
