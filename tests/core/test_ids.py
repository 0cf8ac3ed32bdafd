"""One id parser: path segments, query parameters and form fields agree on what an id is."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve
from django.urls.exceptions import Resolver404

from core.errors import NotFound
from core.ids import object_id, parse_id


@pytest.mark.parametrize(("raw", "expected"), [
    ("0", 0), ("42", 42), ("9" * 18, int("9" * 18)),
    ("9" * 19, None), ("", None), (None, None), ("-1", None), ("1.0", None), (" 1", None), ("١٢", None), ("0x1", None),
])
def test_parse_id(raw, expected):
    assert parse_id(raw) == expected


def test_object_id_refuses_with_the_callers_code():
    assert object_id("7", code="model_version_not_found") == 7
    with pytest.raises(NotFound) as refused:
        object_id("7" * 19, code="model_version_not_found")
    assert refused.value.code == "model_version_not_found" and refused.value.status_code == 404


@pytest.mark.parametrize("path", ["/ledger/{id}/", "/api/ledger/entries/{id}/", "/api/lineage/nodes/{id}/",
                                  "/models/m/requests/{id}/decide/"])
def test_every_url_takes_ids_of_at_most_18_digits(path):
    assert resolve(path.format(id="9" * 18)).kwargs
    with pytest.raises(Resolver404):
        resolve(path.format(id="9" * 19))


@pytest.mark.django_db
def test_a_page_with_an_id_too_large_for_bigint_is_404_not_500(django_user_model):
    user = django_user_model.objects.create_superuser(username="reader", password="x" * 16)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    assert client.get("/ledger/" + "9" * 19 + "/").status_code == 404
