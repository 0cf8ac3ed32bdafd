"""Reconcile against a fake MLflow registry (tests/mlflow_fake.py): import with SHA-256 manifests and
lineage, idempotence, changes MLflow sends no event for, deletions, aliases as deployments, policy
violations (ledger, alert, revert), and the approval alias."""

from __future__ import annotations

import hashlib

import pytest
from django.core import mail

from audit.models import LedgerEntry
from governance.fairness import notifications
from governance.integrations.mlflow.models import MlflowModelLink, MlflowViolation
from governance.integrations.mlflow.services import reconcile
from governance.integrations.mlflow.services.connections import mlflow_connection_update
from governance.models import Deployment, ModelVersion, RegisteredModel, VersionStatus
from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit
from governance.registry.services.registry import model_register
from lineage.models import TrainingRun
from tests.fixtures import SEED, entries, last_entry

FILES = {"MLmodel": b"flavors: {}\n", "model.skops": b"\x00" * 5000, "sub/requirements.txt": b"scikit-learn==1.9.1\n"}


def run(connection, name: str = "credit-scorer") -> reconcile.ReconcileResult:  # type: ignore[no-untyped-def]
    return reconcile.mlflow_model_reconcile(connection=connection, mlflow_name=name)


@pytest.fixture
def two_versions(fake_mlflow):  # type: ignore[no-untyped-def]
    fake_mlflow.add_version("credit-scorer", FILES, run_id="b7dcbdf997e04af584975bf495347ab2", run_id_in_search=False)
    fake_mlflow.add_version("credit-scorer", {**FILES, "model.skops": b"\x01" * 5000}, run_id="c" * 32,
                            tags={"origin": "runs-uri"}, description="second")
    return fake_mlflow


@pytest.mark.django_db
def test_new_versions_become_drafts_with_sha256_manifests_and_lineage(connection, two_versions,
                                                                       django_capture_on_commit_callbacks):
    result = run(connection)
    assert not result.errors, result.errors
    model = RegisteredModel.objects.get(name="credit-scorer")
    assert model.team == connection.team and model.risk_tier == "high"
    versions = {v.label: v for v in ModelVersion.objects.filter(model=model)}
    assert set(versions) == {"1", "2"}
    assert all(v.status == VersionStatus.DRAFT for v in versions.values())
    assert versions["1"].manifest == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert versions["2"].manifest["model.skops"] == hashlib.sha256(b"\x01" * 5000).hexdigest()
    assert versions["1"].created_by == connection.service_account
    imported = {e.payload["mlflow_version"]: e for e in entries("mlflow.version_imported")}
    # The run id comes from model-versions/get: search left it out, as it does for log_model versions.
    assert imported["1"].payload["run_id"] == "b7dcbdf997e04af584975bf495347ab2"
    assert imported["2"].payload["tags"] == {"origin": "runs-uri"}
    assert imported["2"].payload["description"] == "second"
    assert imported["1"].payload["manifest_digest"] == versions["1"].manifest_digest
    run_row = TrainingRun.objects.get(pk=versions["1"].training_run)
    assert run_row.external_run_id == f"mlflow:{connection.pk}:b7dcbdf997e04af584975bf495347ab2"
    assert run_row.parameters == {"C": "1.0"}
    assert run_row.owner_team == "team:credit-risk"


@pytest.mark.django_db
def test_reconcile_twice_writes_nothing_the_second_time(connection, two_versions, django_capture_on_commit_callbacks):
    run(connection)
    count = LedgerEntry.objects.count()
    requests_before = len(two_versions.requests)
    again = run(connection)
    assert again.changes == [] and again.errors == []
    assert LedgerEntry.objects.count() == count
    # Known versions are not downloaded again.
    assert not any("mlflow-artifacts" in path for _, path in two_versions.requests[requests_before:])


