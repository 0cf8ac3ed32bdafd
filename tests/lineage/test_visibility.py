"""lineage.visibility: the subject resolver and the visibility filter, registered and not registered.

The world: raw dataset version -> run -> model version ("governance.modelversion", "7", labelled with
a secret model name) -> deployment ("governance.deployment", "3"). The dataset and the run are
lineage's own records; the model version and the deployment name governed records.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from lineage import selectors
from lineage.models import Attestation, LineageNode
from lineage.services.datasets import VersionSpec, dataset_create, dataset_version_register
from lineage.services.model_versions import lineage_record_deployment, lineage_record_model_version
from lineage.services.runs import training_run_record
from tests.lineage.conftest import digest_of

pytestmark = pytest.mark.django_db

SECRET = "hiring-secret-model"
ACTOR = "system:test"


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    dataset, _ = dataset_create(namespace="s3://bank", name="credit", actor=ACTOR)
    raw, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://r", content=b"raw"),
                                      actor=ACTOR)
    run = training_run_record(job_name="train", inputs=[raw], actor=ACTOR)
    version = lineage_record_model_version(run_id=run.pk, subject=("governance.modelversion", "7"),
                                           digest=digest_of("model"), label=f"{SECRET}:1.0.0", actor=ACTOR)
    deployment = lineage_record_deployment(model_version_subject=("governance.modelversion", "7"),
                                           deployment_subject=("governance.deployment", "3"),
                                           label=f"{SECRET}:1.0.0@prod", actor=ACTOR)
    return {"raw": raw, "run": run, "version": version, "deployment": deployment}


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


def _graph_kinds(client: APIClient, run_id: int) -> list[str]:
    response = client.get("/api/lineage/graph/", {"node": f"run:{run_id}", "direction": "both", "depth": 5})
    assert response.status_code == 200, response.content
    return sorted(node["kind"] for node in response.data["nodes"])


# --- Nothing registered: deny by default ----------------------------------------------------------

def test_unregistered_hides_governed_nodes_from_lineage_readers(world, pipeline_user, visibility_registry):
    client = _api(pipeline_user)
    version, deployment, run = world["version"], world["deployment"], world["run"]
    for node in (version, deployment):
        detail = client.get(f"/api/lineage/nodes/{node.pk}/")
        assert detail.status_code == 404 and detail.json()["code"] == "lineage_node_not_found"
    by_ref = client.get("/api/lineage/graph/", {"node": "model_version:governance.modelversion:7"})
    assert by_ref.status_code == 404 and by_ref.json()["code"] == "lineage_node_not_found"
    graph = client.get("/api/lineage/graph/", {"node": f"run:{run.pk}", "direction": "both", "depth": 5})
    assert sorted(node["kind"] for node in graph.data["nodes"]) == ["dataset_version", "run"]
    assert {edge["target"] for edge in graph.data["edges"]} == {run.node_id}
    assert SECRET.encode() not in graph.content
    runs = client.get("/api/lineage/runs/")
    assert runs.data["results"][0]["outputs"] == [] and SECRET.encode() not in runs.content


def test_unregistered_hides_the_attestations_that_name_governed_nodes(world, pipeline_user, visibility_registry):
    client = _api(pipeline_user)
    about_version = Attestation.objects.filter(subjects__node=world["version"]).get()
    listed = client.get("/api/lineage/attestations/")
    listed_ids = [item["id"] for item in listed.data["results"]]
    assert about_version.pk not in listed_ids and len(listed_ids) == Attestation.objects.count() - 2
    assert SECRET.encode() not in listed.content
    envelope = client.get(f"/api/lineage/attestations/{about_version.pk}/")
    assert envelope.status_code == 404 and envelope.json()["code"] == "attestation_not_found"
    for upstream in ("0", "1"):
        found = client.get("/api/lineage/attestations/", {"subject_type": "governance.modelversion", "subject_id": "7",
                                                          "upstream": upstream})
        assert found.status_code == 200 and found.data == []


def test_unregistered_plain_nodes_keep_model_permissions(world, pipeline_user, plain_user, visibility_registry):
    raw_node = world["raw"].node
    assert _api(pipeline_user).get(f"/api/lineage/nodes/{raw_node.pk}/").status_code == 200
    assert _api(plain_user).get(f"/api/lineage/nodes/{raw_node.pk}/").status_code == 403


def test_unregistered_superusers_see_everything(world, django_user_model, visibility_registry):
    root = django_user_model.objects.create_superuser("root", password="x" * 16)
    client = _api(root)
    assert client.get(f"/api/lineage/nodes/{world['version'].pk}/").status_code == 200
    assert _graph_kinds(client, world["run"].pk) == ["dataset_version", "deployment", "model_version", "run"]


def test_unregistered_page_of_a_governed_node_is_not_found(world, django_user_model, visibility_registry):
    user = django_user_model.objects.create_user(username="viewer", password="x" * 16)
    user.user_permissions.add(Permission.objects.get(codename="view_lineagenode"))
    client = Client()
    client.force_login(user)
    assert client.get(f"/lineage/nodes/{world['version'].pk}/").status_code == 404
    run_page = client.get(f"/lineage/nodes/{world['run'].node_id}/")
    assert run_page.status_code == 200
    assert SECRET.encode() not in run_page.content and b"/api/lineage/nodes/" not in run_page.content


# --- A registered filter decides ------------------------------------------------------------------

def test_registered_filter_sees_only_governed_nodes_and_decides(world, pipeline_user, other_pipeline_user,
                                                                visibility_registry):
    asked: list[set[str]] = []

    def only_version_7_for_pipeline_ci(user, nodes):  # type: ignore[no-untyped-def]
        asked.append(set(nodes.values_list("ref_type", flat=True)))
        return nodes.filter(ref_type="governance.modelversion", ref_id="7") if user.username == "pipeline-ci" \
            else nodes.none()

    visibility_registry.register_visibility_filter(only_version_7_for_pipeline_ci)
    allowed, refused = _api(pipeline_user), _api(other_pipeline_user)
    assert _graph_kinds(allowed, world["run"].pk) == ["dataset_version", "model_version", "run"]
    assert _graph_kinds(refused, world["run"].pk) == ["dataset_version", "run"]
    assert allowed.get(f"/api/lineage/nodes/{world['version'].pk}/").status_code == 200
    assert allowed.get(f"/api/lineage/nodes/{world['deployment'].pk}/").status_code == 404
    assert refused.get(f"/api/lineage/nodes/{world['version'].pk}/").status_code == 404
    assert asked and all(ref_types <= {"governance.modelversion", "governance.deployment"} for ref_types in asked)


def test_a_filter_that_answers_with_something_else_hides_everything_governed(world, pipeline_user,
                                                                            visibility_registry):
    visibility_registry.register_visibility_filter(lambda user, nodes: list(nodes))
    nodes = selectors.lineage_graph(node=world["run"].node, direction="both", depth=5, user=pipeline_user)["nodes"]
    assert sorted(node["kind"] for node in nodes) == ["dataset_version", "run"]


def test_unrestricted_callers_see_everything_whatever_is_registered(world, visibility_registry):
    visibility_registry.register_visibility_filter(lambda user, nodes: nodes.none())
    nodes = selectors.lineage_graph(node=world["run"].node, direction="both", depth=5,
                                    user=visibility_registry.UNRESTRICTED)["nodes"]
    assert len(nodes) == 4
    assert visibility_registry.visible_nodes(visibility_registry.UNRESTRICTED, LineageNode.objects.all()).count() == 4


# --- The subject resolver -------------------------------------------------------------------------

def test_resolver_unregistered_names_nothing(world, visibility_registry):
    assert visibility_registry.resolve_subject("governance.modelversion", "7") is None


def test_resolver_registered_is_asked_about_governed_refs_only(world, visibility_registry):
    asked: list[tuple[str, str]] = []
    subject = visibility_registry.GovernedSubject(record_type="governance.registeredmodel", record_id="1",
                                                  name=SECRET, owner="team:hiring")

    def resolver(ref_type: str, ref_id: str):  # type: ignore[no-untyped-def]
        asked.append((ref_type, ref_id))
        return subject if ref_id == "7" else "not a subject"

    visibility_registry.register_subject_resolver(resolver)
    assert visibility_registry.resolve_subject("governance.modelversion", "7") == subject
    assert visibility_registry.resolve_subject("governance.deployment", "3") is None  # a wrong answer names nothing
    assert visibility_registry.resolve_subject("lineage.datasetversion", str(world["raw"].pk)) is None
    assert asked == [("governance.modelversion", "7"), ("governance.deployment", "3")]


def test_admin_changelists_leave_out_what_the_user_may_not_see(world, django_user_model, visibility_registry):
    staff = django_user_model.objects.create_user(username="staff-reader", password="x" * 16, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="lineage", codename__in=["view_lineagenode", "view_lineageedge", "view_attestation"]))
    client = Client()
    client.force_login(staff)
    for model in ("lineagenode", "lineageedge", "attestation"):
        response = client.get(f"/admin/lineage/{model}/")
        assert response.status_code == 200, model
        assert SECRET.encode() not in response.content, model
    nodes = client.get("/admin/lineage/lineagenode/")
    assert b"train" in nodes.content  # the run is listed: the check is not vacuous
    assert client.get(f"/admin/lineage/lineagenode/{world['version'].pk}/change/").status_code in (302, 404)
