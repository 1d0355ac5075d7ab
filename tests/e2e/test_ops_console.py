"""The ops console (/_ops/ on the edge) in headless Chromium: every panel shows the local cloud's real data.

Transfers are made over HTTP first (a completed one whose settlement is retried after an injected
TransientError, one declined for insufficient funds, one the fraud rules decline, one waiting for review;
the completed one's sender has a webhook at a receiver on 127.0.0.1 that gets it), then Debian's chromium,
driven by playwright, opens the console. A full-page screenshot is saved to test-artifacts/ops-console.png
(VAULTPAY_OPS_SCREENSHOT overrides the path), also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.bank import deposit, idempotency_key, open_account, signed_in_customer
from support.webhooks import Receiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("VAULTPAY_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = Path(os.environ.get("VAULTPAY_OPS_SCREENSHOT", ROOT / "test-artifacts" / "ops-console.png"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
RUPEE = 100  # paise
# infra/fraud/default-config.json: HIGH_AMOUNT reviews from ₹2,00,000 and declines from ₹10,00,000.
REVIEW_AMOUNT = 2_00_000 * RUPEE
DECLINE_AMOUNT = 10_00_000 * RUPEE
TERMINAL = {"COMPLETED", "DECLINED", "FAILED"}
UI_TIMEOUT_MS = 20_000


def _send(sender: Any, source: dict[str, Any], destination: dict[str, Any], amount: int) -> str:
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": destination["account_number"],
        "amount": amount,
        "currency": "INR",
    }
    reply = sender.post("/v1/transfers", body, headers=idempotency_key())
    assert reply.status == 202, reply.body
    return str(reply.body["transfer_id"])


def _wait_for(client: Any, transfer_id: str, until: set[str], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = client.get(f"/v1/transfers/{transfer_id}")
        assert reply.status == 200, reply.body
        if reply.body["status"] in until:
            return dict(reply.body)
        assert time.monotonic() < deadline, reply.body
        time.sleep(0.2)


def _funded(api: Callable[..., Any], admin: Any, amount: int) -> tuple[Any, dict[str, Any]]:
    customer = signed_in_customer(api)
    account = open_account(customer)
    assert deposit(admin, account["account_id"], amount).status == 201
    return customer, account


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def _delivered(customer: Any, webhook_id: str, receiver: Receiver, timeout_s: float = 30) -> None:
    """Once the receiver has the completed event and the store says so (it settles after the answer)."""
    receiver.wait_for(bool, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        items = customer.get(f"/v1/webhooks/{webhook_id}/deliveries").body["items"]
        if any(item["status"] == "SUCCEEDED" for item in items):
            return
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


@pytest.fixture
def console_data(local_cloud: Any, api: Callable[..., Any], admin: Any, receiver: Receiver) -> dict[str, str]:
    """Four transfers through the saga; the review one is still WAITING when this returns, the completed
    one's webhook delivery has SUCCEEDED."""
    from localcloud.faults import FaultClient

    happy, happy_account = _funded(api, admin, 1_000 * RUPEE)
    hook = happy.post("/v1/webhooks", {"url": receiver.url, "events": ["vaultpay.transaction.completed"]})
    assert hook.status == 201, hook.body
    rich, rich_account = _funded(api, admin, DECLINE_AMOUNT)
    # The happy customer's second account holds too little: its transfer fails at ReserveFunds, before fraud
    poor_account = open_account(happy)
    assert deposit(admin, poor_account["account_id"], 100 * RUPEE).status == 201
    faults = FaultClient(local_cloud.edge)
    # Given the settlement's first attempt fails with a retryable error (the saga retries it)
    faults.set_plan(
        {"lambda_errors": [{"functions": ["SettleTransferFunction"], "error_type": "TransientError"}]}
    )
    try:
        completed = _send(happy, happy_account, rich_account, 250 * RUPEE)
        declined = _send(happy, poor_account, rich_account, 250 * RUPEE)
        fraud_declined = _send(rich, rich_account, happy_account, DECLINE_AMOUNT)
        assert _wait_for(happy, completed, TERMINAL)["status"] == "COMPLETED"
        assert _wait_for(happy, declined, TERMINAL)["status"] == "DECLINED"
        assert _wait_for(rich, fraud_declined, TERMINAL)["status"] == "DECLINED"
    finally:
        faults.clear()
    _delivered(happy, hook.body["webhook_id"], receiver)
    # And a transfer waits for a human review (the test cloud declines it by itself after 15 s)
    reviewed, reviewed_account = _funded(api, admin, REVIEW_AMOUNT)
    review = _send(reviewed, reviewed_account, happy_account, REVIEW_AMOUNT)
    deadline = time.monotonic() + 10
    while True:
        alerts = admin.get("/v1/admin/fraud/alerts?decision=REVIEW&limit=100").body["items"]
        found = [a for a in alerts if a["transfer_id"] == review]
        if found and (found[0].get("review") or {}).get("status") == "WAITING":
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return {"completed": completed, "declined": declined, "fraud_declined": fraud_declined, "review": review}


