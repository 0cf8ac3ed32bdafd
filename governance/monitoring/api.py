"""Monitoring API: reference profiles per model version. Thin views over services and selectors;
a model the caller cannot see answers 404; every POST accepts an `Idempotency-Key`."""

from __future__ import annotations

import json
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ERROR_RESPONSES, CursorlessPagination, paginated
from core.errors import InvalidInput, NotFound
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.ids import object_id
from governance import selectors as governance_selectors
from governance.monitoring import selectors
from governance.monitoring.services.profiles import reference_profile_create
from governance.permissions import TokenScopePermission


class ProfileIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    dataset_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                               help_text="Lineage DatasetVersion id of the reference data")
    columns = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list,
                                    max_length=500, help_text="Numeric columns (default: every column)")
    categorical = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list,
                                        max_length=500)
    bins = serializers.IntegerField(min_value=2, max_value=100, default=10)


class ProfileOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.label")
    dataset_version = serializers.IntegerField(source="dataset_version_id", allow_null=True)
    source_sha256 = serializers.CharField()
    profile_sha256 = serializers.CharField()
    columns = serializers.ListField(child=serializers.DictField())
    bins = serializers.IntegerField()
    row_count = serializers.IntegerField()
    engine_version = serializers.CharField()
    frozen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ProfileDetailOut(ProfileOut):
    summary = serializers.ListField(child=serializers.DictField())


def _data(request: Request) -> dict[str, Any]:
    if isinstance(request.data, QueryDict):  # multipart: the fields travel as JSON in 'profile' next to the file
        raw = request.data.get("profile") or "{}"
        try:
            parsed = json.loads(raw)
        except ValueError as error:
            raise InvalidInput("'profile' must be a JSON object.", code="invalid_input") from error
        if not isinstance(parsed, dict):
            raise InvalidInput("'profile' must be a JSON object.", code="invalid_input")
        return parsed
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    return dict(request.data)


class MonitoringView(APIView):
    permission_classes = [TokenScopePermission]


class ProfileListView(MonitoringView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="monitoring_profiles_list",
                   responses={200: paginated("ReferenceProfilePage", ProfileOut(many=True)), **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str), OpenApiParameter("version", str)])
    def get(self, request: Request) -> Response:
        profiles = selectors.reference_profile_list(user=request.user, model_name=request.query_params.get("model") or None,
                                                    version_label=request.query_params.get("version") or None)
        paginator = CursorlessPagination()
        page = paginator.paginate_queryset(profiles, request, view=self)
        return paginator.get_paginated_response(ProfileOut(page, many=True).data)

    @extend_schema(operation_id="monitoring_profiles_create", request=ProfileIn,
                   responses={201: ProfileOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER],
                   description="JSON naming a lineage dataset version, or multipart with the fields as a JSON string in "
                               "'profile' and the reference data (CSV or Parquet) in 'file'. A version that has been "
                               "approved keeps its profile (409 monitoring_profile_frozen).")
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ProfileIn(data=_data(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        version = governance_selectors.model_version_get(user=request.user, model_name=data["model"], label=data["version"])
        dataset_version = None
        if data["dataset_version"] is not None:
            from lineage.models import DatasetVersion

            dataset_version = DatasetVersion.objects.filter(pk=data["dataset_version"]).first()
            if dataset_version is None:
                raise NotFound(f"No dataset version {data['dataset_version']}.", code="dataset_version_not_found",
                               extra={"id": data["dataset_version"]})
        profile = reference_profile_create(by=request.user, version=version, columns=data["columns"] or None,
                                           categorical=data["categorical"] or None, dataset_version=dataset_version,
                                           file=request.FILES.get("file"), bins=data["bins"])
        return Response(ProfileOut(profile).data, status=status.HTTP_201_CREATED)


class ProfileDetailView(MonitoringView):
    @extend_schema(operation_id="monitoring_profiles_get", responses={200: ProfileDetailOut, **ERROR_RESPONSES})
    def get(self, request: Request, profile_id: str) -> Response:
        profile = selectors.reference_profile_get(user=request.user,
                                                  profile_id=object_id(profile_id, code="monitoring_profile_not_found"))
        return Response(ProfileDetailOut(profile).data)
