"""The webhooks domain's rules, without I/O: which URLs may be called, how a delivery is signed, when it is
tried again, when an endpoint is disabled, which events a customer receives and what of them they see."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from vaultpay.shared.errors import FieldError, ValidationFailed
from vaultpay.shared.kernel import secret_token
from vaultpay.webhooks.errors import WebhookUrlNotAllowed

MAX_WEBHOOKS_PER_USER = 10
MAX_URL_LENGTH = 2048
MAX_PATTERNS = 20
MAX_DESCRIPTION = 200
SECRET_PREFIX = "whsec"  # noqa: S105 - the prefix of generated secrets, not a secret
SECRET_BYTES = 32
# The old secret keeps signing beside the new one this long after a rotation, so a receiver can deploy the
# new secret without dropping a delivery.
ROTATION_OVERLAP_S = 24 * 3600
DELIVERY_TIMEOUT_S = 10.0
# A receiver should refuse a signature older than this (docs: the verification example).
SIGNATURE_TOLERANCE_S = 300

SIGNATURE_HEADER = "VaultPay-Signature"
EVENT_ID_HEADER = "VaultPay-Event-Id"
DELIVERY_ID_HEADER = "VaultPay-Delivery-Id"


class WebhookStatus(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# ---- URLs and addresses ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """What a stage lets a webhook call. Every stage: https to public addresses only. The local stage alone
    may also allow `http://127.0.0.1:<port>` (template parameter WebhookAllowLoopback), so a test receiver
    on this machine can get deliveries."""

    allow_http_loopback: bool = False


_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
# IPv6 prefixes that carry an IPv4 address inside: the embedded one is what a packet reaches.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A URL that passed the rules: its scheme, host (an IP literal or a name to resolve) and port."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def is_loopback_literal(self) -> bool:
        return self.host == str(_LOOPBACK_V4)


def _refuse(reason: str) -> WebhookUrlNotAllowed:
    return WebhookUrlNotAllowed(
        f"The webhook URL is not allowed: {reason}.", errors=[FieldError("url", reason)]
    )


def parse_url(url: str, policy: UrlPolicy) -> WebhookUrl:
    """The URL's parts when its form is allowed (422 `webhook_url_not_allowed` otherwise): https (or, where
    the policy allows it, http to 127.0.0.1 with a port), a host, no user or password, no fragment, and an
    IP literal only when that address is public. A host name is checked once resolved (`resolve_checked`)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _refuse(f"must be an https URL of at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url) or not url.isascii():
        raise _refuse("must be printable ASCII without spaces")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("is not a valid URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        raise _refuse("has no host")
    if parts.username is not None or parts.password is not None:
        raise _refuse("must not carry a user name or password")
    if parts.fragment:
        raise _refuse("must not have a fragment")
    literal = _ip_literal(host)
    if scheme == "http":
        loopback = policy.allow_http_loopback and literal == _LOOPBACK_V4 and port is not None
        if not loopback:
            raise _refuse("must use https")
        return WebhookUrl(url=url, scheme=scheme, host=host, port=port or 80)
    if scheme != "https":
        raise _refuse("must use https")
    if literal is not None:
        check_addresses([host], policy, allow_loopback=False)
    elif host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise _refuse("names a host on a private network")
    return WebhookUrl(url=url, scheme=scheme, host=host, port=port or 443)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a delivery may reach `address`: not private, loopback, link-local (169.254.169.254, the
    cloud's metadata service), multicast, unspecified or reserved, nor an IPv6 address that embeds one
    (IPv4-mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not address_is_public(embedded):
            return False
        if address.is_site_local:
            return False
    refused = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )
    return address.is_global and not refused


def check_addresses(addresses: Sequence[str], policy: UrlPolicy, *, allow_loopback: bool) -> None:
    """Every address a host resolved to must be public (one private answer is enough to refuse: a name
    that resolves to both could be steered to the private one). `allow_loopback`: the URL is the local
    stage's `http://127.0.0.1:<port>`, which may reach 127.0.0.1 and nothing else."""
    if not addresses:
        raise _refuse("its host does not resolve")
    for text in addresses:
        address = _ip_literal(text)
        if address is None:
            raise _refuse("its host resolved to something that is not an IP address")
        if allow_loopback and policy.allow_http_loopback and address == _LOOPBACK_V4:
            continue
        if not address_is_public(address):
            raise _refuse("its host is a private, loopback, link-local or multicast address")


Resolver = Callable[[str, int], Sequence[str]]


def resolve_checked(target: WebhookUrl, policy: UrlPolicy, resolve: Resolver) -> list[str]:
    """The addresses to connect to for `target`, each one checked (422 `webhook_url_not_allowed` when any is
    refused). An IP literal is its own answer; a name goes to `resolve` (a DNS look-up on AWS, a stub in
    tests)."""
    literal = _ip_literal(target.host)
    addresses = [str(literal)] if literal is not None else list(resolve(target.host, target.port))
    check_addresses(addresses, policy, allow_loopback=target.scheme == "http")
    return addresses


# ---- event patterns ----------------------------------------------------------------------------------------

_PATTERN = re.compile(r"vaultpay(\.[a-z][a-z0-9_]*)*(\.\*)?|\*")


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """The event type patterns of a webhook: an exact type (`vaultpay.transaction.completed`), a prefix and
    `.*` for every type below it at any depth (`vaultpay.transaction.*`), or `*` for all. At least one, at
    most MAX_PATTERNS, no repeats, and each must match a type a customer receives."""
    problems: list[FieldError] = []
    if not patterns or len(patterns) > MAX_PATTERNS:
        problems.append(FieldError("events", f"must list 1..{MAX_PATTERNS} event type patterns"))
    elif len(set(patterns)) != len(patterns):
        problems.append(FieldError("events", "must not repeat a pattern"))
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern) or len(pattern) > 100:
            problems.append(FieldError(f"events[{index}]", "is not an event type pattern"))
        elif not any(matches(pattern, kind) for kind in CUSTOMER_EVENT_TYPES):
            problems.append(FieldError(f"events[{index}]", "matches no event type a customer receives"))
    if problems:
        raise ValidationFailed("The event type patterns are not valid.", errors=problems)
    return tuple(patterns)


def matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def matches_any(patterns: Iterable[str], event_type: str) -> bool:
    return any(matches(pattern, event_type) for pattern in patterns)


# ---- signing -----------------------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret: `whsec_` and 32 random bytes (URL-safe base64)."""
    return secret_token(SECRET_PREFIX, SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 in hex of `<t>.<raw body>` under the secret (its whole text, prefix included)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex>` with one `v1=` per signing secret (two during a rotation's overlap)."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify_signature(
    header: str, secret: str, body: bytes, *, now: int, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver checks (the docs' example does the same): a `v1` matches under its secret, and `t` is
    within `tolerance_s` of its clock (an old, replayed delivery is refused)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


@dataclass(frozen=True, slots=True)
class SigningSecrets:
    """The secret that signs now, and the one it replaced while the rotation's overlap lasts."""

    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)
    previous_until: float | None = None

    def active(self, now: float) -> tuple[str, ...]:
        if self.previous is not None and self.previous_until is not None and now < self.previous_until:
            return (self.current, self.previous)
        return (self.current,)


# ---- retries and disabling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter: the n-th retry waits up to `base_s * factor**(n-1)` (at most
    `cap_s`), between half that and all of it, and retries go on until the first attempt is `window_s`
    old, then the delivery is FAILED. An endpoint that has failed every delivery for `disable_after_s` is
    DISABLED.

    `time_scale` divides every duration: the local stage runs with its time scale (60 in tests) so the
    first retry comes within a second and a day of retries within minutes. With a scale of 1 the first
    retry waits 30-60 s, and a delivery is tried about 10 times over a little more than 24 h."""

    base_s: float = 60.0
    factor: float = 3.0
    cap_s: float = 6 * 3600.0
    window_s: float = 24 * 3600.0
    disable_after_s: float = 3 * 24 * 3600.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.time_scale > 0 and self.base_s > 0 and self.factor >= 1 and self.cap_s >= self.base_s):
            raise ValueError("a retry policy needs positive durations and a factor of at least 1")

    def delay(self, attempts: int, jitter: float) -> float:
        """How long after its `attempts`-th failed attempt a delivery is tried again; `jitter` in [0, 1)."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** max(0, attempts - 1)) / self.time_scale
        return ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))

    def next_attempt_at(self, *, attempts: int, first_at: float, now: float, jitter: float) -> float | None:
        """When to try again after a failed attempt, or None when the window is spent (FAILED)."""
        if now - first_at >= self.window_s / self.time_scale:
            return None
        return now + self.delay(attempts, jitter)

    def disables(self, failing_since: float | None, now: float) -> bool:
        """Whether an endpoint failing every delivery since `failing_since` is to be DISABLED now."""
        return failing_since is not None and now - failing_since >= self.disable_after_s / self.time_scale


# ---- which events a customer receives, and what of them ----------------------------------------------------

# The event types a customer may receive, and the data keys each one shows. Anything else (the saga's
# internal steps, fraud results with their scores and rule weights, identity and gateway events, an admin's
# approvals) is never delivered, and keys not listed never leave.
_TRANSFER_KEYS = (
    "transfer_id",
    "user_id",
    "source_account_id",
    "destination_account_id",
    "amount",
    "currency",
)
CUSTOMER_EVENT_TYPES: Mapping[str, tuple[str, ...]] = {
    "vaultpay.account.created": ("account_id", "owner_id", "type", "currency", "account_number_masked"),
    "vaultpay.account.deposited": ("deposit_id", "account_id", "amount", "currency", "ledger_after"),
    "vaultpay.account.funds.held": ("transfer_id", "account_id", "amount", "currency"),
    "vaultpay.account.funds.released": ("transfer_id", "account_id", "amount", "currency"),
    "vaultpay.account.transfer.settled": _TRANSFER_KEYS,
    "vaultpay.transaction.initiated": _TRANSFER_KEYS,
    "vaultpay.transaction.completed": _TRANSFER_KEYS,
    "vaultpay.transaction.declined": ("transfer_id", "user_id", "failure_reason", "amount", "currency"),
    "vaultpay.transaction.failed": ("transfer_id", "user_id", "failure_reason"),
    "vaultpay.transaction.compensated": ("transfer_id", "source_account_id", "amount"),
}
# Keys naming a customer and keys naming an account: each is shown only to the customer it names or owns.
_USER_KEYS = ("user_id", "owner_id")
_ACCOUNT_KEYS = ("account_id", "source_account_id", "destination_account_id")
# Envelope members a customer sees; `actor` is left out (an admin's or the system's id).
_ENVELOPE_KEYS = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "correlationid",
)


def account_owner_claim(envelope: Mapping[str, Any]) -> tuple[str, str] | None:
    """(account id, owner id) when the event says who owns an account (`vaultpay.account.created`)."""
    if envelope.get("type") != "vaultpay.account.created":
        return None
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        return None
    account, owner = data.get("account_id"), data.get("owner_id")
    return (account, owner) if isinstance(account, str) and isinstance(owner, str) else None


def accounts_named(envelope: Mapping[str, Any]) -> set[str]:
    """The account ids a customer-visible event names (whose owners it may concern)."""
    data = envelope.get("data")
    if envelope.get("type") not in CUSTOMER_EVENT_TYPES or not isinstance(data, Mapping):
        return set()
    return {value for key in _ACCOUNT_KEYS if isinstance(value := data.get(key), str) and value}


def recipients(envelope: Mapping[str, Any], owners: Mapping[str, str]) -> set[str]:
    """The customers an event is about: a transfer's source owner (its `user_id`) and the owner of every
    account it names, so a recipient hears of incoming money; `owners` maps account ids to owner ids."""
    data = envelope.get("data")
    if envelope.get("type") not in CUSTOMER_EVENT_TYPES or not isinstance(data, Mapping):
        return set()
    users = {value for key in _USER_KEYS if isinstance(value := data.get(key), str) and value}
    users |= {owners[account] for account in accounts_named(envelope) if account in owners}
    return users


def customer_view(envelope: Mapping[str, Any], recipient: str, owners: Mapping[str, str]) -> dict[str, Any]:
    """The event as `recipient` sees it: the CloudEvents envelope without `actor`, and only the listed data
    keys of its type, less any user id that is not theirs and any account id of an account they do not own
    (the counterparty of a transfer stays anonymous, as GET /v1/transfers shows it masked)."""
    allowed = CUSTOMER_EVENT_TYPES.get(str(envelope.get("type")), ())
    data = envelope.get("data")
    shown: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key in allowed:
            if key not in data:
                continue
            value = data[key]
            if key in _USER_KEYS and value != recipient:
                continue
            if key in _ACCOUNT_KEYS and owners.get(str(value)) != recipient:
                continue
            shown[key] = value
    view = {key: envelope[key] for key in _ENVELOPE_KEYS if key in envelope}
    view["data"] = shown
    return view


# ---- entities ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    """A customer's endpoint. The secrets are stored encrypted (`secret_enc`, and `previous_secret_enc`
    while a rotation's overlap lasts); `failing_since` is when the run of failed deliveries began (None
    after a success)."""

    webhook_id: str
    user_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    status: WebhookStatus
    secret_enc: str = field(repr=False)
    created_at: str
    updated_at: str
    previous_secret_enc: str | None = field(default=None, repr=False)
    previous_until: float | None = None
    failing_since: float | None = None
    disabled_at: str | None = None

    def view(self) -> dict[str, Any]:
        """The answer of GET (never a secret)."""
        body: dict[str, Any] = {
            "webhook_id": self.webhook_id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "status": self.status.value,
            "created_at": self.created_at,
        }
        if self.disabled_at is not None:
            body["disabled_at"] = self.disabled_at
        return body

    def wants(self, event_type: str) -> bool:
        return self.status is WebhookStatus.ENABLED and matches_any(self.events, event_type)


DELIVERY_PREFIX = "dlv"
_EVENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DELIVERY_ID = re.compile(r"dlv_[0-9a-f]{32}")


def delivery_id_of(event_id: str) -> str:
    """A delivery's id: one per event and webhook (the path names the webhook), so a redelivered event
    never makes a second delivery; the event's time-ordered id keeps deliveries in event order."""
    return f"{DELIVERY_PREFIX}_" + event_id.replace("-", "")


def event_id_of(delivery_id: str) -> str | None:
    """The event id inside a delivery id, or None when it is not one."""
    if not _DELIVERY_ID.fullmatch(delivery_id):
        return None
    h = delivery_id[4:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_event_id(value: object) -> bool:
    return isinstance(value, str) and _EVENT_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one webhook: PENDING until a 2xx (SUCCEEDED) or until its retries are spent (FAILED).
    `body` is the customer's view of the event exactly as it is sent (and signed)."""

    webhook_id: str
    user_id: str
    event_id: str
    type: str
    body: str
    status: DeliveryStatus
    attempts: int
    created_at: str
    next_attempt_at: float | None
    first_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None

    @property
    def delivery_id(self) -> str:
        return delivery_id_of(self.event_id)

    def view(self, rfc3339: Callable[[float], str]) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "type": self.type,
            "status": self.status.value,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "next_attempt_at": rfc3339(self.next_attempt_at) if self.next_attempt_at is not None else None,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST to an endpoint came to: a status code (2xx: success), or an error and no code."""

    status_code: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def after_attempt(
    delivery: Delivery, result: AttemptResult, policy: RetryPolicy, *, now: float, jitter: float
) -> Delivery:
    """The delivery once an attempt is known: SUCCEEDED, PENDING with its next attempt, or FAILED."""
    first = delivery.first_attempt_at if delivery.first_attempt_at is not None else now
    attempts = delivery.attempts + 1
    error = None if result.succeeded else (result.error or f"HTTP {result.status_code}")
    if result.succeeded:
        status, next_at = DeliveryStatus.SUCCEEDED, None
    else:
        next_at = policy.next_attempt_at(attempts=attempts, first_at=first, now=now, jitter=jitter)
        status = DeliveryStatus.PENDING if next_at is not None else DeliveryStatus.FAILED
    return replace(
        delivery,
        status=status,
        attempts=attempts,
        next_attempt_at=next_at,
        first_attempt_at=first,
        last_status_code=result.status_code,
        last_error=error,
    )
