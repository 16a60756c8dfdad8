"""The errors of talking to a provider: one base class with a stable ``code`` per failure kind, and
which of them are worth a retry."""

from __future__ import annotations

from typing import ClassVar


class ProviderError(Exception):
    """Any failure talking to a provider. ``code`` is a stable machine code (see the subclasses)."""

    default_code: ClassVar[str] = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.code = code or self.default_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status!r}, "
            f"retry_after={self.retry_after!r})"
        )


class UpstreamHTTPError(ProviderError):
    """The provider answered with a non-2xx status (``status`` and ``retry_after`` are kept)."""

    default_code = "upstream_http"


class UpstreamAuthError(UpstreamHTTPError):
    """The provider refused the credentials (401 or 403)."""

    default_code = "upstream_auth"


class UpstreamConnectError(ProviderError):
    """The provider could not be reached (DNS, refused, reset before an answer, connect timeout)."""

    default_code = "upstream_connect"


class UpstreamTimeoutError(ProviderError):
    """No response (status line and headers) within the first-byte timeout."""

    default_code = "upstream_timeout"


class UpstreamIdleError(ProviderError):
    """The stream went silent for longer than the idle timeout."""

    default_code = "upstream_idle"


class UpstreamTruncatedError(ProviderError):
    """The stream ended (or the connection broke) before the provider's end marker."""

    default_code = "upstream_truncated"


class UpstreamMalformedError(ProviderError):
    """A frame or body that is not valid JSON or not in the provider's documented shape."""

    default_code = "upstream_malformed"


class UpstreamStreamError(ProviderError):
    """The provider reported an error inside an otherwise valid stream or body (``{"error": ...}``)."""

    default_code = "upstream_error"


class UnknownProviderError(ProviderError, ValueError):
    """``get_adapter`` was asked for a provider type that does not exist."""

    default_code = "unknown_provider"


RETRYABLE_CODES = frozenset({"upstream_connect", "upstream_timeout"})


def is_retryable(error: ProviderError) -> bool:
    """Whether the resilience rules allow one retry before any content was sent: 429, 5xx, connect, timeout."""
    if error.code in RETRYABLE_CODES:
        return True
    return error.code == "upstream_http" and error.status is not None and (error.status == 429 or error.status >= 500)
