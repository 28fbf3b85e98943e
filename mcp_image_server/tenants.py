"""Who calls: named tokens from ``MCP_TOKENS_FILE`` with roles and limits, beside ``MCP_AUTH_TOKEN``.

A caller is identified by the SHA-256 of the token it presents; the file stores only that
digest (a plain ``token`` is accepted with a warning). Every job and image belongs to a
caller's ``owner``: ``tenant:<name>`` for a named token, so rotating a token under the same
name keeps its images; ``token:<fingerprint>`` for an ``MCP_AUTH_TOKEN`` token, as before.

An OAuth access token (oauth.py) names its caller by a claim: an entry with that ``subject``
gives it the entry's name, owner and limits (``subject = "*"``: the limits of every OAuth
caller without its own entry); otherwise it owns as ``oauth:<claim value>``. Its role always
comes from its scopes, so the identity provider decides who is an admin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "ANONYMOUS",
    "STDIO",
    "WILDCARD_SUBJECT",
    "Caller",
    "Directory",
    "Limits",
    "TokenEntry",
    "TokenTable",
    "digest_of",
    "load_tokens_file",
    "static_caller",
]

logger = logging.getLogger(__name__)

Role = Literal["admin", "user"]
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
_HEX64_RE: Final = re.compile(r"^[0-9a-fA-F]{64}\Z")
_LIMIT_KEYS: Final = ("requests_per_minute", "images_per_day", "max_concurrent_jobs", "monthly_budget_usd")
_KEYS: Final = frozenset({"name", "token_sha256", "token", "subject", "role", "providers", *_LIMIT_KEYS})
WILDCARD_SUBJECT: Final = "*"


def digest_of(token: str) -> bytes:
    """SHA-256 of the bytes sent (undecodable header bytes arrive as surrogates; encode them back)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Limits:
    """A token's limits; ``None`` is unlimited."""

    requests_per_minute: int | None = None
    images_per_day: int | None = None
    max_concurrent_jobs: int | None = None
    monthly_budget_usd: float | None = None
    providers: frozenset[str] | None = None
    """Provider names the token may use (``None``: any)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request runs as: logged by ``name``, owning what it makes as ``owner``."""

    name: str
    role: Role
    owner: str
    limits: Limits = field(default_factory=Limits)
    oauth: bool = False
    """Authenticated by an OAuth access token: its role comes from its scopes, not from a file."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


STDIO: Final = Caller("stdio", "admin", "stdio:" + secrets.token_hex(8))
"""The one client of a stdio server (its own owner per process, as two IDEs' servers are two clients)."""
ANONYMOUS: Final = Caller("anonymous", "admin", "anonymous")
"""Every caller of an HTTP server without tokens (loopback, or MCP_ALLOW_UNAUTHENTICATED)."""


def static_caller(digest: bytes) -> Caller:
    """An ``MCP_AUTH_TOKEN`` token: an admin, owning as before (a fingerprint of the token)."""
    fp = digest.hex()[:32]
    return Caller(f"token-{fp[:8]}", "admin", f"token:{fp}")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """A static token (``digest``) or an OAuth subject (``subject``, digest ``b""``) and who it is."""

    digest: bytes = field(repr=False)
    caller: Caller
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class TokenTable:
    """A parsed ``MCP_TOKENS_FILE``; equal tables mean nothing changed on reload."""

    path: Path
    entries: tuple[TokenEntry, ...]


def _positive(value: Any, key: str, *, real: bool = False) -> int | float:
    ok = isinstance(value, int | float) if real else isinstance(value, int)
    if isinstance(value, bool) or not ok or value <= 0:
        raise ValueError(f"key {key!r} must be a positive {'number' if real else 'integer'}, got {value!r}")
    return float(value) if real else int(value)


def _entry(raw: Any) -> tuple[TokenEntry, bool]:
    """One ``[[tokens]]`` table; the flag says it held a plain ``token``."""
    from .tomlfile import table_of

    raw = table_of(raw, "tokens", _KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"key 'name' must be 1-64 letters, digits, '_', '.', '@' or '-', got {name!r}")
    if sum(key in raw for key in ("token", "token_sha256", "subject")) != 1:
        raise ValueError("give exactly one of the keys 'token_sha256' (hex SHA-256 of the token), 'token', "
                         "or 'subject' (an OAuth access token's name claim, or \"*\" for every OAuth caller)")
    plain = "token" in raw
    subject = raw.get("subject")
    if subject is not None:
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 256:
            raise ValueError("key 'subject' must be the value of the access token's name claim "
                             "(MCP_OAUTH_NAME_CLAIM), or \"*\"")
        if "role" in raw:
            raise ValueError("key 'role' does not apply to a 'subject' entry: an OAuth caller's role comes from "
                             "its scopes (MCP_OAUTH_ADMIN_SCOPE)")
        digest = b""
    elif plain:
        token = raw["token"]
        if not isinstance(token, str) or len(token.strip()) < 16:
            raise ValueError("key 'token' must be a string of at least 16 characters")
        digest = digest_of(token.strip())
    else:
        hexed = raw["token_sha256"]
        if not isinstance(hexed, str) or not _HEX64_RE.match(hexed):
            raise ValueError("key 'token_sha256' must be 64 hex characters (printf %s TOKEN | sha256sum)")
        digest = bytes.fromhex(hexed)
    role = raw.get("role", "user")
    if role not in ("admin", "user"):
        raise ValueError(f"key 'role' must be 'admin' or 'user', got {role!r}")
    limits: dict[str, Any] = {}
    for key in _LIMIT_KEYS:
        if key in raw:
            limits[key] = _positive(raw[key], key, real=key == "monthly_budget_usd")
    if "providers" in raw:
        providers = raw["providers"]
        if not isinstance(providers, list) or not all(isinstance(p, str) and p.strip() for p in providers):
            raise ValueError("key 'providers' must be a list of provider names")
        limits["providers"] = frozenset(p.strip().lower() for p in providers)
    caller = Caller(name, role, f"tenant:{name}", Limits(**limits), oauth=subject is not None)
    return TokenEntry(digest, caller, subject.strip() if subject is not None else None), plain


def load_tokens_file(value: str) -> TokenTable | None:
    """The ``MCP_TOKENS_FILE`` cast: parse and check the whole file (``ValueError`` names line and key)."""
    if not value.strip():
        return None  # the usual case, at every start: no TOML parser to import
    from .tomlfile import read_tables

    file = read_tables(value, "tokens")
    if file is None:
        return None
    entries: list[TokenEntry] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    subjects: set[str] = set()
    for where, (entry, plain) in file.parse(_entry):
        if entry.caller.name in names:
            raise ValueError(f"{where}: key 'name': {entry.caller.name!r} is used twice")
        if entry.subject is not None:
            if entry.subject in subjects:
                raise ValueError(f"{where}: key 'subject': {entry.subject!r} is listed twice")
            subjects.add(entry.subject)
        elif entry.digest in digests:
            raise ValueError(f"{where}: key 'token_sha256': the same token is listed twice")
        if plain:
            logger.warning("%s: token %r is stored in plain text; store token_sha256 instead "
                           "(printf %%s TOKEN | sha256sum)", where, entry.caller.name)
        names.add(entry.caller.name)
        digests.add(entry.digest)
        entries.append(entry)
    return TokenTable(file.path, tuple(entries))


@dataclass(frozen=True, slots=True)
class Directory:
    """Every token the server accepts, by digest, and every named caller by owner."""

    by_digest: dict[bytes, Caller]
    by_owner: dict[str, Caller]
    by_subject: dict[str, Caller] = field(default_factory=dict)

    @classmethod
    def build(cls, static_tokens: tuple[str, ...], table: TokenTable | None) -> Directory:
        """``MCP_AUTH_TOKEN`` tokens as admins, then the file's (which win for a token in both)."""
        by_digest = {d: static_caller(d) for d in map(digest_of, static_tokens)}
        by_subject: dict[str, Caller] = {}
        for entry in table.entries if table else ():
            if entry.subject is not None:
                by_subject[entry.subject] = entry.caller
            else:
                by_digest[entry.digest] = entry.caller
        owners = {c.owner: c for c in by_digest.values()}
        owners.update((c.owner, c) for s, c in by_subject.items() if s != WILDCARD_SUBJECT)
        return cls(by_digest, owners, by_subject)

    def oauth_caller(self, name: str, admin: bool) -> Caller:
        """The caller a verified access token names: its ``subject`` entry, else ``oauth:<name>``."""
        role: Role = "admin" if admin else "user"
        entry = self.by_subject.get(name)
        if entry is not None:
            return Caller(entry.name, role, entry.owner, entry.limits, oauth=True)
        default = self.by_subject.get(WILDCARD_SUBJECT)
        return Caller(name, role, f"oauth:{name}", default.limits if default else Limits(), oauth=True)

    def caller(self, token: str | None) -> Caller | None:
        """The caller a presented token names, ``None`` when it names none (constant time per digest)."""
        if token is None:
            return None
        digest = digest_of(token)
        found = None
        for candidate, caller in self.by_digest.items():
            if hmac.compare_digest(digest, candidate):
                found = caller
        return found
