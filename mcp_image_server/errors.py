"""One error hierarchy with stable codes.

Every error the server reports to a client carries a ``code`` that never changes
between releases (README, "Error codes"). Tools turn these into results with
``isError: true``; the HTTP layer turns its own into JSON bodies.

    ImageServerError                      internal_error
    ├── ConfigError                       config_error
    ├── InvalidArgumentError (ValueError) invalid_argument
    │   ├── UnknownProviderError          unknown_provider
    │   ├── ProviderMismatchError         provider_mismatch
    │   ├── UnknownStyleError             unknown_style
    │   ├── UnknownResolutionError        unknown_resolution
    │   ├── UnsupportedOptionError        unsupported_option
    │   └── IdempotencyConflictError      idempotency_conflict
    ├── ProviderNotConfiguredError        provider_not_configured
    ├── ImageNotFoundError (LookupError)  image_not_found
    ├── ImageExpiredError (LookupError)   image_expired
    ├── ImageTooLargeError                image_too_large
    ├── StorageError (OSError)            storage_error
    │   ├── StorageUnavailableError       storage_unavailable (transient)
    │   └── StorageFullError              storage_full      (used_bytes, max_bytes)
    ├── StateUnavailableError             state_unavailable (transient)
    ├── JobNotFoundError (LookupError)    job_not_found
    ├── GenerationCancelledError          generation_cancelled
    ├── WorkerLostError                   worker_lost
    ├── QueueFullError                    queue_full        (transient)
    ├── ForbiddenError                    forbidden         (the caller's role may not)
    ├── InvalidTokenError                 invalid_token     (HTTP 401: an access token that does not verify)
    ├── InsufficientScopeError            insufficient_scope (HTTP 403: ``details.scope`` is needed)
    ├── IssuerUnavailableError            issuer_unavailable (transient; HTTP 503)
    ├── ProviderNotAllowedError           provider_not_allowed
    ├── QuotaExceededError                quota_exceeded    (limit, used, resets_at)
    │   └── BudgetExceededError           budget_exceeded
    └── ProviderError                     provider_error
        ├── AuthFailedError               auth_failed
        ├── RateLimitedError              rate_limited      (transient, retry_after)
        ├── ContentRejectedError          content_rejected
        ├── ProviderInvalidArgumentError  provider_invalid_argument
        ├── ModelNotFoundError            model_not_found
        ├── ProviderUnavailableError      provider_unavailable (transient)
        ├── ProviderTimeoutError          provider_timeout  (transient)
        └── BadImageDataError             bad_image_data
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthFailedError",
    "BadImageDataError",
    "BudgetExceededError",
    "ConfigError",
    "ContentRejectedError",
    "EditNotSupportedError",
    "ForbiddenError",
    "GenerationCancelledError",
    "IdempotencyConflictError",
    "ImageExpiredError",
    "ImageNotFoundError",
    "ImageServerError",
    "ImageTooLargeError",
    "InputFetchFailedError",
    "InsufficientScopeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "InvalidTokenError",
    "IssuerUnavailableError",
    "JobNotFoundError",
    "MaskMismatchError",
    "ModelNotFoundError",
    "OutputExistsError",
    "PathNotAllowedError",
    "ProviderError",
    "ProviderInvalidArgumentError",
    "ProviderMismatchError",
    "ProviderNotAllowedError",
    "ProviderNotConfiguredError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "QueueFullError",
    "QuotaExceededError",
    "RateLimitedError",
    "StateUnavailableError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
    "TooManyImagesError",
    "UnknownProviderError",
    "UnknownResolutionError",
    "UnknownStyleError",
    "UnsupportedOptionError",
    "UrlNotAllowedError",
    "WorkerLostError",
    "all_error_codes",
    "error_from_dict",
]


class ImageServerError(Exception):
    """Base of every error this server reports; ``code`` is stable."""

    code: ClassVar[str] = "internal_error"
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(ImageServerError):
    code = "config_error"


class InvalidArgumentError(ImageServerError, ValueError):
    code = "invalid_argument"


class UnknownProviderError(InvalidArgumentError):
    code = "unknown_provider"


class ProviderMismatchError(InvalidArgumentError):
    code = "provider_mismatch"


class UnknownStyleError(InvalidArgumentError):
    code = "unknown_style"


class UnknownResolutionError(InvalidArgumentError):
    code = "unknown_resolution"


class UnsupportedOptionError(InvalidArgumentError):
    code = "unsupported_option"


class IdempotencyConflictError(InvalidArgumentError):
    code = "idempotency_conflict"


class InvalidImageError(InvalidArgumentError):
    """An input is not a PNG, JPEG or WebP image, is truncated, or has too many pixels."""

    code = "invalid_image"


class TooManyImagesError(InvalidArgumentError):
    code = "too_many_images"


class MaskMismatchError(InvalidArgumentError):
    """The mask is not a PNG with alpha the size of the first image, or the provider takes none."""

    code = "mask_mismatch"


class EditNotSupportedError(InvalidArgumentError):
    code = "edit_not_supported"


class PathNotAllowedError(InvalidArgumentError):
    """A file path outside the allowed folders (the client's roots, or the save folder), or over HTTP."""

    code = "path_not_allowed"


class UrlNotAllowedError(InvalidArgumentError):
    """A URL input refused before any connection: URL inputs off, not https, or a private address."""

    code = "url_not_allowed"


class OutputExistsError(InvalidArgumentError):
    code = "file_exists"


class InputFetchFailedError(ImageServerError):
    """A URL input could not be fetched (refused, timed out, too large, not an image)."""

    code = "input_fetch_failed"
    transient = True


class ProviderNotConfiguredError(ImageServerError):
    code = "provider_not_configured"


class ImageNotFoundError(ImageServerError, LookupError):
    code = "image_not_found"


class ImageExpiredError(ImageServerError, LookupError):
    code = "image_expired"


class ImageTooLargeError(ImageServerError):
    code = "image_too_large"


class StorageError(ImageServerError, OSError):
    code = "storage_error"


class StorageUnavailableError(StorageError):
    """The image store (an S3 endpoint) did not answer; nothing was recorded."""

    code = "storage_unavailable"
    transient = True


class StorageFullError(StorageError):
    """The image store is at ``MCP_IMAGE_STORE_MAX_BYTES`` and nothing more can be deleted;
    ``details`` has ``used_bytes`` and ``max_bytes``. Raised before any provider is called."""

    code = "storage_full"


class StateUnavailableError(ImageServerError):
    """The shared state (Redis, MCP_STATE_URL) did not answer; nothing was started."""

    code = "state_unavailable"
    transient = True


class JobNotFoundError(ImageServerError, LookupError):
    code = "job_not_found"


class GenerationCancelledError(ImageServerError):
    code = "generation_cancelled"


class WorkerLostError(ImageServerError):
    """The replica running a job stopped answering (its lease ran out) before the job finished."""

    code = "worker_lost"


class QueueFullError(ImageServerError):
    code = "queue_full"
    transient = True


class ForbiddenError(ImageServerError):
    """The caller's role may not do this (a ``user`` token calling an admin tool)."""

    code = "forbidden"


class InvalidTokenError(ImageServerError):
    """An OAuth access token that is expired, for another audience or issuer, or not signed by the issuer."""

    code = "invalid_token"


class InsufficientScopeError(ImageServerError):
    """A verified access token without the scope this needs (``details.scope``)."""

    code = "insufficient_scope"


class IssuerUnavailableError(ImageServerError):
    """The OAuth issuer's metadata or keys could not be fetched; no token is accepted unverified."""

    code = "issuer_unavailable"
    transient = True


class ProviderNotAllowedError(ImageServerError):
    """The caller's token names the providers it may use (``providers`` in MCP_TOKENS_FILE)."""

    code = "provider_not_allowed"


class QuotaExceededError(ImageServerError):
    """A limit of the caller's token would be passed; ``details`` has ``limit``, ``used``, ``resets_at``."""

    code = "quota_exceeded"


class BudgetExceededError(QuotaExceededError):
    code = "budget_exceeded"


class ProviderError(ImageServerError):
    """A provider failed; ``provider`` names it so failover can say who failed.

    ``retryable`` defaults to the class's ``transient``; an adapter sets it to False
    when repeating the call could start a second job (a submission that may have
    been accepted before the connection failed).
    """

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.provider = provider
        self.retryable = self.transient if retryable is None else retryable
        if provider:
            self.details.setdefault("provider", provider)


class AuthFailedError(ProviderError):
    code = "auth_failed"


class RateLimitedError(ProviderError):
    code = "rate_limited"
    transient = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, provider=provider, details=details, retryable=retryable)
        self.retry_after = retry_after
        if retry_after is not None:
            self.details["retry_after"] = retry_after


class ContentRejectedError(ProviderError):
    code = "content_rejected"


class ProviderInvalidArgumentError(ProviderError):
    code = "provider_invalid_argument"


class ModelNotFoundError(ProviderError):
    code = "model_not_found"


class ProviderUnavailableError(ProviderError):
    code = "provider_unavailable"
    transient = True


class ProviderTimeoutError(ProviderError):
    code = "provider_timeout"
    transient = True


class BadImageDataError(ProviderError):
    code = "bad_image_data"


def all_error_codes() -> dict[str, type[ImageServerError]]:
    """Every stable code mapped to its class (used by docs tests)."""
    found: dict[str, type[ImageServerError]] = {}
    stack: list[type[ImageServerError]] = [ImageServerError]
    while stack:
        cls = stack.pop()
        found[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return found


def error_from_dict(data: Mapping[str, Any]) -> ImageServerError:
    """Rebuild an error another replica reported (``to_dict``); an unknown code stays an ImageServerError."""
    cls = all_error_codes().get(str(data.get("code")), ImageServerError)
    error = cls.__new__(cls)
    ImageServerError.__init__(error, str(data.get("message", "")), details=data.get("details") or {})
    return error
