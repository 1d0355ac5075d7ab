"""Schemathesis against the local API: no 5xx, and every response as infra/openapi/openapi.json documents it.

Every operation of the committed document is called with generated data, valid (positive) and invalid
(negative), by a signed-in customer or admin as the route needs, with real path ids of the caller's own
account and transfer as well as random ones. Each request comes from a fresh loopback address (rate limits
are per source IP), and in the long run every operation speaks as a user of its own (the authorizer's limit
is per user); every 429 still goes through the checks, and a run where 429s stand in for the real answers,
or where a signed-in user gets a 401, fails.

`make test` runs a short pass (EXAMPLES per operation and mode, a fixed seed, no coverage phase); `make bench`
runs it longer through bench/schemathesis_run.py, which sets the VAULTPAY_SCHEMATHESIS_* variables below.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
import schemathesis
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.bank import ADMIN_PASSWORD, PASSWORD, create_admin, deposit, idempotency_key, open_account
from support.http import ApiClient

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "infra" / "openapi" / "openapi.json"
EXAMPLES = int(os.environ.get("VAULTPAY_SCHEMATHESIS_EXAMPLES", "6"))
# Where the long run wants the status codes seen per operation (JSON).
STATUSES = os.environ.get("VAULTPAY_SCHEMATHESIS_STATUSES")
# The coverage phase walks every boundary of every field (hundreds of requests per operation): long run only.
COVERAGE = os.environ.get("VAULTPAY_SCHEMATHESIS_COVERAGE") == "1"
# The authorizer allows 600 calls a minute per user, and an operation's examples run back to back: past this
# many examples, every operation speaks as a user of its own so that the limiter does not answer for the API.
USER_PER_OPERATION_FROM = 50
# A 429 is a documented answer, but beyond this share of an operation's responses the run tested the limiter.
MAX_RATE_LIMITED_SHARE = 0.2
RUPEE = 100
TOKEN_REFRESH_S = 600  # access tokens live 900 s
REVIEW_AMOUNT = 2_00_000 * RUPEE  # infra/fraud/default-config.json: HIGH_AMOUNT holds it for review

# Not run: positive_data_acceptance, as docs/api.md's business rules refuse data the schema allows (only INR
# is enabled, an account or transfer must exist and be the caller's, a float amount like 5.0 is a 422 though
# JSON Schema counts it an integer); those answers are documented 404/409/422 and conformance checks them.
# response_schema_conformance holds every success body to its response model's schema (components/schemas),
# and tests/component/test_openapi_document.py fails on a bare object, so it cannot pass for want of one.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    # The token and X-Device-Id are the signed-in user's (below), not generated: a random bearer only ever
    # meets the authorizer's 401, which tests/e2e/test_identity.py covers with forged and expired tokens.
    with_security_parameters=False,
    # Query parameters a route does not document are ignored (the document says so; docs/api.md refuses other
    # fields in bodies only), so a request with an extra one is no invalid request that must be refused.
    allow_extra_parameters=False,
    database="none",
)
# A fixed seed in `make test` (the same examples every run); the long run draws new ones and records its seed.
schema.config.seed = int(os.environ.get("VAULTPAY_SCHEMATHESIS_SEED", "20261128"))
schema.config.update(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
schema.config.phases.coverage.enabled = COVERAGE


@dataclass
class Customer:
    """A signed-in customer with two accounts (savings funded) and two transfers between them."""

    session: Session
    email: str
    accounts: list[dict[str, Any]] = field(default_factory=list)  # savings, current
    transfer_ids: list[str] = field(default_factory=list)  # one small, one held for review


class Actors:
    """The users the run speaks as, filled in by the module fixture and, per operation, on first use."""

    def __init__(self) -> None:
        self.api = ""
        self.cloud: Any = None
        self.admin: Session | None = None
        self.customer: Customer | None = None  # owns the ids the admin routes get
        self.by_operation: dict[str, Session | Customer] = {}
        self.statuses: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.lock = threading.Lock()


ACTORS = Actors()
# Rate limits are per source IP: each request has its own address (tests/e2e/conftest.py uses 127.0.x.y).
_addresses = (f"127.{a}.{b}.{c}" for a in range(10, 250) for b in range(256) for c in range(1, 255))
_addresses_lock = threading.Lock()


def _next_address() -> str:
    with _addresses_lock:
        return next(_addresses)


class _SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source_ip: str) -> None:
        self._source_ip = source_ip
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def _http_session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _SourceAddressAdapter(_next_address()))
    return session


def _client(api: str, device_id: str) -> ApiClient:
    return ApiClient(api, _next_address(), device_id)


class Session:
    """A signed-in user's client and refresh token: the long run outlives the 15-minute access token."""

    def __init__(self, client: ApiClient, refresh_token: str) -> None:
        self.client = client
        self.refresh_token = refresh_token
        self.signed_in_at = time.monotonic()
        self.lock = threading.Lock()

    @classmethod
    def sign_in(cls, client: ApiClient, email: str, password: str, totp_secret: str) -> Session:
        started = client.post("/v1/auth/login", {"email": email, "password": password}, token=None)
        assert started.status == 200, started.body
        code = pyotp.TOTP(totp_secret).now()
        tokens = client.post(
            "/v1/auth/mfa/verify", {"challenge_id": started.body["challenge_id"], "code": code}, token=None
        )
        assert tokens.status == 200, tokens.body
        client.token = tokens.body["access_token"]
        return cls(client, tokens.body["refresh_token"])

    def headers(self) -> dict[str, str]:
        """Authorization and X-Device-Id, with a new token pair once the access token is 10 minutes old."""
        with self.lock:
            if time.monotonic() - self.signed_in_at > TOKEN_REFRESH_S:
                tokens = self.client.post(
                    "/v1/auth/refresh", {"refresh_token": self.refresh_token}, token=None
                )
                assert tokens.status == 200, tokens.body
                self.client.token, self.refresh_token = (
                    tokens.body["access_token"],
                    tokens.body["refresh_token"],
                )
                self.signed_in_at = time.monotonic()
            return {"Authorization": f"Bearer {self.client.token}", "X-Device-Id": self.client.device_id}


