"""Routes of the monitoring API (included under /api/)."""

from django.urls import path

from governance.monitoring import api

urlpatterns = [
    path("monitoring/profiles/", api.ProfileListView.as_view(), name="monitoring-profiles"),
    path("monitoring/profiles/<str:profile_id>/", api.ProfileDetailView.as_view(), name="monitoring-profile"),
    path("monitoring/monitors/", api.MonitorListView.as_view(), name="monitoring-monitors"),
    path("monitoring/monitors/<str:monitor_id>/thresholds/", api.MonitorThresholdsView.as_view(), name="monitoring-thresholds"),
    path("monitoring/monitors/<str:monitor_id>/runs/", api.MonitorRunView.as_view(), name="monitoring-runs"),
    path("monitoring/threshold-changes/<str:change_id>/confirm/", api.ThresholdChangeConfirmView.as_view(),
         name="monitoring-threshold-confirm"),
    path("monitoring/alerts/", api.AlertListView.as_view(), name="monitoring-alerts"),
    path("monitoring/alerts/<str:alert_id>/acknowledge/", api.AlertAcknowledgeView.as_view(), name="monitoring-acknowledge"),
    path("monitoring/outcomes/", api.OutcomesView.as_view(), name="monitoring-outcomes"),
    path("monitoring/comparisons/", api.ComparisonListView.as_view(), name="monitoring-comparisons"),
    path("monitoring/trend/", api.TrendView.as_view(), name="monitoring-trend"),
]
