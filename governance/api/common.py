"""Shared pieces of the registry, approval and deployment API: the base view (token scopes; its
pagination is core.api's), input validation, and lookups that answer 404 for what the caller cannot see."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from core.api import PaginatedView
from core.errors import InvalidInput
from core.ids import object_id
from governance import selectors
from governance.models import (
    ApprovalRequest,
    Deployment,
)
from governance.permissions import TokenScopePermission


def choice_param(request: Request, name: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise InvalidInput(f"Query parameter '{name}' must be one of {', '.join(allowed)}.",
                           code="invalid_parameter", extra={"parameter": name, "allowed": allowed})
    return value


def approval_for(request: Request, raw_id: str) -> ApprovalRequest:
    return selectors.approval_request_get(user=request.user,
                                          request_id=object_id(raw_id, code="approval_request_not_found"))


def deployment_for(request: Request, raw_id: str) -> Deployment:
    return selectors.deployment_get(user=request.user, deployment_id=object_id(raw_id, code="deployment_not_found"))


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class CommentIn(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class GovernanceView(PaginatedView):
    permission_classes = [TokenScopePermission]