def _new_admin() -> Session:
    email, secret = create_admin(ACTORS.cloud)
    return Session.sign_in(_client(ACTORS.api, "treasury-laptop"), email, ADMIN_PASSWORD, secret)


def _new_customer(admin: Session) -> Customer:
    client = _client(ACTORS.api, f"schemathesis-{uuid.uuid4().hex[:6]}")
    email = f"schemathesis.{uuid.uuid4().hex[:10]}@example.com"
    registered = client.post(
        "/v1/auth/register",
        {"email": email, "password": PASSWORD, "full_name": "Asha Rao", "phone": "+919876543210"},
        token=None,
    )
    assert registered.status == 201, registered.body
    customer = Customer(Session.sign_in(client, email, PASSWORD, registered.body["mfa"]["secret"]), email)
    savings, current = open_account(client), open_account(client, "CURRENT")
    customer.accounts = [savings, current]
    funded = deposit(admin.client, savings["account_id"], 10 * REVIEW_AMOUNT)
    assert funded.status == 201, funded.body
    for amount in (50 * RUPEE, REVIEW_AMOUNT):
        sent = client.post(
            "/v1/transfers",
            {
                "source_account_id": savings["account_id"],
                "destination_account_number": current["account_number"],
                "amount": amount,
                "currency": "INR",
            },
            headers=idempotency_key(),
        )
        assert sent.status == 202, sent.body
        customer.transfer_ids.append(sent.body["transfer_id"])
    return customer


def _actor_for(case: Any) -> Session | Customer:
    """The admin for /v1/admin routes, else a customer; in a long run, a new one for each operation."""
    admin = case.path.startswith("/v1/admin/")
    assert ACTORS.admin is not None and ACTORS.customer is not None
    if EXAMPLES < USER_PER_OPERATION_FROM:
        return ACTORS.admin if admin else ACTORS.customer
    label = f"{case.method.upper()} {case.path}"
    if label not in ACTORS.by_operation:
        ACTORS.by_operation[label] = _new_admin() if admin else _new_customer(ACTORS.admin)
    return ACTORS.by_operation[label]


def _coin(case: Any) -> bool:
    """Heads for about half of the examples, the same for the same example (Hypothesis replays them)."""
    drawn = repr((case.path_parameters, case.query, case.body)).encode()
    return hashlib.sha256(drawn).digest()[0] % 2 == 0


