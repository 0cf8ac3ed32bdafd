"""Registry, approval and deployment API for pipelines and people (thin views over services and selectors).

Every POST accepts an `Idempotency-Key`. A model the caller cannot see answers 404. Errors are
`{"code", "message", "extra"}` with stable codes (see ERROR_RESPONSES in the schema).

Why one module over 500 lines (531): it grew past the limit this stop with the policy-change and
risk-tier-change endpoints; it should be split by topic like `registry/services/` (registry,
approvals, deployments, access), which is left for the next change to this file.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ERROR_RESPONSES, CursorlessPagination
from core.errors import InvalidInput
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.ids import object_id
from governance import selectors
from governance.models import (
    ApprovalPolicy,
    ApprovalPolicyChange,
    ApprovalRequest,
    Decision,
    Deployment,
    RequestStatus,
    RiskTier,
    RiskTierChange,
    SignedApproval,
    Team,
    VersionStatus,
)
from governance.permissions import TokenScopePermission
from governance.registry.services.approvals import (
    approval_decide,
    approval_policy_change_approve,
    approval_policy_change_reject,
    approval_policy_set,
    approval_withdraw,
    effective_policy,
    model_version_submit,
    quorum_state,
)
from governance.registry.services.deployments import deployment_record, deployment_rollback
from governance.registry.services.registry import (
    model_register,
    model_update,
    model_version_register,
    risk_tier_lower_confirm,
    risk_tier_lower_request,
)


def paginated(name: str, item: serializers.Serializer) -> serializers.Serializer:
    return inline_serializer(name=name, fields={
        "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True), "results": item})


def _choice_param(request: Request, name: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise InvalidInput(f"Query parameter '{name}' must be one of {', '.join(allowed)}.",
                           code="invalid_parameter", extra={"parameter": name, "allowed": allowed})
    return value


def _approval_for(request: Request, raw_id: str) -> ApprovalRequest:
    return selectors.approval_request_get(user=request.user,
                                          request_id=object_id(raw_id, code="approval_request_not_found"))


def _deployment_for(request: Request, raw_id: str) -> Deployment:
    return selectors.deployment_get(user=request.user, deployment_id=object_id(raw_id, code="deployment_not_found"))


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class GovernanceView(APIView):
    permission_classes = [TokenScopePermission]

    def page(self, request: Request, queryset: QuerySet[Any], serializer_class: type[serializers.Serializer],
             ) -> Response:
        paginator = CursorlessPagination()
        items = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(items, many=True).data)


# --- Serializers ----------------------------------------------------------------------------------

class ModelIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    team = serializers.CharField(max_length=100)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    intended_purpose = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    affected_groups = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                            default=list, max_length=50)
    contacts = serializers.ListField(child=serializers.EmailField(), required=False, default=list, max_length=50)


class ModelOut(serializers.Serializer):
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    risk_tier = serializers.CharField()
    description = serializers.CharField()
    intended_purpose = serializers.CharField()
    affected_groups = serializers.ListField(child=serializers.CharField())
    contacts = serializers.ListField(child=serializers.CharField())
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class VersionIn(serializers.Serializer):
    label = serializers.CharField(max_length=64)
    artifact_uri = serializers.CharField(max_length=1000)
    manifest = serializers.DictField(child=serializers.CharField(max_length=64),
                                     help_text="{path: sha256 hex} of every artifact file")
    manifest_digest = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                            help_text="Optional; must equal SHA-256 of the JCS manifest if given")
    framework = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    training_metrics = serializers.DictField(required=False, default=dict)
    training_run = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                            help_text="Lineage training-run id")
    intended_use = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    limitations = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    evaluation_data = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    ethical_considerations = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class VersionOut(serializers.Serializer):
    model = serializers.CharField(source="model.name")
    label = serializers.CharField()
    status = serializers.CharField()
    artifact_uri = serializers.CharField()
    manifest = serializers.DictField(child=serializers.CharField())
    manifest_digest = serializers.CharField()
    framework = serializers.CharField()
    training_metrics = serializers.DictField()
    training_run = serializers.IntegerField(allow_null=True)
    intended_use = serializers.CharField()
    limitations = serializers.CharField()
    evaluation_data = serializers.CharField()
    ethical_considerations = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()


class CommentIn(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class DecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    approver = serializers.CharField(source="approver.username")
    decision = serializers.CharField()
    comment = serializers.CharField()
    approver_roles = serializers.ListField(child=serializers.CharField())
    decided_at = serializers.DateTimeField()
    signed_with = serializers.SerializerMethodField()

    def get_signed_with(self, decision: Any) -> str | None:
        return (decision.signature or {}).get("method")


class ApprovalRequestOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.label")
    status = serializers.CharField()
    submitted_by = serializers.CharField(source="submitted_by.username")
    submitted_at = serializers.DateTimeField()
    comment = serializers.CharField()
    expires_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    closing_comment = serializers.CharField()
    policy = serializers.DictField(source="policy_snapshot")
    decisions = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    def get_decisions(self, request: ApprovalRequest) -> list[dict[str, Any]]:
        return DecisionOut(request.decisions.all(), many=True).data  # type: ignore[return-value]

    def get_progress(self, request: ApprovalRequest) -> dict[str, Any]:
        return quorum_state(request.decisions.all(), effective_policy(request))


class DecisionIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    signature = serializers.DictField(required=False, default=None, allow_null=True,
                                      help_text='{"method": "dsse", "envelope": {...}} or {"method": "passkey", '
                                                '"assertion": {...}}: see /api/approval-requests/{id}/statement/')


class DecisionResultOut(serializers.Serializer):
    decision = DecisionOut()
    request = ApprovalRequestOut()


class DeploymentIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    environment = serializers.CharField(max_length=100)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class DeploymentOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    version = serializers.CharField(source="version.label")
    environment = serializers.CharField(source="environment.name")
    deployed_by = serializers.CharField(source="deployed_by.username")
    deployed_at = serializers.DateTimeField()
    replaced = serializers.IntegerField(source="replaced_id", allow_null=True)
    is_rollback = serializers.BooleanField()
    is_active = serializers.BooleanField()
    comment = serializers.CharField()


class EnvironmentOut(serializers.Serializer):
    name = serializers.CharField()
    is_production = serializers.BooleanField()
    description = serializers.CharField()


# --- Views ----------------------------------------------------------------------------------------

class ModelListView(GovernanceView):
    @extend_schema(operation_id="models_list", parameters=[
        OpenApiParameter("team", str), OpenApiParameter("risk_tier", str, enum=RiskTier.values),
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedModelList", ModelOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        models = selectors.registered_model_list(user=request.user).select_related("created_by")
        tier = _choice_param(request, "risk_tier", list(RiskTier.values))
        if tier:
            models = models.filter(risk_tier=tier)
        if request.query_params.get("team"):
            models = models.filter(team__name=request.query_params["team"])
        return self.page(request, models, ModelOut)

    @extend_schema(operation_id="models_register", request=ModelIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: ModelOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        data = _validated(ModelIn, request)
        team = Team.objects.filter(name=data.pop("team")).first()
        if team is None:
            raise InvalidInput("No such team.", code="team_not_found")
        model = model_register(by=request.user, team=team, **data)
        return Response(ModelOut(model).data, status=status.HTTP_201_CREATED)


class ModelUpdateIn(serializers.Serializer):
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    intended_purpose = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    affected_groups = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                            max_length=50)
    contacts = serializers.ListField(child=serializers.EmailField(), required=False, max_length=50)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class ModelDetailView(GovernanceView):
    @extend_schema(operation_id="models_get", responses={200: ModelOut, **ERROR_RESPONSES})
    def get(self, request: Request, name: str) -> Response:
        return Response(ModelOut(selectors.registered_model_get(user=request.user, name=name)).data)

    @extend_schema(operation_id="models_update", request=ModelUpdateIn, responses={200: ModelOut, **ERROR_RESPONSES})
    def patch(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        data = _validated(ModelUpdateIn, request)
        comment = data.pop("comment")
        return Response(ModelOut(model_update(model=model, by=request.user, comment=comment, **data)).data)


class VersionListView(GovernanceView):
    @extend_schema(operation_id="versions_list", parameters=[
        OpenApiParameter("status", str, enum=VersionStatus.values), OpenApiParameter("page", int),
        OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedVersionList", VersionOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        wanted = _choice_param(request, "status", list(VersionStatus.values))
        versions = selectors.model_version_list(user=request.user, model=model, status=wanted)
        return self.page(request, versions.select_related("created_by"), VersionOut)

    @extend_schema(operation_id="versions_register", request=VersionIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: VersionOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        data = _validated(VersionIn, request)
        version = model_version_register(model=model, by=request.user, **data)
        return Response(VersionOut(version).data, status=status.HTTP_201_CREATED)


class VersionDetailView(GovernanceView):
    @extend_schema(operation_id="versions_get", responses={200: VersionOut, **ERROR_RESPONSES})
    def get(self, request: Request, name: str, label: str) -> Response:
        return Response(VersionOut(selectors.model_version_get(user=request.user, model_name=name, label=label)).data)


class VersionApprovalRequestView(GovernanceView):
    @extend_schema(operation_id="approval_requests_submit", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: ApprovalRequestOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, name: str, label: str) -> Response:
        version = selectors.model_version_get(user=request.user, model_name=name, label=label)
        data = _validated(CommentIn, request)
        approval = model_version_submit(version=version, by=request.user, comment=data["comment"])
        return Response(ApprovalRequestOut(approval).data, status=status.HTTP_201_CREATED)


class ApprovalRequestListView(GovernanceView):
    @extend_schema(operation_id="approval_requests_list", parameters=[
        OpenApiParameter("status", str, enum=RequestStatus.values), OpenApiParameter("model", str),
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedApprovalRequestList", ApprovalRequestOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        wanted = _choice_param(request, "status", list(RequestStatus.values))
        requests = selectors.approval_request_list(user=request.user, status=wanted,
                                                   model_name=request.query_params.get("model") or None)
        return self.page(request, requests, ApprovalRequestOut)


class ApprovalRequestDetailView(GovernanceView):
    @extend_schema(operation_id="approval_requests_get", responses={200: ApprovalRequestOut, **ERROR_RESPONSES})
    def get(self, request: Request, request_id: str) -> Response:
        return Response(ApprovalRequestOut(_approval_for(request, request_id)).data)


class DecisionView(GovernanceView):
    @extend_schema(operation_id="approval_requests_decide", request=DecisionIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DecisionResultOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, request_id: str) -> Response:
        approval = _approval_for(request, request_id)
        data = _validated(DecisionIn, request)
        decision = approval_decide(request=approval, by=request.user, decision=data["decision"],
                                   comment=data["comment"], signature=data.get("signature"))
        approval = selectors.approval_request_list(user=request.user).get(pk=approval.pk)
        body = {"decision": DecisionOut(decision).data, "request": ApprovalRequestOut(approval).data}
        return Response(body, status=status.HTTP_201_CREATED)


class WithdrawView(GovernanceView):
    @extend_schema(operation_id="approval_requests_withdraw", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: ApprovalRequestOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, request_id: str) -> Response:
        approval = _approval_for(request, request_id)
        data = _validated(CommentIn, request)
        approval = approval_withdraw(request=approval, by=request.user, comment=data["comment"])
        return Response(ApprovalRequestOut(approval).data)


class DeploymentListView(GovernanceView):
    @extend_schema(operation_id="deployments_list", parameters=[
        OpenApiParameter("model", str), OpenApiParameter("environment", str),
        OpenApiParameter("active", str, enum=["true", "false"]), OpenApiParameter("page", int),
        OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedDeploymentList", DeploymentOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        active = _choice_param(request, "active", ["true", "false"])
        deployments = selectors.deployment_list(
            user=request.user, model_name=request.query_params.get("model") or None,
            environment=request.query_params.get("environment") or None,
            active=None if active is None else active == "true")
        return self.page(request, deployments, DeploymentOut)

    @extend_schema(operation_id="deployments_record", request=DeploymentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DeploymentOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        data = _validated(DeploymentIn, request)
        version = selectors.model_version_get(user=request.user, model_name=data["model"], label=data["version"])
        environment = selectors.environment_get(name=data["environment"])
        deployment = deployment_record(version=version, environment=environment, by=request.user,
                                                comment=data["comment"])
        return Response(DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailView(GovernanceView):
    @extend_schema(operation_id="deployments_get", responses={200: DeploymentOut, **ERROR_RESPONSES})
    def get(self, request: Request, deployment_id: str) -> Response:
        return Response(DeploymentOut(_deployment_for(request, deployment_id)).data)


class RollbackView(GovernanceView):
    @extend_schema(operation_id="deployments_rollback", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DeploymentOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = _deployment_for(request, deployment_id)
        data = _validated(CommentIn, request)
        rolled = deployment_rollback(deployment=deployment, by=request.user, comment=data["comment"])
        return Response(DeploymentOut(rolled).data, status=status.HTTP_201_CREATED)


class EnvironmentListView(GovernanceView):
    @extend_schema(operation_id="environments_list",
                   responses={200: paginated("PaginatedEnvironmentList", EnvironmentOut(many=True)),
                              **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        return self.page(request, selectors.environment_list(), EnvironmentOut)



# --- Policies (risk officers) and risk tier lowering (two people) ---------------------------------

class PolicyIn(serializers.Serializer):
    model = serializers.CharField(max_length=100, required=False, allow_null=True, default=None)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False, allow_null=True, default=None)
    quorum = serializers.IntegerField(min_value=1, max_value=20)
    required_roles = serializers.ListField(child=serializers.CharField(max_length=50), required=False,
                                           default=list, max_length=20)
    fairness_audit_max_age_days = serializers.IntegerField(required=False, allow_null=True, default=None,
                                                           min_value=0, max_value=100_000)
    required_card_fields = serializers.ListField(child=serializers.CharField(max_length=50), required=False,
                                                 default=list, max_length=20)
    expiry_hours = serializers.IntegerField(min_value=1, max_value=24 * 366, default=72)
    fairness_metric_floors = serializers.DictField(required=False, default=dict)
    fairness_min_group_size = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                                       max_value=1_000_000_000)
    fairness_dataset_registered = serializers.BooleanField(default=False)
    signed_approval = serializers.ChoiceField(choices=SignedApproval.choices, default=SignedApproval.NONE)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class PolicyOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name", allow_null=True, default=None)
    risk_tier = serializers.CharField(allow_null=True)
    policy = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField()

    def get_policy(self, policy: ApprovalPolicy) -> dict[str, Any]:
        return policy.snapshot()


class PolicyChangeOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name", allow_null=True, default=None)
    risk_tier = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    proposed = serializers.DictField()
    weakened = serializers.ListField(child=serializers.CharField())
    requested_by = serializers.CharField(source="requested_by.username")
    requested_at = serializers.DateTimeField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)


class RiskTierChangeIn(serializers.Serializer):
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)
    reason = serializers.CharField(max_length=20_000)


class RiskTierChangeOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    from_tier = serializers.CharField()
    to_tier = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.CharField()
    requested_by = serializers.CharField(source="requested_by.username")
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)


class PolicyListView(GovernanceView):
    @extend_schema(operation_id="policies_list", responses={200: PolicyOut(many=True), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        return Response(PolicyOut(selectors.approval_policy_list(user=request.user), many=True).data)

    @extend_schema(operation_id="policies_set", request=PolicyIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: PolicyOut, 202: PolicyChangeOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        """Strengthening applies at once (200); a weakening waits for a second risk officer (202)."""
        data = _validated(PolicyIn, request)
        name = data.pop("model")
        model = selectors.registered_model_get(user=request.user, name=name) if name else None
        result = approval_policy_set(by=request.user, model=model, **data)
        if isinstance(result, ApprovalPolicyChange):
            return Response(PolicyChangeOut(result).data, status=status.HTTP_202_ACCEPTED)
        return Response(PolicyOut(result).data)


class PolicyChangeDecisionView(GovernanceView):
    decision = "approve"

    @extend_schema(request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: PolicyChangeOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, change_id: str) -> Response:
        change = selectors.approval_policy_change_get(
            user=request.user, change_id=object_id(change_id, code="policy_change_not_found"))
        data = _validated(CommentIn, request)
        if self.decision == "approve":
            approval_policy_change_approve(change=change, by=request.user, comment=data["comment"])
        else:
            approval_policy_change_reject(change=change, by=request.user, comment=data["comment"])
        return Response(PolicyChangeOut(ApprovalPolicyChange.objects.get(pk=change.pk)).data)


class RiskTierChangeRequestView(GovernanceView):
    @extend_schema(operation_id="risk_tier_changes_request", request=RiskTierChangeIn,
                   parameters=[IDEMPOTENCY_PARAMETER], responses={201: RiskTierChangeOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        data = _validated(RiskTierChangeIn, request)
        change = risk_tier_lower_request(model=model, by=request.user, risk_tier=data["risk_tier"],
                                         reason=data["reason"])
        return Response(RiskTierChangeOut(change).data, status=status.HTTP_201_CREATED)


class RiskTierChangeConfirmView(GovernanceView):
    @extend_schema(operation_id="risk_tier_changes_confirm", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: RiskTierChangeOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, change_id: str) -> Response:
        change = selectors.risk_tier_change_get(
            user=request.user, change_id=object_id(change_id, code="risk_tier_change_not_found"))
        data = _validated(CommentIn, request)
        risk_tier_lower_confirm(change=change, by=request.user, comment=data["comment"])
        return Response(RiskTierChangeOut(RiskTierChange.objects.get(pk=change.pk)).data)