@pytest.mark.django_db
def test_changes_mlflow_sends_no_event_for_are_recorded(connection, two_versions, django_capture_on_commit_callbacks):
    run(connection)
    model = two_versions.models["credit-scorer"]
    model.description = "PD model"
    model.tags = {"owner": "risk"}
    model.versions["1"].description = "edited"
    model.versions["1"].current_stage = "Production"
    result = run(connection)
    changed = last_entry("mlflow.model_changed").payload["changes"]
    assert changed == {"description": {"before": "", "after": "PD model"},
                       "tags": {"before": {}, "after": {"owner": "risk"}}}
    version_changes = last_entry("mlflow.version_changed").payload["changes"]
    assert version_changes == {"description": {"before": "", "after": "edited"},
                               "current_stage": {"before": "None", "after": "Production"}}
    assert len(result.changes) == 2


@pytest.mark.django_db
def test_a_deleted_version_and_a_deleted_model_are_recorded(connection, two_versions,
                                                            django_capture_on_commit_callbacks):
    run(connection)
    del two_versions.models["credit-scorer"].versions["1"]
    run(connection)
    deleted = last_entry("mlflow.version_deleted")
    assert deleted.payload["mlflow_version"] == "1"
    assert deleted.subject_id == str(ModelVersion.objects.get(label="1").pk)
    assert run(connection).changes == []  # recorded once
    del two_versions.models["credit-scorer"]
    run(connection)
    assert last_entry("mlflow.model_deleted").payload["mlflow_name"] == "credit-scorer"
    assert not MlflowModelLink.objects.filter(deleted_at__isnull=True).exists()
    assert run(connection).changes == []


@pytest.mark.django_db
def test_the_scheduled_pass_finds_models_no_event_announced(connection, two_versions,
                                                            django_capture_on_commit_callbacks):
    two_versions.add_version("fraud-model", FILES)
    results = reconcile.mlflow_connection_reconcile(connection=connection)
    assert sorted(r.mlflow_name for r in results) == ["credit-scorer", "fraud-model"]
    assert set(RegisteredModel.objects.values_list("name", flat=True)) == {"credit-scorer", "fraud-model"}


@pytest.mark.django_db
def test_a_name_taken_by_another_team_is_refused_and_nothing_is_written(connection, two_versions, other_team,
                                                                        make_user,
                                                                        django_capture_on_commit_callbacks):
    hiring = make_user("hana", "data_scientist", teams=(other_team,))
    model_register(by=hiring, name="credit-scorer", team=other_team, risk_tier="high")
    count = LedgerEntry.objects.count()
    result = run(connection)
    assert result.errors and result.errors[0].startswith("mlflow_model_name_taken")
    assert LedgerEntry.objects.count() == count
    assert not ModelVersion.objects.exists()


@pytest.fixture
def approval_ready(connection, make_user, approver):  # type: ignore[no-untyped-def]
    approval_policy_set(by=SEED, risk_tier="high", quorum=1, required_roles=[], required_card_fields=[],
                        expiry_hours=48)
    return make_user("dana", "data_scientist", teams=(connection.team,))


def approve(version: ModelVersion, submitter, approver) -> None:  # type: ignore[no-untyped-def]
    request = model_version_submit(version=version, by=submitter, comment="from MLflow")
    approval_decide(request=request, by=approver, decision="approve", comment="ok")


