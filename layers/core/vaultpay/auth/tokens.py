"""ES256 access tokens (signing keys, JWKS, issue, verify) and opaque refresh tokens.

Every verification failure is `errors.Unauthorized` (HTTP 401) with one of two codes:
`token_expired` (a genuine token of ours whose `exp` has passed, leeway included) or `invalid_token`
(anything else: malformed, wrong alg, missing or unknown kid, bad signature, wrong iss/aud, issued in the
future, missing or ill-typed claims, unknown role, malformed refresh token). Messages never contain the token.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from vaultpay.shared.errors import ConfigurationError, Unauthorized

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

ALGORITHM = "ES256"
TOKEN_TYPE = "JWT"  # noqa: S105 - the JOSE "typ" header value, not a secret
ROLES = frozenset({"customer", "admin"})
ACCESS_TOKEN_TTL_S = 900
DEFAULT_LEEWAY_S = 30
# A token of ours is ~370 characters; anything far larger is refused before any parsing or crypto.
MAX_TOKEN_CHARS = 4096

REFRESH_TOKEN_PREFIX = "vprt_"  # noqa: S105 - a public marker, not a secret
REFRESH_TOKEN_TTL_S = 7 * 24 * 3600
_REFRESH_TOKEN = re.compile(re.escape(REFRESH_TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")

_REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "did", "jti", "iat", "exp")
_COORDINATE_BYTES = 32  # P-256


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified content of an access token."""

    issuer: str
    audience: str
    user_id: str
    role: str
    device_id: str
    token_id: str
    issued_at: int
    expires_at: int
    # The refresh-token family (the session) the token was issued in: revoking it ends the token too.
    # None only for tokens issued before sessions were named in them (they expire within 15 minutes).
    session_id: str | None = None

    def as_jwt_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.user_id,
            "role": self.role,
            "did": self.device_id,
            "jti": self.token_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }
        if self.session_id is not None:
            claims["sid"] = self.session_id
        return claims


class TokenSigner(Protocol):
    """What signs access tokens: a KMS key in production (vaultpay.auth.adapters), a key set in tests."""

    def signing_kid(self) -> str:
        """The `kid` the signature verifies under."""
        ...

    def sign(self, signing_input: bytes) -> bytes:
        """The ES256 signature of `signing_input` as JWS wants it: r and s, 32 bytes each."""
        ...


