"""The fraud domain's configuration as template.yaml gives the stage (its tables: support.tables)."""

from __future__ import annotations

from support.tables import template


def fraud_config_document() -> str:
    """The value of the stage's fraud config parameter in template.yaml."""
    return str(template()["Resources"]["FraudConfigParameter"]["Properties"]["Value"])
