"""Deployment API: deployments, rollbacks, undeploys and environments (thin views over the deployment services)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES, paginated
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from governance import selectors
from governance.api.common import CommentIn, GovernanceView, choice_param, deployment_for, validated
from governance.registry.services.deployments import deployment_end, deployment_record, deployment_rollback


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


class DeploymentListView(GovernanceView):
    @extend_schema(operation_id="deployments_list", parameters=[
        OpenApiParameter("model", str), OpenApiParameter("environment", str),
        OpenApiParameter("active", str, enum=["true", "false"]), OpenApiParameter("page", int),
        OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedDeploymentList", DeploymentOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        active = choice_param(request, "active", ["true", "false"])
        deployments = selectors.deployment_list(
            user=request.user, model_name=request.query_params.get("model") or None,
            environment=request.query_params.get("environment") or None,
            active=None if active is None else active == "true")
        return self.page(request, deployments, DeploymentOut)

    @extend_schema(operation_id="deployments_record", request=DeploymentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DeploymentOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(DeploymentIn, request)
        version = selectors.model_version_get(user=request.user, model_name=data["model"], label=data["version"])
        environment = selectors.environment_get(name=data["environment"])
        deployment = deployment_record(version=version, environment=environment, by=request.user,
                                                comment=data["comment"])
        return Response(DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailView(GovernanceView):
    @extend_schema(operation_id="deployments_get", responses={200: DeploymentOut, **ERROR_RESPONSES})
    def get(self, request: Request, deployment_id: str) -> Response:
        return Response(DeploymentOut(deployment_for(request, deployment_id)).data)


class RollbackView(GovernanceView):
    @extend_schema(operation_id="deployments_rollback", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: DeploymentOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = deployment_for(request, deployment_id)
        data = validated(CommentIn, request)
        rolled = deployment_rollback(deployment=deployment, by=request.user, comment=data["comment"])
        return Response(DeploymentOut(rolled).data, status=status.HTTP_201_CREATED)


class DeploymentEndView(GovernanceView):
    @extend_schema(operation_id="deployments_end", request=CommentIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: DeploymentOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = deployment_for(request, deployment_id)
        data = validated(CommentIn, request)
        ended = deployment_end(deployment=deployment, by=request.user, comment=data["comment"])
        return Response(DeploymentOut(ended).data)


class EnvironmentListView(GovernanceView):
    @extend_schema(operation_id="environments_list",
                   responses={200: paginated("PaginatedEnvironmentList", EnvironmentOut(many=True)),
                              **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        return self.page(request, selectors.environment_list(), EnvironmentOut)
