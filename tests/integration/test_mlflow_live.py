"""Against a real MLflow 3.17.2 server started here (tests/integration/mlflow_server.py), with the
live service receiving its webhooks and a real Celery worker running the reconciles:

two versions of a scikit-learn model arrive as drafts with SHA-256 manifests equal to MLflow's own
files; `@champion` on the unapproved version is a violation (recorded, alerted, moved back); approving
it here sets `@champion` in MLflow and records the production deployment; a version deleted in
MLflow (no event) is found by the scheduled pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.mlflow_server import log_two_versions, mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET = "live-test-secret"  # noqa: S105
EVENTS = [("model_version", "created"), ("model_version_tag", "set"), ("model_version_tag", "deleted"),
          ("model_version_alias", "created"), ("model_version_alias", "deleted"), ("registered_model", "created")]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_mlflow_registry_governed_end_to_end(live_server, settings, tmp_path, celery_worker_queue):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from audit.models import LedgerEntry
    from core.actor import acting_as
    from governance.integrations.mlflow.client import MlflowClient, aliases_dict
    from governance.integrations.mlflow.models import MlflowViolation
    from governance.integrations.mlflow.services.connections import mlflow_connection_create
    from governance.integrations.mlflow.tasks import mlflow_reconcile_all_task
    from governance.models import Deployment, ModelVersion
    from governance.registry.services.access import approver_scope_grant
    from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit
    from governance.registry.services.deployments import environment_create
    from governance.registry.services.registry import team_create
    from tests.fixtures import SEED

    settings.MLFLOW_CREDENTIALS = {"MLFLOW_CRED_LIVE_SECRET": SECRET}
    team = team_create(by=SEED, name="credit-risk")
    environment_create(by=SEED, name="production", is_production=True)
    approval_policy_set(by=SEED, risk_tier="high", quorum=1, required_roles=[], required_card_fields=[],
                        expiry_hours=48)
    users = get_user_model().objects
    dana = users.create_user(username="dana", password="test-pass-123456")
    alice = users.create_user(username="alice", password="test-pass-123456")
    with acting_as(SEED):
        dana.groups.add(Group.objects.get(name="data_scientist"), team.group)
        alice.groups.add(Group.objects.get(name="approver"))
    approver_scope_grant(by=SEED, to=alice, risk_tier="high")
    dana, alice = users.get(pk=dana.pk), users.get(pk=alice.pk)

    with mlflow_server(tmp_path) as tracking_uri:
        connection = mlflow_connection_create(
            by=SEED, name="lab", team=team, tracking_uri=tracking_uri, webhook_secret_env="MLFLOW_CRED_LIVE_SECRET",
            alias_map={"champion": "production"}, revert_violations=True, alias_on_approval="champion")
        mlflow = MlflowClient(base_url=tracking_uri)
        mlflow.webhook_create(name="governance", url=f"{live_server.url}/api/integrations/mlflow/webhook",
                              secret=SECRET, events=EVENTS)

        # 1. Two versions logged in MLflow arrive here as drafts, with MLflow's own files' SHA-256.
        logged = log_two_versions(tracking_uri, "credit-scorer")
        versions = wait_for("both versions", lambda: (
            {v.label: v for v in ModelVersion.objects.filter(model__name="credit-scorer")}
            if ModelVersion.objects.filter(model__name="credit-scorer").count() == 2 else None))
        for number in ("1", "2"):
            assert versions[number].status == "draft"
            assert versions[number].manifest == logged[number]["files"]
            assert "MLmodel" in versions[number].manifest
        imported = {e.payload["mlflow_version"]: e.payload for e in LedgerEntry.objects.filter(
            action="mlflow.version_imported")}
        assert imported["1"]["run_id"] == logged["1"]["run_id"]
        assert LedgerEntry.objects.filter(action="mlflow.delivery_received").count() >= 2

        # 2. @champion on the unapproved version 2: a violation, and the alias is moved back.
        mlflow.alias_set("credit-scorer", "champion", "2")
        violation = wait_for("the violation", lambda: MlflowViolation.objects.filter(alias="champion").first())
        assert (violation.version.label, violation.environment, violation.version_status) == ("2", "production", "draft")
        assert LedgerEntry.objects.filter(action="mlflow.policy_violation", subject_id=str(violation.pk)).exists()
        wait_for("the alias moved back", lambda: MlflowViolation.objects.get(pk=violation.pk).reverted_at)
        assert "champion" not in aliases_dict(mlflow.registered_model("credit-scorer").get("aliases"))
        assert not Deployment.objects.exists()

        # 3. Approved here: the alias is set in MLflow, and production records the deployment.
        request = model_version_submit(version=versions["2"], by=dana, comment="ready")
        approval_decide(request=request, by=alice, decision="approve", comment="looks right")
        wait_for("@champion set in MLflow", lambda: aliases_dict(
            mlflow.registered_model("credit-scorer").get("aliases")).get("champion") == "2")
        deployment = wait_for("the production deployment", lambda: Deployment.objects.filter(
            environment__name="production", is_active=True).first())
        assert deployment.version.label == "2"
        assert deployment.deployed_by == connection.service_account
        assert MlflowViolation.objects.count() == 1

        # 4. A version deleted in MLflow sends no event: the scheduled pass records it.
        response = httpx.request("DELETE", f"{tracking_uri}/api/2.0/mlflow/model-versions/delete",
                                 json={"name": "credit-scorer", "version": "1"})
        assert response.status_code == 200
        mlflow_reconcile_all_task.apply()
        deleted = LedgerEntry.objects.get(action="mlflow.version_deleted")
        assert deleted.payload["mlflow_version"] == "1"
        count = LedgerEntry.objects.count()
        mlflow_reconcile_all_task.apply()
        assert LedgerEntry.objects.count() == count  # idempotent
        mlflow.close()
