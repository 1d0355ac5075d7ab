"""Deployment settings: a validated model read from the environment once, at first use, never at import."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import vaultpay
from vaultpay.shared.errors import ConfigurationError


class Settings(BaseModel):
    """What every function needs from its environment (resource names get no defaults, so a missing one
    fails loudly here instead of reaching AWS as an empty string)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    stage: Literal["local", "dev", "prod"] = Field(alias="STAGE")
    nats_url: str = Field(alias="NATS_URL", min_length=1)
    # The deploy pipeline may stamp a build id; otherwise the core package's own version.
    version: str = Field(alias="VAULTPAY_VERSION", default=vaultpay.__version__, min_length=1)

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        if not value.startswith(("nats://", "tls://")):
            raise ValueError("must start with nats:// or tls://")
        return value


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Validates `environ`; the error names every missing or invalid variable, never its value."""
    try:
        return Settings.model_validate(dict(environ))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error["loc"])
            reason = "is not set" if error["type"] == "missing" else error["msg"]
            problems.append(f"{name} {reason}")
        # `from None`: pydantic's own message quotes the offending values, and a value may be a secret.
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use and reused by a warm Lambda."""
    return load_settings(os.environ)
