"""Errors with stable codes, and the one DRF handler that renders every API error.

Every error body is `{"code": "...", "message": "...", "extra": {...}}`. Services raise
`ServiceError` subclasses; views never build error bodies themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refused operation: a stable `code`, an HTTP status, a message for humans, and details."""

    code = "service_error"
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}


class InvalidInput(ServiceError):
    code = "invalid_input"


class NotFound(ServiceError):
    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(ServiceError):
    code = "permission_denied"
    status_code = status.HTTP_403_FORBIDDEN


class Conflict(ServiceError):
    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


class Unavailable(ServiceError):
    code = "service_unavailable"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "extra": extra or {}}


_DRF_CODES: dict[type[Exception], str] = {
    drf_exceptions.ParseError: "malformed_request_body",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.ValidationError: "invalid_input",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in an API view as the one error format."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_denied", "You may not do this."), status=403)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return Response(error_body("database_unavailable", "The database is unavailable; retry later."),
                        status=503, headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseError):
        return None  # an integrity bug; let it surface as a 500 and in the logs
    if isinstance(exc, drf_exceptions.APIException):
        code = "api_error"
        for klass, name in _DRF_CODES.items():
            if isinstance(exc, klass):
                code = name
                break
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        if isinstance(exc, drf_exceptions.ValidationError):
            return Response(error_body(code, "The request is not valid.", {"fields": exc.detail}),
                            status=exc.status_code, headers=headers)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Response(error_body(code, detail), status=exc.status_code, headers=headers)
    return None


def json_error(code: str, message: str, status_code: int, extra: dict[str, Any] | None = None) -> JsonResponse:
    """The same error format for plain Django views (handlers for 404/500, middleware)."""
    return JsonResponse(error_body(code, message, extra), status=status_code)
