"""Recording every AWS action the code under test makes, at botocore's one entry point for API calls, as the
(IAM action, resource label) pairs a function's policy must grant: a test compares them with its template."""

from __future__ import annotations

from typing import Any

import pytest

Action = tuple[str, str]  # (IAM action, resource label)


class ActionRecorder:
    """Attributes each API call to `current` (a function's name; None records nothing). `labels` maps a
    resource's name, ARN or id (a substring of what the call names) to its template logical id."""

    def __init__(self, labels: dict[str, str] | None = None) -> None:
        self.labels = labels or {}
        self.actions: dict[str, set[Action]] = {}
        self.current: str | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Records every botocore call made while `monkeypatch` is in force (the call itself still runs)."""
        from botocore.client import BaseClient

        real = BaseClient._make_api_call

        def recording(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            self.record(client.meta.service_model.service_name, operation_name, api_params)
            return real(client, operation_name, api_params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording)

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.current is None:
            return
        seen = self.actions.setdefault(self.current, set())
        if operation == "TransactWriteItems":
            # Authorised per item, as the Put / Update / Delete / ConditionCheck it holds.
            for item in params["TransactItems"]:
                [(kind, body)] = item.items()
                action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(
                    kind, "ConditionCheckItem"
                )
                seen.add((f"dynamodb:{action}", self.label(body["TableName"])))
            return
        if operation == "BatchGetItem":
            seen.update((f"dynamodb:{operation}", self.label(table)) for table in params["RequestItems"])
            return
        resource = params.get("TableName") or params.get("SecretId") or params.get("KeyId") or "*"
        label = self.label(str(resource))
        if params.get("IndexName"):
            label += f"/index/{params['IndexName']}"
        seen.add((f"{service}:{operation}", label))

    def label(self, resource: str) -> str:
        # Longest first: one table's name may start with another's (vaultpay-test-auth-rate-limits).
        for value in sorted(self.labels, key=len, reverse=True):
            if value in resource:
                return self.labels[value]
        return resource