@pytest.fixture
def page(local_cloud: Any) -> Iterator[Any]:
    """A headless Chromium page (Debian's chromium, never one playwright downloads); screenshot at the end."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.errors = errors
            yield tab
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()


def _ready(page: Any, section: str) -> None:
    """Waits for a panel to render; fails with the panel's own error message when it could not."""
    page.wait_for_selector(
        f"#{section}:is([data-state='ready'], [data-state='error'])", timeout=UI_TIMEOUT_MS
    )
    if page.get_attribute(f"#{section}", "data-state") == "error":
        pytest.fail(f"the {section} panel failed: {page.inner_text(f'#{section} .panel-error')}")


def _click_node(page: Any, state: str) -> None:
    """Clicks the state's node where cytoscape drew it on the canvas, as an operator would, and waits
    until cytoscape reports the tap on that node (the detail may already show it, so it proves nothing).

    The graph is scrolled into view first: after a click on a row far down a long transfer list (the
    whole suite's transfers), the graph can sit outside the viewport, where a mouse click lands nowhere.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        x, y = page.evaluate(
            """(id) => { window.tappedNode = null;
                         const cy = window.opsConsole.cy;
                         cy.one('tap', 'node', (event) => { window.tappedNode = event.target.id(); });
                         document.getElementById('graph').scrollIntoView({ block: 'center' });
                         const p = cy.getElementById(id).renderedPosition();
                         const box = document.getElementById('graph').getBoundingClientRect();
                         return [box.left + p.x, box.top + p.y]; }""",
            state,
        )
        viewport = page.viewport_size
        assert 0 <= x < viewport["width"] and 0 <= y < viewport["height"], (state, x, y, viewport)
        page.mouse.click(x, y)
        try:
            page.wait_for_function("(id) => window.tappedNode === id", arg=state, timeout=5_000)
        except PlaywrightTimeout:
            continue
        page.wait_for_function(
            "(id) => document.getElementById('state-detail').dataset.state === id", arg=state
        )
        return
    pytest.fail(f"clicking the {state} node never reached it")


def test_the_ops_console_renders_every_panel_with_the_local_clouds_data(
    local_cloud: Any, console_data: dict[str, str], page: Any
) -> None:
    # When the operator opens the console (page libraries served by the edge, not a CDN)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(local_cloud.edge + "/_ops/", wait_until="load")
    assert any(url.endswith("/_ops/vendor/cytoscape-dagre.js") for url in requested), requested
    assert all(url.startswith(local_cloud.edge) for url in requested), requested
    for section in ("transfers", "execution", "logs", "fraud", "health", "webhooks", "metrics"):
        _ready(page, section)
    assert page.errors == [], page.errors

    # Then the review still waits in the queue, and every alert is listed with its decision
    review_item = page.locator(f"#review-queue li[data-transfer-id='{console_data['review']}']")
    assert review_item.count() == 1, page.inner_text("#review-queue")
    fraud_row = page.locator(f"#fraud-rows tr[data-transfer-id='{console_data['fraud_declined']}']")
    assert "DECLINE" in fraud_row.inner_text()
    assert "REVIEW" in page.inner_text(f"#fraud-rows tr[data-transfer-id='{console_data['review']}']")

    # And each transfer is listed with its status and its saga's
    rows = {
        key: page.locator(f"#transfers-rows tr[data-transfer-id='{tid}']")
        for key, tid in console_data.items()
    }
    assert "COMPLETED" in rows["completed"].inner_text() and "SUCCEEDED" in rows["completed"].inner_text()
    assert "DECLINED" in rows["declined"].inner_text()
    assert "DECLINED" in rows["fraud_declined"].inner_text()

    # When the completed transfer is opened, its path is drawn on the state machine's graph
    rows["completed"].click()
    page.wait_for_function(
        "(id) => document.getElementById('execution-name').textContent === id", arg=console_data["completed"]
    )
    _ready(page, "execution")
    graph = page.evaluate(
        """() => { const cy = window.opsConsole.cy;
                   const ids = (sel) => cy.nodes(sel).map((n) => n.id()).sort();
                   return { nodes: cy.nodes().length, edges: cy.edges().length, taken: ids('.taken'),
                            retried: ids('.retried'), failed: ids('.failed'),
                            takenEdges: cy.edges('.taken').length,
                            label: cy.getElementById('SettleTransfer').data('label') }; }"""
    )
    machine = local_cloud.client("stepfunctions")
    arn = next(m for m in machine.list_state_machines()["stateMachines"] if m["name"].endswith("-transfer"))
    definition = json.loads(
        machine.describe_state_machine(stateMachineArn=arn["stateMachineArn"])["definition"]
    )
    assert graph["nodes"] == len(definition["States"])
    assert graph["retried"] == ["SettleTransfer"], graph
    assert graph["label"] == "SettleTransfer ↻1"
    assert {
        "MarkProcessing",
        "ReserveFunds",
        "CheckFraud",
        "MarkApproved",
        "CompleteTransfer",
        "Completed",
    } <= set(graph["taken"]), graph
    assert graph["failed"] == [] and graph["takenEdges"] >= 7, graph
    assert "SUCCEEDED" in page.inner_text("#execution-status")

    # And clicking a state shows what the saga's log holds of it: its attempts, not its data (an EXPRESS
    # execution logs no input or output: they hold account ids and amounts)
    _click_node(page, "ReserveFunds")
    page.wait_for_function("() => document.getElementById('state-name').textContent === 'ReserveFunds'")
    assert "1 attempt(s)" in page.inner_text("#state-summary")
    assert "not logged" in page.inner_text("#state-input")
    assert console_data["completed"] not in page.inner_text("#state-detail")

    # When the transfer declined for insufficient funds is opened, its failed reservation is red
    rows["declined"].click()
    page.wait_for_function(
        "(id) => document.getElementById('execution-name').textContent === id", arg=console_data["declined"]
    )
    _ready(page, "execution")
    failed = page.evaluate("() => window.opsConsole.cy.nodes('.failed').map((n) => n.id())")
    assert failed == ["ReserveFunds"], failed
    _click_node(page, "ReserveFunds")
    page.wait_for_function(
        "() => document.getElementById('state-errors').textContent.includes('InsufficientFunds')"
    )

    # Then a function's logs are listed, and a filter narrows them to one transfer
    status_function = local_cloud.function_name("TransferStatusFunction")
    page.select_option("#logs-function", status_function)
    page.fill("#logs-filter", "")
    page.click("#logs-form button[type=submit]")
    _ready(page, "logs")
    everything = int(page.get_attribute("#logs", "data-lines") or 0)
    assert everything > 0, page.inner_text("#logs")
    page.fill("#logs-filter", console_data["completed"])
    page.click("#logs-form button[type=submit]")
    page.wait_for_function(
        "(id) => document.getElementById('logs-count').textContent.includes(id)",
        arg=console_data["completed"],
    )
    _ready(page, "logs")
    lines = page.locator("#logs-lines .log-line").all_inner_texts()
    assert 0 < len(lines) < everything, (len(lines), everything)
    assert all(console_data["completed"] in line for line in lines), lines

    # And the dead-letter queue and the verified audit chain are shown
    dlq = page.locator("#dlq-rows tr[data-queue$='RelayDeadLetterQueue'] td").all_inner_texts()
    assert len(dlq) == 3 and dlq[1].isdigit(), dlq
    assert page.inner_text("#audit-status") == "verified"
    assert "records of" in page.inner_text("#audit-detail")

    # And the webhooks panel counts the completed transfer's delivery and its endpoint (at least: the
    # session's other tests share the local cloud)
    deliveries = page.locator("#webhook-deliveries td[data-status]").all_inner_texts()
    assert len(deliveries) == 3 and all(n.rstrip("+").isdigit() for n in deliveries), deliveries
    assert int(page.inner_text("#webhook-deliveries td[data-status='SUCCEEDED']").rstrip("+")) >= 1
    assert page.inner_text("#webhook-attempts-failed").isdigit()
    enabled = page.inner_text("#webhook-endpoints [data-status='ENABLED']")
    assert enabled.startswith("ENABLED ") and int(enabled.split()[1]) >= 1, enabled
    assert page.inner_text("#webhook-oldest"), page.inner_text("#webhooks")

    # And the charts drew the runtime's invocations and the executions per minute
    charts = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.opsConsole.charts).map(([id, chart]) => [id,
             chart.data.datasets.map((d) => [d.label, d.data.reduce((a, b) => a + b, 0)])]))"""
    )
    invocations = dict(charts["chart-lambda"])
    assert invocations["invocations"] > 0, charts
    executions = dict(charts["chart-executions"])
    assert (
        executions.get("SUCCEEDED", 0) >= 3
        and executions.get("RUNNING", 0) + executions.get("SUCCEEDED", 0) >= 4
    ), charts
    assert page.errors == [], page.errors

    # (The screenshot shows the retried settlement: its row, its path and its errors.)
    rows["completed"].click()
    page.wait_for_function(
        "(id) => document.getElementById('execution-name').textContent === id", arg=console_data["completed"]
    )
    _ready(page, "execution")
    _click_node(page, "SettleTransfer")
    page.wait_for_function(
        "() => document.getElementById('state-errors').textContent.includes('TransientError')"
    )
