"""A log that records its warnings, for tests of code that takes the WarningLog port (vaultpay.ops.health)."""

from __future__ import annotations

from typing import Any


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, msg: str, /, *, extra: Any = None) -> None:
        self.warnings.append((msg, dict(extra or {})))
