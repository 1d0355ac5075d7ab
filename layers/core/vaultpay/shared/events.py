"""Domain events and their CloudEvents 1.0 envelope (docs/api.md "Events"): what every outbox item carries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultpay.shared.kernel import new_event_id, utc_now_rfc3339

SPEC_VERSION = "1.0"
TYPE_PREFIX = "vaultpay."
# Keys that must never appear anywhere in event data (docs/api.md: no password, token, TOTP secret, plaintext
# phone or account number). Checked when an event is made, so a leak fails in tests, not in production.
FORBIDDEN_DATA_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "totp_secret",
        "otp",
        "code",
        "phone",
        "account_number",
    }
)


def _check_data(data: Any, path: str = "data") -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if str(key).lower() in FORBIDDEN_DATA_KEYS:
                raise ValueError(f"event field {path}.{key} must not be published (secret or PII)")
            _check_data(value, f"{path}.{key}")
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            _check_data(value, f"{path}[{index}]")
    elif isinstance(data, float):
        raise ValueError(f"event field {path} is a float: money and counts are integers")


@dataclass(frozen=True)
class DomainEvent:
    """Something that happened and committed; published at least once with a stable id."""

    type: str  # "vaultpay.auth.user.created"
    source: str  # "/vaultpay/auth"
    subject: str  # the entity it is about: a user id, an account id, a transfer id
    data: Mapping[str, Any]
    correlation_id: str
    actor: str | None = None  # who caused it (user id, "system", "operator")
    id: str = field(default_factory=new_event_id)
    time: str = field(default_factory=utc_now_rfc3339)

    def __post_init__(self) -> None:
        if not self.type.startswith(TYPE_PREFIX):
            raise ValueError(f"event type {self.type!r} must start with {TYPE_PREFIX!r}")
        _check_data(self.data)

    def cloudevent(self) -> dict[str, Any]:
        """The envelope published to JetStream (subject = type)."""
        envelope: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.subject,
            "datacontenttype": "application/json",
            "correlationid": self.correlation_id,
            "data": dict(self.data),
        }
        if self.actor is not None:
            envelope["actor"] = self.actor
        return envelope

    def data_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True)


FOUR_EYES_REFUSED = "vaultpay.admin.four_eyes_refused"


def four_eyes_refused_event(
    *, source: str, operation: str, subject: str, reason: str, actor: str, correlation_id: str, at: str
) -> DomainEvent:
    """The audit trail's record of a privileged operation refused for want of a second person (any domain
    with a four-eyes rule writes it through its own outbox)."""
    return DomainEvent(
        type=FOUR_EYES_REFUSED,
        source=source,
        subject=subject,
        data={"operation": operation, "subject": subject, "reason": reason},
        correlation_id=correlation_id,
        actor=actor,
        time=at,
    )
