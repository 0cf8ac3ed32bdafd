"""Routes of the fairness API (included under /api/)."""

from django.urls import path

from governance.fairness import api

urlpatterns = [
    path("fairness/audits/", api.AuditListView.as_view(), name="fairness-audits"),
    path("fairness/audits/<str:audit_id>/", api.AuditDetailView.as_view(), name="fairness-audit"),
    path("fairness/audits/<str:audit_id>/status/", api.AuditStatusView.as_view(), name="fairness-audit-status"),
    path("fairness/specs/", api.SpecListView.as_view(), name="fairness-specs"),
    path("fairness/specs/<str:spec_id>/confirm/", api.SpecConfirmView.as_view(), name="fairness-spec-confirm"),
    path("fairness/audits/<str:audit_id>/waive/", api.AuditWaiveView.as_view(), name="fairness-audit-waive"),
    path("fairness/trend/", api.TrendView.as_view(), name="fairness-trend"),
    path("fairness/data-files/", api.DataFileListView.as_view(), name="fairness-data-files"),
    path("fairness/data-files/<str:file_id>/", api.DataFileDetailView.as_view(), name="fairness-data-file"),
    path("fairness/data-files/<str:file_id>/retention/", api.DataFileRetentionView.as_view(),
         name="fairness-data-file-retention"),
    path("fairness/data-files/<str:file_id>/erasure/", api.DataFileErasureView.as_view(),
         name="fairness-data-file-erasure"),
    path("fairness/data-files/<str:file_id>/download/", api.DataFileDownloadView.as_view(),
         name="fairness-data-file-download"),
    path("models/<str:name>/prediction-batches/", api.PredictionBatchView.as_view(), name="fairness-batches"),
]
