"""What the MLflow integration adds to the registry's own services, registered at app start."""

from __future__ import annotations

from governance.models import ModelVersion

ALIAS_ON_APPROVAL_TASK = "governance.integrations.mlflow.tasks.mlflow_alias_on_approval_task"


def on_version_approved(version: ModelVersion) -> None:
    """Inside the approving transaction: queue setting the connection's approval alias in MLflow."""
    from core.outbox.services import task_enqueue_on_commit
    from governance.integrations.mlflow.models import MlflowVersionLink

    linked = MlflowVersionLink.objects.filter(
        version=version, deleted_at__isnull=True, link__deleted_at__isnull=True,
        link__connection__is_active=True).exclude(link__connection__alias_on_approval="")
    if linked.exists():
        task_enqueue_on_commit(ALIAS_ON_APPROVAL_TASK, version.pk)


def register() -> None:
    from governance.registry.services import approvals

    if on_version_approved not in approvals.APPROVED_HOOKS:
        approvals.APPROVED_HOOKS.append(on_version_approved)
