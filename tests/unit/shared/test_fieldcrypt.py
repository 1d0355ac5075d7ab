"""PII envelope encryption (AES-256-GCM, KMS data keys), blind indexes, phone normalising and masking."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from support.clocks import ManualClock

from vaultpay.shared.errors import ConfigurationError, TransientError, ValidationFailed
from vaultpay.shared.fieldcrypt import (
    BlindIndex,
    DataKey,
    DecryptionFailed,
    FieldCipher,
    KmsKeyProvider,
)
from vaultpay.shared.pii import mask_phone, normalise_email, normalise_phone

pytestmark = pytest.mark.unit

PHONE_CONTEXT = {"field": "phone", "user_id": "usr_1"}
INDEX_KEY = b"k" * 64


class FakeKeyProvider:
    """Data keys held in memory; like KMS it refuses a data key under any other encryption context."""

    def __init__(self, key_id: str = "fake-key-1") -> None:
        self.key_id = key_id
        self.generated = 0
        self.decrypted = 0
        self._keys: dict[bytes, tuple[bytes, dict[str, str]]] = {}

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        self.generated += 1
        plaintext, handle = os.urandom(32), os.urandom(24)
        self._keys[handle] = (plaintext, dict(context))
        return DataKey(plaintext=plaintext, encrypted=handle, key_id=self.key_id)

    def decrypt_data_key(self, encrypted: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        self.decrypted += 1
        entry = self._keys.get(encrypted)
        if entry is None or key_id != self.key_id or entry[1] != dict(context):
            raise DecryptionFailed("fake provider: unknown data key")
        return entry[0]


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# ---- FieldCipher -------------------------------------------------------------------------------------


def test_a_field_round_trips_through_encryption() -> None:
    # Given a cipher over a key provider
    cipher = FieldCipher(FakeKeyProvider())
    # When a phone number is encrypted and decrypted under the same context
    blob = cipher.encrypt("+919876543210", context=PHONE_CONTEXT)
    # Then the plaintext comes back, and the blob does not contain it
    assert cipher.decrypt(blob, context=PHONE_CONTEXT) == "+919876543210"
    assert "9876543210" not in blob


def test_the_blob_is_versioned_and_records_the_key_id_the_data_key_and_a_96_bit_nonce() -> None:
    provider = FakeKeyProvider(key_id="arn:aws:kms:eu-west-1:111122223333:key/abc")
    blob = FieldCipher(provider).encrypt("x", context=PHONE_CONTEXT)
    version, key_id, encrypted_key, nonce, sealed = blob.split(".")
    assert version == "fc1"
    assert _b64decode(key_id) == b"arn:aws:kms:eu-west-1:111122223333:key/abc"
    assert len(_b64decode(encrypted_key)) == 24
    assert len(_b64decode(nonce)) == 12
    assert len(_b64decode(sealed)) == 1 + 16  # one byte of text plus the GCM tag
    assert all(
        set(part) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for part in blob.split(".")
    )


def test_encrypting_the_same_value_twice_gives_different_blobs() -> None:
    cipher = FieldCipher(FakeKeyProvider())
    assert cipher.encrypt("same", context=PHONE_CONTEXT) != cipher.encrypt("same", context=PHONE_CONTEXT)


@pytest.mark.parametrize(
    "other_context",
    [
        {"field": "phone", "user_id": "usr_2"},  # the same field copied to another user's row
        {"field": "full_name", "user_id": "usr_1"},  # another field of the same row
        {"field": "phone", "user_id": "usr_1", "extra": ""},
        {"field": "phone"},
    ],
)
def test_a_ciphertext_under_another_context_does_not_decrypt(other_context: dict[str, str]) -> None:
    # Given a phone encrypted for user 1
    cipher = FieldCipher(FakeKeyProvider())
    blob = cipher.encrypt("+919876543210", context=PHONE_CONTEXT)
    # When it is decrypted as if it belonged elsewhere, Then it fails loudly
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(blob, context=other_context)


def test_changing_any_single_character_of_the_blob_makes_decryption_fail() -> None:
    # Given a blob (decrypted by a fresh cipher, so the key also goes through the provider)
    provider = FakeKeyProvider()
    blob = FieldCipher(provider).encrypt("+919876543210", context=PHONE_CONTEXT)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # When each character in turn is replaced by another base64url character
    for position, char in enumerate(blob):
        if char == ".":
            continue
        replacement = alphabet[(alphabet.index(char) + 1) % 64] if char in alphabet else "A"
        tampered = blob[:position] + replacement + blob[position + 1 :]
        # Then nothing decrypts: never garbage, always DecryptionFailed
        with pytest.raises(DecryptionFailed):
            FieldCipher(provider).decrypt(tampered, context=PHONE_CONTEXT)


def test_flipping_one_bit_of_the_ciphertext_fails_even_with_the_data_key_cached() -> None:
    cipher = FieldCipher(FakeKeyProvider())
    blob = cipher.encrypt("+919876543210", context=PHONE_CONTEXT)
    head, sealed = blob.rsplit(".", 1)
    raw = bytearray(_b64decode(sealed))
    raw[0] ^= 0x01
    flipped = head + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(flipped, context=PHONE_CONTEXT)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "fc1",
        "fc1....",
        "fc2.a.b.c.d",
        "fc1.!!.AAAA.AAAA.AAAA",
        "fc1.YQ.YQ.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "x" * 500,
    ],
)
def test_a_malformed_blob_is_a_decryption_failure(garbage: str) -> None:
    with pytest.raises(DecryptionFailed):
        FieldCipher(FakeKeyProvider()).decrypt(garbage, context=PHONE_CONTEXT)


def test_a_data_key_is_reused_for_at_most_reuse_limit_encryptions() -> None:
    # Given a cipher whose data keys serve 3 encryptions each
    provider = FakeKeyProvider()
    cipher = FieldCipher(provider, reuse_limit=3)
    # When 7 fields are encrypted
    blobs = [cipher.encrypt(f"value {i}", context={"field": "f", "row": str(i)}) for i in range(7)]
    # Then the key service was asked for 3 data keys (3 + 3 + 1), and the blobs name exactly those
    assert provider.generated == 3
    assert len({blob.split(".")[2] for blob in blobs}) == 3
    # And reading them back in the same process costs no KMS call (the keys it made are remembered)
    assert [cipher.decrypt(b, context={"field": "f", "row": str(i)}) for i, b in enumerate(blobs)] == [
        f"value {i}" for i in range(7)
    ]
    assert provider.decrypted == 0
    # And another process decrypts each distinct data key once
    reader = FieldCipher(provider)
    for i, blob in enumerate(blobs):
        reader.decrypt(blob, context={"field": "f", "row": str(i)})
    assert provider.decrypted == 3


def test_a_data_key_is_used_for_at_most_ttl_seconds() -> None:
    provider, clock = FakeKeyProvider(), ManualClock(1000.0)
    cipher = FieldCipher(provider, ttl_s=60, clock=clock)
    cipher.encrypt("a", context=PHONE_CONTEXT)
    clock.now += 59
    cipher.encrypt("b", context=PHONE_CONTEXT)
    assert provider.generated == 1
    clock.now += 2
    cipher.encrypt("c", context=PHONE_CONTEXT)
    assert provider.generated == 2


def test_a_decrypted_data_key_is_forgotten_after_ttl_seconds() -> None:
    provider, clock = FakeKeyProvider(), ManualClock(1000.0)
    blob = FieldCipher(provider).encrypt("a", context=PHONE_CONTEXT)
    reader = FieldCipher(provider, ttl_s=60, clock=clock)
    reader.decrypt(blob, context=PHONE_CONTEXT)
    clock.now += 59
    reader.decrypt(blob, context=PHONE_CONTEXT)
    assert provider.decrypted == 1
    clock.now += 2
    reader.decrypt(blob, context=PHONE_CONTEXT)
    assert provider.decrypted == 2


def test_the_decrypted_key_cache_holds_at_most_max_cached_keys() -> None:
    provider = FakeKeyProvider()
    writer = FieldCipher(provider, reuse_limit=1)
    blobs = [writer.encrypt("v", context=PHONE_CONTEXT) for _ in range(3)]
    reader = FieldCipher(provider, max_cached_keys=2)
    for blob in blobs:  # keys 1, 2, 3: key 1 is dropped when key 3 arrives
        reader.decrypt(blob, context=PHONE_CONTEXT)
    reader.decrypt(blobs[2], context=PHONE_CONTEXT)
    reader.decrypt(blobs[0], context=PHONE_CONTEXT)
    assert provider.decrypted == 4


def test_an_empty_context_is_refused_because_it_would_bind_nothing() -> None:
    cipher = FieldCipher(FakeKeyProvider())
    with pytest.raises(ValueError, match="context"):
        cipher.encrypt("x", context={})


def test_text_that_is_not_valid_unicode_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationFailed):
        FieldCipher(FakeKeyProvider()).encrypt("bad \ud800 surrogate", context=PHONE_CONTEXT)


def test_a_provider_that_returns_a_short_key_is_a_configuration_error() -> None:
    class ShortKeys(FakeKeyProvider):
        def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
            return DataKey(plaintext=b"k" * 16, encrypted=b"e", key_id="k")

    with pytest.raises(ConfigurationError):
        FieldCipher(ShortKeys()).encrypt("x", context=PHONE_CONTEXT)


def test_a_data_keys_repr_never_shows_its_plaintext() -> None:
    key = DataKey(plaintext=b"\x01" * 32, encrypted=b"enc", key_id="k")
    assert "plaintext" not in repr(key)
    assert repr(b"\x01" * 32) not in repr(key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plaintext=st.text(),
    context=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), min_size=1, max_size=4),
)
def test_property_any_unicode_text_round_trips_under_any_context(
    plaintext: str, context: dict[str, str]
) -> None:
    cipher = _PROPERTY_CIPHER
    assert cipher.decrypt(cipher.encrypt(plaintext, context=context), context=context) == plaintext


_PROPERTY_CIPHER = FieldCipher(FakeKeyProvider())


# ---- the KMS adapter, against moto -------------------------------------------------------------------


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # A developer's shell may point boto3 at the local cloud; moto must see plain AWS endpoints.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client(
            "kms", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def test_kms_data_keys_round_trip_and_the_blob_records_the_key_arn(kms: Any) -> None:
    # Given a KMS key, referred to by its alias
    key = kms.create_key(Description="pii")["KeyMetadata"]
    kms.create_alias(AliasName="alias/vaultpay-pii", TargetKeyId=key["KeyId"])
    provider = KmsKeyProvider(kms, "alias/vaultpay-pii")
    # When a field is encrypted by one cipher and decrypted by another (no shared cache)
    blob = FieldCipher(provider).encrypt("Asha Rao", context={"field": "full_name", "user_id": "usr_9"})
    assert (
        FieldCipher(provider).decrypt(blob, context={"field": "full_name", "user_id": "usr_9"}) == "Asha Rao"
    )
    # Then the blob names the key by its ARN, not by the alias
    assert _b64decode(blob.split(".")[1]).decode() == key["Arn"]


def test_kms_refuses_a_data_key_under_another_encryption_context(kms: Any) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    provider = KmsKeyProvider(kms, key_id)
    # Given a data key generated under one encryption context
    data_key = provider.generate_data_key({"app": "vaultpay", "purpose": "pii"})
    assert len(data_key.plaintext) == 32
    assert provider.decrypt_data_key(
        data_key.encrypted, data_key.key_id, {"app": "vaultpay", "purpose": "pii"}
    ) == (data_key.plaintext)
    # When it is decrypted under another, Then KMS refuses, as a DecryptionFailed
    with pytest.raises(DecryptionFailed):
        provider.decrypt_data_key(
            data_key.encrypted, data_key.key_id, {"app": "vaultpay", "purpose": "other"}
        )
    # And a cipher with another key context cannot read the first cipher's blobs
    blob = FieldCipher(provider).encrypt("x", context=PHONE_CONTEXT)
    with pytest.raises(DecryptionFailed):
        FieldCipher(provider, key_context={"app": "other"}).decrypt(blob, context=PHONE_CONTEXT)


def test_a_missing_kms_key_is_a_configuration_error(kms: Any) -> None:
    with pytest.raises(ConfigurationError):
        KmsKeyProvider(kms, "alias/does-not-exist").generate_data_key({"app": "vaultpay"})


class FailingKms:
    """KMS answering every call with one error code (moto does not refuse a disabled key, for one)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def _fail(self, operation: str) -> Any:
        raise ClientError({"Error": {"Code": self.code, "Message": "secret detail"}}, operation)

    def generate_data_key(self, **kwargs: Any) -> Any:
        return self._fail("GenerateDataKey")

    def decrypt(self, **kwargs: Any) -> Any:
        return self._fail("Decrypt")


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("DisabledException", ConfigurationError),
        ("AccessDeniedException", ConfigurationError),
        ("KMSInvalidStateException", ConfigurationError),
        ("ThrottlingException", TransientError),
        ("KMSInternalException", TransientError),
        ("InvalidCiphertextException", DecryptionFailed),
        ("IncorrectKeyException", DecryptionFailed),
    ],
)
def test_kms_errors_are_translated_into_the_shared_hierarchy(code: str, error: type[Exception]) -> None:
    provider = KmsKeyProvider(FailingKms(code), "alias/vaultpay-pii")
    with pytest.raises(error) as caught:
        provider.decrypt_data_key(b"blob", "arn:key", {"app": "vaultpay"})
    assert code in str(caught.value)


