"""Hot reload (`vaultpay local up --watch`): a changed function or layer retires the warm workers running it.

The watcher polls the modification times of every function's and layer's source folder (no dependency, and
it works the same on every OS and file system). When the local cloud runs `sam build`'s output, a change is
rebuilt into that output first (localcloud.build.rebuild: the resource's own Makefile target, not a whole
sam build); the functions it concerns (for a layer: every function using it) then get a new revision, which
retires their idle workers now and busy ones when their invoke ends, so the next invoke imports the new code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localcloud.build import IGNORED_DIRS, IGNORED_SUFFIXES, LAYER, BuildError, CodePlan, Resource, rebuild
from localcloud.spec import FunctionSpec

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)
# How long a burst of writes (an editor's save, a `git checkout`) has to settle before the watcher acts.
SETTLE_S = 0.2


def snapshot(folder: Path) -> Snapshot:
    """Every file under `folder` (caches ignored) with its modification time and size."""
    files: Snapshot = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        for name in names:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):  # deleted between the listing and the stat
                stat = os.stat(path)
                files[os.path.relpath(path, folder)] = (stat.st_mtime_ns, stat.st_size)
    return files


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


@dataclass(frozen=True)
class Watched:
    """One function's or layer's source folder and the plan it runs under."""

    resource: Resource
    plan: CodePlan

    def affected(self, functions: Mapping[str, FunctionSpec]) -> set[str]:
        """The deployed functions (physical names) that run this resource's code."""
        if self.resource.kind == LAYER:
            loaded = self.plan.dirs.get(self.resource.logical_id, self.resource.source)
            return {name for name, spec in functions.items() if loaded in spec.layer_dirs}
        loaded = self.plan.dirs.get(self.resource.logical_id, self.resource.source)
        return {
            name
            for name, spec in functions.items()
            if spec.logical_id == self.resource.logical_id and spec.code_dir == loaded
        }


Reporter = Callable[[str, str, str], None]


class CodeWatcher:
    """Polls the source folders of the deployed functions and layers; see the module's docstring."""

    def __init__(
        self,
        plans: list[CodePlan],
        functions: Callable[[], Mapping[str, FunctionSpec]],
        retire: Callable[[set[str]], Awaitable[None]],
        report: Reporter,
        *,
        interval_s: float = 0.5,
    ) -> None:
        self.functions = functions
        self.retire = retire
        self.report = report
        self.interval_s = interval_s
        self.watched = [Watched(r, plan) for plan in plans for r in plan.project.resources.values()]
        self.reloads = 0  # changes acted on, for the status
        self._snapshots: dict[Path, Snapshot] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._snapshots = await asyncio.to_thread(self._scan)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _scan(self) -> dict[Path, Snapshot]:
        folders = {w.resource.source for w in self.watched}
        return {folder: snapshot(folder) for folder in folders}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # a failed rebuild is reported; the watcher must keep watching
                log.exception("hot reload failed")

    async def check(self) -> set[str]:
        """One poll: rebuilds what changed and retires its workers; the functions retired."""
        now = await asyncio.to_thread(self._scan)
        changed = {folder for folder, files in now.items() if files != self._snapshots.get(folder)}
        if not changed:
            return set()
        while True:  # until the burst of writes is over
            await asyncio.sleep(SETTLE_S)
            settled = await asyncio.to_thread(self._scan)
            if settled == now:
                break
            changed |= {folder for folder, files in settled.items() if files != now.get(folder)}
            now = settled
        before, self._snapshots = self._snapshots, now
        retired: set[str] = set()
        for watched in self.watched:
            folder = watched.resource.source
            if folder not in changed:
                continue
            files = changed_files(before.get(folder, {}), now[folder])
            retired |= await self._reload(watched, files)
        return retired

    async def _reload(self, watched: Watched, files: list[str]) -> set[str]:
        resource = watched.resource
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        began = time.monotonic()
        how = "source tree"
        if watched.plan.built:
            try:
                seconds = await asyncio.to_thread(rebuild, watched.plan.project, resource)
            except BuildError as exc:
                self.report("Hot reload", resource.logical_id, f"changed ({shown}), not reloaded: {exc}")
                log.warning("hot reload of %s failed: %s", resource.logical_id, exc)
                return set()
            how = f"rebuilt in {seconds:.2f} s"
        names = watched.affected(self.functions())
        await self.retire(names)
        self.reloads += 1
        self.report(
            "Hot reload",
            resource.logical_id,
            f"{shown} changed: {how}; {len(names)} function(s) reloaded, "
            f"{time.monotonic() - began:.2f} s in all",
        )
        return names
