from django.urls import path, re_path, register_converter

from audit import api


class SeqConverter:
    """A ledger sequence number; at most 18 digits, so it always fits a BIGINT."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(SeqConverter, "seq")

urlpatterns = [
    path("entries/", api.LedgerEntryListApi.as_view(), name="ledger-entries"),
    path("entries/<seq:seq>/", api.LedgerEntryDetailApi.as_view(), name="ledger-entry"),
    path("entries/<seq:seq>/proof/", api.InclusionProofApi.as_view(), name="ledger-entry-proof"),
    path("consistency/", api.ConsistencyProofApi.as_view(), name="ledger-consistency"),
    path("checkpoint/", api.CheckpointApi.as_view(), name="ledger-checkpoint"),
    path("keys/", api.SigningKeyListApi.as_view(), name="ledger-keys"),
    re_path(r"^keys/(?P<key_id>[^/]{1,64})/$", api.SigningKeyDetailApi.as_view(), name="ledger-key"),
]
