"""Approval API: requests, decisions (signed or not) and withdrawal (thin views over the approval services)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES, paginated
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from governance import selectors
from governance.api.common import CommentIn, GovernanceView, approval_for, choice_param, validated
from governance.models import (
    ApprovalRequest,
    Decision,
    RequestStatus,
)
from governance.registry.services.approvals import (
    approval_decide,
    approval_withdraw,
    effective_policy,
    model_version_submit,
    quorum_state,
)


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
    kind = serializers.CharField(help_text="approval, or reapproval (of a production version, opened by a monitoring "
                                           "alert)")
    submitted_by = serializers.CharField(source="submitted_by.username", allow_null=True,
                                         help_text="Null for a re-approval a scheduled job opened")
    excluded_deciders = serializers.ListField(child=serializers.CharField())
    monitoring_alerts = serializers.SerializerMethodField()
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

    def get_monitoring_alerts(self, request: ApprovalRequest) -> list[int]:
        """The monitoring alerts that opened or joined this re-approval."""
        return sorted(alert.pk for alert in request.monitoring_alerts.all())

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


class VersionApprovalRequestView(GovernanceView):
    @extend_schema(operation_id="approval_requests_submit", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: ApprovalRequestOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, name: str, label: str) -> Response:
        version = selectors.model_version_get(user=request.user, model_name=name, label=label)
        data = validated(CommentIn, request)
        approval = model_version_submit(version=version, by=request.user, comment=data["comment"])
        return Response(ApprovalRequestOut(approval).data, status=status.HTTP_201_CREATED)


class ApprovalRequestListView(GovernanceView):
    @extend_schema(operation_id="approval_requests_list", parameters=[
        OpenApiParameter("status", str, enum=RequestStatus.values), OpenApiParameter("model", str),
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedApprovalRequestList", ApprovalRequestOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        wanted = choice_param(request, "status", list(RequestStatus.values))
        requests = selectors.approval_request_list(user=request.user, status=wanted,
                                                   model_name=request.query_params.get("model") or None)
        return self.page(request, requests, ApprovalRequestOut)


class ApprovalRequestDetailView(GovernanceView):
    @extend_schema(operation_id="approval_requests_get", responses={200: ApprovalRequestOut, **ERROR_RESPONSES})
    def get(self, request: Request, request_id: str) -> Response:
        return Response(ApprovalRequestOut(approval_for(request, request_id)).data)


class DecisionView(GovernanceView):
    @extend_schema(operation_id="approval_requests_decide", request=DecisionIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DecisionResultOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, request_id: str) -> Response:
        approval = approval_for(request, request_id)
        data = validated(DecisionIn, request)
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
        approval = approval_for(request, request_id)
        data = validated(CommentIn, request)
        approval = approval_withdraw(request=approval, by=request.user, comment=data["comment"])
        return Response(ApprovalRequestOut(approval).data)
