"""`vaultpay smoke --api URL`: the post-deploy check. Four steps over the public API, each printed as it ends,
exit status 1 naming the first that failed.

health (GET /v1/health answers `ok`), register (a fresh customer), login (password, then the TOTP code the
enrolment's secret gives, as an authenticator app would; docs/api.md), read (GET /v1/accounts with the access
token). Every run registers one customer, `smoke.<run id>@<domain>`, so a stage keeps a trace of its checks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from vaultpay_cli.demo import Answer, Http, Unreachable

smoke_app = typer.Typer()

STEPS = ("health", "register", "login", "read")
# A throwaway customer's password: fresh per run, never printed.
PASSWORD_BYTES = 18
SMOKE_PHONE = "+919800000000"


class StepFailed(Exception):
    """A step's answer was not what a working deployment gives; the message says what came instead."""


@dataclass
class StepResult:
    step: str
    ok: bool
    elapsed_ms: float
    detail: str


class Smoke:
    """The four steps against one API; each returns a line for the operator, or raises StepFailed."""

    def __init__(self, api: Http, email_domain: str) -> None:
        import secrets

        self.api = api
        self.run_id = uuid.uuid4().hex[:10]
        self.email = f"smoke.{self.run_id}@{email_domain}"
        self.password = secrets.token_urlsafe(PASSWORD_BYTES)
        self.device = f"smoke-{self.run_id}"
        self.user_id = ""
        self.mfa_secret = ""
        self.token = ""

    def call(self, method: str, path: str, body: Any = None, *, expect: int, auth: bool = False) -> Answer:
        headers = {"X-Device-Id": self.device}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        answer = self.api.call(method, path, body, headers)
        if answer.status != expect:
            raise StepFailed(f"{method} {path} answered {answer.problem()} (expected {expect})")
        if not isinstance(answer.body, dict):
            raise StepFailed(f"{method} {path} answered {answer.status} without a JSON object")
        return answer

    def health(self) -> str:
        body = self.call("GET", "/v1/health", expect=200).body
        if body.get("status") != "ok":
            raise StepFailed(f"GET /v1/health answered status {body.get('status')!r}: {body.get('checks')}")
        return f"GET /v1/health: ok ({', '.join(sorted(body.get('checks') or {}))})"

    def register(self) -> str:
        body = {
            "email": self.email,
            "password": self.password,
            "full_name": "Smoke Check",
            "phone": SMOKE_PHONE,
        }
        created = self.call("POST", "/v1/auth/register", body, expect=201).body
        self.user_id = str(created.get("user_id", ""))
        self.mfa_secret = str((created.get("mfa") or {}).get("secret", ""))
        if not self.user_id or not self.mfa_secret:
            raise StepFailed("POST /v1/auth/register answered 201 without a user id and a TOTP secret")
        return f"POST /v1/auth/register: {self.user_id} ({self.email})"

    def login(self) -> str:
        import pyotp

        credentials = {"email": self.email, "password": self.password}
        started = self.call("POST", "/v1/auth/login", credentials, expect=200).body
        if "challenge_id" not in started:
            raise StepFailed("POST /v1/auth/login answered 200 without an MFA challenge")
        code = pyotp.TOTP(self.mfa_secret).now()
        verify = {"challenge_id": started["challenge_id"], "code": code}
        tokens = self.call("POST", "/v1/auth/mfa/verify", verify, expect=200).body
        self.token = str(tokens.get("access_token", ""))
        if not self.token:
            raise StepFailed("POST /v1/auth/mfa/verify answered 200 without an access token")
        return f"POST /v1/auth/login + /v1/auth/mfa/verify: signed in, token for {tokens.get('expires_in')} s"

    def read(self) -> str:
        body = self.call("GET", "/v1/accounts", expect=200, auth=True).body
        return f"GET /v1/accounts: {len(body.get('items') or [])} accounts"

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("health", self.health),
            ("register", self.register),
            ("login", self.login),
            ("read", self.read),
        ]


def run_smoke(
    api_url: str, *, email_domain: str, timeout_s: float, emit: Callable[[StepResult], None]
) -> bool:
    """Runs the steps in order until one fails; `emit` gets each result as it ends. True when all passed."""
    try:
        smoke = Smoke(Http(api_url, timeout_s=timeout_s), email_domain)
    except Unreachable as exc:
        emit(StepResult("health", False, 0.0, str(exc)))
        return False
    for name, step in smoke.steps():
        began = time.monotonic()
        try:
            detail, ok = step(), True
        except StepFailed as exc:
            detail, ok = str(exc), False
        except Unreachable as exc:
            # The demo's message suggests `make run`; here the API may be anywhere: say what did not answer.
            cause = exc.__cause__ or exc
            detail, ok = f"{api_url} does not answer: {type(cause).__name__}: {cause}", False
        emit(StepResult(name, ok, round((time.monotonic() - began) * 1000, 1), detail))
        if not ok:
            return False
    return True


@smoke_app.command("smoke")
def smoke(
    api: Annotated[str, typer.Option("--api", help="The API's base URL, e.g. the stack's ApiUrl output")],
    email_domain: Annotated[
        str, typer.Option("--email-domain", help="Domain of the customer each run registers")
    ] = "smoke.vaultpay.dev",
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for each answer")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document of the steps")] = False,
) -> None:
    """Check a deployed API: health, register, TOTP login, one read; exit 1 naming the failed step."""
    results: list[StepResult] = []

    def emit(result: StepResult) -> None:
        results.append(result)
        if not as_json:
            mark = "ok  " if result.ok else "FAIL"
            typer.echo(f"{mark} {result.step:<9} {result.elapsed_ms:>8.1f} ms  {result.detail}")

    passed = run_smoke(api, email_domain=email_domain, timeout_s=timeout, emit=emit)
    failed = next((r.step for r in results if not r.ok), None)
    if as_json:
        document = {"api": api, "ok": passed, "failed_step": failed, "steps": [asdict(r) for r in results]}
        typer.echo(json.dumps(document, indent=2))
    if not passed:
        typer.echo(f"Smoke check of {api} failed at step {failed!r}.", err=True)
        raise typer.Exit(1)
    typer.echo(f"Smoke check of {api} passed ({len(results)} steps).", err=as_json)
