"""Role groups exist with the right permissions; raw SQL edits of governed rows are detected."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from governance.models import ModelVersion
from governance.roles import ROLE_NAMES

pytestmark = pytest.mark.django_db


def perms(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{app}.{code}" for app, code in group.permissions.values_list("content_type__app_label", "codename")}


def test_every_role_group_exists():
    assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(ROLE_NAMES)


def test_viewer_reads_only():
    viewer = perms("viewer")
    assert "governance.view_registeredmodel" in viewer
    assert not {p for p in viewer if not p.split(".")[1].startswith("view_")}
    assert "governance.view_all_registeredmodels" not in viewer  # team-scoped, not global
    assert "audit.view_ledgerentry" not in viewer


def test_data_scientist_submits_but_does_not_decide():
    scientist = perms("data_scientist")
    assert {"governance.add_modelversion", "governance.add_approvalrequest", "governance.add_deployment"} <= scientist
    assert "governance.add_approvaldecision" not in scientist
    assert not {p for p in scientist if "approve_tier" in p}


def test_data_scientist_records_lineage_and_signs_attestations():
    scientist = perms("data_scientist")
    assert {"lineage.add_dataset", "lineage.add_datasetversion", "lineage.add_trainingrun",
            "lineage.add_pipelinekey", "lineage.add_attestation", "lineage.view_lineagenode"} <= scientist
    assert "audit.view_ledgerentry" not in scientist


def test_approver_decides_but_is_scoped():
    approver = perms("approver")
    assert "governance.add_approvaldecision" in approver
    assert not {p for p in approver if "approve_tier" in p or p.endswith("view_all_registeredmodels")}


def test_risk_officer_decides_every_tier_and_sets_policy():
    officer = perms("risk_officer")
    assert {"governance.approve_tier_high", "governance.approve_tier_limited", "governance.approve_tier_minimal",
            "governance.change_approvalpolicy", "governance.add_approvaldecision"} <= officer


def test_auditor_reads_everything_and_changes_nothing():
    auditor = perms("auditor")
    assert {"audit.view_ledgerentry", "governance.view_all_registeredmodels", "governance.view_modelversion",
            "governance.view_approvaldecision", "audit.view_checkpoint"} <= auditor
    assert "reports.export_bundle" in auditor  # created by a later app's migration, synced after migrate
    writes = {p for p in auditor if p.split(".")[1].split("_")[0] in ("add", "change", "delete", "approve")}
    assert writes == set()


def test_admin_manages_but_does_not_decide():
    admin = perms("admin")
    assert {"governance.add_environment", "governance.manage_all_registeredmodels", "auth.change_user"} <= admin
    assert "governance.add_approvaldecision" not in admin
    assert not {p for p in admin if "approve_" in p}
    assert not {p for p in admin if p.startswith("audit.") and not p.split(".")[1].startswith("view_")}


def test_raw_sql_edit_of_a_version_is_detected(version):
    from audit.capture.state import governed_state_problems
    assert not [p for p in governed_state_problems() if p["subject_type"] == "governance.modelversion"]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {ModelVersion._meta.db_table} SET status = 'approved' WHERE id = %s", [version.pk])
    problems = [p for p in governed_state_problems() if p["subject_type"] == "governance.modelversion"]
    assert problems == [{"subject_type": "governance.modelversion", "subject_id": str(version.pk),
                         "message": "row differs from its last ledger entry in: status", "fields": ["status"]}]


def test_token_hash_is_redacted_not_compared(model):
    from audit.capture.rows import model_spec
    from audit.capture.state import governed_state_problems
    from governance.models import ServiceToken
    from governance.registry.services.access import service_account_create
    service_account_create(by="system:test", name="ci", role="viewer", models=[model])
    spec = model_spec(ServiceToken)
    assert [f.name for f in spec.fields if f.redacted] == ["token_hash"]
    assert not [p for p in governed_state_problems() if p["subject_type"].startswith("governance.")]


def test_membership_and_permission_changes_from_any_side_are_recorded(make_user):
    from django.contrib.auth.models import Permission

    from audit.models import LedgerEntry
    from core.actor import acting_as
    user = make_user("gus")
    approver = Group.objects.get(name="approver")
    with acting_as("system:test"):
        approver.user_set.add(user)  # reverse side
        user.groups.clear()
        user.user_permissions.add(Permission.objects.get(codename="approve_tier_high"))
    actions = list(LedgerEntry.objects.filter(subject_type="auth.user", subject_id=str(user.pk))
                   .order_by("seq").values_list("action", "actor"))
    assert actions[-3:] == [("role.granted", "system:test"), ("role.revoked", "system:test"),
                            ("permission.granted", "system:test")]
    last = LedgerEntry.objects.filter(subject_id=str(user.pk)).order_by("-seq").first()
    assert last.payload == {"permissions": ["governance.approve_tier_high"], "to": "user:gus"}


def test_unattributed_access_change_is_still_recorded(make_user):
    from audit.models import LedgerEntry
    user = make_user("hal")
    user.groups.add(Group.objects.get(name="viewer"))
    entry = LedgerEntry.objects.filter(action="role.granted", subject_id=str(user.pk)).order_by("-seq").first()
    assert entry.actor == "system:unattributed"


def test_verify_ledger_state_names_a_raw_sql_edit_of_a_deployment_gate(version):
    from audit.verify import verify_ledger
    assert verify_ledger(check_state=True).ok
    with connection.cursor() as cursor:  # someone "approves" a version behind the services' back
        cursor.execute(f"UPDATE {ModelVersion._meta.db_table} SET status = 'approved' WHERE id = %s", [version.pk])
    result = verify_ledger(check_state=True)
    assert not result.ok
    assert [(p["subject_type"], p["subject_id"], p["fields"]) for p in result.state_problems] == [
        ("governance.modelversion", str(version.pk), ["status"])]
