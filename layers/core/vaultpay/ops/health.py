"""Health use case: run every dependency check concurrently, each within a deadline, and report the result."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

CheckStatus = Literal["ok", "error"]
Details = Mapping[str, object]
DEFAULT_TIMEOUT_S = 1.0
# The body's own keys: no check's details may take one.
REPORT_KEYS = frozenset({"status", "version", "checks"})


class DependencyCheck(Protocol):
    """Port: one backing service this deployment needs. `run` returns if it answers and raises if not.

    A check that learns more than "it answers" returns it as a mapping (None otherwise): the report shows it
    under the check's `details_key` attribute, or under its name if it has none. Only what anyone may read
    goes there (counts, names a client may know), never a host, a URL or a secret: the route has no auth.
    """

    @property
    def name(self) -> str: ...

    async def run(self) -> Details | None: ...


class CheckFailed(Exception):
    """A dependency answered, but not well enough to be ok: the check is an error, and what it did learn
    (`details`) is still reported. The message is the reason, and goes to the log like any failure's."""

    def __init__(self, reason: str, *, details: Details) -> None:
        super().__init__(reason)
        self.details = details


class WarningLog(Protocol):
    """The part of a logger the service uses (Powertools' Logger and the standard library's both fit)."""

    def warning(self, msg: str, /, *, extra: Mapping[str, object] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of one round of checks: `ok` only if every check passed. `details` holds what checks
    reported beyond their status, each under its own key of the body (e.g. `event_bus`)."""

    version: str
    checks: Mapping[str, CheckStatus]
    details: Mapping[str, Details] = field(default_factory=dict)

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
        details = {key: dict(value) for key, value in self.details.items()}
        return {"status": self.status, "version": self.version, "checks": dict(self.checks), **details}


def _details_key(check: DependencyCheck) -> str:
    key = getattr(check, "details_key", None)
    return key if isinstance(key, str) else check.name


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
        keys = [_details_key(check) for check in checks]
        if len(set(keys)) != len(keys) or REPORT_KEYS.intersection(keys):
            raise ValueError(f"health check details keys clash: {keys}")
        self._checks = tuple(checks)
        self._version = version
        self._timeout_s = timeout_s
        self._log: WarningLog = log or logging.getLogger(__name__)

    async def check(self) -> HealthReport:
        """Runs all checks at once, so the whole round takes about one timeout at worst."""
        results = await asyncio.gather(*(self._run_one(check) for check in self._checks))
        ran = list(zip(self._checks, results, strict=True))
        return HealthReport(
            version=self._version,
            checks={check.name: status for check, (status, _) in ran},
            details={_details_key(check): details for check, (_, details) in ran if details is not None},
        )

    def run(self) -> HealthReport:
        """`check` for synchronous callers (a Lambda handler has no running event loop)."""
        return asyncio.run(self.check())

    async def _run_one(self, check: DependencyCheck) -> tuple[CheckStatus, Details | None]:
        try:
            details = await asyncio.wait_for(check.run(), timeout=self._timeout_s)
        except TimeoutError:
            self._log.warning(
                "health check timed out", extra={"check": check.name, "timeout_s": self._timeout_s}
            )
            return "error", None
        except Exception as exc:  # any failure of a dependency is reported, never raised
            self._log.warning(
                "health check failed",
                extra={"check": check.name, "error_type": type(exc).__name__, "error": str(exc)[:500]},
            )
            return "error", exc.details if isinstance(exc, CheckFailed) else None
        # A check written before details existed may return anything: only a mapping is a report.
        return "ok", details if isinstance(details, Mapping) else None