def raw_signature(der: bytes) -> bytes:
    """A DER ECDSA signature (what KMS and `cryptography` give) as JWS's fixed-width r || s."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")


def jwks_document(
    public_keys_by_kid: Mapping[str, EllipticCurvePublicKey],
) -> dict[str, list[dict[str, str]]]:
    """The public JWK Set served at `/.well-known/jwks.json`."""
    return {
        "keys": [
            {**_ec_members(key), "kid": kid, "alg": ALGORITHM, "use": "sig"}
            for kid, key in public_keys_by_kid.items()
        ]
    }


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One P-256 key pair and its key id."""

    kid: str
    private_key: EllipticCurvePrivateKey = field(repr=False)

    @property
    def public_key(self) -> EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return {**_ec_members(self.public_key), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


@dataclass(frozen=True, slots=True)
class SigningKeySet:
    """The signing-key secret: the active key signs new tokens, every listed key verifies.

    Rotation is two edits of the secret, a verifier cache lifetime apart (the secret cache is 60 s):
    first add the new key while the old one stays active, so that every verifier knows it; then make it
    active; drop the old key once the last token it signed has expired (15 minutes).
    """

    active_kid: str
    keys: tuple[SigningKey, ...]

    @property
    def active(self) -> SigningKey:
        for key in self.keys:
            if key.kid == self.active_kid:
                return key
        raise ConfigurationError("the active signing key is not in the key set")

    @classmethod
    def from_secret(cls, json_text: str) -> SigningKeySet:
        """Parse `{"active_kid": ..., "keys": [{"kid", "alg": "ES256", "private_key_pem"}, ...]}`."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        # Messages name the problem and at most a kid: the document holds private keys.
        try:
            document = json.loads(json_text)
        except (TypeError, ValueError):
            raise ConfigurationError("the signing key secret is not JSON") from None
        if not isinstance(document, dict):
            raise ConfigurationError("the signing key secret is not a JSON object")
        active_kid, entries = document.get("active_kid"), document.get("keys")
        if not isinstance(active_kid, str) or not isinstance(entries, list) or not entries:
            raise ConfigurationError("the signing key secret needs active_kid and a non-empty keys list")
        keys: list[SigningKey] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ConfigurationError("a signing key entry is not an object")
            kid, alg, pem = entry.get("kid"), entry.get("alg"), entry.get("private_key_pem")
            if not isinstance(kid, str) or not kid or not isinstance(pem, str):
                raise ConfigurationError("a signing key entry needs kid and private_key_pem")
            if alg != ALGORITHM:
                raise ConfigurationError(f"signing key {kid} is not {ALGORITHM}")
            if any(k.kid == kid for k in keys):
                raise ConfigurationError(f"signing key {kid} is listed twice")
            try:
                private_key = load_pem_private_key(pem.encode("ascii"), password=None)
            except (ValueError, TypeError, UnicodeEncodeError):
                raise ConfigurationError(f"signing key {kid} is not a readable PEM private key") from None
            if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
                private_key.curve, ec.SECP256R1
            ):
                raise ConfigurationError(f"signing key {kid} is not a P-256 key")
            keys.append(SigningKey(kid, private_key))
        # Checked now, so a bad rotation fails at the first read of the secret, not at the first login.
        if not any(key.kid == active_kid for key in keys):
            raise ConfigurationError(f"the active signing key {active_kid} is not in the key set")
        return cls(active_kid=active_kid, keys=tuple(keys))

    def public_keys_by_kid(self) -> dict[str, EllipticCurvePublicKey]:
        return {key.kid: key.public_key for key in self.keys}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set served at `/.well-known/jwks.json`."""
        return {"keys": [key.public_jwk() for key in self.keys]}

    # A key set in memory is a TokenSigner too (tests, tools): the active key signs.
    def signing_kid(self) -> str:
        return self.active_kid

    def sign(self, signing_input: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return raw_signature(self.active.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))


def generate_signing_key_document(kid: str | None = None) -> str:
    """A new secret document holding one fresh P-256 key, active; kid defaults to its RFC 7638 thumbprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    kid = kid or jwk_thumbprint(private_key.public_key())
    document = {"active_kid": kid, "keys": [{"kid": kid, "alg": ALGORITHM, "private_key_pem": pem}]}
    return json.dumps(document)


def jwk_thumbprint(public_key: EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, base64url."""
    canonical = json.dumps(_ec_members(public_key), sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode("ascii")).digest())


def public_keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, EllipticCurvePublicKey]:
    """Verification keys from a JWK Set document (for a verifier that reads the JWKS, not the secret)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    keys: dict[str, EllipticCurvePublicKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ConfigurationError("the JWKS document has no keys list")
    for jwk in entries:
        if not isinstance(jwk, dict):
            raise ConfigurationError("a JWKS entry is not an object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys:
            raise ConfigurationError("a JWKS entry has a missing or repeated kid")
        if (
            jwk.get("kty") != "EC"
            or jwk.get("crv") != "P-256"
            or jwk.get("alg", ALGORITHM) != ALGORITHM
            or jwk.get("use", "sig") != "sig"
        ):
            raise ConfigurationError(f"JWKS key {kid} is not an ES256 signing key")
        x, y = _coordinate(jwk.get("x")), _coordinate(jwk.get("y"))
        if x is None or y is None:
            raise ConfigurationError(f"JWKS key {kid} has malformed coordinates")
        try:
            keys[kid] = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except ValueError:
            raise ConfigurationError(f"JWKS key {kid} is not a point on P-256") from None
    return keys


def issue_access_token(
    signer: TokenSigner,
    *,
    user_id: str,
    role: str,
    device_id: str,
    issuer: str,
    audience: str,
    now: float,
    ttl_s: int = ACCESS_TOKEN_TTL_S,
    session_id: str | None = None,
) -> tuple[str, AccessClaims]:
    """Sign a new access token with the signer's key; `now` is Unix time in seconds.

    The JWS is assembled here and only its signing input goes to the signer: with KMS, the private key
    never leaves the key service (no verifier can read it).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not (user_id and device_id and issuer and audience) or ttl_s <= 0:
        raise ValueError("an access token needs a user, a device, an issuer, an audience and a lifetime")
    issued_at = int(now)
    claims = AccessClaims(
        issuer=issuer,
        audience=audience,
        user_id=user_id,
        role=role,
        device_id=device_id,
        token_id=_b64(secrets.token_bytes(16)),
        issued_at=issued_at,
        expires_at=issued_at + ttl_s,
        session_id=session_id,
    )
    header = {"alg": ALGORITHM, "kid": signer.signing_kid(), "typ": TOKEN_TYPE}
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims.as_jwt_claims())
    )
    signature = signer.sign(signing_input.encode("ascii"))
    if len(signature) != 2 * _COORDINATE_BYTES:
        raise ConfigurationError("the token signer returned a signature that is not ES256")
    return f"{signing_input}.{_b64(signature)}", claims