# ---- blind indexes -----------------------------------------------------------------------------------


def test_a_blind_index_is_deterministic_hex_and_keyed() -> None:
    index = BlindIndex(INDEX_KEY)
    value = index.of("email", "asha@example.com")
    assert value == index.of("email", "asha@example.com")
    assert len(value) == 64
    assert int(value, 16) >= 0
    assert BlindIndex(b"j" * 64).of("email", "asha@example.com") != value


def test_an_email_index_ignores_case_and_surrounding_space() -> None:
    index = BlindIndex(INDEX_KEY)
    assert index.of("email", "  Asha@Example.COM ") == index.of("email", "asha@example.com")


def test_a_phone_index_requires_e164() -> None:
    with pytest.raises(ValidationFailed):
        BlindIndex(INDEX_KEY).of("phone", "98765 43210")


def test_a_short_blind_index_key_or_an_odd_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        BlindIndex(b"short")
    with pytest.raises(ValueError, match="kind"):
        BlindIndex(INDEX_KEY).of("Email\x00", "x")


@settings(max_examples=200, deadline=None)
@given(value=st.text(), other=st.text())
def test_property_equal_values_share_an_index_and_different_ones_do_not(value: str, other: str) -> None:
    index = BlindIndex(INDEX_KEY)
    assert index.of("account_number", value) == index.of("account_number", value)
    if value != other:
        assert index.of("account_number", value) != index.of("account_number", other)


