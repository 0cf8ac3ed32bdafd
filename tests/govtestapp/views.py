"""A DRF view authenticated inside the view (like token auth), for the actor-resolution test."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.govtestapp.models import Widget


class HeaderTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Test <username>`: stands in for a real token scheme."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Test "):
            return None
        try:
            return get_user_model().objects.get(username=header.removeprefix("Test ")), None
        except get_user_model().DoesNotExist:
            raise exceptions.AuthenticationFailed("unknown user")


class WidgetCreateView(APIView):
    authentication_classes = [HeaderTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        widget = Widget.objects.create(name=str(request.data.get("name", "")))
        return Response({"id": widget.pk}, status=201)
