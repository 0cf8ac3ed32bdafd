"""governance.lineage_access: what governance answers, through lineage.visibility, about the lineage
nodes of its model versions and deployments."""

from __future__ import annotations

import pytest

from governance.lineage_access import resolve_lineage_subject, visible_lineage_nodes
from governance.registry.services.deployments import deployment_record
from lineage import visibility
from lineage.models import LineageNode

pytestmark = pytest.mark.django_db


def test_governance_registers_both_callables_at_start_up():
    assert visibility.registered_subject_resolver() is resolve_lineage_subject
    assert visibility.registered_visibility_filter() is visible_lineage_nodes


def test_resolver_names_the_model_and_team_behind_version_and_deployment_nodes(version, scientist, environments):
    deployment = deployment_record(version=version, environment=environments["staging"], by=scientist)
    expected = visibility.GovernedSubject(record_type="governance.registeredmodel", record_id=str(version.model_id),
                                          name="credit-default-scorer", owner="team:credit-risk")
    assert visibility.resolve_subject("governance.modelversion", str(version.pk)) == expected
    assert visibility.resolve_subject("governance.deployment", str(deployment.pk)) == expected
    for ref in (("governance.modelversion", "999999"), ("governance.modelversion", "x"), ("governance.team", "1")):
        assert resolve_lineage_subject(*ref) is None


def test_filter_follows_model_visibility(version, scientist, make_user, other_team, auditor, environments):
    deployment_record(version=version, environment=environments["staging"], by=scientist)
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    governed = LineageNode.objects.exclude(ref_type__startswith="lineage.")
    assert governed.count() == 2
    assert set(visible_lineage_nodes(scientist, governed)) == set(governed)
    assert set(visible_lineage_nodes(auditor, governed)) == set(governed)
    assert not visible_lineage_nodes(outsider, governed).exists()
    assert not visible_lineage_nodes(None, governed).exists()
