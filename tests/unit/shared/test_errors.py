"""The exception hierarchy: messages survive, codes and statuses are what the problem mapping expects."""

import pytest

from vaultpay.shared.errors import (
    BadRequest,
    ConcurrentModification,
    ConfigurationError,
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    InfrastructureError,
    NotFound,
    RateLimited,
    TransientError,
    Unauthorized,
    ValidationFailed,
    VaultPayError,
)

pytestmark = pytest.mark.unit

EXPECTED = [
    (BadRequest, 400, "bad_request", DomainError),
    (Unauthorized, 401, "unauthorized", DomainError),
    (Forbidden, 403, "forbidden", DomainError),
    (NotFound, 404, "not_found", DomainError),
    (Conflict, 409, "conflict", DomainError),
    (ValidationFailed, 422, "validation_failed", DomainError),
    (TransientError, 503, "service_unavailable", InfrastructureError),
    (ConcurrentModification, 409, "concurrent_modification", InfrastructureError),
    (ConfigurationError, 500, "internal_error", InfrastructureError),
]


@pytest.mark.parametrize(("cls", "status", "code", "family"), EXPECTED)
def test_every_error_keeps_its_message_and_maps_to_its_status(
    cls: type[VaultPayError], status: int, code: str, family: type[VaultPayError]
) -> None:
    error = cls("what happened, in words")
    assert str(error) == "what happened, in words"
    assert error.args == ("what happened, in words",)
    assert (error.status, error.code) == (status, code)
    assert isinstance(error, family)
    assert error.title


def test_a_domain_error_shows_its_message_as_detail() -> None:
    assert NotFound("No account acc_1.").detail == "No account acc_1."


def test_an_infrastructure_error_shows_only_its_title_as_detail() -> None:
    error = TransientError("ThrottlingException on arn:aws:dynamodb:us-east-1:1:table/accounts")
    assert "arn:aws" not in error.detail
    assert error.detail == error.title


def test_a_specific_code_overrides_the_class_code_for_that_instance_only() -> None:
    assert Conflict("taken", code="email_taken").code == "email_taken"
    assert Conflict("other").code == "conflict"


def test_rate_limited_carries_a_retry_after_of_at_least_one_second() -> None:
    assert RateLimited("slow down", retry_after=30).retry_after == 30
    assert RateLimited("slow down", retry_after=0).retry_after == 1
    assert RateLimited("slow down", retry_after=7).status == 429


def test_validation_failed_carries_its_field_errors() -> None:
    error = ValidationFailed("bad", errors=[FieldError("amount", "must be positive")])
    assert error.errors == (FieldError("amount", "must be positive"),)
