"""Reads of signing credentials: a person sees their own only."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from governance.permissions import is_active_user
from governance.signatures.models import ApproverCredential, CredentialKind


def own_credentials(*, user: Any) -> QuerySet[ApproverCredential]:
    if not is_active_user(user):
        return ApproverCredential.objects.none()
    return ApproverCredential.objects.filter(user_id=user.pk).order_by("registered_at", "pk")


def own_passkey_ids(*, user: Any) -> list[str]:
    """The credential ids of the user's active passkeys (for the browser's allowCredentials)."""
    return list(own_credentials(user=user).filter(kind=CredentialKind.PASSKEY, revoked_at__isnull=True)
                .values_list("credential_id", flat=True))
