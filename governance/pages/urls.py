"""Page URLs, included at the site root by governance/urls.py (after admin/, api/ and lineage/)."""

from django.urls import path

from governance.pages import signing, views

app_name = "pages"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("models/", views.model_list, name="models"),
    path("models/<str:name>/", views.model_detail, name="model"),
    path("models/<str:name>/versions/<str:label>/request-approval/", views.version_request_approval,
         name="request-approval"),
    path("models/<str:name>/requests/<rowid:request_id>/decide/", views.request_decide, name="decide"),
    path("models/<str:name>/export/", views.model_export_bundle, name="export"),
    path("models/<str:name>/audit/", views.model_run_audit, name="audit"),
    path("models/<str:name>/alerts/<rowid:alert_id>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("models/<str:name>/comparisons/", views.model_comparisons, name="comparisons"),
    path("models/<str:name>/comparisons/<rowid:comparison_id>/", views.model_comparisons, name="comparison"),
    path("keys/", views.keys, name="keys"),
    path("me/signing/", signing.signing, name="signing"),
    path("ledger/", views.ledger_list, name="ledger"),
    path("ledger/<seq:seq>/", views.ledger_entry, name="ledger-entry"),
]
