"""The demo seeder is idempotent, and the graph page draws the demo lineage for permitted users only."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from audit.models import LedgerEntry
from lineage import demo
from lineage.models import Attestation, LineageEdge, LineageNode, TrainingRun
from lineage.selectors import lineage_graph
from lineage.services.model_versions import lineage_record_model_version
from lineage.visibility import UNRESTRICTED

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("team")]  # the demo lineage is the credit team's


def test_seed_twice_writes_nothing_the_second_time():
    demo.seed(stdout=io.StringIO())
    counts = (LedgerEntry.objects.count(), Attestation.objects.count(), LineageNode.objects.count(),
              LineageEdge.objects.count())
    out = io.StringIO()
    demo.seed(stdout=out)
    assert (LedgerEntry.objects.count(), Attestation.objects.count(), LineageNode.objects.count(),
            LineageEdge.objects.count()) == counts
    assert "/lineage/nodes/" in out.getvalue()
    run = TrainingRun.objects.get(job_name=demo.JOB_NAME)
    # raw -> clean (pipeline-signed) -> run -> model.pkl
    kinds = [node["kind"] for node in lineage_graph(user=UNRESTRICTED, node=run.node, direction="both", depth=3)["nodes"]]
    assert sorted(kinds) == ["artifact", "dataset_version", "dataset_version", "run"]
    pipeline_signed = Attestation.objects.filter(origin=Attestation.Origin.PIPELINE)
    assert pipeline_signed.count() == 1


def test_seed_links_a_credit_model_version_recorded_earlier():
    node = lineage_record_model_version(run_id=None, subject=("governance.modelversion", "1"),
                                                 digest="cd" * 32, label="credit-scorecard v1", actor="system:test")
    demo.seed(stdout=io.StringIO())
    run = TrainingRun.objects.get(job_name=demo.JOB_NAME)
    assert LineageEdge.objects.filter(source=run.node, target=node).exists()


def test_graph_page_draws_svg_with_links_for_viewers(django_user_model, make_user, team):
    demo.seed(stdout=io.StringIO())
    run = TrainingRun.objects.get(job_name=demo.JOB_NAME)
    user = make_user("viewer", teams=(team,))  # the demo lineage is the credit team's
    client = Client()
    client.force_login(user)
    assert client.get(f"/lineage/nodes/{run.node_id}/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_lineagenode"))
    response = client.get(f"/lineage/nodes/{run.node_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and html.count('class="node node-') == 4
    assert f'href="/api/lineage/runs/{run.pk}/"' in html
    assert 'href="/api/lineage/attestations/' in html
    assert Client().get(f"/lineage/nodes/{run.node_id}/").status_code == 302


def test_the_demo_keeps_the_other_teams_refused_attestation(team, other_team):
    out = io.StringIO()
    demo.seed(stdout=out)
    [refused] = LedgerEntry.objects.filter(action="lineage.attestation.submitted.refused")
    assert (refused.actor, refused.payload["code"]) == ("user:demo-hiring-pipeline",
                                                        "attestation_subject_not_writable")
    assert "attestation about the credit team's data is refused (attestation_subject_not_writable)" in out.getvalue()
    # Nothing of it was stored: every attestation is the credit team's own.
    assert set(Attestation.objects.values_list("owner_team", flat=True)) == {"team:credit-risk"}
