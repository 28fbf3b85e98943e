"""Settings: read once from the environment and ``.env`` into a frozen snapshot.

Precedence is command-line flag > environment > ``.env`` > default (``reload`` can
let ``.env`` win over the environment). Every variable is declared once in
``FIELDS``; parsing, ``.env.example`` and the README table are all checked
against that list by the tests.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .prices import PriceTable, load_prices_file
from .tenants import TokenTable, load_tokens_file

__all__ = [
    "FIELDS",
    "Field",
    "ReloadResult",
    "Secret",
    "Settings",
    "data_dir",
    "load_settings",
    "mask_url",
    "reload_settings",
]

logger = logging.getLogger(__name__)


class Secret:
    """A string whose ``repr``/``str`` never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Transport = Literal["stdio", "http"]
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# --- casts: each raises ValueError with a message that names the expected form ---


def _str(value: str) -> str:
    return value.strip()


def _opt_str(value: str) -> str | None:
    return value.strip() or None


def _secret(value: str) -> Secret | None:
    value = value.strip()
    return Secret(value) if value else None


def _tokens(value: str) -> tuple[Secret, ...]:
    return tuple(Secret(t.strip()) for t in value.split(",") if t.strip())


def _csv(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def cast(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return n

    return cast


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def cast(value: str) -> float:
        try:
            n = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}")
        return n

    return cast


def _choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def cast(value: str) -> str:
        v = value.strip().upper() if upper else value.strip().lower()
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return v

    return cast


def _url(value: str) -> str | None:
    value = value.strip().rstrip("/")
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s):// URL")
    return value


_SCOPE_RE: Final = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+\Z")
"""An RFC 6749 scope-token: printable ASCII without space, '"' or backslash."""


def _scope(value: str) -> str:
    value = value.strip()
    if not _SCOPE_RE.match(value):
        raise ValueError("expected one scope name (printable ASCII, no spaces, quotes or backslashes)")
    return value


