"""Expected failures of the services, one family for every front end.

A ServiceError carries what a client is told (status, message, the field at fault, extra headers
and body keys); the HTTP layer maps it to a response in one place (handlers.base write_error), and
the dashboard only renders the same error as a page. Services never build HTTP answers themselves.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.field = field
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        if field is not None:
            self.extra.setdefault("field", field)

    def body(self) -> dict[str, Any]:
        """The JSON answer: `{"error": message}` plus the error's extra keys."""
        return {"error": self.message, **self.extra}


class Invalid(ServiceError):
    """A request field is missing, unknown or of the wrong type or value: 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class Forbidden(ServiceError):
    """An action the principal's role does not allow on something it may see."""

    status = 403

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)


class NotFound(ServiceError):
    """Unknown ids, and ids of another tenant: a company admin cannot tell the two apart."""

    status = 404

    def __init__(self, message: str = "Not found") -> None:
        super().__init__(message)


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413

    def __init__(self, message: str = "Payload too large") -> None:
        super().__init__(message)


class Throttled(ServiceError):
    """Too many requests: the client may try again after `retry_after` seconds."""

    status = 429

    def __init__(self, retry_after: int, message: str = "Too many attempts", *,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)},
                         extra={"retryAfter": retry_after, **(extra or {})})
        self.retry_after = retry_after


class UpstreamFailed(ServiceError):
    """A platform or service we depend on refused or could not be reached (Telegram setWebhook)."""

    status = 502


class Unavailable(ServiceError):
    """A dependency (store, broker) did not answer: 503, so that clients and channels retry.

    The client sees only "Unavailable"; `str(exc)` keeps the detail for the log."""

    status = 503

    def __init__(self, detail: str = "") -> None:
        super().__init__("Unavailable")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail or self.message
