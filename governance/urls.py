"""URL map: admin, API (with OpenAPI schema and docs), pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from governance.monitoring.metrics import metrics_view
from governance.reports import views as report_views
from lineage import urls as lineage_urls

urlpatterns = [
    path("admin/", admin.site.urls),
    # sign-in limits: django-axes (governance.signin) refuses cooling-off sign-ins here and in the admin
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics_view, name="metrics"),  # monitoring: Prometheus scrape (token or allowed network)
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="openapi-schema"), name="api-redoc"),
    path("api/ledger/", include("audit.urls")),
    path("api/bundles/", include("governance.reports.urls")),  # reports: audit bundle exports
    path("verify.py", report_views.verify_py, name="verify-py"),  # reports: the published verifier (public)
    path("api/", include("governance.fairness.urls")),  # fairness: audits, specs, prediction batches, trend
    path("api/", include("governance.monitoring.urls")),  # monitoring: reference profiles
    path("api/integrations/mlflow/", include("governance.integrations.mlflow.urls")),  # mlflow: registry webhooks
    path("api/", include("governance.api_urls")),  # governance: registry, approvals, deployments
    path("api/", include("governance.signatures.urls")),  # signatures: approval statements, signing credentials
    path("api/lineage/", include(lineage_urls.api_urlpatterns)),  # lineage: REST API
    path("", include(lineage_urls.openlineage_urlpatterns)),  # lineage: exactly POST /api/v1/lineage (OpenLineage)
    path("lineage/", include(lineage_urls.page_urlpatterns)),  # lineage: graph pages
    path("", include("governance.pages.urls")),  # pages: dashboard, models, ledger explorer (keep last)
]

handler500 = "core.middleware.server_error"  # hardening: a lost database is a 503
handler404 = "core.middleware.not_found"  # hardening: unrouted /api/ paths answer in the error format