@pytest.mark.django_db
def test_an_environment_alias_on_an_unapproved_version_is_a_violation(connection, two_versions, settings,
                                                                      monkeypatch, approval_ready,
                                                                      django_capture_on_commit_callbacks):
    settings.FAIRNESS_NOTIFY_EMAILS = ["risk@example.org"]
    settings.FAIRNESS_WEBHOOK_URL = "http://alerts.test/hook"
    posted: list[tuple[str, dict]] = []
    monkeypatch.setattr(notifications, "post_event", lambda event, data: posted.append((event, data)) or "id")
    run(connection)
    two_versions.models["credit-scorer"].aliases["champion"] = "2"
    with django_capture_on_commit_callbacks(execute=True):
        run(connection)
    violation = MlflowViolation.objects.get()
    assert (violation.alias, violation.environment, violation.version.label) == ("champion", "production", "2")
    assert violation.version_status == "draft" and violation.code == "deployment_not_approved"
    entry = last_entry("mlflow.policy_violation")
    assert entry.subject_id == str(violation.pk)
    assert not Deployment.objects.exists()
    # The same alert channels as a failing audit: the signed webhook and the e-mail.
    assert [event for event, _ in posted] == ["mlflow.policy_violation"]
    assert posted[0][1]["version"] == "2" and posted[0][1]["alias"] == "champion"
    assert len(mail.outbox) == 1 and "risk@example.org" in mail.outbox[0].to
    assert MlflowViolation.objects.get().notified_at is not None
    # Not reverted by default; the alias stays, and the violation is recorded once.
    assert two_versions.models["credit-scorer"].aliases == {"champion": "2"}
    assert run(connection).changes == []
    assert MlflowViolation.objects.count() == 1


@pytest.mark.django_db
def test_staging_alias_records_a_deployment_and_an_approved_champion_deploys(
        connection, two_versions, approval_ready, approver, django_capture_on_commit_callbacks):
    run(connection)
    two_versions.models["credit-scorer"].aliases["challenger"] = "1"
    run(connection)
    staging = Deployment.objects.get(environment__name="staging")
    assert staging.version.label == "1" and staging.deployed_by == connection.service_account
    approve(ModelVersion.objects.get(label="1"), approval_ready, approver)
    two_versions.models["credit-scorer"].aliases["champion"] = "1"
    run(connection)
    production = Deployment.objects.get(environment__name="production", is_active=True)
    assert production.version.label == "1"
    assert ModelVersion.objects.get(label="1").status == VersionStatus.DEPLOYED
    assert not MlflowViolation.objects.exists()
    alias_entries = [(e.payload["alias"], e.payload["version"], e.payload["previous"]) for e in entries("mlflow.alias_set")]
    assert alias_entries == [("challenger", "1", None), ("champion", "1", None)]


@pytest.mark.django_db
def test_the_alias_sequence_moved_and_deleted(connection, two_versions, approval_ready, approver,
                                              django_capture_on_commit_callbacks):
    run(connection)
    for label in ("1", "2"):
        approve(ModelVersion.objects.get(label=label), approval_ready, approver)
    aliases = two_versions.models["credit-scorer"].aliases
    for state in ({"champion": "1"}, {"champion": "2"}, {}):
        aliases.clear()
        aliases.update(state)
        run(connection)
    assert [(e.action, e.payload["version"], e.payload["previous"]) for e in entries()
            if e.action in ("mlflow.alias_set", "mlflow.alias_deleted")] == [
        ("mlflow.alias_set", "1", None), ("mlflow.alias_set", "2", "1"), ("mlflow.alias_deleted", None, "2")]
    deployments = list(Deployment.objects.filter(environment__name="production").order_by("pk"))
    assert [d.version.label for d in deployments] == ["1", "2"]
    assert deployments[1].replaced == deployments[0]


@pytest.mark.django_db
def test_deleting_an_environment_alias_ends_its_deployment(connection, two_versions, approval_ready, approver,
                                                           django_capture_on_commit_callbacks):
    run(connection)
    approve(ModelVersion.objects.get(label="1"), approval_ready, approver)
    aliases = two_versions.models["credit-scorer"].aliases
    aliases.update({"champion": "1", "challenger": "1"})
    run(connection)
    del aliases["champion"]
    result = run(connection)
    assert result.changes == ["alias @champion: 1 -> None", "alias @champion: deployment of 1 to production ended"]
    production = Deployment.objects.get(environment__name="production")
    assert not production.is_active
    ended = last_entry("deployment.ended")
    assert (ended.subject_id, ended.actor) == (str(production.pk), "user:svc-mlflow-lab")
    assert ended.payload["comment"] == "MLflow alias @champion deleted (lab)"
    assert ModelVersion.objects.get(label="1").status == VersionStatus.APPROVED
    assert Deployment.objects.get(environment__name="staging").is_active  # @challenger is still set
    assert run(connection).changes == []  # recorded once


