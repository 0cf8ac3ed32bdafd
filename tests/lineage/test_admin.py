"""The lineage admin is read-only; revoking a pipeline key goes through the service and the ledger."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import LedgerEntry
from core.actor import acting_as
from lineage import demo
from lineage.models import PipelineKey
from lineage.services.keys import pipeline_key_register
from tests.fixtures import SEED
from tests.lineage.conftest import public_pem

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(django_user_model) -> Client:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_superuser("lineage-admin", "admin@example.org", "x" * 16)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", ["dataset", "datasetversion", "trainingrun", "lineagenode", "lineageedge",
                                   "attestation", "pipelinekey"])
def test_changelists_render_and_offer_no_add(admin_client, model, team):
    demo.seed(stdout=io.StringIO())
    response = admin_client.get(f"/admin/lineage/{model}/")
    assert response.status_code == 200
    assert admin_client.get(f"/admin/lineage/{model}/add/").status_code == 403


def test_revoke_action_calls_the_service(admin_client, pipeline_user, pipeline_private_key, team):
    key = pipeline_key_register(owner=pipeline_user, public_key=public_pem(pipeline_private_key))
    with acting_as(SEED):  # a key keeper of the key's team (anyone else may not revoke it)
        get_user_model().objects.get(username="lineage-admin").groups.add(team.group)
    response = admin_client.post("/admin/lineage/pipelinekey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == "user:lineage-admin"
    assert LedgerEntry.objects.filter(action="lineage.pipeline_key.revoked", subject_id=str(key.pk)).count() == 1
    assert PipelineKey.objects.count() == 1