def _claim(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 64 or not value.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ValueError("expected a claim name such as sub, preferred_username, email or oid")
    return value


def _issuer(value: str) -> str | None:
    """Kept as written (a trailing slash is part of some issuers, Auth0's among them); https off loopback."""
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not _host_port_ok(parts) or parts.query or parts.fragment:
        raise ValueError("expected the issuer URL, such as https://idp.example.com/realms/main")
    if parts.scheme == "http" and not _is_loopback_name(parts.hostname or ""):
        raise ValueError("expected an https:// issuer (plain http is accepted on loopback only)")
    return value


def _is_loopback_name(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path and not parts.netloc:
        return "file://" + str(Path(parts.path).expanduser().resolve())
    if parts.scheme == "s3" and parts.netloc and not parts.username and not parts.password:
        return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    raise ValueError("expected file:///absolute/dir or s3://bucket/prefix")


def mask_url(url: str) -> str:
    """``url`` with any password (``user:pw@`` or a ``password=`` query item) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.query:
        query = "&".join(
            f"{name}=***" if name.lower() == "password" else item
            for item in parts.query.split("&")
            for name in [item.partition("=")[0]]
        )
        parts = parts._replace(query=query)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return parts.geturl()


def _host_port_ok(parts: SplitResult) -> bool:
    """A host is named and the port, if any, is 1..65535 (``SplitResult.port`` raises on junk)."""
    try:
        return bool(parts.hostname) and (parts.port is None or 0 < parts.port < 65536)
    except ValueError:
        return False


def _state_url(value: str) -> Secret | None:
    """memory:// (or unset) is this process alone; redis[s]://[:password@]host[:port][/db] is shared."""
    value = value.strip()
    if not value or value in ("memory://", "memory:"):
        return None
    parts = urlsplit(value)
    db = parts.path.strip("/")
    if parts.scheme not in ("redis", "rediss") or not _host_port_ok(parts) or not (db == "" or db.isdigit()):
        raise ValueError(f"expected memory:// or redis[s]://[:password@]host:port/db, got {mask_url(value)!r}")
    return Secret(value)


def _replica_id(value: str) -> str | None:
    value = value.strip()
    if value and not (len(value) <= 64 and value.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        raise ValueError("expected up to 64 letters, digits, '.', '-' or '_'")
    return value or None


def _replica_url(value: str) -> str | None:
    """``http(s)://host[:port]``: this replica as its peers reach it (no path, query or credentials)."""
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or not _host_port_ok(parts) or parts.path not in ("", "/")
            or parts.query or parts.fragment or parts.username is not None):
        raise ValueError("expected http(s)://host:port with no path (this replica's address as its peers reach it)")
    return value.rstrip("/")


APP_NAME: Final = "mcp-image-server"
AUTO_TOKEN: Final = "auto"
"""``MCP_AUTH_TOKEN=auto``: the server makes a token once, keeps it in ``data_dir()/http-token``."""


def data_dir() -> Path:
    """This user's data folder (XDG on Linux, ~/Library/Application Support on macOS, %LOCALAPPDATA% on
    Windows): IDEs start servers in / or the home folder, so nothing may depend on the working directory."""
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def _save_dir(value: str) -> Path:
    """A directory path; empty: ``data_dir()/images``."""
    if not value.strip():
        return data_dir() / "images"
    return Path(value.strip()).expanduser().resolve()


def _auto_token(path: Path) -> tuple[str, bool]:
    """The token kept in ``path`` (0600), made now if there is none; the flag says it was made now.

    Raises:
        ConfigError: the file cannot be read or written.
    """
    import secrets

    try:
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 32:
            return token, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"MCP_AUTH_TOKEN=auto: cannot read {path}: {exc.strerror}") from None
    token = secrets.token_hex(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"MCP_AUTH_TOKEN=auto: cannot write {path}: {exc.strerror}") from None
    return token, True


_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BYTE_UNITS: Final = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_AMOUNT_RE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)\Z")


def _duration(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds; empty or 0: no limit (0.0)."""
    if not value.strip():
        return 0.0
    m = _AMOUNT_RE.match(value.strip().lower())
    if m is None or m[2] not in _DURATION_UNITS or float(m[1]) * _DURATION_UNITS[m[2]] > 10 * 365 * 86400:
        raise ValueError("expected seconds or a number with s, m, h, d or w (7d, 12h, 30m), at most 10 years")
    return float(m[1]) * _DURATION_UNITS[m[2]]


def _byte_size(value: str) -> int:
    """Bytes, or with KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024); 0: no limit."""
    m = _AMOUNT_RE.match(value.strip().lower())
    if m is None or m[2] not in _BYTE_UNITS:
        raise ValueError("expected bytes, or a number with KB, MB, GB, TB, KiB, MiB, GiB or TiB (500MB, 2GiB)")
    return int(float(m[1]) * _BYTE_UNITS[m[2]])


def _signing_key(value: str) -> Secret | None:
    value = value.strip()
    if value and len(value) < 32:
        raise ValueError("expected at least 32 characters (for example: openssl rand -hex 32)")
    return Secret(value) if value else None


def _provider_name(value: str) -> str | None:
    v = value.strip().lower()
    return v or None


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its variable, attribute, cast, default (as env text) and whether reload applies it."""

    env: str
    attr: str
    cast: Callable[[str], Any]
    default: str
    doc: str
    restart_only: bool = False
    secret: bool = False
    aliases: tuple[str, ...] = ()