def verify_access_token(
    token: str,
    *,
    public_keys_by_kid: Mapping[str, EllipticCurvePublicKey],
    issuer: str,
    audience: str,
    now: float,
    leeway_s: int = DEFAULT_LEEWAY_S,
) -> AccessClaims:
    """The claims of `token` if it is a valid, current access token of ours; Unauthorized otherwise."""
    import jwt

    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or token.count(".") != 2:
        raise _invalid()
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        raise _invalid() from exc
    # The header only chooses among keys we hold; the algorithm is ours, never the token's.
    kid = header.get("kid")
    if (
        header.get("alg") != ALGORITHM
        or header.get("typ") != TOKEN_TYPE
        or "crit" in header
        or not isinstance(kid, str)
        or kid not in public_keys_by_kid
    ):
        raise _invalid()
    try:
        payload = jwt.decode(
            token,
            key=public_keys_by_kid[kid],
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            # Time claims are checked below against the caller's `now` (pyjwt reads the wall clock).
            options={
                "require": list(_REQUIRED_CLAIMS),
                "strict_aud": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        raise _invalid() from exc
    claims = _typed_claims(payload)
    if claims.issuer != issuer or claims.audience != audience:
        raise _invalid()
    if claims.issued_at > now + leeway_s:
        raise _invalid()
    nbf = payload.get("nbf")
    if nbf is not None and (not _is_int(nbf) or nbf > now + leeway_s):
        raise _invalid()
    # Expiry is judged only after the signature held, so "expired" is never said of a forgery.
    if claims.expires_at <= now - leeway_s:
        raise Unauthorized("the access token has expired", code="token_expired")
    return claims


def new_refresh_token() -> str:
    """A fresh opaque refresh token: the prefix (recognisable by secret scanners) and 256 random bits."""
    return REFRESH_TOKEN_PREFIX + _b64(secrets.token_bytes(32))


def refresh_token_hash(token: str) -> str:
    """SHA-256 hex of a refresh token: the only form ever stored.

    A plain hash suffices (no salt, no slow KDF): the token carries 256 random bits, so nobody can guess
    preimages, and a deterministic hash is what lets the token be found by its hash.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def refresh_token_lookup_key(token: object) -> str:
    """The hash to look a presented refresh token up by; a malformed one is Unauthorized before any read."""
    if not isinstance(token, str) or not _REFRESH_TOKEN.fullmatch(token):
        raise Unauthorized("the refresh token is not valid", code="invalid_token")
    return refresh_token_hash(token)


def _typed_claims(payload: Mapping[str, Any]) -> AccessClaims:
    strings = {name: payload.get(name) for name in ("iss", "aud", "sub", "role", "did", "jti")}
    if not all(isinstance(value, str) and value for value in strings.values()):
        raise _invalid()
    iat, exp = payload.get("iat"), payload.get("exp")
    if not _is_int(iat) or not _is_int(exp) or exp <= iat:
        raise _invalid()
    if strings["role"] not in ROLES:
        raise _invalid()
    session_id = payload.get("sid")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise _invalid()
    return AccessClaims(
        issuer=str(strings["iss"]),
        audience=str(strings["aud"]),
        user_id=str(strings["sub"]),
        role=str(strings["role"]),
        device_id=str(strings["did"]),
        token_id=str(strings["jti"]),
        issued_at=iat,
        expires_at=exp,
        session_id=session_id,
    )


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python: `"exp": true` must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid() -> Unauthorized:
    return Unauthorized("the access token is not valid", code="invalid_token")


def _ec_members(public_key: EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": _b64(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
    }


def _coordinate(value: object) -> int | None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
        return None
    raw = urlsafe_b64decode(value + "=")
    return int.from_bytes(raw, "big") if len(raw) == _COORDINATE_BYTES else None


def _b64(raw: bytes) -> str:
    return urlsafe_b64encode(raw).decode("ascii").rstrip("=")
