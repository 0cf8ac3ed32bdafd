"""The batch registration of versions (`model_versions_register`): the single path's rules and ledger entries."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.models import ModelVersion
from governance.registry.services.registry import NewVersion, model_version_register, model_versions_register
from lineage.models import Attestation, LineageNode
from tests.fixtures import CARD, MANIFEST, team_writer

pytestmark = pytest.mark.django_db


class _RolledBack(Exception):
    pass


def _fields(label: str) -> dict[str, Any]:
    return {"label": label, "artifact_uri": f"s3://models/cds/{label}/", "manifest": {**MANIFEST, "v": "c" * 64},
            "framework": "sklearn", "training_metrics": {"auc": 0.81}, **CARD}


def _written_since(seq: int, versions: list[ModelVersion]) -> list[tuple[Any, ...]]:
    """The entries after `seq`, with what differs between two runs of the same writes masked: the
    ids of the new rows, the attestations signed over them, and the times."""
    version_ids = {str(version.pk): f"<version {index}>" for index, version in enumerate(versions)}
    node_ids = {str(node.pk): f"<node {index}>" for index, node in enumerate(
        LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(version.pk)) for version in versions)}

    def masked(entry: LedgerEntry) -> tuple[Any, ...]:
        payload = dict(entry.payload)
        if entry.action == "model_version.registered":
            for key in ("after", "state"):
                if key in payload:
                    payload[key] = {field: value for field, value in payload[key].items()
                                    if field not in ("id", "created_at", "updated_at")}
            subject = version_ids[entry.subject_id]
        else:
            reference = payload["model_version"]
            payload["model_version"] = {**reference, "id": version_ids[reference["id"]]}
            attestation = Attestation.objects.get(pk=payload["attestation"]["id"])
            assert attestation.envelope_sha256 == payload["attestation"]["envelope_sha256"]
            payload["attestation"] = {**payload["attestation"], "id": "<attestation>", "envelope_sha256": "<sha>"}
            subject = node_ids[entry.subject_id]
        return entry.actor, entry.action, entry.subject_type, subject, payload

    return [masked(entry) for entry in LedgerEntry.objects.filter(seq__gt=seq).order_by("seq")]


def _head() -> int:
    return LedgerEntry.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def test_batch_writes_the_entries_of_the_single_path(model, scientist):
    start = _head()
    try:
        with transaction.atomic():
            single = [model_version_register(model=model, by=scientist, **_fields(label)) for label in ("1", "2")]
            expected = _written_since(start, single)
            raise _RolledBack
    except _RolledBack:
        pass
    assert not ModelVersion.objects.exists()
    batch = model_versions_register(model=model, by=scientist, versions=[NewVersion(**_fields("1")),
                                                                         NewVersion(**_fields("2"))])
    written = _written_since(start, batch)
    assert [item[1] for item in written] == ["model_version.registered", "lineage.model_version.recorded"] * 2
    assert written == expected
    assert [version.label for version in batch] == ["1", "2"]
    assert all(version.status == "draft" and version.created_by == scientist for version in batch)


def _refusal(by: Any, model: Any, versions: list[NewVersion]) -> tuple[str, int]:
    before, versions_before = _head(), ModelVersion.objects.count()
    with pytest.raises(ServiceError) as excinfo:
        model_versions_register(model=model, by=by, versions=versions)
    assert ModelVersion.objects.count() == versions_before
    assert not LineageNode.objects.filter(ref_type="governance.modelversion").exclude(
        ref_id__in=[str(pk) for pk in ModelVersion.objects.values_list("pk", flat=True)]).exists()
    return excinfo.value.code, _head() - before


def test_batch_refuses_another_team_as_not_found_and_writes_nothing(model, other_team):
    outsider = team_writer(other_team, username="olga")
    assert _refusal(outsider, model, [NewVersion(**_fields("1")), NewVersion(**_fields("2"))]) == (
        "model_not_found", 0)


def test_batch_refuses_without_the_permission_and_writes_nothing(model, make_user, team):
    # A member of the team who can see its models but holds no role that registers versions.
    reader = make_user("rita", "auditor", teams=(team,))
    with pytest.raises(ServiceError) as excinfo:
        model_version_register(model=model, by=reader, **_fields("1"))
    assert excinfo.value.code == "permission_denied"
    assert _refusal(reader, model, [NewVersion(**_fields("1")), NewVersion(**_fields("2"))]) == (
        "permission_denied", 0)


def test_batch_is_all_or_none_when_one_version_is_refused(model, scientist):
    model_version_register(model=model, by=scientist, **_fields("2"))
    assert _refusal(scientist, model, [NewVersion(**_fields("1")), NewVersion(**_fields("2"))]) == (
        "model_version_label_taken", 0)
    assert _refusal(scientist, model, [NewVersion(**_fields("3")), NewVersion(**_fields("3"))]) == (
        "model_version_label_taken", 0)
    bad = NewVersion(**{**_fields("4"), "manifest_digest": "0" * 64})
    assert _refusal(scientist, model, [NewVersion(**_fields("5")), bad]) == ("manifest_digest_mismatch", 0)


def test_batch_refuses_an_admin_once_and_keeps_the_refusal(model, make_user):
    admin = make_user("adam", "admin")
    before = _head()
    with pytest.raises(ServiceError) as excinfo:
        model_versions_register(model=model, by=admin, versions=[NewVersion(**_fields("1")),
                                                                  NewVersion(**_fields("2"))])
    assert excinfo.value.code == "admin_cannot_act_as_data_scientist"
    refusals = list(LedgerEntry.objects.filter(seq__gt=before).order_by("seq"))
    assert [(entry.action, entry.payload.get("attempt")) for entry in refusals] == [
        ("model_version.register.refused", {"labels": ["1", "2"]})]
    assert not ModelVersion.objects.exists()
