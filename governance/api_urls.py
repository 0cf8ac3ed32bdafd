"""Routes of the registry, approval and deployment API (included under /api/)."""

from django.urls import path

from governance import api

urlpatterns = [
    path("models/", api.ModelListView.as_view(), name="gov-models"),
    path("models/<str:name>/", api.ModelDetailView.as_view(), name="gov-model"),
    path("models/<str:name>/versions/", api.VersionListView.as_view(), name="gov-versions"),
    path("models/<str:name>/versions/<str:label>/", api.VersionDetailView.as_view(), name="gov-version"),
    path("models/<str:name>/versions/<str:label>/approval-requests/", api.VersionApprovalRequestView.as_view(),
         name="gov-version-approval-requests"),
    path("approval-requests/", api.ApprovalRequestListView.as_view(), name="gov-approval-requests"),
    path("approval-requests/<str:request_id>/", api.ApprovalRequestDetailView.as_view(), name="gov-approval-request"),
    path("approval-requests/<str:request_id>/decisions/", api.DecisionView.as_view(), name="gov-decisions"),
    path("approval-requests/<str:request_id>/withdraw/", api.WithdrawView.as_view(), name="gov-withdraw"),
    path("deployments/", api.DeploymentListView.as_view(), name="gov-deployments"),
    path("deployments/<str:deployment_id>/", api.DeploymentDetailView.as_view(), name="gov-deployment"),
    path("deployments/<str:deployment_id>/rollback/", api.RollbackView.as_view(), name="gov-rollback"),
    path("environments/", api.EnvironmentListView.as_view(), name="gov-environments"),
    path("policies/", api.PolicyListView.as_view(), name="gov-policies"),
    path("policy-changes/<str:change_id>/approve/",
         api.PolicyChangeDecisionView.as_view(decision="approve"), name="gov-policy-change-approve"),
    path("policy-changes/<str:change_id>/reject/",
         api.PolicyChangeDecisionView.as_view(decision="reject"), name="gov-policy-change-reject"),
    path("models/<str:name>/risk-tier-changes/", api.RiskTierChangeRequestView.as_view(),
         name="gov-risk-tier-changes"),
    path("risk-tier-changes/<str:change_id>/confirm/", api.RiskTierChangeConfirmView.as_view(),
         name="gov-risk-tier-change-confirm"),
]
