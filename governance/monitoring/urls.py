"""Routes of the monitoring API (included under /api/)."""

from django.urls import path

from governance.monitoring import api

urlpatterns = [
    path("monitoring/profiles/", api.ProfileListView.as_view(), name="monitoring-profiles"),
    path("monitoring/profiles/<str:profile_id>/", api.ProfileDetailView.as_view(), name="monitoring-profile"),
]
