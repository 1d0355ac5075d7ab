"""Health use case: run every dependency check concurrently, each within a deadline, and report the result."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

CheckStatus = Literal["ok", "error"]
DEFAULT_TIMEOUT_S = 1.0


class DependencyCheck(Protocol):
    """Port: one backing service this deployment needs. `run` returns if it answers and raises if not."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...


class WarningLog(Protocol):
    """The part of a logger the service uses (Powertools' Logger and the standard library's both fit)."""

    def warning(self, msg: str, /, *, extra: Mapping[str, object] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of one round of checks: `ok` only if every check passed."""

    version: str
    checks: Mapping[str, CheckStatus]

    @property
    def healthy(self) -> bool:
        return all(status == "ok" for status in self.checks.values())

    @property
    def status(self) -> Literal["ok", "degraded"]:
        return "ok" if self.healthy else "degraded"

    @property
    def http_status(self) -> int:
        # 503 lets load balancers and deploy hooks act on the status code alone.
        return 200 if self.healthy else 503

    def to_body(self) -> dict[str, object]:
        return {"status": self.status, "version": self.version, "checks": dict(self.checks)}


class HealthService:
    """Checks the dependencies; a failure's reason goes to the log, never into the report."""

    def __init__(
        self,
        checks: Sequence[DependencyCheck],
        *,
        version: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log: WarningLog | None = None,
    ) -> None:
        names = [check.name for check in checks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate health check names: {names}")
        self._checks = tuple(checks)
        self._version = version
        self._timeout_s = timeout_s
        self._log: WarningLog = log or logging.getLogger(__name__)

    async def check(self) -> HealthReport:
        """Runs all checks at once, so the whole round takes about one timeout at worst."""
        results = await asyncio.gather(*(self._run_one(check) for check in self._checks))
        return HealthReport(version=self._version, checks=dict(results))

    def run(self) -> HealthReport:
        """`check` for synchronous callers (a Lambda handler has no running event loop)."""
        return asyncio.run(self.check())

    async def _run_one(self, check: DependencyCheck) -> tuple[str, CheckStatus]:
        try:
            await asyncio.wait_for(check.run(), timeout=self._timeout_s)
        except TimeoutError:
            self._log.warning(
                "health check timed out", extra={"check": check.name, "timeout_s": self._timeout_s}
            )
            return check.name, "error"
        except Exception as exc:  # any failure of a dependency is reported, never raised
            self._log.warning(
                "health check failed",
                extra={"check": check.name, "error_type": type(exc).__name__, "error": str(exc)[:500]},
            )
            return check.name, "error"
        return check.name, "ok"
