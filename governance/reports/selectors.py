"""Reads of the reports app: what goes into a model's bundle, and which exports a user may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.errors import NotFound


@dataclass
class BundlePlan:
    """The ledger subjects of a bundle and the files it carries besides the ledger."""

    subjects: list[tuple[str, str]]
    contents: dict[str, Any] = field(default_factory=dict)


def bundle_plan_for_model(*, model_name: str, version_label: str = "", user: Any = None) -> BundlePlan:
    """Every subject of a model's bundle; filled in once the model registry exists."""
    raise NotFound(f"No model {model_name!r}.", code="model_not_found")