@pytest.mark.django_db
def test_deleting_an_alias_leaves_a_deployment_made_here_since(connection, two_versions, approval_ready, approver,
                                                               django_capture_on_commit_callbacks):
    from governance.registry.services.deployments import deployment_record

    run(connection)
    for label in ("1", "2"):
        approve(ModelVersion.objects.get(label=label), approval_ready, approver)
    aliases = two_versions.models["credit-scorer"].aliases
    aliases["champion"] = "1"
    run(connection)
    by_hand = deployment_record(version=ModelVersion.objects.get(label="2"),
                                environment=Deployment.objects.get(is_active=True).environment, by=approval_ready)
    aliases.clear()
    assert run(connection).changes == ["alias @champion: 1 -> None"]
    by_hand.refresh_from_db()
    assert by_hand.is_active and not entries("deployment.ended")


@pytest.mark.django_db
def test_deleting_the_aliased_version_ends_its_deployment(connection, two_versions, approval_ready, approver,
                                                          django_capture_on_commit_callbacks):
    run(connection)
    approve(ModelVersion.objects.get(label="1"), approval_ready, approver)
    model = two_versions.models["credit-scorer"]
    model.aliases["champion"] = "1"
    run(connection)
    del model.versions["1"]
    model.aliases.clear()  # MLflow drops the aliases of a version it deletes
    result = run(connection)
    assert result.changes == ["version 1: deleted in MLflow", "alias @champion: 1 -> None",
                              "alias @champion: deployment of 1 to production ended"]
    assert not Deployment.objects.filter(is_active=True).exists()


@pytest.mark.django_db
def test_revert_moves_the_alias_back_and_records_it(connection, two_versions, approval_ready, approver,
                                                    django_capture_on_commit_callbacks):
    connection = mlflow_connection_update(connection=connection, by=SEED, revert_violations=True)
    run(connection)
    approve(ModelVersion.objects.get(label="1"), approval_ready, approver)
    aliases = two_versions.models["credit-scorer"].aliases
    aliases["champion"] = "1"
    run(connection)
    aliases["champion"] = "2"  # not approved
    with django_capture_on_commit_callbacks(execute=True):
        run(connection)
    assert aliases == {"champion": "1"}
    violation = MlflowViolation.objects.get()
    assert violation.reverted_at is not None
    reverted = last_entry("mlflow.alias_reverted")
    assert reverted.payload["moved_back_to"] == "1"
    run(connection)  # the revert is seen like any alias move; production still runs version 1
    assert Deployment.objects.get(environment__name="production", is_active=True).version.label == "1"


@pytest.mark.django_db
def test_approving_here_sets_the_alias_in_mlflow(connection, two_versions, approval_ready, approver,
                                                 django_capture_on_commit_callbacks):
    mlflow_connection_update(connection=connection, by=SEED, alias_on_approval="champion")
    run(connection)
    with django_capture_on_commit_callbacks(execute=True):
        approve(ModelVersion.objects.get(label="2"), approval_ready, approver)
    assert two_versions.models["credit-scorer"].aliases == {"champion": "2"}
    assert last_entry("mlflow.alias_set_on_approval").payload["mlflow_version"] == "2"
    run(connection)
    assert Deployment.objects.get(environment__name="production", is_active=True).version.label == "2"


