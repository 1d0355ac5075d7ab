"""The one VaultPay exception hierarchy: each error carries its problem+json code, HTTP status and title."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field, as it appears in a problem's `errors` list."""

    field: str
    message: str


class VaultPayError(Exception):
    """Base of every error VaultPay raises on purpose.

    `code`, `status` and `title` are what a client sees (the problem+json mapping reads them here, so this
    hierarchy is the one error table). `public` says whether the message may be shown as the problem's
    `detail`: infrastructure messages can carry vendor text (table names, ARNs, endpoints), so those are
    logged and never returned.
    """

    code: str = "internal_error"
    status: int = 500
    title: str = "Internal server error"
    public: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            # A specific, documented code (e.g. `email_taken`) refines the class's generic one.
            self.code = code

    @property
    def detail(self) -> str:
        """The human-readable explanation a client may see."""
        return self.message if self.public else self.title


# ---- domain errors: the caller can act on them, and their messages are written for the caller ----------


class DomainError(VaultPayError):
    """A request that the rules of the domain refuse; its message is safe to show to the client."""

    public = True


class BadRequest(DomainError):
    """The request is malformed (bad JSON, a missing required header)."""

    code = "bad_request"
    status = 400
    title = "Bad request"


class ValidationFailed(DomainError):
    """The request is well-formed but its content is invalid; `errors` names the fields."""

    code = "validation_failed"
    status = 422
    title = "Validation failed"

    def __init__(self, message: str, *, code: str | None = None, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message, code=code)
        self.errors = tuple(errors)


class NotFound(DomainError):
    """The resource does not exist or is not the caller's (the two are deliberately indistinguishable)."""

    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(DomainError):
    """The request conflicts with the current state of the resource."""

    code = "conflict"
    status = 409
    title = "Conflict"


class Unauthorized(DomainError):
    """The caller is not authenticated (missing, expired, forged or revoked credentials)."""

    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    """The caller is authenticated but not allowed to do this."""

    code = "forbidden"
    status = 403
    title = "Forbidden"


class FourEyesRequired(Forbidden):
    """A privileged operation needs a second person: the caller asked for it, or owns the account."""

    code = "four_eyes_required"


class RateLimited(DomainError):
    """Too many requests; the caller may retry after `retry_after` seconds."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        # Never tell a client to retry "now": that only turns one refused request into a burst.
        self.retry_after = max(1, int(retry_after))


# ---- infrastructure errors: nothing the caller did wrong; details stay in the logs ---------------------


class InfrastructureError(VaultPayError):
    """A failure of a backing service or of the deployment, not of the request."""


class TransientError(InfrastructureError):
    """A backing service is throttling or briefly unavailable; the same call may succeed if retried."""

    code = "service_unavailable"
    status = 503
    title = "Service temporarily unavailable"


class ConcurrentModification(InfrastructureError):
    """A conditional write lost a race with another writer; re-read and retry."""

    code = "concurrent_modification"
    status = 409
    title = "The resource was modified concurrently; retry the request"


class ConfigurationError(InfrastructureError):
    """The deployment is missing a setting or has an invalid one."""
