"""The fairness part of the pages: audit overview, results with charts, and starting an audit.

The fairness app (governance.fairness) is built in parallel; until it offers an audit model
and a service to start one, these functions report that audits are not available.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.http import QueryDict

from audit.errors import Unavailable
from governance.models import ModelVersion, RegisteredModel


def _audit_model() -> Any:
    try:
        return apps.get_model("fairness", "FairnessAudit")
    except LookupError:
        return None


def dashboard_overview(*, user: Any) -> dict[str, Any]:
    if _audit_model() is None:
        return {"fairness_available": False, "failing_audits": [], "overdue_audits": []}
    return {"fairness_available": True, "failing_audits": [], "overdue_audits": []}


def model_section(*, user: Any, model: RegisteredModel, versions: list[ModelVersion],
                  selected: ModelVersion | None, audit_id: int | None) -> dict[str, Any]:
    return {"fairness_available": _audit_model() is not None, "audits": [], "audit_id": audit_id}


def start_audit(*, user: Any, model: RegisteredModel, post: QueryDict) -> tuple[int, str]:
    raise Unavailable("Fairness audits are not available yet.", code="fairness_unavailable")
