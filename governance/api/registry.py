"""Registry API: registered models and their versions (thin views over registry services and selectors)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES, paginated
from core.errors import InvalidInput
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from governance import selectors
from governance.api.common import GovernanceView, choice_param, validated
from governance.models import (
    RiskTier,
    Team,
    VersionStatus,
)
from governance.registry.services.registry import (
    model_register,
    model_update,
    model_version_register,
)


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


class ModelListView(GovernanceView):
    @extend_schema(operation_id="models_list", parameters=[
        OpenApiParameter("team", str), OpenApiParameter("risk_tier", str, enum=RiskTier.values),
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedModelList", ModelOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        models = selectors.registered_model_list(user=request.user).select_related("created_by")
        tier = choice_param(request, "risk_tier", list(RiskTier.values))
        if tier:
            models = models.filter(risk_tier=tier)
        if request.query_params.get("team"):
            models = models.filter(team__name=request.query_params["team"])
        return self.page(request, models, ModelOut)

    @extend_schema(operation_id="models_register", request=ModelIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: ModelOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(ModelIn, request)
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
        data = validated(ModelUpdateIn, request)
        comment = data.pop("comment")
        return Response(ModelOut(model_update(model=model, by=request.user, comment=comment, **data)).data)


class VersionListView(GovernanceView):
    @extend_schema(operation_id="versions_list", parameters=[
        OpenApiParameter("status", str, enum=VersionStatus.values), OpenApiParameter("page", int),
        OpenApiParameter("page_size", int)],
        responses={200: paginated("PaginatedVersionList", VersionOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        wanted = choice_param(request, "status", list(VersionStatus.values))
        versions = selectors.model_version_list(user=request.user, model=model, status=wanted)
        return self.page(request, versions.select_related("created_by"), VersionOut)

    @extend_schema(operation_id="versions_register", request=VersionIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: VersionOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(user=request.user, name=name)
        data = validated(VersionIn, request)
        version = model_version_register(model=model, by=request.user, **data)
        return Response(VersionOut(version).data, status=status.HTTP_201_CREATED)


class VersionDetailView(GovernanceView):
    @extend_schema(operation_id="versions_get", responses={200: VersionOut, **ERROR_RESPONSES})
    def get(self, request: Request, name: str, label: str) -> Response:
        return Response(VersionOut(selectors.model_version_get(user=request.user, model_name=name, label=label)).data)
