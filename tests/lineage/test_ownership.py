"""Lineage records belong to a team: who records for which team, and who reads whose records (services)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from core.actor import acting_as
from core.errors import Forbidden, InvalidInput, NotFound
from governance.lineage_access import lineage_owners
from governance.models import TokenScope
from governance.registry.services.access import service_account_create
from lineage import visibility
from lineage.models import Dataset, LineageNode
from lineage.selectors import dataset_list
from lineage.services.datasets import dataset_create
from lineage.services.graph import acting_owner
from lineage.services.keys import pipeline_key_register, pipeline_key_revoke
from lineage.services.model_versions import lineage_record_model_version
from lineage.services.runs import ArtifactSpec, training_run_record
from tests.fixtures import SEED
from tests.lineage.conftest import OTHER_TEAM_OWNER, TEAM_OWNER, digest_of, public_pem

pytestmark = pytest.mark.django_db


def test_a_system_actor_records_shared_records_unless_it_names_a_team(team):
    assert acting_owner("system:test") == ""
    assert acting_owner("system:test", TEAM_OWNER) == TEAM_OWNER


def test_a_member_records_for_their_team_and_must_name_one_when_in_several(make_user, team, other_team):
    member = make_user("mia", "data_scientist", teams=(team,))
    assert acting_owner(member) == TEAM_OWNER
    with pytest.raises(Forbidden) as refused:
        acting_owner(member, OTHER_TEAM_OWNER)
    assert refused.value.code == "lineage_not_owner"
    both = make_user("bo", "data_scientist", teams=(team, other_team))
    with pytest.raises(InvalidInput) as ambiguous:
        acting_owner(both)
    assert ambiguous.value.code == "lineage_owner_ambiguous"
    assert ambiguous.value.extra["allowed"] == [TEAM_OWNER, OTHER_TEAM_OWNER]
    assert acting_owner(both, OTHER_TEAM_OWNER) == OTHER_TEAM_OWNER
    with pytest.raises(Forbidden) as none:
        acting_owner(make_user("nel", "data_scientist"))
    assert none.value.code == "lineage_team_required"


def test_owners_by_role(make_user, team, other_team, model, auditor):
    member = make_user("mia", "data_scientist", teams=(team,))
    assert lineage_owners(member) == visibility.LineageOwners(read=frozenset({TEAM_OWNER}),
                                                              write=frozenset({TEAM_OWNER}))
    assert lineage_owners(auditor) == visibility.LineageOwners(read=None, write=frozenset())
    admin = make_user("adam", "admin")
    assert lineage_owners(admin) == visibility.LineageOwners(read=None, write=frozenset())


def test_a_service_account_records_for_the_teams_of_the_models_it_is_bound_to(model):
    account, _ = service_account_create(by=SEED, name="bound", role="data_scientist", models=[model])
    owners = lineage_owners(account.user)
    assert owners.write == frozenset({TEAM_OWNER}) and owners.read == frozenset({TEAM_OWNER})


def test_a_read_token_restricted_to_a_model_reads_its_team_and_records_nothing(model):
    account, _ = service_account_create(by=SEED, name="reader", role="data_scientist", models=[model],
                                        scope=TokenScope.READ)
    user = account.user
    user.service_token = account.tokens.get()
    assert lineage_owners(user) == visibility.LineageOwners(read=frozenset({TEAM_OWNER}), write=frozenset())


def test_with_no_owner_resolver_only_superusers_read_team_records(visibility_registry, make_user, django_user_model,
                                                                   team):
    dataset_create(namespace="s3://x", name="owned", actor=SEED, owner_team=TEAM_OWNER)
    dataset_create(namespace="s3://x", name="shared", actor=SEED)
    member = make_user("mia", "data_scientist", teams=(team,))
    assert [d.name for d in dataset_list(user=member)] == ["shared"]
    root = django_user_model.objects.create_superuser("root", "root@example.org", "x" * 16)
    assert [d.name for d in dataset_list(user=root)] == ["owned", "shared"]


def test_the_same_artifact_bytes_are_each_teams_own_node(team, other_team):
    spec = ArtifactSpec(uri="s3://m/model.pkl", digest=digest_of("model"))
    training_run_record(job_name="a", artifacts=[spec], actor=SEED, owner_team=TEAM_OWNER)
    training_run_record(job_name="b", artifacts=[spec], actor=SEED, owner_team=OTHER_TEAM_OWNER)
    nodes = LineageNode.objects.filter(kind=LineageNode.Kind.ARTIFACT, digest=spec.digest)
    assert sorted(nodes.values_list("owner_team", flat=True)) == [TEAM_OWNER, OTHER_TEAM_OWNER]


def test_a_model_version_cannot_name_another_teams_run_as_its_source(make_user, team, other_team):
    run = training_run_record(job_name="theirs", actor=SEED, owner_team=OTHER_TEAM_OWNER)
    member = make_user("mia", "data_scientist", teams=(team,))
    with pytest.raises(NotFound) as missing:
        lineage_record_model_version(run_id=run.pk, subject=("governance.modelversion", "77"), digest="ab" * 32,
                                     label="x", actor=member)
    assert missing.value.code == "training_run_not_found"
    assert not LineageNode.objects.filter(ref_id="77").exists()


def test_a_teammate_without_the_keepers_permission_cannot_revoke_a_key(pipeline_user, pipeline_private_key,
                                                                       make_user, team):
    key = pipeline_key_register(owner=pipeline_user, public_key=public_pem(pipeline_private_key))
    assert key.owner_team == TEAM_OWNER
    teammate = make_user("tom", "data_scientist", teams=(team,))
    with pytest.raises(Forbidden):
        pipeline_key_revoke(key=key, by=teammate)
    with acting_as(SEED):
        teammate.user_permissions.add(Permission.objects.get(codename="change_pipelinekey"))
    keeper = type(teammate).objects.get(pk=teammate.pk)
    assert pipeline_key_revoke(key=key, by=keeper).revoked_at is not None


def test_datasets_of_the_same_name_in_two_teams_are_two_records(team, other_team):
    mine, created = dataset_create(namespace="s3://bank", name="loans", actor=SEED, owner_team=TEAM_OWNER)
    theirs, created_too = dataset_create(namespace="s3://bank", name="loans", actor=SEED, owner_team=OTHER_TEAM_OWNER)
    again, created_again = dataset_create(namespace="s3://bank", name="loans", actor=SEED, owner_team=TEAM_OWNER)
    assert created and created_too and not created_again
    assert mine.pk != theirs.pk and again.pk == mine.pk
    assert Dataset.objects.filter(name="loans").count() == 2