@settings(max_examples=200, deadline=None)
@given(value=st.text())
def test_property_the_same_value_under_two_kinds_never_shares_an_index(value: str) -> None:
    index = BlindIndex(INDEX_KEY)
    assert index.of("account_number", value) != index.of("national_id", value)


@settings(max_examples=200, deadline=None)
@given(phone=st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_property_an_email_index_never_equals_a_phone_index_of_the_same_text(phone: str) -> None:
    index = BlindIndex(INDEX_KEY)
    assert index.of("email", phone) != index.of("phone", phone)


# ---- normalising and masking -------------------------------------------------------------------------


def test_normalise_email_trims_and_lower_cases() -> None:
    assert normalise_email("  Asha.Rao@Example.COM\t") == "asha.rao@example.com"


@pytest.mark.parametrize("phone", ["+919876543210", "+14155550123", "+12345678", " +919876543210 "])
def test_valid_e164_numbers_are_accepted(phone: str) -> None:
    assert normalise_phone(phone) == phone.strip()


@pytest.mark.parametrize(
    "phone",
    [
        "919812345678",
        "+0123456789",
        "+1234567",
        "+1234567890123456",
        "+91 98765 43210",
        "+91-9876543210",
        "+" + "".join(chr(0xFF10 + int(d)) for d in "919876543210"),  # full-width digits
        "+91987654321\u0663",
        "",
    ],
)
def test_anything_but_e164_is_a_validation_error_that_does_not_echo_the_number(phone: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalise_phone(phone)
    assert caught.value.errors[0].field == "phone"
    if phone:
        assert phone not in str(caught.value)
        assert all(phone not in e.message for e in caught.value.errors)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+919876543210", "+91******3210"),
        ("+14155550123", "+1******0123"),
        ("+447911123456", "+44******3456"),
        ("+35312345678", "+353****5678"),
        ("+79161234567", "+7******4567"),
    ],
)
def test_a_masked_phone_keeps_the_country_code_and_the_last_four_digits(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked
