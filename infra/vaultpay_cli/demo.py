"""`vaultpay demo` (`make demo`): a guided tour of VaultPay over its HTTP API, for a newcomer to follow.

Against a running local cloud (`make run`) it registers two customers and signs them in with MFA, creates an
admin the operator's way (the CreateAdminFunction Lambda, invoked on the edge like `vaultpay admin
create-user`), opens accounts, deposits, sends a transfer that completes, one the fraud engine declines and
one held for review that the admin approves, then shows the transfers' events in the audit log and verifies
the hash chain. Every step says what it calls and why, and prints the key fields of each answer; account
numbers, tokens and TOTP secrets are only ever printed masked (the demo checks its own output at the end).

Exit status: 0 when every step behaved as expected, 1 when one did not (the message names the step), 2 when
the API or the edge cannot be reached.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from vaultpay_cli.target import invoke_when_not_throttled, local_client

demo_app = typer.Typer(help="A guided demo of VaultPay against a running `make run`.")

RUPEE = 100  # paise
DEPOSIT = 12_50_000 * RUPEE
SMALL = 2_500 * RUPEE
# infra/fraud/default-config.json: HIGH_AMOUNT holds from ₹2,00,000 for review and declines from ₹10,00,000.
REVIEW_AMOUNT = 2_00_000 * RUPEE
DECLINE_AMOUNT = 10_00_000 * RUPEE
TERMINAL = frozenset({"COMPLETED", "DECLINED", "FAILED"})
PASSWORD = "a long demo pass phrase"  # noqa: S105 - a throwaway password for throwaway demo users
# The events each transfer's saga writes under the POST's correlation id (docs/transfers-contract.md).
SAGA_START = frozenset(
    {
        "vaultpay.transaction.initiated",
        "vaultpay.transaction.debit.requested",
        "vaultpay.fraud.check.requested",
        "vaultpay.fraud.result",
    }
)
COMPLETED_EVENTS = SAGA_START | {"vaultpay.transaction.credit.requested", "vaultpay.transaction.completed"}
DECLINED_EVENTS = SAGA_START | {"vaultpay.transaction.declined"}


class DemoFailure(Exception):
    """A step did not behave as expected: the message says what was expected and what came instead."""


class Unreachable(DemoFailure):
    """The API or the edge does not answer at all."""


def rupees(paise: int) -> str:
    """₹ with Indian digit grouping: 125000000 → ₹12,50,000.00."""
    whole, fraction = divmod(abs(paise), 100)
    digits = str(whole)
    head, tail = digits[:-3], digits[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    grouped = ",".join([*groups, tail]) if groups else tail
    return f"{'-' if paise < 0 else ''}₹{grouped}.{fraction:02d}"


def mask_number(number: str) -> str:
    """An account number as docs/api.md's lists show it: XXXXXXXX1234."""
    return "X" * max(len(number) - 4, 0) + number[-4:]


def mask_secret(secret: str) -> str:
    """A token or a secret: its first four characters and its length, never the rest."""
    return f"{secret[:4]}…({len(secret)} chars)"


def short(value: Any, keep: int = 10) -> str:
    text = str(value or "")
    return text if len(text) <= keep else text[:keep] + "…"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def problem(self) -> str:
        if isinstance(self.body, dict):
            code = self.body.get("code") or self.body.get("error") or ""
            detail = self.body.get("detail") or self.body.get("message") or ""
            return f"{self.status} {code} {detail}".strip()
        return f"{self.status} {str(self.body)[:200]}"