FIELDS: Final[tuple[Field, ...]] = (
    # server
    Field("MCP_TRANSPORT", "transport", _choice("stdio", "http"), "stdio", "Transport: stdio or http.", True),
    Field("MCP_HOST", "host", _str, "127.0.0.1", "HTTP bind address.", True),
    Field("MCP_PORT", "port", _int_range(0, 65535), "8000", "HTTP port (0 picks a free one).", True),
    Field("MCP_AUTH_TOKEN", "auth_tokens", _tokens, "",
          "Bearer token(s) for HTTP, comma-separated; auto: made once and kept in the data folder's http-token.",
          secret=True),
    Field("MCP_TOKENS_FILE", "tokens_file", load_tokens_file, "",
          "TOML file of named [[tokens]] with role and limits (re-read by reload_config)."),
    Field("MCP_PRICES_FILE", "prices_file", load_prices_file, "",
          "TOML file overriding the catalog's USD price per image (re-read by reload_config)."),
    Field("MCP_PUBLIC_BASE_URL", "public_base_url", _url, "", "Public URL prefix for image links."),
    # oauth
    Field("MCP_OAUTH_ISSUER", "oauth_issuer", _issuer, "",
          "OAuth 2.1 authorization server (issuer URL): accept its JWT access tokens beside the static tokens.",
          True),
    Field("MCP_OAUTH_AUDIENCE", "oauth_audience", _csv, "",
          "Accepted aud values, comma-separated (default: MCP_PUBLIC_BASE_URL + /mcp, RFC 8707).", True),
    Field("MCP_OAUTH_SCOPE", "oauth_scope", _scope, "images", "Scope an access token needs to use the server.",
          True),
    Field("MCP_OAUTH_ADMIN_SCOPE", "oauth_admin_scope", _scope, "images:admin",
          "Scope that makes an access token's caller an admin (reload_config, all jobs, /metrics).", True),
    Field("MCP_OAUTH_NAME_CLAIM", "oauth_name_claim", _claim, "sub",
          "Access-token claim naming the tenant that owns jobs and images.", True),
    Field("MCP_IMAGE_SAVE_DIR", "image_save_dir", _save_dir, "",
          "Where images are written (default: images in the per-user data folder, shown at start).", True),
    Field("MCP_IMAGE_RECORD_TTL", "image_record_ttl", _int_range(1, 10 * 365 * 86400), "86400",
          "Seconds an image record stays readable by get_image_data."),
    Field("MCP_GET_IMAGE_DATA_MAX_BYTES", "get_image_data_max_bytes", _int_range(1024, 1 << 30), "10485760",
          "Largest image returned as base64."),
    Field("MCP_DEFAULT_PROVIDER", "default_provider", _provider_name, "", "Provider used when none is named."),
    Field("MCP_ALLOW_URL_INPUTS", "allow_url_inputs", _bool, "false",
          "Let edit_image fetch https:// image URLs (public addresses only; redirects re-checked)."),
    Field("MCP_MAX_INPUT_IMAGE_BYTES", "max_input_image_bytes", _byte_size, "20MiB",
          "Largest image edit_image accepts (each input and the mask): bytes, or 20MiB, 10MB."),
    Field("MCP_INPUT_FETCH_TIMEOUT", "input_fetch_timeout", _float_range(1, 300), "20",
          "Seconds allowed to fetch one URL input, redirects included."),
    Field("MCP_LOG_LEVEL", "log_level", _choice(*LOG_LEVELS, upper=True), "INFO", "Log level (logs go to stderr).",
          True),
    Field("MCP_AUDIT_LOG", "audit_log", _opt_str, "",
          "Audit log: a file path or - for stderr; one JSON object a line per tool call and job transition "
          "(unset: none).", True),
    Field("MCP_METRICS_PUBLIC", "metrics_public", _bool, "false",
          "Serve GET /metrics without a token (otherwise an admin token is required)."),
    Field("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint", _url, "",
          "OTLP/HTTP collector for OpenTelemetry traces (needs the otel extra: opentelemetry-sdk and "
          "opentelemetry-exporter-otlp-proto-http).", True),
    # http transport
    Field("MCP_SESSION_IDLE_TIMEOUT", "session_idle_timeout", _float_range(1, 7 * 86400), "1800",
          "Seconds before an idle HTTP session is closed."),
    Field("MCP_MAX_SESSIONS", "max_sessions", _int_range(1, 1_000_000), "1000", "Most concurrent HTTP sessions."),
    Field("MCP_ALLOW_UNAUTHENTICATED", "allow_unauthenticated", _bool, "false",
          "Allow a non-loopback bind without MCP_AUTH_TOKEN.", True),
    Field("MCP_ALLOWED_ORIGINS", "allowed_origins", _csv, "", "Extra browser origins allowed (comma-separated)."),
    Field("MCP_SERVE_DEMO", "serve_demo", _choice("auto", "true", "false"), "auto",
          "Serve the web demo at /demo/ (auto: only on a loopback bind).", True),
    Field("MCP_MAX_BODY_BYTES", "max_body_bytes", _int_range(1024, 1 << 30), "4194304", "Largest HTTP request body.",
          True),
    # tencent hunyuan
    Field("TENCENT_SECRET_ID", "tencent_secret_id", _secret, "", "Tencent Cloud SecretId (Hunyuan).", secret=True),
    Field("TENCENT_SECRET_KEY", "tencent_secret_key", _secret, "", "Tencent Cloud SecretKey (Hunyuan).",
          secret=True),
    Field("TENCENT_REGION", "tencent_region", _str, "ap-guangzhou", "Hunyuan region."),
    Field("TENCENT_ENDPOINT", "tencent_endpoint", _url, "", "Hunyuan endpoint override (http://host:port)."),
    # openai
    Field("OPENAI_API_KEY", "openai_api_key", _secret, "", "OpenAI API key.", secret=True),
    Field("OPENAI_BASE_URL", "openai_base_url", _url, "", "OpenAI-compatible base URL."),
    Field("OPENAI_MODEL", "openai_model", _str, "gpt-image-2", "OpenAI image model."),
    # doubao
    Field("DOUBAO_API_KEY", "doubao_api_key", _secret, "", "Volcengine Ark API key (Doubao).", secret=True),
    Field("DOUBAO_ENDPOINT", "doubao_endpoint", _url, "", "Ark base URL override."),
    Field("DOUBAO_MODEL", "doubao_model", _str, "doubao-seedream-4-0-250828", "Doubao/Seedream model."),
    Field("DOUBAO_FALLBACK_MODEL", "doubao_fallback_model", _opt_str, "",
          "Model used when DOUBAO_MODEL is unavailable or not found."),
    # modelscope
    Field("MODELSCOPE_API_KEY", "modelscope_api_key", _secret, "", "ModelScope access token.", secret=True,
          aliases=("MODELSCOPE_SDK_TOKEN",)),
    Field("MODELSCOPE_BASE_URL", "modelscope_base_url", _url, "", "ModelScope API-Inference base URL."),
    Field("MODELSCOPE_MODEL", "modelscope_model", _str, "Qwen/Qwen-Image", "ModelScope model id."),
    Field("MODELSCOPE_EDIT_MODEL", "modelscope_edit_model", _str, "Qwen/Qwen-Image-Edit-2511",
          "ModelScope model id for edit_image (MODELSCOPE_MODEL is a text-to-image model)."),
    # google gemini
    Field("GEMINI_API_KEY", "gemini_api_key", _secret, "", "Google Gemini API key (Google AI Studio).", secret=True),
    Field("GEMINI_BASE_URL", "gemini_base_url", _url, "",
          "Gemini API base URL, without the /v1beta path (unset: generativelanguage.googleapis.com)."),
    Field("GEMINI_MODEL", "gemini_model", _str, "gemini-2.5-flash-image", "Gemini image model."),
    # image store
    Field("MCP_IMAGE_STORE_URL", "image_store_url", _store_url, "",
          "Where images are stored: file:///dir or s3://bucket/prefix (unset: MCP_IMAGE_SAVE_DIR).", True),
    Field("AWS_ENDPOINT_URL", "aws_endpoint_url", _url, "", "S3-compatible endpoint (MinIO, Ceph, R2); unset: AWS.",
          True),
    Field("AWS_ACCESS_KEY_ID", "aws_access_key_id", _secret, "", "S3 access key id.", True, secret=True),
    Field("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", _secret, "", "S3 secret access key.", True,
          secret=True),
    Field("AWS_REGION", "aws_region", _str, "us-east-1", "S3 region.", True),
    Field("MCP_IMAGE_URL_MODE", "image_url_mode", _choice("public", "presigned", "signed"), "public",
          "public: /images/* serves the image; presigned: it redirects to a short-lived S3 URL (s3:// store only); "
          "signed: image URLs carry an expiry and an HMAC signature, and /images/* refuses others with 403.",
          True),
    Field("MCP_IMAGE_URL_TTL", "image_url_ttl", _int_range(1, 7 * 86400), "300",
          "Seconds a presigned or signed image URL stays valid."),
    Field("MCP_URL_SIGNING_KEY", "url_signing_key", _signing_key, "",
          "HMAC key (32+ characters) for MCP_IMAGE_URL_MODE=signed; unset: a random key per start, so URLs die on "
          "restart and replicas must share one key.", True, secret=True),
    Field("MCP_IMAGE_RETENTION", "image_retention", _duration, "",
          "Delete images (file and record) this long after they were made: 7d, 12h, 30m or seconds "
          "(unset or 0: keep forever)."),
    Field("MCP_IMAGE_STORE_MAX_BYTES", "image_store_max_bytes", _byte_size, "0",
          "Cap on the image store's size: bytes, or 500MB, 2GiB (KB..TB: 1000s, KiB..TiB: 1024s); past it the "
          "oldest images are deleted and a generation that cannot make room fails with storage_full (0: no cap)."),
    # shared state (several replicas)
    Field("MCP_STATE_URL", "state_url", _state_url, "memory://",
          "Where jobs live: memory:// (this process) or redis[s]://[:password@]host:port/db, shared by replicas.",
          True, secret=True),
    Field("MCP_ROLE", "role", _choice("all", "api", "worker"), "all",
          "all: serve and generate; api: serve and queue jobs, never generate; worker: no HTTP, run queued jobs "
          "(api and worker need MCP_STATE_URL=redis://...).", True),
    Field("MCP_REPLICA_ID", "replica_id", _replica_id, "",
          "This replica's name in the shared state (unset: random per start).", True),
    Field("MCP_REPLICA_URL", "replica_url", _replica_url, "",
          "This replica's internal base URL as its peers reach it (http://10.0.0.5:8000): they forward requests for "
          "its HTTP sessions to it (needs MCP_STATE_URL=redis://...).", True),
    Field("MCP_DRAIN_SECONDS", "drain_seconds", _float_range(0, 3600), "20",
          "On SIGTERM with a shared state: seconds running jobs get to finish before they are handed to "
          "another replica (queued, or polled at the vendor) or end worker_lost.", True),
    # generation jobs
    Field("MCP_GENERATION_WAIT_SECONDS", "generation_wait_seconds", _float_range(0, 3600), "45",
          "Default seconds a generate_image/get_generation call waits before handing back a job_id."),
    Field("MCP_PROGRESS_INTERVAL", "progress_interval", _float_range(0.05, 60), "5",
          "Most seconds between progress notifications while a call waits."),
    Field("MCP_JOB_TTL", "job_ttl", _float_range(1, 30 * 86400), "3600",
          "Seconds a finished generation job stays queryable.", True),
    Field("MCP_MAX_JOBS", "max_jobs", _int_range(1, 10_000), "64", "Generation jobs running at once.", True),
    Field("MCP_MAX_QUEUED_JOBS", "max_queued_jobs", _int_range(0, 1_000_000), "1000",
          "Jobs allowed to wait for a slot; beyond it new ones get queue_full.", True),
    # provider behaviour (retries, timeouts, polling, concurrency, failover)
    Field("MCP_FALLBACK_PROVIDERS", "fallback_providers", _csv, "",
          "Ordered providers tried when an unpinned request's provider is unavailable."),
    Field("MCP_PROVIDER_MAX_ATTEMPTS", "provider_max_attempts", _int_range(1, 10), "3",
          "Attempts per provider call for transient failures (1 = no retry)."),
    Field("MCP_PROVIDER_RETRY_BUDGET", "provider_retry_budget", _float_range(0, 3600), "60",
          "Most seconds spent waiting between retries of one call."),
    Field("MCP_DOWNLOAD_MAX_BYTES", "download_max_bytes", _int_range(1024, 1 << 30), "52428800",
          "Largest result image downloaded from a provider."),
    Field("MCP_DOWNLOAD_TIMEOUT", "download_timeout", _float_range(1, 3600), "60",
          "Seconds allowed for downloading one result image."),
    Field("MCP_LOCAL_MAX_CONCURRENCY", "local_max_concurrency", _int_range(1, 256), "2",
          "Concurrent renders of the local provider."),
    Field("MCP_HUNYUAN_MAX_CONCURRENCY", "hunyuan_max_concurrency", _int_range(1, 256), "1",
          "Concurrent Hunyuan jobs (the service allows one by default)."),
    Field("MCP_HUNYUAN_POLL_INTERVAL", "hunyuan_poll_interval", _float_range(0.01, 60), "2",
          "Seconds between Hunyuan job polls."),
    Field("MCP_HUNYUAN_TIMEOUT", "hunyuan_timeout", _float_range(1, 3600), "180",
          "Overall seconds allowed for one Hunyuan generation."),
    Field("MCP_OPENAI_MAX_CONCURRENCY", "openai_max_concurrency", _int_range(1, 256), "64",
          "Concurrent OpenAI requests (OpenAI sets no concurrency cap, only images per minute by usage "
          "tier, 5 at tier 1 to 250 at tier 5; a 429 is retried with backoff)."),
    Field("MCP_OPENAI_TIMEOUT", "openai_timeout", _float_range(1, 3600), "180",
          "Overall seconds allowed for one OpenAI generation."),
    Field("MCP_DOUBAO_MAX_CONCURRENCY", "doubao_max_concurrency", _int_range(1, 256), "32",
          "Concurrent Doubao requests (Ark limits Seedream by images per minute per account, commonly 500)."),
    Field("MCP_DOUBAO_TIMEOUT", "doubao_timeout", _float_range(1, 3600), "180",
          "Overall seconds allowed for one Doubao generation."),
    Field("MCP_MODELSCOPE_MAX_CONCURRENCY", "modelscope_max_concurrency", _int_range(1, 256), "2",
          "Concurrent ModelScope tasks."),
    Field("MCP_MODELSCOPE_POLL_INTERVAL", "modelscope_poll_interval", _float_range(0.01, 60), "5",
          "Seconds between ModelScope task polls."),
    Field("MCP_MODELSCOPE_TIMEOUT", "modelscope_timeout", _float_range(1, 3600), "300",
          "Overall seconds allowed for one ModelScope generation."),
    Field("MCP_GEMINI_MAX_CONCURRENCY", "gemini_max_concurrency", _int_range(1, 256), "4",
          "Concurrent Gemini generations (each makes one request per image)."),
    Field("MCP_GEMINI_TIMEOUT", "gemini_timeout", _float_range(1, 3600), "180",
          "Overall seconds allowed for one Gemini generation."),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration snapshot; never mutated, replaced on reload."""

    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    auth_tokens: tuple[Secret, ...] = ()
    tokens_file: TokenTable | None = None
    prices_file: PriceTable | None = None
    public_base_url: str | None = None
    oauth_issuer: str | None = None
    oauth_audience: tuple[str, ...] = ()
    oauth_scope: str = "images"
    oauth_admin_scope: str = "images:admin"
    oauth_name_claim: str = "sub"
    image_save_dir: Path = Path("images").resolve()
    """Where images go; ``load_settings`` gives ``data_dir()/images`` by default."""
    image_record_ttl: int = 86400
    get_image_data_max_bytes: int = 10 * 1024 * 1024
    default_provider: str | None = None
    log_level: str = "INFO"
    allow_url_inputs: bool = False
    max_input_image_bytes: int = 20 * 1024 * 1024
    input_fetch_timeout: float = 20.0
    audit_log: str | None = None
    metrics_public: bool = False
    otel_endpoint: str | None = None
    session_idle_timeout: float = 1800.0
    max_sessions: int = 1000
    allow_unauthenticated: bool = False
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    serve_demo: str = "auto"
    tencent_secret_id: Secret | None = None
    tencent_secret_key: Secret | None = None
    tencent_region: str = "ap-guangzhou"
    tencent_endpoint: str | None = None
    openai_api_key: Secret | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-image-2"
    doubao_api_key: Secret | None = None
    doubao_endpoint: str | None = None
    doubao_model: str = "doubao-seedream-4-0-250828"
    doubao_fallback_model: str | None = None
    modelscope_api_key: Secret | None = None
    modelscope_base_url: str | None = None
    modelscope_model: str = "Qwen/Qwen-Image"
    modelscope_edit_model: str = "Qwen/Qwen-Image-Edit-2511"
    gemini_api_key: Secret | None = None
    gemini_base_url: str | None = None
    gemini_model: str = "gemini-2.5-flash-image"
    image_store_url: str | None = None
    aws_endpoint_url: str | None = None
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_region: str = "us-east-1"
    image_url_mode: str = "public"
    image_url_ttl: int = 300
    url_signing_key: Secret | None = None
    image_retention: float = 0.0
    image_store_max_bytes: int = 0
    state_url: Secret | None = None
    role: str = "all"
    replica_id: str | None = None
    replica_url: str | None = None
    drain_seconds: float = 20.0
    generation_wait_seconds: float = 45.0
    progress_interval: float = 5.0
    job_ttl: float = 3600.0
    max_jobs: int = 64
    max_queued_jobs: int = 1000
    fallback_providers: tuple[str, ...] = ()
    provider_max_attempts: int = 3
    provider_retry_budget: float = 60.0
    download_max_bytes: int = 50 * 1024 * 1024
    download_timeout: float = 60.0
    local_max_concurrency: int = 2
    hunyuan_max_concurrency: int = 1
    hunyuan_poll_interval: float = 2.0
    hunyuan_timeout: float = 180.0
    openai_max_concurrency: int = 64
    openai_timeout: float = 180.0
    doubao_max_concurrency: int = 32
    doubao_timeout: float = 180.0
    modelscope_max_concurrency: int = 2
    modelscope_poll_interval: float = 5.0
    modelscope_timeout: float = 300.0
    gemini_max_concurrency: int = 4
    gemini_timeout: float = 180.0
    env_file: Path | None = None
    """The ``.env`` this snapshot was read from (``None``: none found)."""
    auth_token_file: Path | None = None
    """With ``MCP_AUTH_TOKEN=auto``: the file holding the token."""
    auth_token_made: bool = False
    """With ``MCP_AUTH_TOKEN=auto``: the token was made by this load (show it once)."""

    def public_dict(self) -> dict[str, Any]:
        """Settings as JSON-safe values with every secret replaced by whether it is set."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            value = getattr(self, f.attr)
            if f.secret:
                out[f.env] = "set" if value else "unset"
            elif isinstance(value, Path):
                out[f.env] = str(value)
            else:
                out[f.env] = value
        return out


def _read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values  # imported here: only needed when a .env exists

    try:
        values = dotenv_values(path)
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror}", details={"path": str(path)}) from exc
    return {k: v for k, v in values.items() if v is not None}


