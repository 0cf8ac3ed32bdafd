"""Policy API: approval policies (risk officers; weakening takes a second one) and lowering a risk tier
(two people)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.ids import object_id
from governance import selectors
from governance.api.common import CommentIn, GovernanceView, validated
from governance.models import (
    ApprovalPolicy,
    ApprovalPolicyChange,
    RiskTier,
    RiskTierChange,
    SignedApproval,
)
from governance.registry.services.approvals import (
    approval_policy_change_approve,
    approval_policy_change_reject,
    approval_policy_set,
)
from governance.registry.services.registry import (
    risk_tier_lower_confirm,
    risk_tier_lower_request,
)


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
        data = validated(PolicyIn, request)
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
        data = validated(CommentIn, request)
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
        data = validated(RiskTierChangeIn, request)
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
        data = validated(CommentIn, request)
        risk_tier_lower_confirm(change=change, by=request.user, comment=data["comment"])
        return Response(RiskTierChangeOut(RiskTierChange.objects.get(pk=change.pk)).data)
