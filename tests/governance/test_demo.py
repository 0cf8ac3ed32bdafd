"""The governance demo seeds a coherent story through the services, and is idempotent."""

from __future__ import annotations

from io import StringIO

import pytest

from audit.models import LedgerEntry
from governance import demo
from governance.models import ApprovalRequest, Deployment, ModelVersion, RequestStatus, VersionStatus

pytestmark = pytest.mark.django_db


def test_seed_tells_the_story_and_is_idempotent():
    out = StringIO()
    summary = demo.seed(stdout=out)
    assert "rollback" in summary
    versions = {v.label: v.status for v in ModelVersion.objects.filter(model__name="credit-default-scorer")}
    assert versions == {"1.0.0": VersionStatus.DEPLOYED, "1.1.0": VersionStatus.APPROVED,
                        "1.2.0": VersionStatus.PENDING_REVIEW}
    live = Deployment.objects.get(environment__name="production", is_active=True)
    assert live.version.label == "1.0.0" and live.is_rollback and live.replaced.version.label == "1.1.0"
    assert ApprovalRequest.objects.filter(status=RequestStatus.PENDING).count() == 1
    assert LedgerEntry.objects.filter(action="deployment.rolled_back", actor="user:dana").exists()
    assert LedgerEntry.objects.filter(action="model_version.approved", actor="user:rita").count() == 2
    [refused] = LedgerEntry.objects.filter(action="deployment.rollback.refused")
    assert (refused.actor, refused.payload["code"]) == ("user:ada", "admin_cannot_act_as_data_scientist")
    assert "gov_" in out.getvalue()  # the token, printed once
    # One refused weakening: rita could not approve her own request to lower the high-tier quorum.
    refused = LedgerEntry.objects.get(action="approval_policy.change_approve.refused")
    assert (refused.actor, refused.payload["code"]) == ("user:rita", "policy_change_same_officer")
    assert LedgerEntry.objects.filter(action="approval_policy.change_rejected", actor="user:rita").count() == 1
    [refused] = LedgerEntry.objects.filter(action="role.granted.refused")
    assert (refused.actor, refused.payload["code"]) == ("user:ada", "privilege_self_change")
    size = LedgerEntry.objects.count()
    again = StringIO()
    assert demo.seed(stdout=again) == "already seeded"
    assert LedgerEntry.objects.count() == size and "gov_" not in again.getvalue()


def test_seeded_state_passes_state_check():
    from audit.capture.state import governed_state_problems
    demo.seed(stdout=StringIO())
    assert [p for p in governed_state_problems() if p["subject_type"].startswith("governance.")] == []
