"""Routes of the registry, approval and deployment API (included under /api/)."""

from django.urls import path

from governance.api import approvals, deployments, policies, registry

urlpatterns = [
    path("models/", registry.ModelListView.as_view(), name="gov-models"),
    path("models/<str:name>/", registry.ModelDetailView.as_view(), name="gov-model"),
    path("models/<str:name>/versions/", registry.VersionListView.as_view(), name="gov-versions"),
    path("models/<str:name>/versions/<str:label>/", registry.VersionDetailView.as_view(), name="gov-version"),
    path("models/<str:name>/versions/<str:label>/approval-requests/", approvals.VersionApprovalRequestView.as_view(),
         name="gov-version-approval-requests"),
    path("approval-requests/", approvals.ApprovalRequestListView.as_view(), name="gov-approval-requests"),
    path("approval-requests/<str:request_id>/", approvals.ApprovalRequestDetailView.as_view(), name="gov-approval-request"),
    path("approval-requests/<str:request_id>/decisions/", approvals.DecisionView.as_view(), name="gov-decisions"),
    path("approval-requests/<str:request_id>/withdraw/", approvals.WithdrawView.as_view(), name="gov-withdraw"),
    path("deployments/", deployments.DeploymentListView.as_view(), name="gov-deployments"),
    path("deployments/<str:deployment_id>/", deployments.DeploymentDetailView.as_view(), name="gov-deployment"),
    path("deployments/<str:deployment_id>/rollback/", deployments.RollbackView.as_view(), name="gov-rollback"),
    path("deployments/<str:deployment_id>/end/", deployments.DeploymentEndView.as_view(), name="gov-deployment-end"),
    path("environments/", deployments.EnvironmentListView.as_view(), name="gov-environments"),
    path("policies/", policies.PolicyListView.as_view(), name="gov-policies"),
    path("policy-changes/<str:change_id>/approve/",
         policies.PolicyChangeDecisionView.as_view(decision="approve"), name="gov-policy-change-approve"),
    path("policy-changes/<str:change_id>/reject/",
         policies.PolicyChangeDecisionView.as_view(decision="reject"), name="gov-policy-change-reject"),
    path("models/<str:name>/risk-tier-changes/", policies.RiskTierChangeRequestView.as_view(),
         name="gov-risk-tier-changes"),
    path("risk-tier-changes/<str:change_id>/confirm/", policies.RiskTierChangeConfirmView.as_view(),
         name="gov-risk-tier-change-confirm"),
]
