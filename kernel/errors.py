"""Domain exceptions, mapped to HTTP status codes in one table in `broadcaster.web.errors`.

    DomainError
    ├── NotFoundError (LookupError)        -> 404
    ├── ConflictError                      -> 409
    ├── InvalidInput (ValueError)          -> 422   (carries the field and the reason)
    ├── PayloadTooLarge                    -> 413
    ├── Unauthenticated                    -> 401
    ├── PermissionDeniedError              -> 403
    ├── RateLimited                        -> 429   (with Retry-After)
    └── ServiceUnavailable                 -> 503   (a service we depend on, e.g. the broker)

Domain packages subclass these (`StationNotFound(NotFoundError)`); they never raise
HTTP errors themselves.  Every message is meant for the operator: it names the thing and
says why.  `message_vi` carries the Vietnamese text where one is given.
"""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str, *, message_vi: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_vi = message_vi


class NotFoundError(DomainError, LookupError):
    """The thing asked for does not exist (or must not be seen to exist)."""


class ConflictError(DomainError):
    """The request clashes with what is stored (duplicate key, still in use...)."""


class InvalidInput(DomainError, ValueError):
    """Input that is well-formed JSON but wrong for the domain.

    `field` is the dotted location of the offending field (e.g. ``"area_code"``) so the
    web layer can answer 422 with a FastAPI-like ``loc``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | Sequence[str | int] | None = None,
        message_vi: str | None = None,
    ) -> None:
        super().__init__(message, message_vi=message_vi)
        if field is None:
            self.loc: tuple[str | int, ...] = ()
        elif isinstance(field, str):
            self.loc = tuple(field.split("."))
        else:
            self.loc = tuple(field)


class PayloadTooLarge(DomainError):
    """An upload or body over the configured limit."""


class Unauthenticated(DomainError):
    """No valid credentials."""


class PermissionDeniedError(DomainError):
    """Authenticated, but the role or the area scope does not allow this."""


class RateLimited(DomainError):
    """Too many attempts (e.g. failed logins); `retry_after_s` says when to come back."""

    def __init__(self, message: str, *, retry_after_s: int, message_vi: str | None = None) -> None:
        super().__init__(message, message_vi=message_vi)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(DomainError):
    """A service the request depends on (the MQTT broker...) cannot do its part now.

    `retry_after_s`, when given, becomes the ``Retry-After`` header.
    """

    def __init__(
        self, message: str, *, retry_after_s: int | None = None, message_vi: str | None = None
    ) -> None:
        super().__init__(message, message_vi=message_vi)
        self.retry_after_s = retry_after_s
