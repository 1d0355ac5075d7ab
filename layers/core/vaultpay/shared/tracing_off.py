"""Where tracing is off: Powertools' Tracer decorators over segments that keep nothing."""

from __future__ import annotations

import contextlib
import numbers
import traceback
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class NoTraceSegment(BaseSegment):
    """A subsegment that keeps nothing: what the decorators annotate is dropped, as X-Ray's dummy does."""

    def close(self, end_time: int | None = None) -> None:
        return None

    def add_subsegment(self, subsegment: Any) -> None:
        return None

    def remove_subsegment(self, subsegment: Any) -> None:
        return None

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def add_exception(
        self, exception: BaseException, stack: list[traceback.StackSummary], remote: bool = False
    ) -> None:
        return None


class NoTraceProvider(BaseProvider):
    """Powertools' `Tracer(provider=...)` hook, used instead of the X-Ray recorder when tracing is disabled,
    so that no aws_xray_sdk.core (and no botocore session) is imported at cold start for nothing."""

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield NoTraceSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield NoTraceSegment()

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def patch(self, modules: Sequence[str]) -> None:
        return None

    def patch_all(self) -> None:
        return None