class Http:
    """A small JSON client for one base URL (the API, or the edge), stdlib only."""

    def __init__(self, base_url: str, timeout_s: float = 30) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise Unreachable(f"{base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port
        self.prefix = parsed.path.rstrip("/")
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        sent = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        for attempt in range(4):
            answer = self._once(method, path, payload, sent)
            if answer.status != 429 or attempt == 3:
                return answer
            # Rate limited: wait as told (bounded), then try again.
            time.sleep(min(float(answer.header("Retry-After") or 1), 5.0))
        return answer

    def _once(self, method: str, path: str, payload: bytes | None, headers: dict[str, str]) -> Answer:
        connection_class = (
            http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        )
        conn = connection_class(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            received = dict(response.getheaders())
        except OSError as exc:
            raise Unreachable(
                f"{self.base_url} does not answer ({exc.__class__.__name__}: {exc}). "
                "Is the local cloud up? Start it with `make run` and wait for 'Ready'."
            ) from exc
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, received, parsed)


@dataclass
class Customer:
    name: str
    email: str
    phone: str
    device_id: str
    user_id: str = ""
    mfa_secret: str = ""
    token: str = ""


@dataclass
class Account:
    owner: Customer
    account_id: str
    number: str
    kind: str

    @property
    def masked(self) -> str:
        return mask_number(self.number)


@dataclass
class SentTransfer:
    label: str
    correlation_id: str
    transfer_id: str
    expected_events: frozenset[str]
    final: dict[str, Any] = field(default_factory=dict)


class Demo:
    """The tour, step by step; every step raises DemoFailure when the system does not answer as expected."""

    def __init__(
        self,
        console: Console,
        api_url: str,
        edge_url: str,
        *,
        saga_timeout_s: float,
        audit_timeout_s: float,
        admin_function: str | None,
    ) -> None:
        self.console = console
        self.api = Http(api_url)
        self.edge = Http(edge_url)
        self.edge_url = edge_url.rstrip("/")
        self.saga_timeout_s = saga_timeout_s
        self.audit_timeout_s = audit_timeout_s
        self.admin_function = admin_function
        self.run_id = uuid.uuid4().hex[:8]
        self.step_no = 0
        self.step_title = "starting"
        self.secrets: set[str] = set()
        self.asha = Customer("Asha", f"asha.{self.run_id}@example.com", "+919876543210", "asha-phone")
        self.ravi = Customer("Ravi", f"ravi.{self.run_id}@example.com", "+919812345670", "ravi-laptop")
        self.admin = Customer(
            "Treasurer", f"treasurer.{self.run_id}@vaultpay.dev", "+919811111111", "ops-desk"
        )
        self.approver = Customer(
            "Controller", f"controller.{self.run_id}@vaultpay.dev", "+919822222222", "controls-desk"
        )
        self.transfers: list[SentTransfer] = []

    # ---- presentation --------------------------------------------------------------------------------
    @contextmanager
    def step(self, title: str, why: str) -> Iterator[None]:
        self.step_no += 1
        self.step_title = title
        self.console.print()
        self.console.rule(f"[bold cyan]Step {self.step_no}. {title}", align="left")
        self.console.print(f"[italic]{why}[/]")
        yield

    def calling(self, method: str, path: str, why: str, who: str = "") -> None:
        by = f" [dim]as {who}[/]" if who else ""
        self.console.print(f"  [bold]→ {method} {path}[/]{by}  [dim]— {why}[/]")

    def answered(self, code: int, /, **fields: Any) -> None:
        shown = "  ".join(f"[cyan]{k}[/]={v}" for k, v in fields.items())
        self.console.print(f"    ← [green]{code}[/]  {shown}")

    def ok(self, message: str) -> None:
        self.console.print(f"  [bold green]✔[/] {message}", soft_wrap=True)

    def secret(self, value: str) -> str:
        """Remember a value that must never be printed in full."""
        if value:
            self.secrets.add(value)
        return value

    # ---- HTTP helpers ----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        who: Customer | None = None,
        expect: int = 200,
        headers: dict[str, str] | None = None,
        sign_in: bool = False,
    ) -> Answer:
        sent = dict(headers or {})
        if who is not None:
            sent["X-Device-Id"] = who.device_id
            if who.token and not sign_in:
                sent["Authorization"] = f"Bearer {who.token}"
        answer = self.api.call(method, path, body, sent)
        if answer.status != expect:
            raise DemoFailure(f"{method} {path} answered {answer.problem()} (expected {expect})")
        return answer

    # ---- the tour --------------------------------------------------------------------------------------
    def run(self) -> None:
        self.intro()
        self.check_health()
        for customer in (self.asha, self.ravi):
            self.register_and_sign_in(customer)
        self.create_admin()
        source, destination = self.open_accounts()
        self.deposit(source)
        self.completed_transfer(source, destination)
        self.declined_transfer(source, destination)
        self.reviewed_transfer(source, destination)
        self.balances(source, destination)
        seqs = self.events()
        self.audit_trail()
        self.verify_chain(seqs)
        self.check_output_is_masked()
        self.console.print()
        self.console.print(
            Panel.fit(
                "[bold green]Demo complete.[/] Every step behaved as expected.\n"
                "Next: [bold].venv/bin/vaultpay ops events tail[/] to follow the stream, "
                "[bold].venv/bin/vaultpay ops audit verify[/] to check the chain from the table itself.",
                title="VaultPay",
            )
        )

    def intro(self) -> None:
        self.console.print(
            Panel.fit(
                f"A guided tour of VaultPay over its HTTP API.\nAPI  [cyan]{self.api.base_url}[/]   "
                f"edge (AWS endpoint) [cyan]{self.edge_url}[/]   run id [cyan]{self.run_id}[/]\n"
                "Amounts are integer paise on the wire and shown here in ₹. Account numbers, tokens and "
                "TOTP secrets are masked.",
                title="VaultPay demo",
            )
        )

    def check_health(self) -> None:
        with self.step("Is the stack up?", "The health route needs no login and checks every dependency."):
            self.calling("GET", "/v1/health", "no auth; reports DynamoDB, Step Functions and NATS")
            answer = self.request("GET", "/v1/health")
            checks = answer.body.get("checks", {}) if isinstance(answer.body, dict) else {}
            self.answered(answer.status, status=answer.body.get("status"), checks=checks)
            if answer.body.get("status") != "ok":
                raise DemoFailure(f"the API is not healthy: {answer.body}")
            self.ok("the API answers and its dependencies are up")

    def register_and_sign_in(self, customer: Customer) -> None:
        with self.step(
            f"{customer.name} registers and signs in with MFA",
            "Registration enrols a TOTP authenticator; signing in takes the password, then a one-time "
            "code, and yields a short-lived access token bound to the device.",
        ):
            self.calling("POST", "/v1/auth/register", "every user registered through the API is a customer")
            body = {
                "email": customer.email,
                "password": PASSWORD,
                "full_name": f"{customer.name} Demo",
                "phone": customer.phone,
            }
            answer = self.request("POST", "/v1/auth/register", body, expect=201)
            customer.user_id = answer.body["user_id"]
            customer.mfa_secret = self.secret(answer.body["mfa"]["secret"])
            self.secret(answer.body["mfa"].get("otpauth_uri", ""))
            self.answered(
                answer.status,
                user_id=customer.user_id,
                mfa=answer.body["mfa"]["type"],
                secret=mask_secret(customer.mfa_secret),
            )
            self.sign_in(customer, PASSWORD)
            self.calling(
                "GET", "/v1/me", "a protected route: token and device header must match", customer.name
            )
            me = self.request("GET", "/v1/me", who=customer).body
            self.answered(200, email=me["email"], role=me["role"], phone=me["phone_masked"])
            if me["role"] != "customer" or me["user_id"] != customer.user_id:
                raise DemoFailure(f"/v1/me answered {me['user_id']} ({me['role']}), not the new customer")
            self.ok(f"{customer.name} is signed in on device {customer.device_id!r}")

    def sign_in(self, user: Customer, password: str) -> None:
        import pyotp

        self.calling("POST", "/v1/auth/login", "checks the password, opens an MFA challenge", user.name)
        started = self.request(
            "POST", "/v1/auth/login", {"email": user.email, "password": password}, who=user, sign_in=True
        ).body
        self.answered(200, mfa_required=started["mfa_required"], expires_in=started["expires_in"])
        code = pyotp.TOTP(user.mfa_secret).now()
        self.calling(
            "POST",
            "/v1/auth/mfa/verify",
            f"the code an authenticator app shows now ({code[:2]}••••), from the same device",
            user.name,
        )
        tokens = self.request(
            "POST",
            "/v1/auth/mfa/verify",
            {"challenge_id": started["challenge_id"], "code": code},
            who=user,
            sign_in=True,
        ).body
        user.token = self.secret(tokens["access_token"])
        self.secret(tokens["refresh_token"])
        self.answered(
            200,
            access_token=mask_secret(user.token),
            refresh_token=mask_secret(tokens["refresh_token"]),
            expires_in=tokens["expires_in"],
        )

    def create_admin(self, admin: Customer | None = None) -> None:
        admin = admin or self.admin
        with self.step(
            f"An operator creates an admin ({admin.name})",
            "Admins never come from /v1/auth/register: the operator invokes the CreateAdminFunction Lambda "
            "(what `vaultpay admin create-user` does). The admin then signs in with MFA like anyone.",
        ):
            name = self.admin_function or self.find_admin_function()
            self.calling("Lambda Invoke", name, "on the edge, the local AWS endpoint", "the operator")
            created = self.invoke_lambda(
                name,
                {
                    "email": admin.email,
                    "password": PASSWORD,
                    "full_name": f"{admin.name} Demo",
                    "phone": admin.phone,
                    "operator": "local:demo",
                },
            )
            if created.get("role") != "admin" or "user_id" not in created:
                raise DemoFailure(
                    f"CreateAdminFunction did not create an admin: {created.get('error', created)}"
                )
            admin.user_id = created["user_id"]
            admin.mfa_secret = self.secret(created["mfa"]["secret"])
            self.secret(created["mfa"].get("otpauth_uri", ""))
            self.answered(200, user_id=admin.user_id, role="admin", secret=mask_secret(admin.mfa_secret))
            self.sign_in(admin, PASSWORD)
            self.ok(f"{admin.name} is signed in")

    def find_admin_function(self) -> str:
        """The physical name of CreateAdminFunction: the stack output the local cloud reports."""
        status = self.edge.call("GET", "/_localcloud/status")
        if status.status == 200 and isinstance(status.body, dict):
            for stack in status.body.get("stacks", []):
                name = (stack.get("outputs") or {}).get("CreateAdminFunctionName")
                if name:
                    return str(name)
        listed = self.edge.call("GET", "/2015-03-31/functions/")
        functions = listed.body.get("Functions", []) if isinstance(listed.body, dict) else []
        for function in functions:
            if str(function.get("FunctionName", "")).endswith("CreateAdminFunction"):
                return str(function["FunctionName"])
        raise DemoFailure(f"no CreateAdminFunction is deployed behind {self.edge_url}; pass --admin-function")

    def invoke_lambda(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Lambda Invoke through boto3 on the edge, as the operator CLI does."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = local_client("lambda", self.edge_url)
        try:
            response = invoke_when_not_throttled(
                client, FunctionName=name, Payload=json.dumps(payload).encode()
            )
        except ClientError as exc:
            raise DemoFailure(f"the Lambda invoke of {name} was refused: {exc}") from exc
        except BotoCoreError as exc:
            raise Unreachable(
                f"the edge at {self.edge_url} does not answer the Lambda invoke: {exc}"
            ) from exc
        body = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError") or not isinstance(body, dict):
            raise DemoFailure(f"{name} failed: {str(body)[:300]}")
        return body

    def open_accounts(self) -> tuple[Account, Account]:
        with self.step(
            "Each customer opens an account",
            "Accounts hold integer paise; the number has ISO 7064 check digits and is shown in full only to "
            "its owner (masked here). Opening is idempotent: the Idempotency-Key makes a retry safe.",
        ):
            opened = []
            for customer, kind in ((self.asha, "SAVINGS"), (self.ravi, "CURRENT")):
                self.calling("POST", "/v1/accounts", f"a {kind} account in INR", customer.name)
                body = self.request(
                    "POST",
                    "/v1/accounts",
                    {"type": kind, "currency": "INR"},
                    who=customer,
                    expect=201,
                    headers={"Idempotency-Key": f"demo-{self.run_id}-open-{customer.name}"},
                ).body
                account = Account(customer, body["account_id"], self.secret(body["account_number"]), kind)
                self.answered(
                    201,
                    account_id=account.account_id,
                    number=account.masked,
                    type=body["type"],
                    status=body["status"],
                    balance=rupees(body["balance"]["ledger"]),
                )
                opened.append(account)
            return opened[0], opened[1]

    def deposit(self, account: Account) -> None:
        with self.step(
            f"The admin deposits {rupees(DEPOSIT)} into Asha's account",
            "Money enters from the bank's settlement side (double entry), so the books always sum to zero. "
            "Above the stage's approval threshold a deposit waits for a second admin (four eyes).",
        ):
            self.calling("POST", "/v1/admin/deposits", "admin only; a customer would get 403", "the admin")
            answer = self.api.call(
                "POST",
                "/v1/admin/deposits",
                {"account_id": account.account_id, "amount": DEPOSIT, "currency": "INR", "reference": "demo"},
                {
                    "X-Device-Id": self.admin.device_id,
                    "Authorization": f"Bearer {self.admin.token}",
                    "Idempotency-Key": f"demo-{self.run_id}-deposit",
                },
            )
            if answer.status not in (201, 202) or not isinstance(answer.body, dict):
                raise DemoFailure(
                    f"POST /v1/admin/deposits answered {answer.problem()} (expected 201 or 202)"
                )
            body = answer.body
            self.answered(answer.status, deposit_id=body["deposit_id"], status=body.get("status"))
        if answer.status == 202:
            self.approve_deposit(body["deposit_id"])
        self.expect_balance(self.asha, account, DEPOSIT, DEPOSIT)
        self.ok(f"Asha has {rupees(DEPOSIT)} available")

    def approve_deposit(self, deposit_id: str) -> None:
        """Four eyes: the treasurer's own approval is refused; a second admin's books the deposit."""
        self.create_admin(self.approver)
        with self.step(
            "A second admin approves the deposit",
            "The admin who asked may not approve (403 four_eyes_required); the refusal and the approval "
            "are both events in the audit log.",
        ):
            path = f"/v1/admin/deposits/{deposit_id}/approve"
            self.calling("POST", path, "the treasurer approving their own deposit", "the admin")
            refused = self.request("POST", path, {}, who=self.admin, expect=403)
            self.answered(403, code=refused.body.get("code") if isinstance(refused.body, dict) else None)
            self.calling("POST", path, "a different admin", "the controller")
            booked = self.request("POST", path, {"reason": "matched the NEFT credit"}, who=self.approver).body
            balance = booked.get("balance") or {}
            self.answered(200, status=booked.get("status"), ledger=rupees(int(balance.get("ledger", 0))))

    def send(
        self, label: str, source: Account, destination: Account, amount: int, expected: frozenset[str]
    ) -> SentTransfer:
        correlation_id = f"demo-{self.run_id}-{label}"
        self.calling(
            "POST",
            "/v1/transfers",
            f"{rupees(amount)} to {destination.masked}; X-Correlation-Id {correlation_id} follows it",
            source.owner.name,
        )
        answer = self.request(
            "POST",
            "/v1/transfers",
            {
                "source_account_id": source.account_id,
                "destination_account_number": destination.number,
                "amount": amount,
                "currency": "INR",
                "description": f"demo: {label}",
            },
            who=source.owner,
            expect=202,
            headers={"Idempotency-Key": f"demo-{self.run_id}-{label}", "X-Correlation-Id": correlation_id},
        )
        body = answer.body
        self.answered(
            202,
            transfer_id=body["transfer_id"],
            status=body["status"],
            to=body["destination_account_number_masked"],
        )
        sent = SentTransfer(label, correlation_id, body["transfer_id"], expected)
        self.transfers.append(sent)
        return sent

    def wait_status(self, who: Customer, transfer_id: str, until: frozenset[str]) -> dict[str, Any]:
        """GET the transfer until its status is one of `until` (the saga runs asynchronously)."""
        path = f"/v1/transfers/{transfer_id}"
        self.calling(
            "GET", path, f"polled until {' or '.join(sorted(until))}: the saga runs in Step Functions"
        )
        deadline = time.monotonic() + self.saga_timeout_s
        seen: list[str] = []
        with self.console.status(f"waiting for {transfer_id} …"):
            while True:
                body = self.request("GET", path, who=who).body
                if not seen or seen[-1] != body["status"]:
                    seen.append(body["status"])
                if body["status"] in until:
                    break
                if time.monotonic() > deadline:
                    raise DemoFailure(
                        f"{transfer_id} is still {body['status']} after {self.saga_timeout_s:.0f} s "
                        f"(seen: {' → '.join(seen)}); is the Step Functions engine running?"
                    )
                time.sleep(0.3)
        fraud = body.get("fraud") or {}
        self.answered(
            200,
            status=" → ".join(seen),
            fraud=f"{fraud['decision']} {fraud['reasons']}" if fraud else None,  # no score: admins only
            failure_reason=body.get("failure_reason"),
        )
        return dict(body)

    def steps_line(self, transfer: dict[str, Any]) -> str:
        return " → ".join(str(s.get("name")) for s in transfer.get("steps") or [])

    def completed_transfer(self, source: Account, destination: Account) -> None:
        with self.step(
            f"Asha sends Ravi {rupees(SMALL)}: a transfer that completes",
            "POST /v1/transfers answers 202 at once; a saga then reserves the money, asks the fraud engine, "
            "settles and completes.",
        ):
            sent = self.send("completed", source, destination, SMALL, COMPLETED_EVENTS)
            done = self.wait_status(self.asha, sent.transfer_id, TERMINAL)
            sent.final = done
            if done["status"] != "COMPLETED":
                raise DemoFailure(
                    f"expected COMPLETED, got {done['status']} ({done.get('failure_reason')}, "
                    f"fraud {done.get('fraud')})"
                )
            self.console.print(f"    saga steps: {self.steps_line(done)}")
            self.expect_balance(self.asha, source, DEPOSIT - SMALL, DEPOSIT - SMALL)
            self.ok(f"Transfer completed: {rupees(SMALL)} moved, fraud said APPROVE")

    def declined_transfer(self, source: Account, destination: Account) -> None:
        with self.step(
            f"Asha tries to send {rupees(DECLINE_AMOUNT)}: the fraud engine declines",
            "HIGH_AMOUNT declines from ₹10,00,000: the saga reserves the money, the fraud engine says "
            "DECLINE, the hold is released and no money moves.",
        ):
            sent = self.send("declined", source, destination, DECLINE_AMOUNT, DECLINED_EVENTS)
            done = self.wait_status(self.asha, sent.transfer_id, TERMINAL)
            sent.final = done
            fraud = done.get("fraud") or {}
            if done["status"] != "DECLINED" or fraud.get("decision") != "DECLINE":
                raise DemoFailure(
                    f"expected DECLINED by fraud, got {done['status']} "
                    f"({done.get('failure_reason')}, fraud {fraud})"
                )
            self.expect_balance(self.asha, source, DEPOSIT - SMALL, DEPOSIT - SMALL)
            rules = ", ".join(fraud.get("reasons", []))
            self.ok(f"Transfer declined ({done['failure_reason']}): rules {rules}")

    def reviewed_transfer(self, source: Account, destination: Account) -> None:
        with self.step(
            f"Asha sends {rupees(REVIEW_AMOUNT)}: held for review, the admin approves",
            "From ₹2,00,000 the fraud engine says REVIEW: the money stays on hold and the saga waits (with a "
            "timeout) for an admin's decision, which resumes it.",
        ):
            sent = self.send("reviewed", source, destination, REVIEW_AMOUNT, COMPLETED_EVENTS)
            waiting = self.wait_status(self.asha, sent.transfer_id, TERMINAL | {"IN_REVIEW"})
            if waiting["status"] != "IN_REVIEW":
                raise DemoFailure(
                    f"expected IN_REVIEW, got {waiting['status']} ({waiting.get('failure_reason')}, "
                    f"fraud {waiting.get('fraud')})"
                )
            # Decide at once: the review times out (and declines) if nobody decides in time.
            decided = self.decide_review(sent.transfer_id)
            self.answered(200, transfer_id=decided["transfer_id"], status=decided["status"])
            done = self.wait_status(self.asha, sent.transfer_id, TERMINAL)
            sent.final = done
            if done["status"] != "COMPLETED":
                raise DemoFailure(
                    f"expected COMPLETED after the approval, got {done['status']} "
                    f"({done.get('failure_reason')})"
                )
            self.console.print(f"    saga steps: {self.steps_line(done)}")
            self.show_alert(sent.transfer_id)
            self.ok("Held transfer: IN_REVIEW → COMPLETED after the admin's approval")

    def decide_review(self, transfer_id: str) -> dict[str, Any]:
        path = f"/v1/admin/fraud/reviews/{transfer_id}"
        self.calling("POST", path, "APPROVE resumes the waiting execution (SendTaskSuccess)", "the admin")
        body = {"decision": "APPROVE", "note": "called the customer: genuine"}
        # The saga marks IN_REVIEW just before it parks its task token; give that a few seconds.
        deadline = time.monotonic() + 10
        while True:
            answer = self.api.call(
                "POST",
                path,
                body,
                {"X-Device-Id": self.admin.device_id, "Authorization": f"Bearer {self.admin.token}"},
            )
            if answer.status == 200:
                return dict(answer.body)
            code = answer.body.get("code") if isinstance(answer.body, dict) else None
            if code == "review_not_found" and time.monotonic() < deadline:
                time.sleep(0.3)
                continue
            if code == "review_closed":
                raise DemoFailure(f"the review of {transfer_id} timed out before the approval arrived")
            raise DemoFailure(f"POST {path} answered {answer.problem()} (expected 200)")

    def show_alert(self, transfer_id: str) -> None:
        self.calling("GET", "/v1/admin/fraud/alerts?decision=REVIEW", "the admin's queue", "the admin")
        items = self.request(
            "GET", "/v1/admin/fraud/alerts?decision=REVIEW&limit=100", who=self.admin
        ).body.get("items", [])
        alert = next((a for a in items if a.get("transfer_id") == transfer_id), None)
        if alert is None:
            raise DemoFailure(f"{transfer_id} is not among the REVIEW alerts")
        review = alert.get("review") or {}
        self.answered(
            200,
            score=alert.get("score"),
            reasons=alert.get("reasons"),
            review=f"{review.get('status')} {review.get('decision')} by {review.get('reviewer')}",
        )

    def expect_balance(self, who: Customer, account: Account, ledger: int, available: int) -> None:
        path = f"/v1/accounts/{account.account_id}"
        self.calling("GET", path, "ledger = settled money; available = ledger - holds", who.name)
        balance = self.request("GET", path, who=who).body["balance"]
        self.answered(200, ledger=rupees(balance["ledger"]), available=rupees(balance["available"]))
        if (balance["ledger"], balance["available"]) != (ledger, available):
            raise DemoFailure(
                f"{who.name}'s balance is ledger {rupees(balance['ledger'])} / available "
                f"{rupees(balance['available'])}, expected {rupees(ledger)} / {rupees(available)}"
            )

    def balances(self, source: Account, destination: Account) -> None:
        with self.step(
            "Where the money is now",
            "Two transfers completed, one was declined: Ravi received exactly what Asha sent, and "
            "Ravi's statement shows each credit.",
        ):
            sent = SMALL + REVIEW_AMOUNT
            self.expect_balance(self.asha, source, DEPOSIT - sent, DEPOSIT - sent)
            self.expect_balance(self.ravi, destination, sent, sent)
            path = f"/v1/accounts/{destination.account_id}/statement"
            self.calling("GET", path, "newest first", "Ravi")
            items = self.request("GET", path, who=self.ravi).body["items"]
            table = Table(title="Ravi's statement", title_justify="left")
            for column in ("kind", "amount", "balance after", "transfer"):
                table.add_column(column)
            for entry in items:
                table.add_row(
                    entry["kind"],
                    rupees(entry["amount"]),
                    rupees(entry["balance_after"]),
                    entry["transfer_id"],
                )
            self.console.print(table)
            credits = sorted(e["amount"] for e in items if e["kind"] == "CREDIT")
            if credits != sorted([SMALL, REVIEW_AMOUNT]):
                expected = [rupees(SMALL), rupees(REVIEW_AMOUNT)]
                raise DemoFailure(f"Ravi's statement shows credits {credits} (paise), expected {expected}")
            self.ok(f"money is conserved: Asha sent {rupees(sent)}, Ravi holds {rupees(sent)}")

    def audit_records(self, correlation_id: str) -> list[dict[str, Any]]:
        path = f"/v1/admin/audit?correlation_id={urllib.parse.quote(correlation_id)}&limit=100"
        return list(self.request("GET", path, who=self.admin).body.get("items", []))

    def events(self) -> list[int]:
        with self.step(
            "The events each transfer raised",
            "Every state change wrote an event in the same transaction; the relay published it to NATS "
            "JetStream and the audit consumer (on a schedule) appended it to the audit log. The admin reads "
            "them back by correlation id.",
        ):
            seqs: list[int] = []
            for sent in self.transfers:
                path = f"/v1/admin/audit?correlation_id={sent.correlation_id}"
                self.calling("GET", path, "polled until the audit consumer has caught up", "the admin")
                records = self.poll_audit(sent)
                table = Table(title=f"{sent.label}: {sent.transfer_id}", title_justify="left")
                for column in ("seq", "event type", "actor", "occurred at"):
                    table.add_column(column)
                for record in records:
                    table.add_row(str(record["seq"]), record["type"], record["actor"], record["occurred_at"])
                self.console.print(table)
                seqs.extend(int(r["seq"]) for r in records)
            self.ok(f"{len(seqs)} audit records carry the three transfers' correlation ids")
            return seqs

    def poll_audit(self, sent: SentTransfer) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.audit_timeout_s
        with self.console.status(f"waiting for the audit consumer to record {sent.label} …"):
            while True:
                records = self.audit_records(sent.correlation_id)
                missing = sent.expected_events - {r["type"] for r in records}
                if not missing:
                    return sorted(records, key=lambda r: int(r["seq"]))
                if time.monotonic() > deadline:
                    raise DemoFailure(
                        f"after {self.audit_timeout_s:.0f} s the audit log still lacks {sorted(missing)} for "
                        f"{sent.correlation_id}; is the audit consumer's schedule running "
                        "(`vaultpay local status`)?"
                    )
                time.sleep(1)

    def audit_trail(self) -> None:
        with self.step(
            "The audit trail is a hash chain",
            "Each record's hash covers its content and the previous record's hash (prev_hash), so changing "
            "or removing any record breaks every link after it.",
        ):
            sent = self.transfers[-1]
            # The log is several chains (AuditChains): a record's neighbours are those of its own chain.
            records = sorted(
                self.audit_records(sent.correlation_id), key=lambda r: (int(r.get("chain", 0)), int(r["seq"]))
            )
            table = Table(title=f"audit records of {sent.correlation_id}", title_justify="left")
            for column in ("seq", "type", "subject", "prev_hash", "hash"):
                table.add_column(column)
            for record in records:
                table.add_row(
                    str(record["seq"]),
                    record["type"].removeprefix("vaultpay."),
                    short(record.get("subject"), 14),
                    short(record["prev_hash"]),
                    short(record["hash"]),
                )
            self.console.print(table)
            # Where two of these records are neighbours in the chain, the link is visible: check it here.
            pairs = [
                (one, two)
                for one, two in pairwise(records)
                if two["seq"] == one["seq"] + 1 and two.get("chain", 0) == one.get("chain", 0)
            ]
            broken = [f"seq {two['seq']}" for one, two in pairs if two["prev_hash"] != one["hash"]]
            if broken:
                raise DemoFailure(
                    f"prev_hash does not match the previous record's hash at {', '.join(broken)}"
                )
            self.ok(
                f"{len(records)} records of the reviewed transfer; in the {len(pairs)} neighbouring pairs "
                "each prev_hash is the hash before it (the gaps hold other requests' records)"
            )

    def verify_chain(self, seqs: list[int]) -> None:
        with self.step(
            "Verify the whole chain",
            "The server recomputes every record's hash from the first one; `vaultpay ops audit verify` does "
            "the same from the table.",
        ):
            self.calling("GET", "/v1/admin/audit/verify", "recomputes the chain end to end", "the admin")
            result = self.request("GET", "/v1/admin/audit/verify", who=self.admin).body
            self.answered(
                200,
                ok=result["ok"],
                records_checked=result["records_checked"],
                head_hash=short(result["head_hash"]),
            )
            if not result["ok"]:
                raise DemoFailure(f"the audit chain is broken: {result.get('first_bad_record')}")
            if seqs and result["records_checked"] < max(seqs):
                raise DemoFailure(
                    f"the chain checked {result['records_checked']} records, "
                    f"fewer than the demo's newest seq {max(seqs)}"
                )
            self.ok(f"Audit chain verified: {result['records_checked']} records, the demo's included")

    def check_output_is_masked(self) -> None:
        printed = self.console.export_text(clear=False)
        leaked = [s for s in self.secrets if s and s in printed]
        if leaked:
            raise DemoFailure(f"{len(leaked)} secret value(s) appeared unmasked in the output")


def run_demo(
    console: Console,
    api: str,
    edge: str,
    *,
    saga_timeout_s: float = 90,
    audit_timeout_s: float = 180,
    admin_function: str | None = None,
) -> int:
    """Runs the tour; the exit status (0 ok, 1 a step misbehaved, 2 unreachable). `console` must record."""
    demo: Demo | None = None
    try:
        demo = Demo(
            console,
            api,
            edge,
            saga_timeout_s=saga_timeout_s,
            audit_timeout_s=audit_timeout_s,
            admin_function=admin_function,
        )
        demo.run()
    except DemoFailure as exc:
        where = f"Step {demo.step_no} ({demo.step_title})" if demo is not None else "Setup"
        console.print(f"\n[bold red]✘ {where} failed:[/] {exc}", soft_wrap=True)
        return 2 if isinstance(exc, Unreachable) else 1
    return 0


@demo_app.command("demo")
def demo(
    api: Annotated[str, typer.Option("--api", help="The API's base URL")] = "http://127.0.0.1:3000",
    edge: Annotated[
        str, typer.Option("--edge", help="The local cloud's AWS endpoint (admin creation)")
    ] = "http://127.0.0.1:4566",
    saga_timeout: Annotated[
        float, typer.Option("--saga-timeout", help="Seconds to wait for a transfer's saga")
    ] = 90,
    audit_timeout: Annotated[
        float,
        typer.Option("--audit-timeout", help="Seconds to wait for the audit consumer (it runs every minute)"),
    ] = 180,
    admin_function: Annotated[
        str | None,
        typer.Option("--admin-function", help="CreateAdminFunction's name (default: asked from the edge)"),
    ] = None,
) -> None:
    """A guided demo: two customers, MFA, accounts, a deposit, three transfers, events and the audit chain."""
    console = Console(record=True, highlight=False)
    raise typer.Exit(
        run_demo(
            console,
            api,
            edge,
            saga_timeout_s=saga_timeout,
            audit_timeout_s=audit_timeout,
            admin_function=admin_function,
        )
    )


if __name__ == "__main__":
    demo_app()
