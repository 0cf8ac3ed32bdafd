"""Routes of signed approvals (included under /api/)."""

from django.urls import path

from governance.signatures import api

urlpatterns = [
    path("approval-requests/<str:request_id>/statement/", api.StatementView.as_view(), name="sig-statement"),
    path("me/signing-credentials/", api.CredentialListView.as_view(), name="sig-credentials"),
    path("me/signing-credentials/<str:credential_id>/revoke/", api.CredentialRevokeView.as_view(), name="sig-revoke"),
    path("me/passkeys/options/", api.PasskeyOptionsView.as_view(), name="sig-passkey-options"),
    path("me/passkeys/", api.PasskeyRegisterView.as_view(), name="sig-passkeys"),
]
