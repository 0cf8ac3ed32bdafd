from django.urls import path

from governance.reports import api

urlpatterns = [
    path("", api.BundleListView.as_view(), name="bundles"),
    path("<str:export_id>/", api.BundleDetailView.as_view(), name="bundle"),
    path("<str:export_id>/download/", api.BundleDownloadView.as_view(), name="bundle-download"),
]