def _make_realistic(case: Any, owner: Customer) -> None:
    """For half of the valid (positive) examples, swaps in ids the caller owns and bodies that can succeed:
    the caller's accounts and transfers (`owner`: the admin acts on the first customer's), a new user's
    registration, a customer's login, a transfer between the two accounts, a deposit into one. Negative
    examples stay as generated (they must be refused)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not _coin(case):
        return
    savings, current = owner.accounts
    params = dict(case.path_parameters or {})
    if "account_id" in params:
        case.path_parameters = {**params, "account_id": savings["account_id"]}
    elif "transfer_id" in params:
        # The admin reviews the held transfer; the customer reads either.
        index = (
            1 if case.path.startswith("/v1/admin/") else hashlib.sha256(repr(params).encode()).digest()[0] % 2
        )
        case.path_parameters = {**params, "transfer_id": owner.transfer_ids[index]}
    if case.query and "account_id" in case.query:
        case.query = {**case.query, "account_id": savings["account_id"]}
    if not isinstance(case.body, dict):
        return
    body = dict(case.body)
    if case.path == "/v1/transfers":
        body.update(
            source_account_id=savings["account_id"],
            destination_account_number=current["account_number"],
            currency="INR",
        )
    elif case.path == "/v1/admin/deposits":
        body.update(account_id=savings["account_id"], currency="INR")
    elif case.path == "/v1/accounts":
        body.update(currency="INR")
    elif case.path == "/v1/auth/register":
        digest = hashlib.sha256(repr(case.body).encode()).hexdigest()[:24]
        body = {
            "email": f"fuzz.{digest}@example.com",
            "password": PASSWORD,
            "full_name": "Fuzz Tester",
            "phone": "+919876543210",
        }
    elif case.path == "/v1/auth/login":
        body = {"email": _login_email(), "password": PASSWORD}
    case.body = body


# A correct password opens at most 3 challenges per user in 5 minutes (vaultpay.auth.service
# CHALLENGES_PER_USER): login examples take turns among users of their own, two logins each.
_LOGINS_PER_USER = 2
_login_users: list[str] = []
_login_uses: collections.Counter[str] = collections.Counter()
_login_lock = threading.Lock()


def _login_email() -> str:
    with _login_lock:
        if not _login_users or _login_uses[_login_users[-1]] >= _LOGINS_PER_USER:
            email = f"schemathesis.login.{uuid.uuid4().hex[:10]}@example.com"
            registered = _client(ACTORS.api, "schemathesis-login").post(
                "/v1/auth/register",
                {"email": email, "password": PASSWORD, "full_name": "Login Tester", "phone": "+919876543210"},
                token=None,
            )
            assert registered.status == 201, registered.body
            _login_users.append(email)
        email = _login_users[-1]
        _login_uses[email] += 1
        return email


@pytest.fixture(scope="module")
def actors(local_cloud: Any) -> Iterator[Actors]:
    ACTORS.api, ACTORS.cloud = local_cloud.api, local_cloud
    ACTORS.admin = _new_admin()
    ACTORS.customer = _new_customer(ACTORS.admin)
    began = time.perf_counter()
    yield ACTORS
    _report(time.perf_counter() - began)


def _report(seconds: float) -> None:
    if not STATUSES:
        return
    Path(STATUSES).write_text(
        json.dumps(
            {
                "examples_per_operation": EXAMPLES,
                "users": 2 + len(ACTORS.by_operation),
                "seconds": round(seconds, 1),
                "statuses": {op: dict(sorted(c.items())) for op, c in sorted(ACTORS.statuses.items())},
            },
            indent=2,
        )
    )


@schema.parametrize()
def test_api_matches_its_document(case: Any, actors: Actors, local_cloud: Any) -> None:
    label = f"{case.method.upper()} {case.path}"
    headers: dict[str, str] = {}
    owner = ACTORS.customer
    if case.operation.definition.raw.get("security"):
        actor = _actor_for(case)
        session = actor.session if isinstance(actor, Customer) else actor
        headers = session.headers()
        owner = actor if isinstance(actor, Customer) else owner
    assert owner is not None
    _make_realistic(case, owner)
    with _http_session() as http:
        response = case.call_and_validate(
            base_url=local_cloud.api, session=http, headers=headers, checks=CHECKS
        )
    with actors.lock:
        actors.statuses[label][response.status_code] += 1
        seen = actors.statuses[label]
        limited = seen[429]
        total = sum(seen.values())
    # The token and device are always the signed-in user's: a 401 here means the session lapsed (masking).
    assert not (headers and response.status_code == 401), f"{label}: 401 for a signed-in user"
    assert not (total >= 10 and limited / total > MAX_RATE_LIMITED_SHARE), (
        f"{label}: {limited} of {total} responses were 429: the rate limiter masked the run"
    )
