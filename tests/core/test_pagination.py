"""core.api.PaginatedView: one page shape and one parameter check for the list endpoints of every
layer (audit, lineage, governance), because they all page through the same method."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from governance.registry.services.registry import model_register
from lineage.services.datasets import dataset_create

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = ["/api/ledger/entries/", "/api/lineage/datasets/", "/api/models/", "/api/fairness/specs/",
                  "/api/bundles/"]


@pytest.fixture
def admin_client(django_user_model) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_login(django_user_model.objects.create_superuser(username="root", password="x" * 16))
    return client


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
@pytest.mark.parametrize(("query", "parameter"), [("page=0", "page"), ("page=abc", "page"),
                                                   ("page_size=0", "page_size"), ("page_size=501", "page_size")])
def test_every_list_endpoint_refuses_a_bad_page_parameter_with_its_name(admin_client, path, query, parameter):
    response = admin_client.get(f"{path}?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert response.json()["extra"] == {"parameter": parameter}


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_every_list_endpoint_answers_the_same_page_shape(admin_client, path):
    body = admin_client.get(f"{path}?page_size=1").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["previous"] is None


def test_pages_split_the_list_without_gaps_or_repeats(admin_client, scientist, team):
    for index in range(3):
        model_register(by=scientist, name=f"m-{index}", team=team, risk_tier="minimal")
    for index in range(3):
        dataset_create(namespace="s3://bank", name=f"d-{index}", actor=scientist)
    total = LedgerEntry.objects.count()
    for path, expected in (("/api/ledger/entries/", total), ("/api/lineage/datasets/", 3), ("/api/models/", 3)):
        first = admin_client.get(f"{path}?page_size=2").json()
        assert first["count"] == expected and len(first["results"]) == 2
        assert first["next"] == f"http://testserver{path}?page=2&page_size=2"
        second = admin_client.get(first["next"]).json()
        assert second["previous"] == f"http://testserver{path}?page_size=2"
        ids = [item.get("seq", item.get("id", item.get("name"))) for item in first["results"] + second["results"]]
        assert len(set(ids)) == min(4, expected)
