from django.urls import path, re_path

from audit import api

urlpatterns = [
    path("entries/", api.LedgerEntryListApi.as_view(), name="ledger-entries"),
    path("entries/<seq:seq>/", api.LedgerEntryDetailApi.as_view(), name="ledger-entry"),
    path("entries/<seq:seq>/proof/", api.InclusionProofApi.as_view(), name="ledger-entry-proof"),
    path("consistency/", api.ConsistencyProofApi.as_view(), name="ledger-consistency"),
    path("checkpoint/", api.CheckpointApi.as_view(), name="ledger-checkpoint"),
    path("keys/", api.SigningKeyListApi.as_view(), name="ledger-keys"),
    re_path(r"^keys/(?P<key_id>[^/]{1,64})/$", api.SigningKeyDetailApi.as_view(), name="ledger-key"),
]
