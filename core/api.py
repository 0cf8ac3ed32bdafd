"""Shared API plumbing: pagination, query-parameter parsing and the error schema, with stable error codes."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import InvalidInput


class CursorlessPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_number(self, request: Request, paginator) -> int | str:  # type: ignore[no-untyped-def]
        raw = request.query_params.get(self.page_query_param, "1")
        if raw == "last":
            return raw
        return int_param(request, self.page_query_param, default=1, minimum=1)

    def get_page_size(self, request: Request) -> int:
        return int_param(request, self.page_size_query_param, default=self.page_size or 50,
                         minimum=1, maximum=self.max_page_size)


# An APIView whose list endpoints answer one CursorlessPagination page (document it with `paginated`).
# No docstring: drf-spectacular would copy it into every subclass's operation description.
class PaginatedView(APIView):
    def page(self, request: Request, queryset: QuerySet[Any], serializer_class: type[serializers.Serializer],
             *, context: dict[str, Any] | None = None) -> Response:
        paginator = CursorlessPagination()
        items = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(items, many=True, context=context or {}).data)


def int_param(request: Request, name: str, *, default: int | None = None, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Read an integer query parameter, or refuse with `invalid_parameter` naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidInput(f"Query parameter '{name}' is required.", code="missing_parameter",
                               extra={"parameter": name})
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 19:
        raise InvalidInput(f"Query parameter '{name}' must be an integer.", code="invalid_parameter",
                           extra={"parameter": name})
    value = int(raw)
    if minimum is not None and value < minimum:
        raise InvalidInput(f"Query parameter '{name}' must be at least {minimum}.", code="invalid_parameter",
                           extra={"parameter": name})
    if maximum is not None and value > maximum:
        raise InvalidInput(f"Query parameter '{name}' must be at most {maximum}.", code="invalid_parameter",
                           extra={"parameter": name})
    return value


class ErrorSerializer(serializers.Serializer):
    """The one error body every endpoint returns."""

    code = serializers.CharField(help_text="Stable, machine-readable error code")
    message = serializers.CharField()
    extra = serializers.DictField(help_text="Details, e.g. the offending field or id")


def paginated(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The schema of a PaginatedView.page of `item`s, for the view's `extend_schema`."""
    from drf_spectacular.utils import inline_serializer

    return inline_serializer(name=name, fields={
        "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True), "results": item})


ERROR_RESPONSES = {status_code: ErrorSerializer for status_code in (400, 401, 403, 404, 409, 413, 415, 429, 503)}
