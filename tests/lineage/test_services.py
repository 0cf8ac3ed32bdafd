"""Service tests: registration, runs, model versions, deployments, cycles, ledger entries."""

from __future__ import annotations

import json

import pytest

from audit.models import LedgerEntry
from core.errors import Conflict, InvalidInput, NotFound
from lineage.models import Attestation, DatasetVersion, LineageEdge, LineageNode
from lineage.selectors import attestations_for_subject, attestations_upstream, lineage_graph
from lineage.services.datasets import VersionSpec, dataset_create, dataset_version_derive, dataset_version_register
from lineage.services.model_versions import lineage_record_deployment, lineage_record_model_version
from lineage.services.runs import training_run_add_outputs, training_run_record
from lineage.visibility import UNRESTRICTED
from tests.lineage.conftest import digest_of

pytestmark = pytest.mark.django_db


def _dataset(name: str = "credit"):  # type: ignore[no-untyped-def]
    return dataset_create(namespace="s3://bank", name=name, actor="system:test")[0]


def test_registering_the_same_digest_twice_returns_the_existing_version_and_writes_nothing():
    dataset = _dataset()
    first, created = dataset_version_register(
        dataset=dataset, spec=VersionSpec(location_uri="s3://bank/credit.csv", content=b"a,b\n1,2\n"),
        actor="system:test")
    assert created
    counts = (DatasetVersion.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count())
    second, created_again = dataset_version_register(
        dataset=dataset, spec=VersionSpec(location_uri="s3://elsewhere/x.csv", digest=first.digest),
        actor="system:test")
    assert not created_again
    assert second.pk == first.pk
    assert second.location_uri == "s3://bank/credit.csv"
    assert (DatasetVersion.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count()) == counts


def test_version_registration_writes_node_attestation_and_ledger_entry_together():
    dataset = _dataset()
    version, _ = dataset_version_register(
        dataset=dataset, spec=VersionSpec(location_uri="s3://bank/credit.csv", content=b"rows"),
        actor="system:test")
    assert version.digest == digest_of("rows")
    assert version.node.digest == version.digest and version.node.ref_id == str(version.pk)
    entry = LedgerEntry.objects.get(action="lineage.dataset_version.registered")
    assert entry.subject_id == str(version.pk)
    attestation = Attestation.objects.get(pk=entry.payload["attestation"]["id"])
    assert attestation.statement["subject"][0]["digest"]["sha256"] == version.digest


def test_folder_manifest_digest_is_sha256_of_the_jcs_manifest():
    import hashlib

    manifest = {"part-1.parquet": digest_of("one"), "part-0.parquet": digest_of("zero")}
    version, _ = dataset_version_register(
        dataset=_dataset(), spec=VersionSpec(location_uri="s3://bank/folder/", manifest=manifest),
        actor="system:test")
    expected = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert version.digest == expected
    assert version.digest_kind == DatasetVersion.DigestKind.MANIFEST


def test_bad_digest_is_refused_with_a_code():
    with pytest.raises(InvalidInput) as caught:
        dataset_version_register(dataset=_dataset(), spec=VersionSpec(location_uri="x", digest="ABC"),
                                          actor="system:test")
    assert caught.value.code == "invalid_digest"


def _chain():  # type: ignore[no-untyped-def]
    dataset = _dataset()
    raw, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://r", content=b"raw"),
                                               actor="system:test")
    clean, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://c",
                                                                                   content=b"clean"),
                                                 derived_from=[raw], actor="system:test")
    run = training_run_record(job_name="train", code_repository="git@x:y.git", code_commit="abc123",
                                       parameters={"max_depth": 4}, environment={"sklearn": "1.7"},
                                       inputs=[clean], actor="system:test")
    version = lineage_record_model_version(run_id=run.pk, subject=("governance.modelversion", "7"),
                                                    digest=digest_of("model"), label="credit v7",
                                                    actor="system:test")
    deployment = lineage_record_deployment(model_version_subject=("governance.modelversion", "7"),
                                                    deployment_subject=("governance.deployment", "3"),
                                                    label="prod", actor="system:test")
    return raw, clean, run, version, deployment


def test_model_version_attestation_carries_the_runs_inputs_and_code():
    raw, clean, run, version, _ = _chain()
    attestation = attestations_for_subject(("governance.modelversion", "7"), user=UNRESTRICTED)[-1]
    predicate = attestation.statement["predicate"]
    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert [dep["digest"]["sha256"] for dep in deps] == [clean.digest]
    assert predicate["buildDefinition"]["externalParameters"]["source"] == {"repository": "git@x:y.git",
                                                                            "commit": "abc123"}
    assert predicate["runDetails"]["builder"]["id"].endswith("/lineage")
    assert attestation.statement["subject"][0]["digest"]["sha256"] == digest_of("model")
    assert LedgerEntry.objects.filter(action="lineage.model_version.recorded", subject_id=str(version.pk)).count() == 1


