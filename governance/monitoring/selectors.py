"""Permission-filtered reads of monitoring. A model the user cannot see does not exist for them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.errors import NotFound
from governance import selectors as governance_selectors
from governance.monitoring.models import ReferenceProfile


def reference_profile_list(*, user: Any, model_name: str | None = None, version_label: str | None = None
                           ) -> QuerySet[ReferenceProfile]:
    profiles = (ReferenceProfile.objects.select_related("version__model")
                .filter(version__model__in=governance_selectors.registered_model_list(user=user)))
    if model_name:
        profiles = profiles.filter(version__model__name=model_name)
    if version_label:
        profiles = profiles.filter(version__label=version_label)
    return profiles


def reference_profile_get(*, user: Any, profile_id: int) -> ReferenceProfile:
    profile = reference_profile_list(user=user).filter(pk=profile_id).first()
    if profile is None:
        raise NotFound(f"No reference profile {profile_id}.", code="monitoring_profile_not_found", extra={"id": profile_id})
    return profile
