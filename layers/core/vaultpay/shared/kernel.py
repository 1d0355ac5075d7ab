"""The shared kernel: Money in integer minor units, the one UTC clock and time-stamp format, and id formats.

Standard library only, and no import of any domain: every model may import it (docs/api.md's conventions
are written down once here, so that "an amount", "a time stamp" and "an id" mean one thing everywhere).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeGuard

# ---- money -------------------------------------------------------------------------------------------------

# docs/api.md: an amount a client sends (a transfer, a deposit) is 1..10^12 minor units.
MIN_AMOUNT: Final = 1
MAX_AMOUNT: Final = 10**12
# A balance is a sum of amounts and may pass MAX_AMOUNT; it stays within a signed 64-bit integer, which
# every JSON consumer (Java's long, Go's int64, a DynamoDB export) reads exactly.
MAX_BALANCE: Final = 2**63 - 1
CURRENCY: Final = re.compile(r"[A-Z]{3}")


class MoneyError(ValueError):
    """An amount that is not integer minor units, that mixes currencies, or that leaves the allowed range."""


def is_amount(value: object) -> TypeGuard[int]:
    """Whether `value` is an amount a client may move: an int (never a bool or a float) in 1..10^12."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_AMOUNT <= value <= MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class Money:
    """A non-negative sum of minor units (paise for INR) of one ISO 4217 currency.

    Arithmetic keeps the currency and the range: adding or comparing two currencies, a float, a bool or a
    result below zero or above MAX_BALANCE raises MoneyError (or TypeError for an operand that is no Money)
    instead of rounding or wrapping.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError(f"an amount is an integer of minor units, not {type(self.amount).__name__}")
        if not isinstance(self.currency, str) or not CURRENCY.fullmatch(self.currency):
            raise MoneyError("a currency is an ISO 4217 code of three capital letters")
        if not 0 <= self.amount <= MAX_BALANCE:
            raise MoneyError(f"an amount of money is in 0..{MAX_BALANCE} minor units")

    @classmethod
    def payment(cls, amount: object, currency: str) -> Money:
        """An amount a client moves (docs/api.md: 1..10^12); MoneyError otherwise."""
        if not is_amount(amount):
            raise MoneyError(f"an amount to move is an integer in {MIN_AMOUNT}..{MAX_AMOUNT}")
        return cls(amount, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._same(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._same(other).amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._same(other).amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._same(other).amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._same(other).amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._same(other).amount

    def covers(self, other: Money) -> bool:
        """Whether `other` can be taken from this sum without going below zero."""
        return self >= other

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            # A float or a bare int would silently drop the currency (and a float, exactness).
            raise TypeError(f"Money combines only with Money, not {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")
        return other


# ---- time --------------------------------------------------------------------------------------------------


def now() -> float:
    """The one clock: Unix seconds, UTC. Services take it as their default `clock`; tests pass their own."""
    return time.time()


def epoch_now() -> int:
    """Whole Unix seconds: what DynamoDB TTL attributes and token claims hold."""
    return int(time.time())


def rfc3339(epoch_s: float) -> str:
    """`2026-11-28T10:15:30.123Z`: the one time-stamp format of the API, the events and the tables."""
    return format_timestamp(datetime.fromtimestamp(epoch_s, UTC))


def utc_now_rfc3339() -> str:
    return format_timestamp(datetime.now(UTC))


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, `Z`: one form everywhere, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """A time stamp as this system writes it (or any ISO 8601 one `datetime` reads, `Z` included);
    ValueError when it is none. A naive result means the text carried no zone."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def epoch_seconds(timestamp: str) -> int:
    """An RFC 3339 time stamp to whole Unix seconds; ValueError when it is not one or has no zone."""
    parsed = parse_timestamp(timestamp)
    if parsed.tzinfo is None:
        raise ValueError("a time stamp needs a zone")
    return int(parsed.timestamp())


_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with an explicit offset (`Z` or ±hh:mm), as an aware UTC datetime.

    Stricter than `parse_timestamp`, which also takes dates alone, week dates and missing offsets: this is
    the one for what a client sends.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("is not an RFC 3339 date-time with an offset (e.g. 2026-11-28T10:15:30.123Z)")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]  # Python keeps microseconds
    offset = match["offset"].upper().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{offset}")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("is not a valid date and time") from None


# ---- ids ---------------------------------------------------------------------------------------------------

# An entity id is a short prefix, `_`, and 32 lower-case hex digits (`acc_…`, `tr_…`, `usr_…`, `dep_…`).
_HEX_ID = re.compile(r"[0-9a-f]{32}")


def new_event_id() -> str:
    """A time-ordered, globally unique id (UUIDv7 layout): sortable, and JetStream's de-duplication key."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def ordered_id(prefix: str) -> str:
    """`<prefix>_` and a UUIDv7 in hex: ids of things listed in creation order (accounts, deposits)."""
    return f"{prefix}_" + new_event_id().replace("-", "")


def random_id(prefix: str) -> str:
    """`<prefix>_` and a random UUIDv4 in hex: ids that must say nothing of when they were made."""
    return f"{prefix}_" + uuid.uuid4().hex


def derived_id(prefix: str, key: str) -> str:
    """`<prefix>_` and the first 32 hex digits of SHA-256(key): the same request always names one thing."""
    return f"{prefix}_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def is_id(value: object, prefix: str) -> bool:
    """Whether `value` is an id of the form `<prefix>_` + 32 lower-case hex digits."""
    if not isinstance(value, str) or not value.startswith(f"{prefix}_"):
        return False
    return _HEX_ID.fullmatch(value, len(prefix) + 1) is not None


def secret_token(prefix: str, nbytes: int = 32) -> str:
    """`<prefix>_` and `nbytes` random bytes, URL-safe base64: an unguessable handle (a login challenge)."""
    # Imported here: `secrets` (with hmac) costs a few milliseconds of every cold start, and only the
    # login challenge needs it.
    import secrets

    return f"{prefix}_" + secrets.token_urlsafe(nbytes)


def new_correlation_id() -> str:
    """A fresh correlation id for a request that brought none."""
    return str(uuid.uuid4())