@pytest.mark.django_db
def test_a_version_whose_artifacts_cannot_be_hashed_waits_without_writing(connection, fake_mlflow, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    fake_mlflow.add_version("credit-scorer", {})  # no files: nothing to hash
    result = run(connection)
    assert result.errors and "not hashed" in result.errors[0]
    assert not ModelVersion.objects.exists()
    count = LedgerEntry.objects.count()
    run(connection)
    assert LedgerEntry.objects.count() == count


@pytest.mark.django_db
def test_a_violation_shows_on_the_model_page_and_the_dashboard_of_those_who_see_the_model(
        client, connection, two_versions, approval_ready, make_user, other_team, django_capture_on_commit_callbacks):
    run(connection)
    two_versions.models["credit-scorer"].aliases["champion"] = "2"
    run(connection)
    client.force_login(approval_ready)
    page = client.get("/models/credit-scorer/").content.decode()
    assert 'id="mlflow-violations"' in page and "@champion" in page and "deployment_not_approved" in page
    dashboard = client.get("/").content.decode()
    assert 'id="mlflow-violations"' in dashboard and "credit-scorer 2" in dashboard
    outsider = make_user("hana", "data_scientist", teams=(other_team,))
    client.force_login(outsider)
    assert "@champion" not in client.get("/").content.decode()


@pytest.mark.django_db
def test_a_rename_in_mlflow_is_recorded_and_keeps_the_model_and_its_versions(connection, two_versions,
                                                                              django_capture_on_commit_callbacks):
    reconcile.mlflow_connection_reconcile(connection=connection)
    model = two_versions.models.pop("credit-scorer")
    model.name = "credit-scorer-v2"
    two_versions.models["credit-scorer-v2"] = model
    reconcile.mlflow_connection_reconcile(connection=connection)
    renamed = last_entry("mlflow.model_renamed")
    assert (renamed.payload["from"], renamed.payload["to"]) == ("credit-scorer", "credit-scorer-v2")
    assert renamed.subject_id == str(RegisteredModel.objects.get(name="credit-scorer").pk)
    assert not entries("mlflow.model_deleted") and not entries("mlflow.version_deleted")
    assert ModelVersion.objects.count() == 2 and RegisteredModel.objects.count() == 1
    count = LedgerEntry.objects.count()
    reconcile.mlflow_connection_reconcile(connection=connection)
    assert LedgerEntry.objects.count() == count


@pytest.mark.django_db
def test_revert_never_moves_the_alias_back_to_another_refused_version(connection, two_versions,
                                                                       django_capture_on_commit_callbacks):
    connection = mlflow_connection_update(connection=connection, by=SEED, revert_violations=True)
    run(connection)
    aliases = two_versions.models["credit-scorer"].aliases
    with django_capture_on_commit_callbacks(execute=True):
        aliases["champion"] = "1"  # a draft: refused, and removed (nothing ran there before)
        run(connection)
    assert aliases == {}
    run(connection)
    with django_capture_on_commit_callbacks(execute=True):
        aliases["champion"] = "2"
        run(connection)
    assert aliases == {}
    assert MlflowViolation.objects.count() == 2
    assert [e.payload["moved_back_to"] for e in entries("mlflow.alias_reverted")] == [None, None]


@pytest.mark.django_db
def test_an_environment_alias_on_a_version_never_registered_here_is_a_violation(connection, fake_mlflow,
                                                                                django_capture_on_commit_callbacks):
    fake_mlflow.add_version("credit-scorer", FILES)
    fake_mlflow.add_version("credit-scorer", {})  # its artifacts cannot be hashed: never registered here
    run(connection)
    fake_mlflow.models["credit-scorer"].aliases["champion"] = "2"
    run(connection)
    violation = MlflowViolation.objects.get()
    assert (violation.version, violation.mlflow_version, violation.version_status) == (None, "2", "unregistered")
    assert last_entry("mlflow.policy_violation").payload["after"]["mlflow_version"] == "2"
    assert not Deployment.objects.exists()