def _default_env_file(environ: Mapping[str, str]) -> Path | None:
    candidate = Path(environ.get("MCP_ENV_FILE", ".env")).expanduser()
    return candidate.resolve() if candidate.is_file() else None


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    dotenv_override: bool = False,
) -> Settings:
    """Build a validated snapshot.

    Args:
        environ: the process environment (``os.environ`` when ``None``).
        env_file: a ``.env`` path; when ``None``, ``$MCP_ENV_FILE`` or ``./.env`` if it exists.
        overrides: values from command-line flags, keyed by variable name; they beat everything.
        dotenv_override: let ``.env`` values beat the environment (used by ``reload_config``).

    Raises:
        ConfigError: naming the variable and the bad value (secrets are never echoed).
    """
    env = dict(os.environ if environ is None else environ)
    if env_file is None:
        path = _default_env_file(env)
    else:
        path = Path(env_file).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"env file {path} does not exist", details={"path": str(path)})
    file_values = _read_env_file(path) if path else {}
    layers = [env, file_values] if dotenv_override else [file_values, env]
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    merged.update(overrides or {})

    values: dict[str, Any] = {"env_file": path}
    problems: list[str] = []
    for f in FIELDS:
        raw = next((merged[n] for n in (f.env, *f.aliases) if n in merged), f.default)
        try:
            values[f.attr] = f.cast(raw)
        except ValueError as exc:
            shown = "(hidden)" if f.secret else repr(raw)  # a cast may still name a masked form
            problems.append(f"{f.env}={shown}: {exc}")
    if values.get("image_url_mode") == "presigned" and not str(values.get("image_store_url")).startswith("s3://"):
        problems.append("MCP_IMAGE_URL_MODE='presigned' needs an S3 store: set MCP_IMAGE_STORE_URL=s3://bucket/prefix")
    if values.get("role") in ("api", "worker") and values.get("state_url") is None and "state_url" in values:
        problems.append(f"MCP_ROLE={values['role']!r} needs a shared queue: set MCP_STATE_URL=redis://host:port/db")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems), details={"problems": problems})
    if any(t.get().lower() == AUTO_TOKEN for t in values["auth_tokens"]):
        path = data_dir() / "http-token"
        token, made = _auto_token(path)
        values["auth_tokens"] = tuple(Secret(token) if t.get().lower() == AUTO_TOKEN else t
                                      for t in values["auth_tokens"])
        values.update(auth_token_file=path, auth_token_made=made)
    return Settings(**values)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    settings: Settings
    changed: tuple[str, ...]
    """Variable names whose value changed and now apply."""
    restart_required: tuple[str, ...]
    """Variable names that changed but only take effect after a restart (kept at their old value)."""


def reload_settings(
    current: Settings,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    dotenv_override: bool = False,
) -> ReloadResult:
    """Re-read environment and ``.env``; restart-only fields keep their running value.

    Raises:
        ConfigError: the new values are invalid; the caller keeps ``current``.
    """
    env_file = current.env_file if current.env_file and current.env_file.is_file() else None
    fresh = load_settings(environ, env_file, overrides, dotenv_override=dotenv_override)
    changed: list[str] = []
    restart: list[str] = []
    keep: dict[str, Any] = {}
    for f in FIELDS:
        if getattr(fresh, f.attr) != getattr(current, f.attr):
            if f.restart_only:
                restart.append(f.env)
                keep[f.attr] = getattr(current, f.attr)
            else:
                changed.append(f.env)
    if restart:
        logger.warning("reload: %s changed but need a restart to take effect", ", ".join(restart))
    return ReloadResult(dataclasses.replace(fresh, **keep), tuple(changed), tuple(restart))