def test_recording_a_model_version_twice_writes_nothing_new():
    _chain()
    counts = (LineageNode.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count())
    run_id = LineageNode.objects.get(kind="run").ref_id
    lineage_record_model_version(run_id=int(run_id), subject=("governance.modelversion", "7"),
                                          digest=digest_of("model"), label="credit v7", actor="system:test")
    assert (LineageNode.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count()) == counts


def test_model_version_digest_conflict_is_refused():
    _chain()
    with pytest.raises(Conflict) as caught:
        lineage_record_model_version(run_id=None, subject=("governance.modelversion", "7"),
                                              digest=digest_of("other"), label="x", actor="system:test")
    assert caught.value.code == "lineage_node_digest_conflict"


def test_deployment_needs_a_recorded_model_version():
    with pytest.raises(NotFound):
        lineage_record_deployment(model_version_subject=("governance.modelversion", "99"),
                                           deployment_subject=("governance.deployment", "1"), label="x",
                                           actor="system:test")


def test_an_edge_closing_a_cycle_is_refused_and_nothing_is_written():
    raw, clean, run, version, deployment = _chain()
    counts = (LineageEdge.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count(),
              DatasetVersion.objects.count())
    # clean is upstream of the run; making the run output raw (upstream of clean) would close a cycle.
    with pytest.raises(Conflict) as caught:
        training_run_add_outputs(run=run, output_versions=[raw], actor="system:test")
    assert caught.value.code == "lineage_cycle"
    assert (LineageEdge.objects.count(), LedgerEntry.objects.count(), Attestation.objects.count(),
            DatasetVersion.objects.count()) == counts


def test_derivation_from_a_descendant_is_refused_as_a_cycle():
    raw, clean, *_ = _chain()
    with pytest.raises(Conflict) as caught:
        dataset_version_derive(parent=clean, child=raw, actor="system:test")
    assert caught.value.code == "lineage_cycle"


def test_graph_depth_limits_the_upstream_walk():
    raw, clean, run, version, deployment = _chain()
    kinds = lambda depth: sorted(n["kind"] for n in lineage_graph(user=UNRESTRICTED,   # noqa: E731
        node=deployment, direction="upstream", depth=depth)["nodes"])
    assert kinds(0) == ["deployment"]
    assert kinds(1) == ["deployment", "model_version"]
    assert kinds(2) == ["deployment", "model_version", "run"]
    assert kinds(4) == ["dataset_version", "dataset_version", "deployment", "model_version", "run"]
    full = lineage_graph(user=UNRESTRICTED, node=raw.node, direction="downstream", depth=10)
    assert {n["id"]: n["depth"] for n in full["nodes"]}[deployment.pk] == 4
    assert len(full["edges"]) == 4
    assert all(edge["attestation"] for edge in full["edges"])


def test_upstream_attestations_of_a_model_version_cover_every_link():
    raw, clean, run, version, deployment = _chain()
    found = attestations_upstream(("governance.modelversion", "7"), user=UNRESTRICTED)
    digests = {s["digest"]["sha256"] for a in found for s in a.statement["subject"]}
    assert {raw.digest, clean.digest, run.node.digest, version.digest} <= digests
    assert deployment.digest not in digests


def test_graph_reports_truncation_nearest_nodes_first():
    raw, clean, run, version, deployment = _chain()
    data = lineage_graph(user=UNRESTRICTED, node=deployment, direction="upstream", depth=10, max_nodes=3)
    assert data["truncated"] is True
    assert sorted(n["kind"] for n in data["nodes"]) == ["deployment", "model_version", "run"]
    assert lineage_graph(user=UNRESTRICTED, node=deployment, direction="upstream", depth=10)["truncated"] is False


def test_both_directions_from_the_middle():
    raw, clean, run, version, deployment = _chain()
    data = lineage_graph(user=UNRESTRICTED, node=run.node, direction="both", depth=1)
    assert {n["kind"]: n["depth"] for n in data["nodes"]} == {"dataset_version": -1, "run": 0, "model_version": 1}


@pytest.mark.skipif(not __import__("tests.conftest", fromlist=["uses_postgres"]).uses_postgres(),
                    reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_links_cannot_close_a_cycle_together():
    import threading

    from django.db import connection

    dataset = _dataset()
    first, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="a", content=b"a"),
                                                 actor="system:test")
    second, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="b", content=b"b"),
                                                  actor="system:test")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def link(parent, child):  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            dataset_version_derive(parent=parent, child=child, actor="system:test")
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=link, args=(first, second)), threading.Thread(target=link, args=(second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lineage_cycle", "ok"]
    assert LineageEdge.objects.count() == 1
