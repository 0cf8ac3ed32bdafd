"""Fixtures for lineage tests: users with lineage permissions, a pipeline key pair, helpers."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Permission

from core.actor import acting_as
from tests.fixtures import SEED

LINEAGE_PERMS = [
    "add_dataset", "view_dataset", "add_datasetversion", "view_datasetversion", "add_trainingrun",
    "view_trainingrun", "view_lineagenode", "add_pipelinekey", "view_pipelinekey", "add_attestation",
    "view_attestation",
]


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Lineage records belong to a team: the pipeline records for the credit team, the other one for hiring.
TEAM_OWNER, OTHER_TEAM_OWNER = "team:credit-risk", "team:hiring"


def _lineage_user(django_user_model, username: str, team):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username=username, password="x" * 16)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="lineage",
                                                          codename__in=LINEAGE_PERMS))
    with acting_as(SEED):
        user.groups.add(team.group)
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def pipeline_user(django_user_model, team):  # type: ignore[no-untyped-def]
    return _lineage_user(django_user_model, "pipeline-ci", team)


@pytest.fixture
def other_pipeline_user(django_user_model, other_team):  # type: ignore[no-untyped-def]
    return _lineage_user(django_user_model, "pipeline-other", other_team)


@pytest.fixture
def plain_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username="nobody", password="x" * 16)


@pytest.fixture
def pipeline_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def visibility_registry():  # type: ignore[no-untyped-def]
    """Empty lineage.visibility's registry for one test (nothing registered) and restore it afterwards."""
    # (the subject resolver, the visibility filter and the owner resolver)
    from lineage import visibility

    resolver, node_filter = visibility.registered_subject_resolver(), visibility.registered_visibility_filter()
    owners = visibility.registered_owner_resolver()
    visibility.unregister_subject_resolver()
    visibility.unregister_visibility_filter()
    visibility.unregister_owner_resolver()
    yield visibility
    visibility.unregister_subject_resolver()
    visibility.unregister_visibility_filter()
    visibility.unregister_owner_resolver()
    if owners is not None:
        visibility.register_owner_resolver(owners)
    if resolver is not None:
        visibility.register_subject_resolver(resolver)
    if node_filter is not None:
        visibility.register_visibility_filter(node_filter)


@pytest.fixture
def every_node_visible(visibility_registry):  # type: ignore[no-untyped-def]
    """A filter that hides nothing: for tests of lineage itself that name made-up governed records.

    Who records for which team stays governance's rule."""
    from governance.lineage_access import lineage_owners

    visibility_registry.register_visibility_filter(lambda user, nodes: nodes)
    visibility_registry.register_owner_resolver(lineage_owners)
    return visibility_registry
