"""Reads for the pages: policy violations, only of models the caller may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from governance.integrations.mlflow.models import MlflowViolation

SHOWN = 20


def violations_visible(*, visible: QuerySet[Any], model: Any = None) -> list[MlflowViolation]:
    """The latest violations of the `visible` models (a permission-filtered queryset), or of one of them."""
    rows = MlflowViolation.objects.select_related("model", "version", "connection").filter(model__in=visible)
    if model is not None:
        rows = rows.filter(model=model)
    return list(rows.order_by("-detected_at", "-pk")[:SHOWN])
