"""What a persistent local cloud keeps under its state dir, and the check that its parts belong together.

DynamoDB Local's file (`dynamodb/`) holds data encrypted with data keys of KMS keys and indexed with HMAC
keys from Secrets Manager; both live in moto's saved state (`moto/`). One without the other, or the two from
different lives of the cloud, cannot be read: the e-mail and account-number blind indexes miss, every
encrypted field fails to decrypt. So both parts carry the same *generation*, a random id written when the
state dir is first created, and a start refuses when they disagree instead of reporting Ready on data it
cannot read.

Also kept: `stacks/<stack>.json` (what provisioning created whose identity the template does not fix: KMS key
ids; the SSM values it wrote), `streams/<mapping>.json` (every event-source mapping's checkpoints),
`jetstream/` (NATS's own store) and `logs/`.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENERATION_FILE = "GENERATION"
FRESH_HINT = "`vaultpay local up --fresh` starts over (it deletes {state_dir})."


class InconsistentState(RuntimeError):
    """The stored parts do not belong together: the message says which and what to do."""


@dataclass(frozen=True)
class StoredState:
    state_dir: Path

    @property
    def dynamodb_dir(self) -> Path:
        return self.state_dir / "dynamodb"

    @property
    def moto_dir(self) -> Path:
        return self.state_dir / "moto"

    @property
    def stacks_dir(self) -> Path:
        return self.state_dir / "stacks"

    @property
    def streams_dir(self) -> Path:
        return self.state_dir / "streams"

    def dynamodb_has_data(self) -> bool:
        return self.dynamodb_dir.is_dir() and any(self.dynamodb_dir.glob("*.db"))

    def moto_has_state(self) -> bool:
        return (self.moto_dir / "snapshot.pickle").exists()

    def _generation(self, directory: Path) -> str | None:
        try:
            return (directory / GENERATION_FILE).read_text().strip() or None
        except OSError:
            return None

    def check(self) -> str:
        """The generation of the stored state, created when there is none; raises when the parts disagree."""
        hint = FRESH_HINT.format(state_dir=self.state_dir)
        data, keys = self.dynamodb_has_data(), self.moto_has_state()
        ddb_gen, moto_gen = self._generation(self.dynamodb_dir), self._generation(self.moto_dir)
        if not data and not keys:
            generation = uuid.uuid4().hex
            for directory in (self.dynamodb_dir, self.moto_dir):
                directory.mkdir(parents=True, exist_ok=True)
                write_atomic(directory / GENERATION_FILE, generation)
            return generation
        if data and not keys:
            raise InconsistentState(
                f"{self.dynamodb_dir} holds DynamoDB data, but there is no saved KMS / Secrets Manager "
                f"state ({self.moto_dir / 'snapshot.pickle'} is missing): the data was written with keys "
                "this start does not have (it predates persistent local state, or the moto state was "
                f"deleted), so its encrypted fields and blind indexes cannot be read. {hint}"
            )
        if keys and not data:
            raise InconsistentState(
                f"{self.moto_dir} holds saved KMS keys, secrets and executions, but {self.dynamodb_dir} "
                f"holds no DynamoDB data for them (it was deleted or moved). {hint}"
            )
        if ddb_gen is None or moto_gen is None or ddb_gen != moto_gen:
            raise InconsistentState(
                f"the DynamoDB data ({self.dynamodb_dir}, generation {ddb_gen or 'unknown'}) and the saved "
                f"keys ({self.moto_dir}, generation {moto_gen or 'unknown'}) come from different local "
                f"clouds: the data cannot be read with these keys. {hint}"
            )
        return ddb_gen

    def stack_record(self, stack: str) -> dict[str, dict[str, Any]]:
        path = self.stacks_dir / f"{stack}.json"
        try:
            record: dict[str, dict[str, Any]] = json.loads(path.read_text())["resources"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError) as exc:
            raise InconsistentState(
                f"{path} cannot be read ({exc}). {FRESH_HINT.format(state_dir=self.state_dir)}"
            ) from exc
        return record

    def write_stack_record(self, stack: str, resources: dict[str, dict[str, Any]]) -> None:
        self.stacks_dir.mkdir(parents=True, exist_ok=True)
        document = json.dumps({"stack": stack, "resources": resources}, indent=2)
        write_atomic(self.stacks_dir / f"{stack}.json", document)

    def checkpoint_file(self, stack: str, mapping: str) -> Path:
        return self.streams_dir / f"{stack}.{mapping}.json"

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per part of the state dir (for `vaultpay local status`)."""
        sizes: dict[str, int] = {}
        if not self.state_dir.is_dir():
            return sizes
        for part in sorted(self.state_dir.iterdir()):
            if part.is_dir():
                sizes[part.name] = sum(f.stat().st_size for f in part.rglob("*") if f.is_file())
        return sizes


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` so that a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
