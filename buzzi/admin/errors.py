"""The admin services' expected failures: each carries the HTTP status and the message a client sees,
so any front end (JSON API, dashboard) renders them the same way."""

from __future__ import annotations

from typing import Any


class AdminError(Exception):
    status = 400

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.field = field
        self.headers = headers or {}
        self.extra = dict(extra or {})
        if field is not None:
            self.extra.setdefault("field", field)


class Invalid(AdminError):
    """A request field is missing, unknown or of the wrong type or value: 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class NotFound(AdminError):
    """Unknown ids, and ids of another tenant: a company admin cannot tell the two apart."""

    status = 404

    def __init__(self) -> None:
        super().__init__("Not found")


class Forbidden(AdminError):
    """An action the principal's role does not allow on something it may see."""

    status = 403

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)


class Unauthorized(AdminError):
    status = 401

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class Conflict(AdminError):
    status = 409


class Throttled(AdminError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many attempts", headers={"Retry-After": str(retry_after)},
                         extra={"retryAfter": retry_after})


class UpstreamFailed(AdminError):
    """The channel's platform refused or could not be reached (Telegram setWebhook)."""

    status = 502
