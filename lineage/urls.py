"""Lineage URLs: the REST API (under api/lineage/), the OpenLineage endpoint and the graph page.

governance/urls.py includes `api_urlpatterns` at `api/lineage/`, `openlineage_urlpatterns` at the
root (so the endpoint is exactly `api/v1/lineage`) and `page_urlpatterns` at `lineage/`.
"""

from django.urls import path

from lineage import api, views

api_urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="lineage-datasets"),
    path("datasets/<rowid:dataset_id>/", api.DatasetDetailApi.as_view(), name="lineage-dataset"),
    path("datasets/<rowid:dataset_id>/versions/", api.DatasetVersionListApi.as_view(), name="lineage-dataset-versions"),
    path("datasets/<rowid:dataset_id>/versions/<rowid:version_id>/", api.DatasetVersionDetailApi.as_view(),
         name="lineage-dataset-version"),
    path("runs/", api.TrainingRunListApi.as_view(), name="lineage-runs"),
    path("runs/<rowid:run_id>/", api.TrainingRunDetailApi.as_view(), name="lineage-run"),
    path("graph/", api.GraphApi.as_view(), name="lineage-graph"),
    path("nodes/<rowid:node_id>/", api.NodeDetailApi.as_view(), name="lineage-node"),
    path("keys/", api.KeyListApi.as_view(), name="lineage-keys"),
    path("keys/<rowid:key_id>/revoke/", api.KeyRevokeApi.as_view(), name="lineage-key-revoke"),
    path("attestations/", api.AttestationListApi.as_view(), name="lineage-attestations"),
    path("attestations/<rowid:attestation_id>/", api.AttestationEnvelopeApi.as_view(), name="lineage-attestation"),
]

openlineage_urlpatterns = [
    path("api/v1/lineage", api.OpenLineageApi.as_view(), name="openlineage"),
]

page_urlpatterns = [
    path("nodes/<rowid:node_id>/", views.lineage_node_page, name="lineage-node-page"),
]

urlpatterns = api_urlpatterns
